//! Executing plans durably.
//!
//! - [`progress`]: the pure decision function (what becomes ready, skipped, gate
//!   verdicts, the outcome, the undo order), tested without a database.
//! - [`decide`]: that function as the store's [`crate::store::Decide`], asked inside the
//!   transaction that changed the run, plus the unwinding phases (cancel, undo,
//!   `on_failure`).
//! - [`create`]: a new run's rows from a plan and bound params.
//! - [`worker`]: the queue consumer (apalis), the claim/attempt/record cycle, lease
//!   renewal and the reaper; `drain`: stopping a consumer only once its jobs in flight
//!   have finished (apalis' own shutdown would freeze a connection they need); `poll`:
//!   the idle worker's poll interval (apalis' own loses its timer after an empty fetch).
//! - [`attempt`] and `remote`: one attempt of each step kind; `followup`: registering a
//!   `followup` step's run for later (the scheduler starts it); [`escalate`]: an
//!   approval's escalation when nobody decided in time.
//! - [`orphans`]: each attempt's process token, derived from its identity, and the sweep
//!   of what a dead attempt left running (by the reaper, and before the next attempt).
//! - [`context`]: what templates see; [`crate::secrets`] masks before anything is stored.

pub mod attempt;
pub mod context;
pub mod create;
pub mod decide;
mod drain;
pub mod escalate;
mod followup;
pub mod human;
pub mod orphans;
mod poll;
pub mod progress;
mod remote;
pub mod worker;

pub use crate::secrets::Secrets;
pub use create::{Kept, Origin, new_run, new_run_keeping};
pub use decide::Decider;
pub use worker::{Config, Engine, compile, plan_of_run};

/// What stops the engine from handling a job (as opposed to a step failing, which is a
/// recorded result).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("the run's playbook `{name}` does not compile: {errors}")]
    Invalid { name: String, errors: String },
    #[error("step `{0}` is not in the run's plan")]
    UnknownStep(String),
    #[error("a claimed step has no lease")]
    NoLease,
    #[error("the worker is shutting down")]
    ShuttingDown,
    #[error("queue: {0}")]
    Queue(String),
}
