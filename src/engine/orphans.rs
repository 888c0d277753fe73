//! What a dead attempt left running. A shell step's processes run in their own session, so
//! they outlive a worker that is SIGKILLed (or whose host loses it); nobody is left to end
//! them, and the step's next attempt would run alongside them.
//!
//! Every process of an attempt carries `RUNWAY_ATTEMPT_TOKEN` (see [`crate::exec`]). The
//! engine derives that token from the attempt's identity (run, step, attempt number), so
//! whoever learns that an attempt is over can find its processes without the dead worker:
//! the reaper that takes an expired lease sweeps the reaped attempt's token, and a worker
//! that starts attempt N of a step sweeps attempt N - 1's first (that also covers a reaper
//! on another host, whose sweep finds nothing here). Both sweeps read the local `/proc`: a
//! worker lost together with its host took its processes with it.
//!
//! An attempt number names one attempt of a step of a run: a claim always moves it on (a
//! waiting step's timer continues the same attempt, but only `wait`, approvals and
//! `invoke` wait, and they run no processes).

use sha2::{Digest, Sha256};

use crate::store::Lease;

/// The token of one attempt: 128 bits of a hash of its identity, in hex. Distinct attempts
/// never share one (run ids are unique across stores, too); the token is no secret, since
/// any process of the same user can read another's environment anyway.
pub fn attempt_token(run_id: &str, step_id: &str, attempt: i32) -> String {
    let mut h = Sha256::new();
    for part in [
        "runway attempt token",
        run_id,
        step_id,
        &attempt.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SIGKILLs every local process left by the attempts of `leases`; returns how many.
pub async fn sweep_reaped(leases: &[Lease]) -> usize {
    let tokens: Vec<String> = leases
        .iter()
        .map(|l| attempt_token(&l.run_id, &l.step_id, l.attempt))
        .collect();
    sweep(tokens).await
}

/// SIGKILLs every local process left by attempt `attempt - 1` of a step, before attempt
/// `attempt` starts; returns how many. Nothing to do for a first attempt.
pub async fn sweep_previous(run_id: &str, step_id: &str, attempt: i32) -> usize {
    if attempt <= 1 {
        return 0;
    }
    sweep(vec![attempt_token(run_id, step_id, attempt - 1)]).await
}

async fn sweep(tokens: Vec<String>) -> usize {
    let swept = tokio::task::spawn_blocking(move || {
        tokens
            .iter()
            .map(|t| crate::exec::sweep_token(t))
            .sum::<usize>()
    })
    .await;
    swept.unwrap_or_else(|e| {
        tracing::warn!("the sweep of a dead attempt's processes failed: {e}");
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_attempt() {
        let t = attempt_token("01RUN", "deploy", 2);
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(t, attempt_token("01RUN", "deploy", 2));
        assert_ne!(t, attempt_token("01RUN", "deploy", 3));
        assert_ne!(t, attempt_token("01RUN", "deplo", 2));
        // The separator keeps the parts apart: ("a", "bc") is not ("ab", "c").
        assert_ne!(attempt_token("a", "bc", 1), attempt_token("ab", "c", 1));
    }
}
