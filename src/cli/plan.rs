//! `runway plan FILE|NAME -p key=value...`

use super::{exit, load};
use crate::compiler;
use crate::plan::{Format, bind_params, render};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A playbook file, or the name of one in RUNWAY_WORKFLOWS (default `workflows/`).
    #[arg(value_name = "FILE|NAME")]
    playbook: String,
    /// A param value: `-p school_slug=greenwood-high`. Repeat for more.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let path = load::resolve(&args.playbook)?;
    let source = match load::read(&path)? {
        Ok(s) => s,
        Err(d) => {
            load::print_diagnostics(&load::unreadable(&path, d), false);
            return Ok(exit::INVALID);
        }
    };
    let references = load::references(std::slice::from_ref(&path));
    let compiled = compiler::compile_all(vec![source], &references)
        .pop()
        .expect("one in, one out");
    load::print_diagnostics(&compiled, false);
    let Some(plan) = compiled.plan else {
        eprintln!(
            "failed: {} error(s) in `{}`",
            compiled.errors(),
            compiled.source.name
        );
        return Ok(exit::INVALID);
    };
    let params = match bind_params(&plan.playbook.params, &args.params) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
                if let Some(h) = e.hint {
                    eprintln!("  = help: {h}");
                }
            }
            return Ok(exit::INVALID);
        }
    };
    print!("{}", render(&plan, &params, args.format));
    Ok(exit::OK)
}
