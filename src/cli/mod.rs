//! The `runway` command line: argument parsing, reading files, printing, exit codes.
//!
//! Architecture invariant: this is the only module that touches the file system for
//! playbooks, writes to the terminal or decides an exit code. Everything it calls is pure.

mod load;
mod plan;
pub mod schema;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Documented exit codes.
pub mod exit {
    /// Success: the playbook is valid, the run succeeded, the gate said GO.
    pub const OK: u8 = 0;
    /// The run failed or a gate said NO-GO.
    pub const FAILED: u8 = 1;
    /// Invalid input: a playbook, a param or an argument is wrong. Nothing was started.
    pub const INVALID: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(name = "runway", version, about = "A durable runbook engine", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check playbooks and report every problem with its file:line:column.
    Validate(validate::Args),
    /// Show what a run would do: steps in order, parallelism, approvals, undo, worst case.
    Plan(plan::Args),
    /// Print the JSON Schema of the playbook format (for editors).
    Schema,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Schema => schema::run(),
    };
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::INVALID)
        }
    }
}
