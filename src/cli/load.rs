//! Printing what the compiler said about files. Finding and reading them is
//! [`crate::library`].

use std::path::Path;

use crate::compiler::Compiled;
use crate::diagnostic::Severity;
use crate::source::Source;

pub use crate::library::{expand, read, references, resolve};

/// Prints the diagnostics of one file to stderr, rustc-style.
pub fn print_diagnostics(compiled: &Compiled, strict: bool) {
    for d in &compiled.diagnostics {
        let mut d = d.clone();
        if strict {
            d.severity = Severity::Error;
        }
        eprint!("{}", d.render(&compiled.source.name, &compiled.source.text));
        eprintln!();
    }
}

/// A diagnostic about a file that could not be read as text.
pub fn unreadable(path: &Path, diagnostic: crate::diagnostic::Diagnostic) -> Compiled {
    Compiled {
        source: Source {
            name: path.display().to_string(),
            text: String::new(),
        },
        diagnostics: vec![diagnostic],
        plan: None,
    }
}

/// Loads and compiles `FILE|NAME`, printing every problem. `Err(code)` when the playbook is
/// invalid (the diagnostics are printed already). The text is what a run or a schedule pins.
pub fn compiled(target: &str) -> anyhow::Result<Result<(crate::plan::Plan, String), u8>> {
    let path = resolve(target)?;
    let source = match read(&path)? {
        Ok(s) => s,
        Err(d) => {
            print_diagnostics(&unreadable(&path, d), false);
            return Ok(Err(super::exit::INVALID));
        }
    };
    let text = source.text.clone();
    let references = references(std::slice::from_ref(&path));
    let compiled = crate::compiler::compile_all(vec![source], &references)
        .pop()
        .expect("one in, one out");
    print_diagnostics(&compiled, false);
    match compiled.plan {
        Some(plan) => Ok(Ok((plan, text))),
        None => {
            eprintln!(
                "failed: {} error(s) in `{}`",
                compiled.errors(),
                compiled.source.name
            );
            Ok(Err(super::exit::INVALID))
        }
    }
}

/// Prints param problems (or any located problem without a file position) as errors.
pub fn print_bind_errors(errors: &[crate::plan::BindError]) {
    for e in errors {
        eprintln!("error: {}", e.message);
        if let Some(h) = &e.hint {
            eprintln!("  = help: {h}");
        }
    }
}

/// Loads, compiles and binds params for `FILE|NAME`, printing every problem. `Err(code)`
/// when the playbook or the params are invalid (the diagnostics are printed already).
#[allow(clippy::type_complexity)]
pub fn plan_with_params(
    target: &str,
    given: &[(String, String)],
) -> anyhow::Result<
    Result<
        (
            crate::plan::Plan,
            String,
            serde_json::Map<String, serde_json::Value>,
        ),
        u8,
    >,
> {
    let (plan, text) = match compiled(target)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(Err(code)),
    };
    match crate::plan::bind_params(&plan.playbook.params, given) {
        Ok(params) => Ok(Ok((plan, text, params))),
        Err(errors) => {
            print_bind_errors(&errors);
            Ok(Err(super::exit::INVALID))
        }
    }
}
