//! Runway: a durable runbook engine.
//!
//! See `ARCHITECTURE.md` at the repository root for the map. In short: [`compiler`] turns
//! playbook text into a [`plan::Plan`] (pure: no I/O), and [`cli`] is the only module that
//! knows about files, terminals and exit codes.

pub mod cadence;
pub mod cli;
pub mod compiler;
pub mod condition;
pub mod diagnostic;
pub mod engine;
pub mod exec;
pub mod library;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod scheduler;
pub mod secrets;
pub mod shutdown;
pub mod sim;
pub mod source;
pub mod state;
pub mod store;
pub mod yaml;
