//! `runway validate FILE|DIR...`

use std::path::PathBuf;

use super::{exit, load};
use crate::compiler::{self, Compiled};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Playbook files, or directories of them.
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    strict: bool,
    /// `json` prints one object per file on stdout, for tools.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let mut files = Vec::new();
    for p in &args.paths {
        files.extend(load::expand(p)?);
    }
    if files.is_empty() {
        anyhow::bail!(
            "no .yaml or .yml files in {}",
            args.paths
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut sources = Vec::new();
    let mut results: Vec<Compiled> = Vec::new();
    for f in &files {
        match load::read(f)? {
            Ok(source) => sources.push(source),
            Err(diagnostic) => results.push(load::unreadable(f, diagnostic)),
        }
    }
    let references = load::references(&files);
    results.extend(compiler::compile_all(sources, &references));
    results.sort_by(|a, b| a.source.name.cmp(&b.source.name));

    let errors: usize = results.iter().map(Compiled::errors).sum();
    let warnings: usize = results.iter().map(Compiled::warnings).sum();
    let failed = errors > 0 || (args.strict && warnings > 0);
    match args.format {
        OutputFormat::Text => {
            for r in &results {
                load::print_diagnostics(r, args.strict);
            }
            let status = if failed { "failed" } else { "ok" };
            eprintln!(
                "{status}: {} playbook(s) checked, {errors} error(s), {warnings} warning(s){}",
                results.len(),
                if args.strict && warnings > 0 {
                    " (--strict: warnings are errors)"
                } else {
                    ""
                }
            );
        }
        OutputFormat::Json => {
            let out: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "file": r.source.name,
                        "playbook": r.plan.as_ref().map(|p| p.playbook.name.value.clone()),
                        "valid": r.errors() == 0 && !(args.strict && r.warnings() > 0),
                        "diagnostics": r.diagnostics,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(if failed { exit::INVALID } else { exit::OK })
}
