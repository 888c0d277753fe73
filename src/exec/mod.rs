//! Running a step's action from this machine. For the `shell` kind, [`run`] takes a
//! [`ShellSpec`] whose templates the engine has already rendered, runs one attempt of it as
//! a real process, and returns a [`ShellOutcome`] that says how it ended and what it left.
//! The other kinds that act on the world have one function each, in the same shape: rendered
//! input and a cancel token in, one attempt's outcome out. [`http::request`] sends one HTTP
//! request ([`HttpRequest`] to [`HttpOutcome`]), [`sql::query`] runs one statement against
//! PostgreSQL ([`SqlQuery`] to [`SqlOutcome`]) and [`notify::send`] POSTs a message to a
//! webhook ([`Notification`]). Their module docs say what each does with redirects, limits,
//! types, timeouts and credentials; the rest of this page is about `shell`.
//!
//! Each executor knows nothing of runs, stores or retries: it runs one attempt and reports.
//! The engine decides what the outcome means (a non-zero exit fails the step, an
//! [`ShellOutcome::output_error`] fails it too, a checkpoint is persisted whatever happened).
//! [`Error`] is only for attempts that could not start or be watched at all.
//!
//! # The process
//!
//! `argv` runs the program directly, without a shell: each element is exactly one argument,
//! whatever quotes, spaces or `$(...)` it contains. A `script` is written to a file readable
//! by the worker's user only (0600) and run as `bash -euo pipefail FILE`. stdin is
//! `/dev/null`; stdout and stderr are read concurrently, and only the last
//! [`Limits::stdout_tail`] / [`Limits::stderr_tail`] bytes of each are kept in memory (with the
//! total count), so a step that prints gigabytes, or one endless line, costs a fixed amount.
//!
//! # The environment
//!
//! A step does not inherit the worker's environment, which may hold the worker's own database
//! URL and tokens. It gets, in this order (later entries win):
//!
//! 1. from the worker, only `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `USER` and `TMPDIR`, each
//!    only if set (`PATH` falls back to `/usr/local/bin:/usr/bin:/bin`);
//! 2. the step's own `env`;
//! 3. `RUNWAY_RUN_ID`, `RUNWAY_STEP_ID`, `RUNWAY_ATTEMPT` (1-based),
//!    `RUNWAY_IDEMPOTENCY_KEY` (the same on every attempt of a step in a run),
//!    `RUNWAY_OUTPUT` (an empty file), `RUNWAY_CHECKPOINT` (a file holding the checkpoint
//!    of the previous attempt, or empty), and `RUNWAY_ATTEMPT_TOKEN`, a value unique to this
//!    attempt that the executor uses to find the attempt's processes (see below): random,
//!    or [`ShellSpec::token`] (the engine derives it from the attempt's identity, so that
//!    whoever takes a dead worker's step over can [`sweep_token`] what it left).
//!
//! Both files live in a fresh directory that only the worker's user can enter (0700), removed
//! when the attempt is over. The executor never logs environment values: its tracing events
//! carry `run.id`, `step.id` and `attempt`, and name the program, nothing else.
//!
//! # Files the step leaves
//!
//! `RUNWAY_OUTPUT` is read after the process ends. It holds either one JSON object, or
//! `key=value` lines (keys `[A-Za-z_][A-Za-z0-9_.-]*`, the value is the rest of the line, as a
//! string; blank lines and lines starting with `#` are ignored). A file over
//! [`Limits::output_max`], or one that is neither, gives an [`ShellOutcome::output_error`]
//! (naming the first bad line). `exit_code` is always added to the outputs when the process
//! exited, replacing any value the step wrote under that name.
//!
//! `RUNWAY_CHECKPOINT` is read back whatever the exit status, and
//! [`ShellOutcome::checkpoint`] is what the engine persists and passes as
//! [`ShellSpec::checkpoint_in`] to the next attempt (an empty or removed file clears it).
//!
//! # Ending an attempt
//!
//! The process starts as the leader of its own session and process group. On timeout or
//! cancel, the whole group gets SIGTERM; when the group is empty, or after
//! [`ShellSpec::grace`], it gets SIGKILL. Whenever the main process ends, normally or not,
//! nothing of the attempt may outlive it: the executor SIGKILLs what is left of the group,
//! then scans `/proc/*/environ` for processes carrying this attempt's `RUNWAY_ATTEMPT_TOKEN`
//! and SIGKILLs them, until none is left. That finds daemons that left the group (`setsid`,
//! `nohup ... &`, double forks) as long as they kept their environment. The executor reaps
//! its own child; processes that were reparented are reaped by init (or a subreaper), so
//! until init gets to them they may linger as zombies: dead, holding nothing but a pid.
//!
//! If the worker itself dies (SIGKILL, OOM), nothing of the above happens: the attempt's
//! processes, in their own session, go on. The engine's reaper sweeps the token of every
//! attempt whose lease it takes over, and a worker starting attempt N sweeps attempt N - 1's
//! first (`engine::orphans`); both only see this host's processes.
//!
//! What can still escape: a process that left the group **and** dropped the token from its
//! environment (`env -i`, `env -u RUNWAY_ATTEMPT_TOKEN`, a program that re-execs with a clean
//! environment), a process whose `/proc/PID/environ` the worker cannot read (another user
//! after a setuid exec, or one that made itself non-dumpable, as `ssh-agent` does), and
//! anything started through another service (`systemd-run`, `at`, `docker run`). If such a
//! process still holds the step's stdout or stderr open, the executor stops reading them
//! [`PIPE_DRAIN`] after the kill, so it never hangs on it.
//!
//! This module is Linux-only: it relies on sessions, process groups and `/proc`.

mod capture;
mod files;
pub mod http;
pub mod notify;
mod pg_json;
mod reap;
mod shell;
pub mod sql;
mod workspace;

pub use capture::Captured;
pub use files::{StepFile, StepFileError};
pub use http::{HttpBody, HttpError, HttpOutcome, HttpRequest};
pub use notify::Notification;
pub use shell::{
    DEFAULT_GRACE, DEFAULT_TIMEOUT, End, Limits, PIPE_DRAIN, Program, RunwayEnv, ShellOutcome,
    ShellSpec, run,
};
pub use sql::{SqlError, SqlOutcome, SqlQuery};

/// SIGKILLs every local process whose environment carries `RUNWAY_ATTEMPT_TOKEN=token`,
/// until a scan of `/proc` finds none; returns how many were killed. For the processes of an
/// attempt whose executor is gone (its worker died): see [`ShellSpec::token`]. Blocking.
pub fn sweep_token(token: &str) -> usize {
    reap::sweep(token)
}

/// Why an attempt could not be started or watched. Anything the step itself did (its exit
/// status, a bad `RUNWAY_OUTPUT`) is part of the [`ShellOutcome`] instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`argv` is empty: the first element is the program to run")]
    EmptyArgv,
    #[error("argument {index} contains a NUL byte, which no program can receive")]
    NulInArgument { index: usize },
    #[error("`{name}` is not a valid environment variable name")]
    BadEnvName { name: String },
    #[error("the value of environment variable `{name}` contains a NUL byte")]
    NulInEnvValue { name: String },
    #[error("working directory `{}` is not a directory", path.display())]
    Cwd { path: std::path::PathBuf },
    #[error("could not prepare the step's private directory: {0}")]
    Workspace(#[source] std::io::Error),
    #[error("the attempt token is empty or contains a NUL byte")]
    BadToken,
    #[error("could not draw a random attempt token: {0}")]
    Token(getrandom::Error),
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lost track of the step's process: {0}")]
    Wait(#[source] std::io::Error),
    #[error("a background task of the executor failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
