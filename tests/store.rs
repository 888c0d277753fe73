//! The store's conformance suite: every operation, the same test body against SQLite and
//! Postgres (`NAME::sqlite`, `NAME::postgres`). Real databases, no mocks, no timing: a
//! lease either lapses at once (`Duration::ZERO`) or lasts hours, and the reaper is handed
//! a `now` well clear of both.

#[path = "common/db.rs"]
mod db;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{Duration as Span, Utc};
use runway::state::{RunStatus, StepStatus};
use runway::store::{
    Advance, ClaimNext, Decide, Decision, Ended, Error, Event, Finish, Guard, Judge, Lease,
    NewEvent, NewRun, NewStep, NewStepDecision, NoDecide, Retry, Run, StepDecision, StepList,
    StepRun, Store, Verdict, new_id,
};
use serde_json::json;

use db::{Db, exec, jobs, pending};

const HOUR: Duration = Duration::from_secs(3600);

fn new_run(steps: &[(&str, StepStatus)]) -> NewRun {
    NewRun {
        id: new_id(),
        playbook: "go-live".into(),
        content_hash: "c0ffee".into(),
        definition: "runway: 1\nname: go-live\n".into(),
        params: json!({ "school_slug": "north", "max_rows": 500 }),
        starter: "alice".into(),
        trigger: "manual".into(),
        lock_key: None,
        queue_on_lock: true,
        parent_run_id: None,
        parent_step_id: None,
        steps: steps
            .iter()
            .map(|(id, status)| NewStep {
                step_id: (*id).into(),
                list: StepList::Main,
                status: *status,
                max_attempts: 3,
                outputs: None,
            })
            .collect(),
    }
}

async fn step(store: &Store, run_id: &str, step_id: &str) -> Result<StepRun> {
    store
        .steps_of_run(run_id)
        .await?
        .into_iter()
        .find(|s| s.step_id == step_id)
        .context("step exists")
}

/// Everything a refused operation must leave as it was.
async fn snapshot(store: &Store, run_id: &str) -> Result<(Vec<StepRun>, Vec<Event>, usize)> {
    Ok((
        store.steps_of_run(run_id).await?,
        store.events_of_run(run_id).await?,
        jobs(store).await.len(),
    ))
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn pair(run: &str, step: &str) -> (String, String) {
    (run.to_owned(), step.to_owned())
}

fn set<const N: usize>(pairs: [(String, String); N]) -> BTreeSet<(String, String)> {
    pairs.into_iter().collect()
}

conformance!(
    connecting_again_reruns_migrations,
    run_create_writes_run_steps_event_and_jobs_together,
    run_get_of_an_unknown_run_is_not_found,
    runs_list_is_recent_first_and_filters_by_status,
    run_set_status_if_is_guarded_by_the_current_status,
    ending_a_run_cancels_its_open_steps,
    claim_leases_a_ready_step,
    claiming_twice_is_refused_the_second_time,
    claim_of_a_pending_step_is_refused_and_changes_nothing,
    concurrent_claims_have_exactly_one_winner,
    renew_is_guarded_by_owner_and_attempt,
    finish_records_result_readies_successors_and_pushes_their_jobs,
    finish_by_a_non_owner_is_lease_lost_and_changes_nothing,
    a_late_finish_after_lease_loss_changes_nothing,
    a_failed_finish_transaction_commits_nothing,
    finish_can_end_the_run_in_the_same_transaction,
    retry_later_pushes_a_delayed_job_and_is_not_claimable_early,
    parked_step_holds_no_worker_and_is_resolved_by_its_decision,
    reaper_requeues_expired_leases_and_leaves_live_ones,
    concurrent_reapers_reap_each_step_once,
    lock_admits_one_run_and_queues_the_next,
    lock_acquire_and_release_are_guarded,
    events_chain_and_verify,
    concurrent_appends_make_one_linear_chain,
    database_refuses_update_and_delete_of_events,
    database_refuses_an_event_of_an_unknown_run,
    database_refuses_a_step_status_or_list_it_does_not_know,
    verify_names_an_event_edited_behind_the_store,
    jobs_delete_finished_removes_only_old_finished_jobs,
    decider_sees_concurrent_finishes_so_a_join_is_readied_once,
    decider_can_end_the_run_and_wake_a_waiting_parent,
    cancel_stops_open_main_steps_and_asks_the_decider,
    park_with_child_creates_the_child_and_parks_the_parent_together,
    run_waits_while_only_parked_steps_remain,
    lock_without_queueing_is_refused_and_creates_nothing,
    kept_steps_start_finished_with_their_outputs,
    decisions_are_recorded_once_and_finish_the_step_when_judged,
    decisions_on_a_step_not_waiting_or_an_ended_run_are_refused,
    finish_claiming_hands_the_next_ready_step_to_the_same_worker,
    finish_claiming_takes_another_ready_step_and_retires_its_job,
    finish_claiming_takes_a_ready_step_of_another_run_nobody_is_transitioning,
    partial_decisions_read_only_the_named_rows_and_fall_back_at_the_end,
    finishing_ahead_writes_what_the_general_path_writes,
    a_decision_ahead_on_rows_that_changed_is_taken_again_under_the_lock,
    finishing_ahead_without_the_lease_is_lease_lost_and_changes_nothing,
    a_woken_claim_takes_a_ready_step_and_skips_a_stale_job,
    a_woken_claim_of_a_due_timer_sets_a_waiting_run_running_again,
);

/// Ends the step when `quorum` people approved; a rejection fails it.
struct Quorum(usize);

impl Judge for Quorum {
    fn judge(&self, decisions: &[StepDecision]) -> Option<Finish> {
        if decisions.iter().any(|d| d.verdict == Verdict::Reject) {
            return Some(Finish::new(StepStatus::Failed));
        }
        (decisions.len() >= self.0).then(|| Finish::new(StepStatus::Succeeded))
    }
}

fn decision(operator: &str, verdict: Verdict) -> NewStepDecision {
    NewStepDecision {
        item: String::new(),
        operator: operator.into(),
        verdict,
        comment: Some("looked at it".into()),
        plan_hash: "sha256:plan".into(),
    }
}

async fn parked(store: &Store, steps: &[(&str, StepStatus)], park: &str) -> Result<Run> {
    let run = store.run_create(&new_run(steps)).await?;
    let lease = claim(store, &run.id, park).await?;
    store.step_park(&Guard::Lease(lease), None).await?;
    Ok(run)
}

async fn decisions_are_recorded_once_and_finish_the_step_when_judged(db: Db) -> Result<()> {
    let store = &db.store;
    let run = parked(store, &[("go", StepStatus::Ready)], "go").await?;
    let (step, ds) = store
        .step_decide(
            &run.id,
            "go",
            &decision("alice", Verdict::Approve),
            &Quorum(2),
            &NoDecide,
        )
        .await?;
    assert_eq!(step.status, StepStatus::Waiting);
    assert_eq!(ds.len(), 1);
    // The same person again: refused, nothing recorded.
    let before = snapshot(store, &run.id).await?;
    assert!(matches!(
        store
            .step_decide(
                &run.id,
                "go",
                &decision("alice", Verdict::Approve),
                &Quorum(2),
                &NoDecide
            )
            .await,
        Err(Error::AlreadyDecided { .. })
    ));
    assert_eq!(snapshot(store, &run.id).await?, before);
    let (step, ds) = store
        .step_decide(
            &run.id,
            "go",
            &decision("bob", Verdict::Approve),
            &Quorum(2),
            &NoDecide,
        )
        .await?;
    assert_eq!(step.status, StepStatus::Succeeded);
    assert_eq!(ds.len(), 2);
    let all = store.decisions_of_run(&run.id).await?;
    let who: Vec<&str> = all.iter().map(|d| d.operator.as_str()).collect();
    assert_eq!(who, ["alice", "bob"]);
    assert!(
        all.iter()
            .all(|d| d.plan_hash == "sha256:plan" && d.attempt == 1)
    );
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(
        events.iter().filter(|e| e.kind == "step.decision").count(),
        2
    );
    assert!(events.iter().any(|e| e.kind == "step.succeeded"));
    // Checklist items: one answer per item, whoever gives it.
    let run = parked(store, &[("smoke", StepStatus::Ready)], "smoke").await?;
    let mut item = decision("alice", Verdict::Pass);
    item.item = "login".into();
    store
        .step_decide(&run.id, "smoke", &item, &Quorum(2), &NoDecide)
        .await?;
    item.operator = "bob".into();
    assert!(matches!(
        store
            .step_decide(&run.id, "smoke", &item, &Quorum(2), &NoDecide)
            .await,
        Err(Error::AlreadyDecided { .. })
    ));
    // Decisions are evidence: the database refuses to change them.
    assert!(
        exec(store, "UPDATE step_decisions SET verdict = 'reject'")
            .await
            .is_err()
    );
    assert!(exec(store, "DELETE FROM step_decisions").await.is_err());
    Ok(())
}

async fn decisions_on_a_step_not_waiting_or_an_ended_run_are_refused(db: Db) -> Result<()> {
    let store = &db.store;
    // A rejection ends the step; a late approval is refused.
    let run = parked(
        store,
        &[("go", StepStatus::Ready), ("b", StepStatus::Ready)],
        "go",
    )
    .await?;
    let (step, _) = store
        .step_decide(
            &run.id,
            "go",
            &decision("alice", Verdict::Reject),
            &Quorum(1),
            &NoDecide,
        )
        .await?;
    assert_eq!(step.status, StepStatus::Failed);
    assert!(matches!(
        store
            .step_decide(
                &run.id,
                "go",
                &decision("bob", Verdict::Approve),
                &Quorum(1),
                &NoDecide
            )
            .await,
        Err(Error::StepNotIn {
            actual: StepStatus::Failed,
            ..
        })
    ));
    // A step that never parked.
    assert!(matches!(
        store
            .step_decide(
                &run.id,
                "b",
                &decision("bob", Verdict::Approve),
                &Quorum(1),
                &NoDecide
            )
            .await,
        Err(Error::StepNotIn { .. })
    ));
    // A cancelled run.
    let run = parked(store, &[("go", StepStatus::Ready)], "go").await?;
    store
        .run_set_status_if(&run.id, RunStatus::Waiting, RunStatus::Cancelled, None)
        .await?;
    let before = snapshot(store, &run.id).await?;
    assert!(matches!(
        store
            .step_decide(
                &run.id,
                "go",
                &decision("bob", Verdict::Approve),
                &Quorum(1),
                &NoDecide
            )
            .await,
        Err(Error::RunNotIn { .. })
    ));
    assert_eq!(snapshot(store, &run.id).await?, before);
    // An unknown step.
    assert!(matches!(
        store
            .step_decide(
                &run.id,
                "nope",
                &decision("bob", Verdict::Approve),
                &Quorum(1),
                &NoDecide
            )
            .await,
        Err(Error::RunNotIn { .. } | Error::StepNotFound { .. })
    ));
    Ok(())
}

/// A decider for tests: `j` (the join) becomes ready once `a` and `b` are both
/// succeeded; the run succeeds once `j` is; any cancelled main step ends the run
/// cancelled; `wake` is added to every answer that ends the run.
struct JoinDecider {
    wake: Option<(String, String)>,
}

impl Decide for JoinDecider {
    fn decide(&self, _run: &Run, steps: &[StepRun]) -> Advance {
        let status = |id: &str| steps.iter().find(|s| s.step_id == id).map(|s| s.status);
        let mut adv = Advance::default();
        let main = steps.iter().filter(|s| s.list == StepList::Main);
        if main.clone().any(|s| s.status == StepStatus::Cancelled) {
            adv.run_status = Some(RunStatus::Cancelled);
        } else if status("a") == Some(StepStatus::Succeeded)
            && status("b") == Some(StepStatus::Succeeded)
            && status("j") == Some(StepStatus::Pending)
        {
            adv.then.push(Decision::ready("j"));
        } else if status("j") == Some(StepStatus::Succeeded) {
            adv.run_status = Some(RunStatus::Succeeded);
        }
        if adv.run_status.is_some() {
            adv.wake.extend(self.wake.clone());
        }
        adv
    }
}

/// Runs main steps one after another: readies the first pending one once every earlier
/// one succeeded; ends the run when all did.
struct Sequence;

impl Decide for Sequence {
    fn decide(&self, _run: &Run, steps: &[StepRun]) -> Advance {
        let mut adv = Advance::default();
        match steps.iter().find(|s| s.status != StepStatus::Succeeded) {
            Some(s) if s.status == StepStatus::Pending => {
                adv.then.push(Decision::ready(&s.step_id))
            }
            Some(_) => {}
            None => adv.run_status = Some(RunStatus::Succeeded),
        }
        adv
    }
}

/// Decides from the ended step's successor alone where it can, and records what it was
/// asked: `(partial rows given, whole views asked)`.
#[derive(Default)]
struct Recording {
    asked: std::sync::Mutex<(Vec<Vec<String>>, usize)>,
}

impl Decide for Recording {
    fn decide(&self, run: &Run, steps: &[StepRun]) -> Advance {
        self.asked.lock().unwrap().1 += 1;
        Sequence.decide(run, steps)
    }

    fn reads_after(&self, ended: &Ended<'_>) -> Option<Vec<String>> {
        // "a" is followed by "b", "b" by nothing; "c" is left to the whole view.
        match ended.step_id {
            "a" => Some(vec!["b".to_owned(), "nothing-by-this-id".to_owned()]),
            "b" => Some(Vec::new()),
            _ => None,
        }
    }

    fn decide_after(&self, _run: &Run, _ended: &Ended<'_>, rows: &[StepRun]) -> Option<Advance> {
        let mut names: Vec<String> = rows.iter().map(|r| r.step_id.clone()).collect();
        names.sort();
        self.asked.lock().unwrap().0.push(names);
        let mut adv = Advance::default();
        if rows
            .iter()
            .any(|r| r.step_id == "b" && r.status == StepStatus::Pending)
        {
            adv.then.push(Decision::ready("b"));
        }
        Some(adv)
    }
}

/// A run of `a`, claimed by w1, and `b` in `b`; and w9's offer to take the next step.
async fn a_claimed_and_an_offer(store: &Store, b: StepStatus) -> Result<(Run, Lease, ClaimNext)> {
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready), ("b", b)]))
        .await?;
    let la = claim(store, &run.id, "a").await?;
    let offer = ClaimNext {
        worker: "w9".into(),
        lease_for: HOUR,
    };
    Ok((run, la, offer))
}

async fn finish_claiming_hands_the_next_ready_step_to_the_same_worker(db: Db) -> Result<()> {
    let store = &db.store;
    let (run, la, offer) = a_claimed_and_an_offer(store, StepStatus::Pending).await?;
    let ok = Finish::new(StepStatus::Succeeded);
    let (a, next) = store
        .step_finish_claiming(&Guard::Lease(la), &ok, &Sequence, &offer, None)
        .await?;
    assert_eq!(a.status, StepStatus::Succeeded);
    let b = next.context("b was handed over")?.row;
    assert_eq!((b.step_id.as_str(), b.status), ("b", StepStatus::Running));
    assert_eq!((b.lease_owner.as_deref(), b.attempt), (Some("w9"), 1));
    assert_eq!(
        step(store, &run.id, "b").await?,
        b,
        "the row says what was returned"
    );
    assert!(
        !pending(store).await.contains(&pair(&run.id, "b")),
        "a handed-over step needs no job"
    );
    let events = store.events_of_run(&run.id).await?;
    let last: Vec<(&str, Option<&str>)> = events
        .iter()
        .rev()
        .take(3)
        .map(|e| (e.kind.as_str(), e.step_id.as_deref()))
        .collect();
    assert_eq!(
        last,
        [
            ("step.running", Some("b")),
            ("step.ready", Some("b")),
            ("step.succeeded", Some("a"))
        ]
    );
    // Nothing left to hand over: the run ends, no step is claimed.
    let (_, none) = store
        .step_finish_claiming(
            &Guard::Lease(b.lease().context("leased")?),
            &ok,
            &Sequence,
            &offer,
            None,
        )
        .await?;
    assert!(none.is_none());
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Succeeded);
    assert_eq!(store.events_verify(&run.id).await?, None);
    Ok(())
}

async fn finish_claiming_takes_another_ready_step_and_retires_its_job(db: Db) -> Result<()> {
    let store = &db.store;
    let (run, la, offer) = a_claimed_and_an_offer(store, StepStatus::Ready).await?;
    assert_eq!(store.step_status_of(&run.id, "b").await?, StepStatus::Ready);
    let (_, next) = store
        .step_finish_claiming(
            &Guard::Lease(la),
            &Finish::new(StepStatus::Succeeded),
            &Sequence,
            &offer,
            None,
        )
        .await?;
    // Finishing `a` made nothing ready, so the worker takes `b`, which was already ready.
    let b = next.context("b was taken")?.row;
    assert_eq!((b.step_id.as_str(), b.status), ("b", StepStatus::Running));
    assert_eq!((b.lease_owner.as_deref(), b.attempt), (Some("w9"), 1));
    // Its job, queued when `b` became ready, is retired in the same transaction: no
    // worker fetches it to find the step taken. Were it fetched first, its claim is refused.
    assert!(!pending(store).await.contains(&pair(&run.id, "b")));
    let b_jobs: Vec<String> = jobs(store)
        .await
        .into_iter()
        .filter(|j| (j.job.run_id.as_str(), j.job.step_id.as_str()) == (run.id.as_str(), "b"))
        .map(|j| j.status)
        .collect();
    assert!(
        b_jobs.is_empty(),
        "b's job is gone, never fetched: {b_jobs:?}"
    );
    assert_eq!(
        store.step_status_of(&run.id, "b").await?,
        StepStatus::Running
    );
    assert!(matches!(
        store.step_claim(&run.id, "b", "w1", HOUR).await,
        Err(Error::NotClaimable {
            status: StepStatus::Running,
            ..
        })
    ));
    let events = store.events_of_run(&run.id).await?;
    let running_b = events
        .iter()
        .filter(|e| e.kind == "step.running" && e.step_id.as_deref() == Some("b"))
        .count();
    assert_eq!(running_b, 1, "one attempt of b, recorded once");
    assert!(matches!(
        store.step_status_of(&run.id, "nope").await,
        Err(Error::StepNotFound { .. })
    ));
    assert_eq!(store.events_verify(&run.id).await?, None);
    Ok(())
}

async fn finish_claiming_takes_a_ready_step_of_another_run_nobody_is_transitioning(
    db: Db,
) -> Result<()> {
    let store = &db.store;
    let other = store
        .run_create(&new_run(&[
            ("x", StepStatus::Ready),
            ("y", StepStatus::Pending),
        ]))
        .await?;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let la = claim(store, &run.id, "a").await?;
    let offer = ClaimNext {
        worker: "w9".into(),
        lease_for: HOUR,
    };
    let (_, next) = store
        .step_finish_claiming(
            &Guard::Lease(la),
            &Finish::new(StepStatus::Succeeded),
            &Sequence,
            &offer,
            None,
        )
        .await?;
    if store.backend() == "postgres" {
        // Nothing of this run is ready: the worker takes `x` of the other run, whose
        // chain records it.
        let x = next.context("x was taken")?.row;
        assert_eq!(
            (x.run_id.as_str(), x.step_id.as_str()),
            (other.id.as_str(), "x")
        );
        assert_eq!(
            (x.status, x.lease_owner.as_deref()),
            (StepStatus::Running, Some("w9"))
        );
        let last = store
            .events_of_run(&other.id)
            .await?
            .pop()
            .context("events")?;
        assert_eq!(
            (last.kind.as_str(), last.step_id.as_deref()),
            ("step.running", Some("x"))
        );
        assert!(matches!(
            store.step_claim(&other.id, "x", "w1", HOUR).await,
            Err(Error::NotClaimable {
                status: StepStatus::Running,
                ..
            })
        ));
        assert!(
            !pending(store).await.contains(&pair(&other.id, "x")),
            "x's job is retired with the claim"
        );
    } else {
        // One writer: no other run's transitions wait on this one's; nothing is taken.
        assert!(next.is_none(), "{next:?}");
        assert_eq!(
            store.step_status_of(&other.id, "x").await?,
            StepStatus::Ready
        );
    }
    let mine = store.events_of_run(&run.id).await?;
    assert!(!mine.iter().any(|e| e.step_id.as_deref() == Some("x")));
    assert_eq!(store.events_verify(&run.id).await?, None);
    assert_eq!(store.events_verify(&other.id).await?, None);
    Ok(())
}

async fn partial_decisions_read_only_the_named_rows_and_fall_back_at_the_end(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
            ("c", StepStatus::Ready),
        ]))
        .await?;
    let d = Recording::default();
    let ok = Finish::new(StepStatus::Succeeded);
    let (la, lc) = (
        claim(store, &run.id, "a").await?,
        claim(store, &run.id, "c").await?,
    );
    store.step_finish_with(&Guard::Lease(la), &ok, &d).await?;
    assert_eq!(step(store, &run.id, "b").await?.status, StepStatus::Ready);
    assert_eq!(
        *d.asked.lock().unwrap(),
        (vec![vec!["b".to_owned()]], 0),
        "only b's row was read (an id with no row is left out), and no whole view"
    );
    // c's end has no partial answer: the whole view decides (and b is still open).
    store.step_finish_with(&Guard::Lease(lc), &ok, &d).await?;
    assert_eq!(d.asked.lock().unwrap().1, 1);
    // b's end is the last: its partial answer starts nothing and no main step is open,
    // so the whole view is asked, sees every main step done and ends the run.
    let lb = claim(store, &run.id, "b").await?;
    store.step_finish_with(&Guard::Lease(lb), &ok, &d).await?;
    assert_eq!(
        *d.asked.lock().unwrap(),
        (vec![vec!["b".to_owned()], vec![]], 2)
    );
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Succeeded);
    Ok(())
}

/// Main steps one after another, decided as the engine decides a chain: after a success,
/// from the ended step's and its successor's rows alone (so the store may decide ahead),
/// and from the whole view at the end.
struct Chain(&'static [&'static str]);

impl Chain {
    fn next(&self, id: &str) -> Option<&'static str> {
        let at = self.0.iter().position(|s| *s == id)?;
        self.0.get(at + 1).copied()
    }
}

impl Decide for Chain {
    fn decide(&self, _run: &Run, steps: &[StepRun]) -> Advance {
        let mut adv = Advance::default();
        match steps.iter().find(|s| !s.status.is_terminal()) {
            Some(s) if s.status == StepStatus::Pending => {
                adv.then.push(Decision::ready(&s.step_id))
            }
            Some(_) => {}
            None => adv.run_status = Some(RunStatus::Succeeded),
        }
        adv
    }

    fn reads_after(&self, ended: &Ended<'_>) -> Option<Vec<String>> {
        let mut ids = vec![ended.step_id.to_owned()];
        ids.extend(self.next(ended.step_id).map(str::to_owned));
        Some(ids)
    }

    fn decide_after(&self, _run: &Run, ended: &Ended<'_>, rows: &[StepRun]) -> Option<Advance> {
        let mut adv = Advance::default();
        if let Some(next) = self.next(ended.step_id)
            && rows
                .iter()
                .any(|r| r.step_id == next && r.status == StepStatus::Pending)
        {
            adv.then.push(Decision::ready(next));
        }
        Some(adv)
    }

    fn reads_for(&self, step_id: &str) -> Vec<String> {
        let ended = Ended {
            step_id,
            status: StepStatus::Succeeded,
        };
        self.reads_after(&ended).unwrap_or_default()
    }
}

/// [`JoinDecider`]'s whole view, and its decision about `j` from the three rows alone (so
/// the store may decide ahead): `j` is ready once `a` and `b` have succeeded.
struct Join;

impl Decide for Join {
    fn decide(&self, run: &Run, steps: &[StepRun]) -> Advance {
        JoinDecider { wake: None }.decide(run, steps)
    }

    fn reads_after(&self, ended: &Ended<'_>) -> Option<Vec<String>> {
        (ended.step_id != "j").then(|| ["a", "b", "j"].map(str::to_owned).to_vec())
    }

    fn decide_after(&self, run: &Run, _ended: &Ended<'_>, rows: &[StepRun]) -> Option<Advance> {
        let mut adv = JoinDecider { wake: None }.decide(run, rows);
        adv.run_status = None;
        Some(adv)
    }
}

/// What a run's transitions wrote, without what differs between two runs of the same
/// transitions (ids, times, lease expiries): each step's status, attempt, holder, outputs
/// and error, and each event's kind, step, attempt and data.
type Written = (
    Vec<(
        String,
        StepStatus,
        i32,
        Option<String>,
        Option<serde_json::Value>,
        Option<String>,
    )>,
    Vec<(String, Option<String>, Option<i32>, serde_json::Value)>,
);

async fn written(store: &Store, run_id: &str) -> Result<Written> {
    let steps = store
        .steps_of_run(run_id)
        .await?
        .into_iter()
        .map(|s| {
            (
                s.step_id,
                s.status,
                s.attempt,
                s.lease_owner,
                s.outputs,
                s.error,
            )
        })
        .collect();
    let events = store
        .events_of_run(run_id)
        .await?
        .into_iter()
        .map(|e| {
            let mut data = e.data;
            if let Some(map) = data.as_object_mut() {
                map.remove("lease_expires_at");
                map.remove("run_id");
            }
            (e.kind, e.step_id, e.attempt, data)
        })
        .collect();
    Ok((steps, events))
}

/// Drives a run of `a -> b -> c` with [`Chain`] to its end, each step finished by the
/// worker that was handed it, with outputs that need escaping; with `ahead`, each finish
/// offers the rows read earlier (with the claim, or before). Returns whether every finish
/// but the last came back with the next step's rows (the store decided it ahead).
async fn drive_chain(store: &Store, ahead: bool) -> Result<(String, bool)> {
    const STEPS: Chain = Chain(&["a", "b", "c"]);
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
            ("c", StepStatus::Pending),
        ]))
        .await?;
    let offer = ClaimNext {
        worker: "w9".into(),
        lease_for: HOUR,
    };
    let mut row = store.step_claim(&run.id, "a", "w1", HOUR).await?;
    let mut rows = store.steps_of_run(&run.id).await?;
    let mut all_ahead = true;
    for n in 0.. {
        let mut finish = Finish::new(StepStatus::Succeeded);
        finish.outputs = Some(json!({
            "n": n, "quote": "say \"hi\"\\n", "tab\t": "\u{1}", "é": "ü 🚀", "nested": {"z": 1, "a": [true, null]}
        }));
        let known = runway::store::Known {
            run: &run,
            rows: &rows,
        };
        let lease = row.lease().context("leased")?;
        let (done, next) = store
            .step_finish_claiming(
                &Guard::Lease(lease),
                &finish,
                &STEPS,
                &offer,
                ahead.then_some(known),
            )
            .await?;
        ensure!(done.status == StepStatus::Succeeded, "{done:?}");
        let Some(next) = next else {
            break;
        };
        all_ahead &= next.rows.is_some();
        rows = match next.rows {
            Some(rows) => rows,
            None => store.steps_of_run(&run.id).await?,
        };
        row = next.row;
    }
    ensure!(store.run_get(&run.id).await?.status == RunStatus::Succeeded);
    ensure!(store.events_verify(&run.id).await? == None);
    Ok((run.id, all_ahead))
}

async fn finishing_ahead_writes_what_the_general_path_writes(db: Db) -> Result<()> {
    let store = &db.store;
    let (general, _) = drive_chain(store, false).await?;
    let (ahead, all_ahead) = drive_chain(store, true).await?;
    // Postgres applies each link in one statement; SQLite has no such path.
    assert_eq!(all_ahead, store.decides_ahead(), "decided ahead");
    assert_eq!(
        written(store, &ahead).await?,
        written(store, &general).await?
    );
    assert_eq!(store.steps_of_run(&ahead).await?.len(), 3, "one row a step");
    Ok(())
}

async fn a_decision_ahead_on_rows_that_changed_is_taken_again_under_the_lock(db: Db) -> Result<()> {
    let store = &db.store;
    let (run, la, lb) = a_and_b_claimed_before_j(store).await?;
    let ok = Finish::new(StepStatus::Succeeded);
    store
        .step_finish_with(&Guard::Lease(lb), &ok, &Join)
        .await?;
    // a's worker reads the rows with b succeeded: ahead, j would be ready and handed to
    // it. Then b's row changes behind the store (an outsider: nothing in the store moves
    // an ended step), and the decision taken on what it read must not be applied.
    let rows = store.steps_of_run(&run.id).await?;
    exec(
        store,
        &format!(
            "UPDATE step_runs SET status = 'failed' WHERE run_id = '{}' AND step_id = 'b'",
            run.id
        ),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let known = runway::store::Known {
        run: &run,
        rows: &rows,
    };
    let offer = ClaimNext {
        worker: "w9".into(),
        lease_for: HOUR,
    };
    let (a, next) = store
        .step_finish_claiming(&Guard::Lease(la), &ok, &Join, &offer, Some(known))
        .await?;
    assert_eq!(a.status, StepStatus::Succeeded);
    assert!(next.is_none(), "b failed, so j does not start: {next:?}");
    assert_eq!(step(store, &run.id, "j").await?.status, StepStatus::Pending);
    let events = store.events_of_run(&run.id).await?;
    assert!(
        !events.iter().any(|e| e.step_id.as_deref() == Some("j")),
        "nothing was recorded of j"
    );
    assert_eq!(store.events_verify(&run.id).await?, None);
    Ok(())
}

async fn finishing_ahead_without_the_lease_is_lease_lost_and_changes_nothing(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
        ]))
        .await?;
    let la = claim(store, &run.id, "a").await?;
    let rows = store.steps_of_run(&run.id).await?;
    let before = snapshot(store, &run.id).await?;
    let wrong = Lease {
        worker: "w2".into(),
        ..la.clone()
    };
    let offer = ClaimNext {
        worker: "w2".into(),
        lease_for: HOUR,
    };
    let known = runway::store::Known {
        run: &run,
        rows: &rows,
    };
    let err = store
        .step_finish_claiming(
            &Guard::Lease(wrong),
            &Finish::new(StepStatus::Succeeded),
            &Chain(&["a", "b"]),
            &offer,
            Some(known),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    assert_eq!(snapshot(store, &run.id).await?, before);
    Ok(())
}

async fn a_woken_claim_takes_a_ready_step_and_skips_a_stale_job(db: Db) -> Result<()> {
    let store = &db.store;
    let steps = [("a", StepStatus::Ready), ("b", StepStatus::Pending)];
    let general = store.run_create(&new_run(&steps)).await?;
    let woken = store.run_create(&new_run(&steps)).await?;
    let g = store.step_claim(&general.id, "a", "w1", HOUR).await?;
    let reads = ["a".to_owned(), "b".to_owned()];
    let w = store
        .step_claim_woken(&woken.id, "a", "w1", HOUR, &reads)
        .await?
        .context("a was claimed")?;
    assert_eq!(
        (w.row.status, w.row.attempt, w.row.lease_owner.as_deref()),
        (g.status, g.attempt, g.lease_owner.as_deref())
    );
    assert_eq!(
        written(store, &woken.id).await?,
        written(store, &general.id).await?
    );
    assert_eq!(store.events_verify(&woken.id).await?, None);
    match w.rows {
        // Postgres: the rows the step reads, as the claim left them.
        Some(rows) => {
            let mut seen: Vec<(&str, StepStatus)> = rows
                .iter()
                .map(|r| (r.step_id.as_str(), r.status))
                .collect();
            seen.sort_by_key(|(id, _)| *id);
            assert_eq!(
                seen,
                [("a", StepStatus::Running), ("b", StepStatus::Pending)]
            );
        }
        None => assert!(!store.decides_ahead()),
    }
    // The same job again, a job for a pending step, for no step, for no run: each one is
    // stale, and nothing changes.
    let before = snapshot(store, &woken.id).await?;
    for (run_id, step_id) in [
        (woken.id.as_str(), "a"),
        (woken.id.as_str(), "b"),
        (woken.id.as_str(), "nope"),
        ("no-such-run", "a"),
    ] {
        let claimed = store
            .step_claim_woken(run_id, step_id, "w2", HOUR, &reads)
            .await?;
        assert!(claimed.is_none(), "{run_id}/{step_id}: {claimed:?}");
    }
    assert_eq!(snapshot(store, &woken.id).await?, before);
    Ok(())
}

async fn a_woken_claim_of_a_due_timer_sets_a_waiting_run_running_again(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("wait", StepStatus::Ready)]))
        .await?;
    let lw = claim(store, &run.id, "wait").await?;
    // A timer that is already due: the run waits, with nothing running, until a worker
    // woken by the timer's job takes the step again.
    store
        .step_park(&Guard::Lease(lw), Some(Utc::now() - Span::seconds(1)))
        .await?;
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Waiting);
    let w = store
        .step_claim_woken(&run.id, "wait", "w2", HOUR, &[])
        .await?
        .context("the due timer's step was claimed")?;
    assert_eq!((w.row.status, w.row.attempt), (StepStatus::Running, 1));
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Running);
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(
        kinds(&events[events.len() - 2..]),
        ["step.running", "run.running"]
    );
    assert_eq!(store.events_verify(&run.id).await?, None);
    Ok(())
}

/// A run where `j` needs `a` and `b`, both claimed by w1: their leases.
async fn a_and_b_claimed_before_j(store: &Store) -> Result<(Run, Lease, Lease)> {
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Ready),
            ("j", StepStatus::Pending),
        ]))
        .await?;
    let la = claim(store, &run.id, "a").await?;
    let lb = claim(store, &run.id, "b").await?;
    Ok((run, la, lb))
}

async fn claim(store: &Store, run_id: &str, step: &str) -> Result<Lease> {
    store
        .step_claim(run_id, step, "w1", HOUR)
        .await?
        .lease()
        .context("leased")
}

async fn decider_sees_concurrent_finishes_so_a_join_is_readied_once(db: Db) -> Result<()> {
    let store = &db.store;
    for _ in 0..5 {
        let (run, la, lb) = a_and_b_claimed_before_j(store).await?;
        let d = JoinDecider { wake: None };
        let ok = Finish::new(StepStatus::Succeeded);
        // Both finish at once: whichever commits second must see the first's result.
        let (ga, gb) = (Guard::Lease(la), Guard::Lease(lb));
        let (ra, rb) = tokio::join!(
            store.step_finish_with(&ga, &ok, &d),
            store.step_finish_with(&gb, &ok, &d),
        );
        ra?;
        rb?;
        assert_eq!(step(store, &run.id, "j").await?.status, StepStatus::Ready);
        let j_jobs = jobs(store)
            .await
            .into_iter()
            .filter(|q| q.job.run_id == run.id && q.job.step_id == "j")
            .count();
        assert_eq!(j_jobs, 1, "the join is woken exactly once");
    }
    Ok(())
}

async fn decider_can_end_the_run_and_wake_a_waiting_parent(db: Db) -> Result<()> {
    let store = &db.store;
    let parent = store
        .run_create(&new_run(&[("call", StepStatus::Ready)]))
        .await?;
    let lease = claim(store, &parent.id, "call").await?;
    store.step_park(&Guard::Lease(lease), None).await?;
    let child = store
        .run_create(&new_run(&[("j", StepStatus::Ready)]))
        .await?;
    let lj = claim(store, &child.id, "j").await?;
    let d = JoinDecider {
        wake: Some(pair(&parent.id, "call")),
    };
    store
        .step_finish_with(&Guard::Lease(lj), &Finish::new(StepStatus::Succeeded), &d)
        .await?;
    assert_eq!(store.run_get(&child.id).await?.status, RunStatus::Succeeded);
    // The parent's waiting step is due now and has a job: a worker claims it and reads
    // the child's outcome.
    let call = step(store, &parent.id, "call").await?;
    assert_eq!(call.status, StepStatus::Waiting);
    assert!(call.ready_at.is_some());
    assert!(pending(store).await.contains(&pair(&parent.id, "call")));
    let again = store.step_claim(&parent.id, "call", "w2", HOUR).await?;
    assert_eq!(again.status, StepStatus::Running);
    assert_eq!(again.attempt, 1, "a due timer continues the same attempt");
    Ok(())
}

async fn cancel_stops_open_main_steps_and_asks_the_decider(db: Db) -> Result<()> {
    let store = &db.store;
    let mut new = new_run(&[
        ("a", StepStatus::Ready),
        ("b", StepStatus::Ready),
        ("j", StepStatus::Pending),
    ]);
    new.steps.push(NewStep {
        step_id: "undo-a".into(),
        list: StepList::Compensation,
        status: StepStatus::Pending,
        max_attempts: 1,
        outputs: None,
    });
    let run = store.run_create(&new).await?;
    let la = claim(store, &run.id, "a").await?;
    let d = JoinDecider { wake: None };
    let cancelled = store
        .run_cancel(&run.id, "alice", "wrong school", &d)
        .await?;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    for id in ["a", "b", "j"] {
        assert_eq!(
            step(store, &run.id, id).await?.status,
            StepStatus::Cancelled,
            "{id}"
        );
    }
    // The worker running `a` finds its lease gone at its next renewal, and stops.
    assert!(matches!(
        store.step_renew_lease(&la, HOUR, None).await,
        Err(Error::LeaseLost { .. })
    ));
    let events = store.events_of_run(&run.id).await?;
    let requested = events
        .iter()
        .find(|e| e.kind == "run.cancel_requested")
        .context("cancel recorded")?;
    assert_eq!(requested.data["by"], "alice");
    assert_eq!(requested.data["reason"], "wrong school");
    // An ended run cannot be cancelled again, and nothing changes.
    let before = snapshot(store, &run.id).await?;
    assert!(matches!(
        store.run_cancel(&run.id, "bob", "again", &d).await,
        Err(Error::RunNotIn { .. })
    ));
    assert_eq!(snapshot(store, &run.id).await?, before);
    Ok(())
}

async fn park_with_child_creates_the_child_and_parks_the_parent_together(db: Db) -> Result<()> {
    let store = &db.store;
    let parent = store
        .run_create(&new_run(&[("call", StepStatus::Ready)]))
        .await?;
    let lease = claim(store, &parent.id, "call").await?;
    let mut child = new_run(&[("j", StepStatus::Ready)]);
    child.parent_run_id = Some(parent.id.clone());
    child.parent_step_id = Some("call".into());
    let until = Utc::now() + Span::hours(1);
    let created = store
        .step_park_with_child(&lease, Some(until), &child)
        .await?;
    assert_eq!(created.parent_run_id.as_deref(), Some(parent.id.as_str()));
    assert_eq!(
        step(store, &parent.id, "call").await?.status,
        StepStatus::Waiting
    );
    let found = store
        .run_child(&parent.id, "call")
        .await?
        .context("child")?;
    assert_eq!(found.id, child.id);
    assert!(pending(store).await.contains(&pair(&child.id, "j")));
    assert!(store.run_child(&parent.id, "other").await?.is_none());
    // A second park with the same lease is refused and creates no second child.
    let mut second = new_run(&[("j", StepStatus::Ready)]);
    second.parent_run_id = Some(parent.id.clone());
    second.parent_step_id = Some("call".into());
    assert!(matches!(
        store.step_park_with_child(&lease, None, &second).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        store.run_get(&second.id).await,
        Err(Error::RunNotFound(_))
    ));
    Ok(())
}

async fn run_waits_while_only_parked_steps_remain(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("approve", StepStatus::Ready),
        ]))
        .await?;
    let la = claim(store, &run.id, "a").await?;
    let lp = claim(store, &run.id, "approve").await?;
    store.step_park(&Guard::Lease(lp), None).await?;
    assert_eq!(
        store.run_get(&run.id).await?.status,
        RunStatus::Running,
        "a still runs"
    );
    store
        .step_finish(&Guard::Lease(la), &Finish::new(StepStatus::Succeeded))
        .await?;
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Waiting);
    let kinds_now = kinds(&store.events_of_run(&run.id).await?)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(kinds_now.contains(&"run.waiting".to_owned()));
    // A decision on the parked step settles the run again.
    let waiting = Guard::Waiting {
        run_id: run.id.clone(),
        step_id: "approve".into(),
    };
    store
        .step_finish(&waiting, &Finish::new(StepStatus::Succeeded))
        .await?;
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Waiting);
    Ok(())
}

async fn lock_without_queueing_is_refused_and_creates_nothing(db: Db) -> Result<()> {
    let store = &db.store;
    let mut first = new_run(&[("a", StepStatus::Ready)]);
    first.lock_key = Some("school/north".into());
    let first = store.run_create(&first).await?;
    let jobs_before = jobs(store).await.len();
    let mut second = new_run(&[("a", StepStatus::Ready)]);
    second.lock_key = Some("school/north".into());
    second.queue_on_lock = false;
    match store.run_create(&second).await {
        Err(Error::LockHeld { key, holder }) => {
            assert_eq!(key, "school/north");
            assert_eq!(holder, first.id);
        }
        other => anyhow::bail!("expected LockHeld, got {other:?}"),
    }
    assert!(matches!(
        store.run_get(&second.id).await,
        Err(Error::RunNotFound(_))
    ));
    assert_eq!(jobs(store).await.len(), jobs_before);
    Ok(())
}

async fn kept_steps_start_finished_with_their_outputs(db: Db) -> Result<()> {
    let store = &db.store;
    let mut new = new_run(&[("a", StepStatus::Succeeded), ("b", StepStatus::Ready)]);
    new.steps[0].outputs = Some(json!({ "n": 7 }));
    let run = store.run_create(&new).await?;
    let a = step(store, &run.id, "a").await?;
    assert_eq!(a.status, StepStatus::Succeeded);
    assert_eq!(a.outputs, Some(json!({ "n": 7 })));
    assert!(!pending(store).await.contains(&pair(&run.id, "a")));
    assert!(pending(store).await.contains(&pair(&run.id, "b")));
    // Running and failed are never where a new run starts.
    let bad = new_run(&[("a", StepStatus::Running)]);
    assert!(matches!(
        store.run_create(&bad).await,
        Err(Error::InvalidTransition { .. })
    ));
    Ok(())
}

async fn connecting_again_reruns_migrations(db: Db) -> Result<()> {
    let run = db
        .store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    // A second process starting on the same database: both migrators find their ledgers
    // complete (apalis' and ours are separate tables) and apply nothing.
    let again = Store::connect(&db.url).await?;
    again.migrate().await?;
    db.store.migrate().await?;
    ensure!(again.run_get(&run.id).await?.id == run.id);
    again.close().await;
    Ok(())
}

async fn run_create_writes_run_steps_event_and_jobs_together(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_run(&[
        ("a", StepStatus::Ready),
        ("b", StepStatus::Pending),
        ("c", StepStatus::Ready),
        ("d", StepStatus::Skipped),
    ]);
    let run = store.run_create(&new).await?;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.params, new.params);
    assert_eq!(run.definition, new.definition);
    assert!(run.started_at.is_some() && run.finished_at.is_none());

    let steps = store.steps_of_run(&run.id).await?;
    let got: Vec<(&str, StepStatus, i32)> = steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.status, s.position))
        .collect();
    assert_eq!(
        got,
        [
            ("a", StepStatus::Ready, 0),
            ("b", StepStatus::Pending, 1),
            ("c", StepStatus::Ready, 2),
            ("d", StepStatus::Skipped, 3),
        ]
    );
    assert!(
        steps
            .iter()
            .all(|s| s.attempt == 0 && s.lease_owner.is_none())
    );
    assert_eq!(steps[0].idempotency_key, format!("{}:a", run.id));
    assert!(steps[0].ready_at.is_some() && steps[1].ready_at.is_none());

    let queued = jobs(store).await;
    let woken: Vec<&str> = queued.iter().map(|j| j.job.step_id.as_str()).collect();
    assert_eq!(woken.len(), 2);
    assert!(woken.contains(&"a") && woken.contains(&"c"));
    // apalis' own retries are off: a retry is ours, with backoff.
    assert!(
        queued
            .iter()
            .all(|j| j.max_attempts == 1 && j.job.attempt == 1)
    );

    let events = store.events_of_run(&run.id).await?;
    assert_eq!(kinds(&events), ["run.created"]);
    assert_eq!(events[0].data["content_hash"], "c0ffee");
    assert_eq!(store.events_verify(&run.id).await?, None);

    // The same id twice: the whole second transaction is refused, no second job.
    assert!(store.run_create(&new).await.is_err());
    assert_eq!(jobs(store).await.len(), 2);

    // A failure at the last statement (the `run.created` event), after the steps and their
    // jobs were written: none of it remains.
    refuse_events_named_explode(store).await?;
    let doomed = NewRun {
        playbook: "explode".into(),
        ..new_run(&[("a", StepStatus::Ready), ("b", StepStatus::Pending)])
    };
    assert!(matches!(
        store.run_create(&doomed).await,
        Err(Error::Database(_))
    ));
    assert!(matches!(
        store.run_get(&doomed.id).await,
        Err(Error::RunNotFound(_))
    ));
    assert!(store.steps_of_run(&doomed.id).await?.is_empty());
    assert_eq!(jobs(store).await.len(), 2);
    Ok(())
}

async fn run_get_of_an_unknown_run_is_not_found(db: Db) -> Result<()> {
    let err = db.store.run_get("nope").await.unwrap_err();
    assert!(
        matches!(err, Error::RunNotFound(ref id) if id == "nope"),
        "{err}"
    );
    let err = db
        .store
        .step_claim("nope", "a", "w", HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RunNotFound(_)), "{err}");
    Ok(())
}

async fn runs_list_is_recent_first_and_filters_by_status(db: Db) -> Result<()> {
    let store = &db.store;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            store
                .run_create(&new_run(&[("a", StepStatus::Ready)]))
                .await?
                .id,
        );
    }
    store
        .run_set_status_if(&ids[1], RunStatus::Running, RunStatus::Cancelled, None)
        .await?;
    let all: Vec<String> = store
        .runs_list(None, 10)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(all, expected);
    let running: Vec<String> = store
        .runs_list(Some(RunStatus::Running), 10)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(running, [ids[2].clone(), ids[0].clone()]);
    assert_eq!(store.runs_list(None, 1).await?.len(), 1);
    Ok(())
}

async fn run_set_status_if_is_guarded_by_the_current_status(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Waiting)]))
        .await;
    assert!(
        matches!(run, Err(Error::InvalidTransition { .. })),
        "a new step cannot start waiting"
    );
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Pending)]))
        .await?;

    let moved = store
        .run_set_status_if(&run.id, RunStatus::Running, RunStatus::Waiting, None)
        .await?;
    assert_eq!(moved.status, RunStatus::Waiting);

    let before = snapshot(store, &run.id).await?;
    let err = store
        .run_set_status_if(&run.id, RunStatus::Running, RunStatus::Succeeded, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::RunNotIn {
                expected: RunStatus::Running,
                actual: RunStatus::Waiting,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(snapshot(store, &run.id).await?, before);

    let failed = store
        .run_set_status_if(&run.id, RunStatus::Waiting, RunStatus::Failed, Some("boom"))
        .await?;
    assert_eq!(failed.error.as_deref(), Some("boom"));
    assert!(failed.finished_at.is_some());
    // Terminal states ignore late events.
    let err = store
        .run_set_status_if(&run.id, RunStatus::Failed, RunStatus::Running, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err}");
    assert_eq!(store.run_get(&run.id).await?.status, RunStatus::Failed);
    Ok(())
}

async fn ending_a_run_cancels_its_open_steps(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
            ("c", StepStatus::Ready),
        ]))
        .await?;
    let a = store.step_claim(&run.id, "a", "w1", HOUR).await?;
    store
        .run_set_status_if(&run.id, RunStatus::Running, RunStatus::Cancelled, None)
        .await?;
    let statuses: Vec<StepStatus> = store
        .steps_of_run(&run.id)
        .await?
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, [StepStatus::Cancelled; 3]);
    // The worker still running `a` learns it on its next renew, and its result is discarded.
    let lease = a.lease().context("leased")?;
    let err = store
        .step_renew_lease(&lease, HOUR, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    let err = store
        .step_finish(&Guard::Lease(lease), &Finish::new(StepStatus::Succeeded))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    // The queued job for `c` finds nothing to do.
    let err = store
        .step_claim(&run.id, "c", "w2", HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotClaimable {
                status: StepStatus::Cancelled,
                ..
            }
        ),
        "{err}"
    );
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(
        kinds(&events),
        [
            "run.created",
            "step.running",
            "run.cancelled",
            "step.cancelled",
            "step.cancelled",
            "step.cancelled"
        ]
    );
    Ok(())
}

async fn claim_leases_a_ready_step(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let before = Utc::now();
    let a = store.step_claim(&run.id, "a", "host-1:42", HOUR).await?;
    assert_eq!(a.status, StepStatus::Running);
    assert_eq!(a.attempt, 1);
    assert_eq!(a.lease_owner.as_deref(), Some("host-1:42"));
    let expires = a.lease_expires_at.context("lease expiry")?;
    assert!(expires >= before + Span::minutes(59));
    assert!(a.started_at.is_some());
    let events = store.events_of_run(&run.id).await?;
    let started = events.last().context("event")?;
    assert_eq!(started.kind, "step.running");
    assert_eq!(started.step_id.as_deref(), Some("a"));
    assert_eq!(started.attempt, Some(1));
    assert_eq!(started.data["worker"], "host-1:42");
    Ok(())
}

async fn claiming_twice_is_refused_the_second_time(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    store.step_claim(&run.id, "a", "w1", HOUR).await?;
    // The same job delivered again (apalis is at-least-once).
    let before = snapshot(store, &run.id).await?;
    let err = store
        .step_claim(&run.id, "a", "w2", HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotClaimable {
                status: StepStatus::Running,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(snapshot(store, &run.id).await?, before);
    let a = step(store, &run.id, "a").await?;
    assert_eq!((a.attempt, a.lease_owner.as_deref()), (1, Some("w1")));
    Ok(())
}

async fn claim_of_a_pending_step_is_refused_and_changes_nothing(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
        ]))
        .await?;
    let before = snapshot(store, &run.id).await?;
    let err = store
        .step_claim(&run.id, "b", "w1", HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotClaimable {
                status: StepStatus::Pending,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .step_claim(&run.id, "zz", "w1", HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StepNotFound { .. }), "{err}");
    assert_eq!(snapshot(store, &run.id).await?, before);
    Ok(())
}

async fn concurrent_claims_have_exactly_one_winner(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, run_id) = (store.clone(), run.id.clone());
        tasks.push(tokio::spawn(async move {
            store.step_claim(&run_id, "a", &format!("w{i}"), HOUR).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(step) => winners.push(step),
            Err(Error::NotClaimable {
                status: StepStatus::Running,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(winners.len(), 1);
    let a = step(store, &run.id, "a").await?;
    assert_eq!(a.attempt, 1);
    assert_eq!(a.lease_owner, winners[0].lease_owner);
    let started = store.events_of_run(&run.id).await?;
    assert_eq!(kinds(&started), ["run.created", "step.running"]);
    Ok(())
}

async fn renew_is_guarded_by_owner_and_attempt(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let lease = store
        .step_claim(&run.id, "a", "w1", Duration::from_secs(60))
        .await?;
    let lease = lease.lease().context("leased")?;
    let before = Utc::now();
    let expires = store
        .step_renew_lease(&lease, HOUR, Some(b"row 5000"))
        .await?;
    assert!(expires >= before + Span::minutes(59));
    let a = step(store, &run.id, "a").await?;
    assert_eq!(a.lease_expires_at, Some(expires));
    assert_eq!(a.checkpoint.as_deref(), Some(&b"row 5000"[..]));
    // A renew without a checkpoint keeps the last one.
    store.step_renew_lease(&lease, HOUR, None).await?;
    assert_eq!(
        step(store, &run.id, "a").await?.checkpoint.as_deref(),
        Some(&b"row 5000"[..])
    );

    let before = snapshot(store, &run.id).await?;
    for wrong in [
        Lease {
            worker: "w2".into(),
            ..lease.clone()
        },
        Lease {
            attempt: 2,
            ..lease.clone()
        },
    ] {
        let err = store
            .step_renew_lease(&wrong, HOUR, Some(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    }
    let err = store
        .step_renew_lease(
            &Lease {
                step_id: "zz".into(),
                ..lease.clone()
            },
            HOUR,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StepNotFound { .. }), "{err}");
    assert_eq!(snapshot(store, &run.id).await?, before);
    Ok(())
}

async fn finish_records_result_readies_successors_and_pushes_their_jobs(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
            ("c", StepStatus::Pending),
            ("d", StepStatus::Pending),
        ]))
        .await?;
    let lease = store
        .step_claim(&run.id, "a", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let finish = Finish {
        outputs: Some(json!({ "exit_code": 0, "stdout": "ok" })),
        checkpoint: Some(b"done".to_vec()),
        then: vec![Decision::ready("b"), Decision::skipped("c")],
        events: vec![NewEvent::step(
            "gate.verdict",
            "a",
            1,
            json!({ "go": true }),
        )],
        ..Finish::new(StepStatus::Succeeded)
    };
    let a = store.step_finish(&Guard::Lease(lease), &finish).await?;
    assert_eq!(a.status, StepStatus::Succeeded);
    assert_eq!(a.outputs, finish.outputs);
    assert!(a.lease_owner.is_none() && a.finished_at.is_some());

    let statuses: Vec<StepStatus> = store
        .steps_of_run(&run.id)
        .await?
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Succeeded,
            StepStatus::Ready,
            StepStatus::Skipped,
            StepStatus::Pending
        ]
    );
    assert_eq!(
        pending(store).await,
        set([pair(&run.id, "a"), pair(&run.id, "b")])
    );
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(
        kinds(&events),
        [
            "run.created",
            "step.running",
            "step.succeeded",
            "step.ready",
            "step.skipped",
            "gate.verdict"
        ]
    );
    assert_eq!(events[2].data["outputs"]["stdout"], "ok");
    assert_eq!(store.events_verify(&run.id).await?, None);

    // A step decided twice: the second decision finds it no longer pending.
    let b = store
        .step_claim(&run.id, "b", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let again = Finish {
        then: vec![Decision::ready("c")],
        ..Finish::new(StepStatus::Succeeded)
    };
    let err = store
        .step_finish(&Guard::Lease(b), &again)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StepNotIn {
                expected: StepStatus::Pending,
                actual: StepStatus::Skipped,
                ..
            }
        ),
        "{err}"
    );
    Ok(())
}

async fn finish_by_a_non_owner_is_lease_lost_and_changes_nothing(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
        ]))
        .await?;
    let lease = store
        .step_claim(&run.id, "a", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let before = snapshot(store, &run.id).await?;
    let finish = Finish {
        then: vec![Decision::ready("b")],
        ..Finish::new(StepStatus::Succeeded)
    };
    for wrong in [
        Lease {
            worker: "w2".into(),
            ..lease.clone()
        },
        Lease {
            attempt: 7,
            ..lease.clone()
        },
    ] {
        let err = store
            .step_finish(&Guard::Lease(wrong), &finish)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    }
    // Nor may a running step be resolved as if it were parked.
    let parked = Guard::Waiting {
        run_id: run.id.clone(),
        step_id: "a".into(),
    };
    let err = store.step_finish(&parked, &finish).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::StepNotIn {
                expected: StepStatus::Waiting,
                actual: StepStatus::Running,
                ..
            }
        ),
        "{err}"
    );
    // A non-terminal "result" is not a result.
    let err = store
        .step_finish(
            &Guard::Lease(lease.clone()),
            &Finish::new(StepStatus::Ready),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err}");
    assert_eq!(snapshot(store, &run.id).await?, before);
    Ok(())
}

async fn a_late_finish_after_lease_loss_changes_nothing(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
        ]))
        .await?;
    // A lease that lapses at once: w1 has gone silent.
    let old = store
        .step_claim(&run.id, "a", "w1", Duration::ZERO)
        .await?
        .lease()
        .context("leased")?;
    assert_eq!(
        store
            .steps_reap_expired(Utc::now() + Span::minutes(1))
            .await?,
        std::slice::from_ref(&old)
    );
    let new = store.step_claim(&run.id, "a", "w2", HOUR).await?;
    assert_eq!(new.attempt, 2);
    assert_eq!(new.idempotency_key, format!("{}:a", run.id));

    let before = snapshot(store, &run.id).await?;
    let late = Finish {
        outputs: Some(json!({ "from": "w1" })),
        then: vec![Decision::ready("b")],
        ..Finish::new(StepStatus::Succeeded)
    };
    let err = store
        .step_finish(&Guard::Lease(old.clone()), &late)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { attempt: 1, .. }), "{err}");
    let err = store.step_renew_lease(&old, HOUR, None).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    assert_eq!(snapshot(store, &run.id).await?, before);
    let a = step(store, &run.id, "a").await?;
    assert_eq!(
        (a.status, a.lease_owner.as_deref()),
        (StepStatus::Running, Some("w2"))
    );
    Ok(())
}

async fn a_failed_finish_transaction_commits_nothing(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Pending),
        ]))
        .await?;
    let lease = store
        .step_claim(&run.id, "a", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let before = snapshot(store, &run.id).await?;
    // The result, a successor made ready (with its job), then a successor that cannot be
    // recorded: the whole transaction rolls back.
    let finish = Finish {
        outputs: Some(json!({ "exit_code": 0 })),
        checkpoint: Some(b"cp".to_vec()),
        then: vec![Decision::ready("b"), Decision::ready("no-such-step")],
        events: vec![NewEvent::run("note", json!({}))],
        ..Finish::new(StepStatus::Succeeded)
    };
    let err = store
        .step_finish(&Guard::Lease(lease.clone()), &finish)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::StepNotFound { ref step_id, .. } if step_id == "no-such-step"),
        "{err}"
    );
    assert_eq!(snapshot(store, &run.id).await?, before);
    let a = step(store, &run.id, "a").await?;
    assert_eq!(a.status, StepStatus::Running);
    assert!(a.outputs.is_none() && a.checkpoint.is_none());
    assert_eq!(step(store, &run.id, "b").await?.status, StepStatus::Pending);
    assert_eq!(pending(store).await, set([pair(&run.id, "a")]));

    // A failure at the very end, after the successor's job was pushed: the last event
    // cannot be written. The job goes with the rest.
    refuse_events_named_explode(store).await?;
    let finish = Finish {
        then: vec![Decision::ready("b")],
        events: vec![NewEvent::run("explode", json!({}))],
        ..Finish::new(StepStatus::Succeeded)
    };
    let err = store
        .step_finish(&Guard::Lease(lease.clone()), &finish)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err}");
    assert_eq!(snapshot(store, &run.id).await?, before);
    assert_eq!(pending(store).await, set([pair(&run.id, "a")]));

    // The worker still holds its lease and can record the result properly.
    let ok = Finish {
        then: vec![Decision::ready("b")],
        ..Finish::new(StepStatus::Succeeded)
    };
    store.step_finish(&Guard::Lease(lease), &ok).await?;
    assert_eq!(
        pending(store).await,
        set([pair(&run.id, "a"), pair(&run.id, "b")])
    );
    Ok(())
}

/// Installs, as an outsider would, a trigger that makes the database refuse to store an
/// event of kind `explode` or the `run.created` event of a playbook named `explode`: a way
/// to fail a transaction at its last statement.
async fn refuse_events_named_explode(store: &Store) -> Result<()> {
    let statements: &[&str] = match store {
        Store::Postgres(_) => &[
            "CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.kind = 'explode' OR NEW.data ->> 'playbook' = 'explode' THEN \
             RAISE EXCEPTION 'exploded'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER explode BEFORE INSERT ON events \
             FOR EACH ROW EXECUTE FUNCTION explode()",
        ],
        Store::Sqlite(_) => &["CREATE TRIGGER explode BEFORE INSERT ON events \
             WHEN NEW.kind = 'explode' OR json_extract(NEW.data, '$.playbook') = 'explode' \
             BEGIN SELECT RAISE(ABORT, 'exploded'); END"],
    };
    for sql in statements {
        exec(store, sql).await.map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

async fn finish_can_end_the_run_in_the_same_transaction(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let lease = store
        .step_claim(&run.id, "a", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let finish = Finish {
        error: Some("redis unreachable".into()),
        run_status: Some(RunStatus::Succeeded),
        ..Finish::new(StepStatus::Warned)
    };
    store.step_finish(&Guard::Lease(lease), &finish).await?;
    let done = store.run_get(&run.id).await?;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert!(done.finished_at.is_some());
    let a = step(store, &run.id, "a").await?;
    assert_eq!(
        (a.status, a.error.as_deref()),
        (StepStatus::Warned, Some("redis unreachable"))
    );
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(
        kinds(&events),
        [
            "run.created",
            "step.running",
            "step.warned",
            "run.succeeded"
        ]
    );

    // A run can only end once.
    let run2 = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    store
        .run_set_status_if(&run2.id, RunStatus::Running, RunStatus::Waiting, None)
        .await?;
    let lease = store
        .step_claim(&run2.id, "a", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let bad = Finish {
        run_status: Some(RunStatus::Queued),
        ..Finish::new(StepStatus::Succeeded)
    };
    let err = store
        .step_finish(&Guard::Lease(lease), &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidTransition { what: "run", .. }),
        "{err}"
    );
    assert_eq!(
        step(store, &run2.id, "a").await?.status,
        StepStatus::Running
    );
    Ok(())
}

async fn retry_later_pushes_a_delayed_job_and_is_not_claimable_early(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let lease = store
        .step_claim(&run.id, "a", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let ready_at = Utc::now() + Span::minutes(10) + Span::milliseconds(1);
    let retry = Retry {
        ready_at,
        error: Some("exit 1".into()),
        checkpoint: Some(b"batch 3".to_vec()),
    };
    let a = store.step_retry_later(&lease, &retry).await?;
    assert_eq!(a.status, StepStatus::Ready);
    assert_eq!(a.attempt, 1);
    assert!(a.lease_owner.is_none());
    assert_eq!(
        a.ready_at.map(|t| t.timestamp_millis()),
        Some(ready_at.timestamp_millis())
    );
    assert_eq!(a.checkpoint.as_deref(), Some(&b"batch 3"[..]));

    let queued = jobs(store).await;
    let delayed = queued.last().context("a delayed job")?;
    assert_eq!(delayed.job.attempt, 2);
    assert_eq!(delayed.max_attempts, 1);
    // Rounded up to apalis' whole seconds: never before the step is due.
    assert!(delayed.run_at * 1000 >= ready_at.timestamp_millis());

    // The lease is gone with the retry.
    let err = store.step_retry_later(&lease, &retry).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");

    // A job that arrives early is refused, and leaves a wake-up for the due time.
    let jobs_before = jobs(store).await.len();
    let err = store
        .step_claim(&run.id, "a", "w2", HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotClaimable {
                status: StepStatus::Ready,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(jobs(store).await.len(), jobs_before + 1);
    assert_eq!(step(store, &run.id, "a").await?.attempt, 1);
    Ok(())
}

async fn parked_step_holds_no_worker_and_is_resolved_by_its_decision(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("wait", StepStatus::Ready),
            ("approve", StepStatus::Ready),
            ("next", StepStatus::Pending),
        ]))
        .await?;
    // A wait step: claimed, then parked until its timer.
    let lease = store
        .step_claim(&run.id, "wait", "w1", HOUR)
        .await?
        .lease()
        .context("leased")?;
    let until = Utc::now() + Span::minutes(10);
    let w = store
        .step_park(&Guard::Lease(lease.clone()), Some(until))
        .await?;
    assert_eq!(w.status, StepStatus::Waiting);
    assert!(w.lease_owner.is_none());
    let timer = jobs(store).await.into_iter().last().context("timer job")?;
    assert_eq!(timer.job.step_id, "wait");
    assert!(timer.run_at * 1000 >= until.timestamp_millis());
    let err = store
        .step_claim(&run.id, "wait", "w2", HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotClaimable {
                status: StepStatus::Waiting,
                ..
            }
        ),
        "{err}"
    );
    // The worker that parked it no longer holds it.
    let err = store
        .step_finish(&Guard::Lease(lease), &Finish::new(StepStatus::Succeeded))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");

    // An approval: parked straight from ready, no worker, no timer.
    let approve = Guard::Ready {
        run_id: run.id.clone(),
        step_id: "approve".into(),
    };
    let jobs_before = jobs(store).await.len();
    store.step_park(&approve, None).await?;
    assert_eq!(jobs(store).await.len(), jobs_before);
    let err = store.step_park(&approve, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::StepNotIn {
                expected: StepStatus::Ready,
                actual: StepStatus::Waiting,
                ..
            }
        ),
        "{err}"
    );

    let decided = Guard::Waiting {
        run_id: run.id.clone(),
        step_id: "approve".into(),
    };
    let finish = Finish {
        outputs: Some(json!({ "approved_by": ["bob", "carol"] })),
        then: vec![Decision::ready("next")],
        ..Finish::new(StepStatus::Succeeded)
    };
    store.step_finish(&decided, &finish).await?;
    // Resolving it again is a late event: refused.
    let err = store.step_finish(&decided, &finish).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::StepNotIn {
                actual: StepStatus::Succeeded,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        step(store, &run.id, "next").await?.status,
        StepStatus::Ready
    );
    Ok(())
}

async fn reaper_requeues_expired_leases_and_leaves_live_ones(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("short", StepStatus::Ready),
            ("long", StepStatus::Ready),
        ]))
        .await?;
    store
        .step_claim(&run.id, "short", "w1", Duration::ZERO)
        .await?;
    store.step_claim(&run.id, "long", "w2", 3 * HOUR).await?;
    assert_eq!(
        store
            .steps_reap_expired(Utc::now() - Span::minutes(1))
            .await?,
        Vec::<Lease>::new()
    );

    let jobs_before = jobs(store).await.len();
    // The reaped lease says whose attempt it was, for the sweep of what it left running.
    let reaped = store
        .steps_reap_expired(Utc::now() + Span::hours(2))
        .await?;
    assert_eq!(
        reaped
            .iter()
            .map(|l| (l.step_id.as_str(), l.worker.as_str(), l.attempt))
            .collect::<Vec<_>>(),
        [("short", "w1", 1)]
    );
    let short = step(store, &run.id, "short").await?;
    assert_eq!((short.status, short.attempt), (StepStatus::Ready, 1));
    assert!(short.lease_owner.is_none());
    let long = step(store, &run.id, "long").await?;
    assert_eq!(
        (long.status, long.lease_owner.as_deref()),
        (StepStatus::Running, Some("w2"))
    );
    let queued = jobs(store).await;
    assert_eq!(queued.len(), jobs_before + 1);
    let takeover = queued
        .iter()
        .filter(|j| j.job.step_id == "short" && j.job.attempt == 2);
    assert_eq!(takeover.count(), 1);
    let last = store.events_of_run(&run.id).await?.pop().context("event")?;
    assert_eq!(
        (last.kind.as_str(), last.data["worker"].as_str()),
        ("step.lease_expired", Some("w1"))
    );

    // Reaping again finds nothing: the step is ready, not running.
    assert_eq!(
        store
            .steps_reap_expired(Utc::now() + Span::hours(2))
            .await?,
        Vec::<Lease>::new()
    );
    // The takeover is a new attempt with the same idempotency key.
    let again = store.step_claim(&run.id, "short", "w3", HOUR).await?;
    assert_eq!(again.attempt, 2);
    Ok(())
}

async fn concurrent_reapers_reap_each_step_once(db: Db) -> Result<()> {
    let store = &db.store;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = store
            .run_create(&new_run(&[
                ("a", StepStatus::Ready),
                ("b", StepStatus::Ready),
            ]))
            .await?;
        for s in ["a", "b"] {
            store.step_claim(&run.id, s, "w1", HOUR).await?;
        }
        runs.push(run.id);
    }
    let jobs_before = jobs(store).await.len();
    let later = Utc::now() + Span::hours(2);
    // Reapers skip runs another one is busy with, so keep reaping until nothing is left;
    // what matters is that no step is reaped twice.
    let mut total = 0;
    for _ in 0..10 {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.steps_reap_expired(later).await
            }));
        }
        for t in tasks {
            total += t.await??.len();
        }
        if total == 6 {
            break;
        }
    }
    assert_eq!(total, 6);
    assert_eq!(jobs(store).await.len(), jobs_before + 6);
    for run in &runs {
        let expired = store
            .events_of_run(run)
            .await?
            .into_iter()
            .filter(|e| e.kind == "step.lease_expired")
            .count();
        assert_eq!(expired, 2);
        assert_eq!(store.events_verify(run).await?, None);
    }
    Ok(())
}

async fn lock_admits_one_run_and_queues_the_next(db: Db) -> Result<()> {
    let store = &db.store;
    let locked = |steps: &[(&str, StepStatus)]| NewRun {
        lock_key: Some("school/north".into()),
        ..new_run(steps)
    };
    let first = store
        .run_create(&locked(&[("a", StepStatus::Ready)]))
        .await?;
    assert_eq!(first.status, RunStatus::Running);
    let second = store
        .run_create(&locked(&[("x", StepStatus::Ready)]))
        .await?;
    assert_eq!(second.status, RunStatus::Queued);
    assert!(second.started_at.is_none());
    let third = store
        .run_create(&locked(&[("y", StepStatus::Ready)]))
        .await?;
    // Queued runs have no jobs, and their ready steps cannot be claimed.
    assert_eq!(pending(store).await, set([pair(&first.id, "a")]));
    let err = store
        .step_claim(&second.id, "x", "w1", HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotClaimable { .. }), "{err}");
    let created = &store.events_of_run(&second.id).await?[0];
    assert_eq!(
        created.data["lock_holder"].as_str(),
        Some(first.id.as_str())
    );

    // The first run ends: the oldest queued run takes the lock and its jobs are pushed,
    // in the same transaction.
    store
        .run_set_status_if(&first.id, RunStatus::Running, RunStatus::Succeeded, None)
        .await?;
    let second = store.run_get(&second.id).await?;
    assert_eq!(second.status, RunStatus::Running);
    assert!(second.started_at.is_some());
    assert_eq!(store.run_get(&third.id).await?.status, RunStatus::Queued);
    assert_eq!(
        pending(store).await,
        set([pair(&first.id, "a"), pair(&second.id, "x")])
    );
    let events = store.events_of_run(&second.id).await?;
    assert_eq!(kinds(&events), ["run.created", "run.running"]);
    assert_eq!(
        events[1].data["released_by"].as_str(),
        Some(first.id.as_str())
    );
    store.step_claim(&second.id, "x", "w1", HOUR).await?;

    // A cancelled queued run is passed over.
    store
        .run_set_status_if(&third.id, RunStatus::Queued, RunStatus::Cancelled, None)
        .await?;
    store
        .run_set_status_if(&second.id, RunStatus::Running, RunStatus::Failed, None)
        .await?;
    let fourth = store
        .run_create(&locked(&[("z", StepStatus::Ready)]))
        .await?;
    assert_eq!(fourth.status, RunStatus::Running);
    Ok(())
}

async fn lock_acquire_and_release_are_guarded(db: Db) -> Result<()> {
    let store = &db.store;
    let r1 = store.run_create(&new_run(&[])).await?;
    let r2 = store.run_create(&new_run(&[])).await?;
    store.lock_acquire("k", &r1.id).await?;
    // Taking a lock one already holds is not an error.
    store.lock_acquire("k", &r1.id).await?;
    let err = store.lock_acquire("k", &r2.id).await.unwrap_err();
    assert!(
        matches!(err, Error::LockHeld { ref holder, .. } if *holder == r1.id),
        "{err}"
    );
    let err = store.lock_release("k", &r2.id).await.unwrap_err();
    assert!(matches!(err, Error::LockNotHeld { .. }), "{err}");
    store.lock_release("k", &r1.id).await?;
    store.lock_acquire("k", &r2.id).await?;
    store.lock_acquire("other", &r1.id).await?;

    // Many runs racing for one key: exactly one gets it.
    let mut tasks = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(store.run_create(&new_run(&[])).await?.id);
    }
    for id in ids {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.lock_acquire("race", &id).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await? {
            Ok(()) => won += 1,
            Err(Error::LockHeld { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(won, 1);
    Ok(())
}

async fn events_chain_and_verify(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store.run_create(&new_run(&[])).await?;
    let appended = store
        .events_append(
            &run.id,
            &[
                NewEvent::run("approval.given", json!({ "by": "bob", "comment": "go" })),
                NewEvent::step("checklist.ticked", "smoke", 1, json!({ "item": 2 })),
            ],
        )
        .await?;
    assert_eq!(appended.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].prev_hash, "0".repeat(64));
    assert_eq!(events[1].prev_hash, events[0].hash);
    assert_eq!(events[2].prev_hash, events[1].hash);
    // What was returned is what was stored (jsonb key order notwithstanding).
    assert_eq!(&events[1..], &appended[..]);
    assert_eq!(store.events_verify(&run.id).await?, None);
    let err = store.events_append("nope", &[]).await.unwrap_err();
    assert!(matches!(err, Error::RunNotFound(_)), "{err}");
    Ok(())
}

async fn concurrent_appends_make_one_linear_chain(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store.run_create(&new_run(&[])).await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, run_id) = (store.clone(), run.id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .events_append(&run_id, &[NewEvent::run("note", json!({ "i": i }))])
                .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let events = store.events_of_run(&run.id).await?;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(store.events_verify(&run.id).await?, None);
    Ok(())
}

async fn database_refuses_update_and_delete_of_events(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let before = store.events_of_run(&run.id).await?;
    let update = format!(
        "UPDATE events SET kind = 'forged' WHERE run_id = '{}'",
        run.id
    );
    let delete = format!("DELETE FROM events WHERE run_id = '{}'", run.id);
    for sql in [update, delete] {
        let err = exec(store, &sql).await.expect_err("the database refuses");
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    if let Store::Postgres(_) = store {
        let err = exec(store, "TRUNCATE events").await.expect_err("refused");
        assert!(err.contains("append-only"), "{err}");
    }
    assert_eq!(store.events_of_run(&run.id).await?, before);
    Ok(())
}

/// Postgres checks an event's run through the run's head (migration
/// 20261220000000_events_reference_through_head.sql), SQLite with a reference of its own:
/// either way an event of a run that does not exist is refused, and nothing is written.
async fn database_refuses_an_event_of_an_unknown_run(db: Db) -> Result<()> {
    let store = &db.store;
    let zeros = "0".repeat(64);
    let insert = format!(
        "INSERT INTO events (run_id, seq, at, kind, data, prev_hash, hash) \
         VALUES ('no-such-run', 1, 0, 'run.created', '{{}}', '{zeros}', '{zeros}')"
    );
    let err = exec(store, &insert)
        .await
        .expect_err("the database refuses");
    assert!(
        err.contains("FOREIGN KEY") || err.contains("foreign key"),
        "{err}"
    );
    assert!(store.events_of_run("no-such-run").await?.is_empty());
    Ok(())
}

/// Postgres checks a step's status and list by their types (migration
/// 20261221000000_step_status_domains.sql), SQLite by CHECK constraints; the lease and
/// ready-time rules stay constraints on both. Each refusal leaves the row as it was.
async fn database_refuses_a_step_status_or_list_it_does_not_know(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    let before = snapshot(store, &run.id).await?;
    let id = &run.id;
    for set in [
        "status = 'finished'",
        "list = 'cleanup'",
        "status = 'running'",
        "ready_at = NULL",
    ] {
        let sql = format!("UPDATE step_runs SET {set} WHERE run_id = '{id}' AND step_id = 'a'");
        let err = exec(store, &sql).await.expect_err("the database refuses");
        assert!(err.contains("constraint"), "{set}: {err}");
    }
    assert_eq!(snapshot(store, &run.id).await?, before);
    Ok(())
}

async fn verify_names_an_event_edited_behind_the_store(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[("a", StepStatus::Ready)]))
        .await?;
    store.step_claim(&run.id, "a", "w1", HOUR).await?;
    store
        .events_append(&run.id, &[NewEvent::run("note", json!({ "n": 1 }))])
        .await?;
    assert_eq!(store.events_verify(&run.id).await?, None);
    // Someone with the power to drop the guard edits the record.
    let disable = match store {
        Store::Postgres(_) => "ALTER TABLE events DISABLE TRIGGER events_append_only",
        Store::Sqlite(_) => "DROP TRIGGER events_no_update",
    };
    exec(store, disable).await.map_err(anyhow::Error::msg)?;
    let forged = format!(
        "UPDATE events SET data = '{{\"worker\": \"mallory\"}}' WHERE run_id = '{}' AND seq = 2",
        run.id
    );
    assert_eq!(exec(store, &forged).await.map_err(anyhow::Error::msg)?, 1);
    assert_eq!(store.events_verify(&run.id).await?, Some(2));
    Ok(())
}

async fn jobs_delete_finished_removes_only_old_finished_jobs(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store
        .run_create(&new_run(&[
            ("a", StepStatus::Ready),
            ("b", StepStatus::Ready),
        ]))
        .await?;
    // Mark `a`'s job done a day ago, as an apalis worker would have.
    let done = match store {
        Store::Postgres(_) => format!(
            "UPDATE apalis.jobs SET status = 'Done', done_at = now() - interval '1 day' \
             WHERE job_type = 'runway-steps' AND convert_from(job, 'UTF8')::jsonb ->> 'step_id' = 'a' \
             AND convert_from(job, 'UTF8')::jsonb ->> 'run_id' = '{}'",
            run.id
        ),
        Store::Sqlite(_) => format!(
            "UPDATE Jobs SET status = 'Done', done_at = unixepoch() - 86400 \
             WHERE job_type = 'runway-steps' AND json_extract(CAST(job AS TEXT), '$.step_id') = 'a' \
             AND json_extract(CAST(job AS TEXT), '$.run_id') = '{}'",
            run.id
        ),
    };
    assert_eq!(exec(store, &done).await.map_err(anyhow::Error::msg)?, 1);
    assert_eq!(
        store
            .jobs_delete_finished(Utc::now() - Span::days(2))
            .await?,
        0
    );
    assert_eq!(
        store
            .jobs_delete_finished(Utc::now() - Span::hours(1))
            .await?,
        1
    );
    assert_eq!(pending(store).await, set([pair(&run.id, "b")]));
    Ok(())
}

#[tokio::test]
async fn sqlite_connections_are_opened_for_durability() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("a/b/runway.db").display());
    let store = Store::connect(&url).await?;
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    // One connection per process (writers queue for it instead of sleeping in SQLite's
    // busy handler): the one the migrations ran on, which must be set up like any other.
    assert_eq!(pool.options().get_max_connections(), 1);
    let mut conns = vec![pool.acquire().await?];
    for conn in &mut conns {
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await?;
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut **conn)
            .await?;
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut **conn)
            .await?;
        assert_eq!((sync, journal.as_str(), fk, busy), (2, "wal", 1, 5000));
    }
    drop(conns);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn connect_refuses_an_unsupported_url() {
    for url in [
        "mysql://localhost/x",
        "sqlite::memory:",
        ".runway/runway.db",
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(_)), "{url}: {err}");
    }
}

/// apalis-sqlite's acknowledgement (its `queries/task/ack.sql`), which without planner
/// statistics scanned every job the worker ever ran and re-parsed its JSON argument for
/// each one; the store's migration gives the planner the statistics to look jobs up by id.
const APALIS_SQLITE_ACK: &str = "WITH j AS (SELECT value ->> 'task_id' AS task_id, \
     value ->> 'attempt' AS attempt, value ->> 'result' AS result, \
     value ->> 'status' AS status FROM json_each(?1)) \
     UPDATE Jobs SET status = j.status, attempts = j.attempt, last_result = j.result, \
     done_at = strftime('%s', 'now') FROM j WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2";

#[tokio::test]
async fn sqlite_acknowledges_a_job_by_its_id_however_many_jobs_there_are() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("runway.db").display());
    for _ in 0..2 {
        // The migrating connection, then a fresh one that loads the statistics at open.
        let store = Store::connect(&url).await?;
        let Store::Sqlite(pool) = &store else {
            unreachable!()
        };
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {APALIS_SQLITE_ACK}"
        )))
        .bind("[]")
        .bind("w1")
        .fetch_all(pool)
        .await?;
        let steps: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
        assert!(
            steps.iter().any(|s| s.contains("json_each"))
                && steps
                    .iter()
                    .any(|s| s.contains("USING INDEX sqlite_autoindex_Jobs_1 (id=?)")),
            "{steps:#?}"
        );
        assert!(!steps.iter().any(|s| s.contains("LIdx")), "{steps:#?}");
        store.close().await;
    }
    Ok(())
}

/// Postgres hashes the events a transition decided ahead appends (`runway_event_hash`), so
/// its preimage must be byte for byte the one `store::chain` hashes: strings that need
/// escaping, absent step and attempt, data with unsorted keys, numbers and Unicode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hashes_an_event_as_the_chain_module_does() {
    db::run(db::Backend::Postgres, |db| async move {
        let Store::Postgres(pool) = &db.store else {
            unreachable!("a Postgres store")
        };
        let texts = [
            "",
            "step.succeeded",
            "01J9ZX3VQ59BG5",
            "say \"hi\"",
            "back\\slash",
            "ctl \u{1}\u{1f}\u{7f}",
            "tab\tnl\ncr\r\u{8}\u{c}",
            "é ü 🚀 \u{2028}",
            "</script>",
        ];
        let datas = [
            json!({}),
            json!({"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": 2.5}}),
            json!([1, "two", null, true, -0.125]),
            json!({"s": "ctl \u{1}", "é": "ü"}),
            json!(null),
            json!(-12),
            json!({"big": 12_345_678_901_234_567_i64, "small": 1e-7}),
        ];
        for (i, text) in texts.iter().enumerate() {
            let data = &datas[i % datas.len()];
            let fields = runway::store::chain::Fields {
                run_id: text,
                seq: i as i64 + 1,
                at_ms: 1_700_000_000_000 + i as i64,
                kind: texts[(i + 1) % texts.len()],
                step_id: (i % 2 == 0).then_some(*text),
                attempt: (i % 3 != 0).then_some(i as i32),
                data,
                prev_hash: runway::store::chain::GENESIS,
            };
            let sql: String =
                sqlx::query_scalar("SELECT runway_event_hash($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(fields.run_id)
                    .bind(fields.seq)
                    .bind(fields.at_ms)
                    .bind(fields.kind)
                    .bind(fields.step_id)
                    .bind(fields.attempt)
                    .bind(runway::store::chain::canonical(data))
                    .bind(fields.prev_hash)
                    .fetch_one(pool)
                    .await?;
            assert_eq!(sql, runway::store::chain::hash(&fields), "{text:?} {data}");
        }
        Ok(())
    })
    .await
}

/// A store opened with a number of connections never holds more to Postgres, and callers
/// beyond it wait their turn instead of failing; SQLite keeps its one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_holds_at_most_the_connections_it_was_given() {
    for backend in [db::Backend::Postgres, db::Backend::Sqlite] {
        db::run(backend, |db| async move {
            let store = Store::connect_with(&db.url, 2).await?;
            let reads: Vec<_> = (0..24)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.runs_list(None, 10).await })
                })
                .collect();
            for read in reads {
                read.await??;
            }
            let (size, most) = match &store {
                Store::Postgres(pool) => (pool.size(), 2),
                Store::Sqlite(pool) => (pool.size(), 1),
            };
            ensure!(
                (1..=most).contains(&size),
                "{size} connections open, at most {most} wanted"
            );
            store.close().await;
            Ok(())
        })
        .await;
    }
}
