//! Deciding ahead: the commonest transition, prepared so a backend can apply it in one
//! statement.
//!
//! A worker finishing a main step with a success or a warning usually knows, from rows it
//! read before (with its claim, or before its attempt), what follows: the step's dependents
//! that become ready. [`plan`] asks the engine's [`Decide`] with those rows, as the general
//! path would under the run's lock, and turns the answer into an [`Ahead`]: the result, the
//! decision, what the rows it read said (each `open` or its terminal status), and the
//! events' data in canonical form. A backend that can apply it atomically (Postgres,
//! `runway_step_finish`) checks under the run's lock that those rows still say the same and
//! refuses otherwise; the store then takes the general path. So deciding ahead never
//! decides differently: it decides earlier, and is checked.
//!
//! Only the plain case is planned here: a lease-guarded success or warning of a main step,
//! with no decisions, events or run status of its own, whose decision makes at most one
//! step ready (claimed at once for the hand-over), and nothing else. Anything more (a
//! fan-out, skips, gates, failures, the run's end) is decided under the lock.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::chain;
use super::model::{ClaimNext, Decide, Ended, Finish, Guard, Lease, Run, StepRun};
use super::ops;
use crate::state::StepStatus;

/// Rows a worker read earlier in a run, offered to [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The run, as the worker has it (only its fixed fields are read: params, starter...).
    pub run: &'a Run,
    pub rows: &'a [StepRun],
}

/// A step the store claimed for the worker as part of a finish (the hand-over).
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub row: StepRun,
    /// The rows the claimed step reads ([`Decide::reads_for`]), as the claiming transaction
    /// left them, when the store could return them with the claim.
    pub rows: Option<Vec<StepRun>>,
}

/// A transition decided ahead, ready to be applied (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ahead {
    pub lease: Lease,
    pub status: StepStatus,
    pub outputs: Option<Value>,
    pub checkpoint: Option<Vec<u8>>,
    pub error: Option<String>,
    pub now: i64,
    /// Canonical data of the `step.<status>` event.
    pub finish_data: String,
    /// Each row the decision read (but the finishing step's): `open` or its terminal status.
    pub expect: Map<String, Value>,
    /// The step the decision makes ready, claimed for the hand-over, and its `step.ready`
    /// event's canonical data.
    pub ready: Option<(String, String)>,
    pub claim_worker: String,
    pub claim_expires: i64,
    /// Canonical data of the hand-over's `step.running` event.
    pub running_data: String,
    /// The rows to return with the claim of `ready` ([`Decide::reads_for`]).
    pub next_reads: Vec<String>,
}

/// What a row says for a decision taken ahead: whether it is still open, or how it ended.
/// A decision reads the statuses of ended steps (and their outputs, fixed once ended) and
/// only whether the others are still open, so a row that moved from ready to running has
/// not changed it. The SQL side of the check spells the same rule.
pub(super) fn state(status: StepStatus) -> &'static str {
    if status.is_terminal() {
        status.as_str()
    } else {
        "open"
    }
}

/// Whether a row the decision reads is another step under way (ready, running or
/// waiting): it may end at any moment, and a decision that counted on it being open (a
/// join that waits for it) would be refused nearly every time when several workers run
/// the steps of one fan-out (measured: a 40-wide fan-out took 2.5 ms a step instead of
/// 1.8). Such decisions are taken under the lock at once. A pending row changes only with
/// a decision that some other step's end takes, which the check sees.
fn in_flight(status: StepStatus) -> bool {
    matches!(
        status,
        StepStatus::Ready | StepStatus::Running | StepStatus::Waiting
    )
}

/// The transition to apply, if `finish` is the plain case and `known` has every row the
/// decision needs; `None` sends the store down the general path.
pub(super) fn plan(
    guard: &Guard,
    finish: &Finish,
    decide: &dyn Decide,
    claim: &ClaimNext,
    known: Known<'_>,
    now: i64,
) -> Option<Ahead> {
    let Guard::Lease(lease) = guard else {
        return None;
    };
    let plain = matches!(finish.status, StepStatus::Succeeded | StepStatus::Warned)
        && finish.then.is_empty()
        && finish.events.is_empty()
        && finish.run_status.is_none();
    if !plain {
        return None;
    }
    let ended = Ended {
        step_id: &lease.step_id,
        status: finish.status,
    };
    let ids = decide.reads_after(&ended)?;
    let by_id: HashMap<&str, &StepRun> =
        known.rows.iter().map(|r| (r.step_id.as_str(), r)).collect();
    let mut rows = Vec::with_capacity(ids.len());
    for id in &ids {
        let mut row = (*by_id.get(id.as_str())?).clone();
        if row.step_id != lease.step_id && in_flight(row.status) {
            return None;
        }
        if row.step_id == lease.step_id {
            // As the finishing UPDATE leaves it.
            row.status = finish.status;
            row.outputs.clone_from(&finish.outputs);
            row.error.clone_from(&finish.error);
            row.finished_at = chrono::DateTime::from_timestamp_millis(now);
            row.lease_owner = None;
            row.lease_expires_at = None;
            row.ready_at = None;
        }
        rows.push(row);
    }
    let adv = decide.decide_after(known.run, &ended, &rows)?;
    let simple = adv.cancel.is_empty()
        && adv.wake.is_empty()
        && adv.run_status.is_none()
        && adv.events.is_empty()
        && adv.then.len() <= 1
        && adv
            .then
            .iter()
            .all(|d| d.status == StepStatus::Ready && d.error.is_none());
    if !simple {
        return None;
    }
    let expect = rows
        .iter()
        .filter(|r| r.step_id != lease.step_id)
        .map(|r| (r.step_id.clone(), Value::from(state(r.status))))
        .collect();
    let ready = adv.then.first().map(|d| {
        let data = ops::ready_event_data(&lease.step_id, None);
        (d.step_id.clone(), chain::canonical(&data))
    });
    let next_reads = ready
        .as_ref()
        .map(|(id, _)| decide.reads_for(id))
        .unwrap_or_default();
    let claim_expires = ops::plus(now, claim.lease_for);
    Some(Ahead {
        lease: lease.clone(),
        status: finish.status,
        outputs: finish.outputs.clone(),
        checkpoint: finish.checkpoint.clone(),
        error: finish.error.clone(),
        now,
        finish_data: chain::canonical(&ops::finish_event_data(Some(&lease.worker), finish)),
        expect,
        ready,
        claim_worker: claim.worker.clone(),
        claim_expires,
        running_data: chain::canonical(&ops::running_event_data(&claim.worker, claim_expires)),
        next_reads,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::model::{Advance, Decision, StepList};
    use chrono::Utc;
    use serde_json::json;

    /// Decides like a chain: the step after the one that ended is ready once it ended.
    struct Chain;

    impl Decide for Chain {
        fn decide(&self, _: &Run, _: &[StepRun]) -> Advance {
            Advance::default()
        }
        fn reads_after(&self, ended: &Ended<'_>) -> Option<Vec<String>> {
            Some(match ended.step_id {
                "a" => vec!["a".into(), "b".into()],
                _ => vec![],
            })
        }
        fn decide_after(&self, _: &Run, ended: &Ended<'_>, rows: &[StepRun]) -> Option<Advance> {
            let b = rows.iter().find(|r| r.step_id == "b");
            let a_done = rows
                .iter()
                .any(|r| r.step_id == "a" && r.status.is_terminal());
            let then = match (ended.step_id, b) {
                ("a", Some(b)) if a_done && b.status == StepStatus::Pending => {
                    vec![Decision::ready("b")]
                }
                _ => vec![],
            };
            Some(Advance {
                then,
                ..Advance::default()
            })
        }
        fn reads_for(&self, step_id: &str) -> Vec<String> {
            vec![step_id.to_owned()]
        }
    }

    fn row(step_id: &str, status: StepStatus) -> StepRun {
        StepRun {
            run_id: "r".into(),
            step_id: step_id.into(),
            position: 0,
            list: StepList::Main,
            status,
            attempt: 1,
            max_attempts: 1,
            lease_owner: (status == StepStatus::Running).then(|| "w".to_owned()),
            lease_expires_at: None,
            ready_at: None,
            outputs: None,
            checkpoint: None,
            error: None,
            idempotency_key: format!("r:{step_id}"),
            started_at: None,
            finished_at: None,
        }
    }

    fn run() -> Run {
        Run {
            id: "r".into(),
            playbook: "p".into(),
            content_hash: "h".into(),
            definition: String::new(),
            params: json!({}),
            starter: "s".into(),
            trigger: "manual".into(),
            status: crate::state::RunStatus::Running,
            lock_key: None,
            parent_run_id: None,
            parent_step_id: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            error: None,
        }
    }

    fn lease(step: &str) -> Guard {
        Guard::Lease(Lease {
            run_id: "r".into(),
            step_id: step.into(),
            worker: "w".into(),
            attempt: 1,
        })
    }

    fn claim() -> ClaimNext {
        ClaimNext {
            worker: "w".into(),
            lease_for: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_chain_link_is_planned_with_its_successor_claimed() {
        let rows = [row("a", StepStatus::Running), row("b", StepStatus::Pending)];
        let run = run();
        let known = Known {
            run: &run,
            rows: &rows,
        };
        let finish = Finish::new(StepStatus::Succeeded);
        let ahead = plan(&lease("a"), &finish, &Chain, &claim(), known, 1_000).expect("planned");
        assert_eq!(ahead.ready.as_ref().map(|(id, _)| id.as_str()), Some("b"));
        assert_eq!(ahead.expect, Map::from_iter([("b".into(), json!("open"))]));
        assert_eq!(ahead.next_reads, vec!["b".to_owned()]);
        assert_eq!(ahead.claim_expires, 31_000);
        assert_eq!(
            ahead.finish_data,
            r#"{"error":null,"outputs":null,"then":[],"worker":"w"}"#
        );
    }

    #[test]
    fn anything_but_the_plain_case_is_left_to_the_general_path() {
        let rows = [row("a", StepStatus::Running), row("b", StepStatus::Pending)];
        let run = run();
        let known = Known {
            run: &run,
            rows: &rows,
        };
        let failed = Finish::new(StepStatus::Failed);
        assert!(plan(&lease("a"), &failed, &Chain, &claim(), known, 1).is_none());
        let waiting = Guard::Waiting {
            run_id: "r".into(),
            step_id: "a".into(),
        };
        let ok = Finish::new(StepStatus::Succeeded);
        assert!(plan(&waiting, &ok, &Chain, &claim(), known, 1).is_none());
        let mut with_events = Finish::new(StepStatus::Succeeded);
        with_events.run_status = Some(crate::state::RunStatus::Succeeded);
        assert!(plan(&lease("a"), &with_events, &Chain, &claim(), known, 1).is_none());
    }

    #[test]
    fn a_row_the_decision_needs_and_nobody_read_sends_it_to_the_general_path() {
        let rows = [row("a", StepStatus::Running)];
        let run = run();
        let known = Known {
            run: &run,
            rows: &rows,
        };
        let ok = Finish::new(StepStatus::Succeeded);
        assert!(plan(&lease("a"), &ok, &Chain, &claim(), known, 1).is_none());
    }

    #[test]
    fn open_steps_are_one_state_and_ended_ones_say_how() {
        for s in StepStatus::ALL {
            let expected = if s.is_terminal() { s.as_str() } else { "open" };
            assert_eq!(state(s), expected);
        }
    }
}
