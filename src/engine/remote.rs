//! TEMPORARY: replaced by the real executors' wiring (see /tmp/remote.rs.real).
#![allow(clippy::result_large_err)] // as in attempt.rs
use tokio_util::sync::CancellationToken;

use super::attempt::{Ended, Input};

pub(super) async fn attempt(input: &Input<'_>, _cancel: CancellationToken) -> Result<Ended, Ended> {
    Err(Ended::failed(format!(
        "`{}` steps are not wired yet",
        input.step.kind.name()
    )))
}
