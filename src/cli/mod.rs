//! The `runway` command line: argument parsing, reading files, printing, exit codes.
//!
//! Architecture invariant: this is the only module that touches the file system for
//! playbooks, writes to the terminal or decides an exit code. Everything it calls is pure.

mod cancel;
mod db;
mod decide;
mod inspect;
mod load;
mod plan;
mod report;
mod retry;
mod run;
mod schedule;
pub mod schema;
mod sim;
mod validate;
mod verify;

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
    /// `runway run` detached by Ctrl-C; the run goes on (`runway run --resume RUN`).
    pub const INTERRUPTED: u8 = 130;
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
    /// Start a run and execute it in this process, with live progress (the embedded mode).
    Run(run::RunArgs),
    /// Create a run for the workers (`--wait` to wait for its outcome).
    Start(run::StartArgs),
    /// Execute queued steps until SIGINT/SIGTERM.
    Worker(run::WorkerArgs),
    /// One run: its status and every step's.
    Status(inspect::StatusArgs),
    /// Recent runs.
    Runs(inspect::RunsArgs),
    /// A run's events (its evidence), with step output excerpts.
    Logs(inspect::LogsArgs),
    /// Approve a waiting approval step (counts toward its quorum).
    Approve(decide::ApproveArgs),
    /// Reject a waiting approval step: it fails with your reason.
    Reject(decide::RejectArgs),
    /// Answer one item of a waiting checklist step.
    Check(decide::CheckArgs),
    /// Stop a run: running steps are stopped, completed changes are undone.
    Cancel(cancel::CancelArgs),
    /// A new run of an ended one that keeps its completed steps' results and runs the rest
    /// (`--from STEP`: that step and everything after it run again).
    Retry(retry::RetryArgs),
    /// A run's evidence report: Markdown, HTML (one self-contained file) or the JSON export.
    Report(report::ReportArgs),
    /// Recompute the hash-chained evidence of a run or of a JSON export: exit 0 intact, 1
    /// naming the first bad event.
    Verify(verify::VerifyArgs),
    /// Manage schedules: add (from a playbook), list, show, pause, resume, remove.
    Schedule(schedule::Args),
    /// Fire due schedule ticks until SIGINT/SIGTERM (any number may run on one Postgres).
    Scheduler(schedule::SchedulerArgs),
    /// Apply database migrations (they also run on every connect).
    Migrate,
    /// The bundled simulated school platform the shipped playbooks run against (docs/sim.md).
    Sim(sim::Args),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Schema => schema::run(),
        Command::Run(args) => run::run(&args),
        Command::Start(args) => run::start(&args),
        Command::Worker(args) => run::worker(&args),
        Command::Status(args) => inspect::status(&args),
        Command::Runs(args) => inspect::runs(&args),
        Command::Logs(args) => inspect::logs(&args),
        Command::Approve(args) => decide::approve(&args),
        Command::Reject(args) => decide::reject(&args),
        Command::Check(args) => decide::check(&args),
        Command::Cancel(args) => cancel::cancel(&args),
        Command::Retry(args) => retry::retry(&args),
        Command::Report(args) => report::report(&args),
        Command::Verify(args) => verify::verify(&args),
        Command::Schedule(args) => schedule::run(&args),
        Command::Scheduler(args) => schedule::scheduler(&args),
        Command::Migrate => cancel::migrate(),
        Command::Sim(args) => sim::run(&args),
    };
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::INVALID)
        }
    }
}
