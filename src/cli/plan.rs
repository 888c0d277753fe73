//! `runway plan FILE|NAME -p key=value...`

use super::{exit, load};
use crate::plan::{Format, render};

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

pub fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let (plan, _text, params) = match load::plan_with_params(&args.playbook, &args.params)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    print!("{}", render(&plan, &params, args.format));
    Ok(exit::OK)
}
