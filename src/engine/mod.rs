//! Executing plans: what runs next, and (with the store) running it durably.
//!
//! `progress` is the engine's pure core: from a plan and the states of its steps it decides
//! which steps become ready, which are skipped, what each gate's verdict is, and whether the
//! run has succeeded or can no longer succeed. It does no I/O, so every rule of the
//! execution contract (list order, `when`, skip propagation, gates absorbing their checks'
//! failures, non-critical warnings, the undo order) is tested without a database.

pub mod progress;
