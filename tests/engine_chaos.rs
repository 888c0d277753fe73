//! The engine survives what the infrastructure does to it: the reduced versions of `cargo
//! bench --bench chaos` (docs/RELIABILITY.md). Each test owns a throwaway PostgreSQL
//! cluster and real `runway worker` processes, and counts from a ledger its shell steps
//! write, not from the engine.

#[path = "common/engine_chaos.rs"]
mod engine_chaos;

use std::time::Duration;

use engine_chaos::{
    DbFault, DbSetup, KillSetup, StopSetup, database, sigkill, sigstop, worker_killer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sigkilled_at_random_lose_no_step_and_run_no_finished_step_again() {
    let dir = tempfile::tempdir().unwrap();
    let setup = KillSetup {
        runs: 30,
        in_flight: 10,
        workers: 3,
        concurrency: 8,
        lease: Duration::from_secs(3),
        step_secs: 0.2,
        wait: "1s".into(),
        attempts: 6,
        every: (Duration::ZERO, Duration::from_secs(3)),
        seed: 0x5eed_c4a0_0001,
        deadline: Duration::from_secs(50),
    };
    let report = sigkill(&setup, dir.path()).await.expect("the chaos run");
    report.print("SIGKILL chaos (reduced)");
    let a = &report.audit;
    assert!(report.all_ended, "runs still open at the deadline");
    assert_eq!(a.runs_succeeded, 30, "{:?}", a.problems);
    assert_eq!(a.steps_lost, 0, "{:?}", a.problems);
    assert_eq!(a.executed_again, 0, "{:?}", a.problems);
    assert_eq!(a.keys_changed, 0, "{:?}", a.problems);
    assert_eq!(a.chains_broken, 0, "{:?}", a.problems);
    assert_eq!(a.flaky_failures, 30, "one failure per run, then the retry");
    assert!(
        report.exited_by_themselves.is_empty(),
        "{:?}",
        report.exited_by_themselves
    );
    assert!(report.kills >= 3, "{} kills", report.kills);
    // Reaped within the lease (3 s) plus the reaper's tick (1 s) and some slack for a
    // loaded machine: the bound is what matters, not the figure.
    assert!(
        report.p_reaped(100.0) < Duration::from_secs(8),
        "{report:?}"
    );
}

/// Attempts lost with their worker count toward the step's attempts: a step that kills
/// every worker that runs it is taken over until its attempts are used up (three, for a
/// step with no `retry`: `engine::worker::TAKEOVER_ATTEMPTS`), then fails the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_kills_its_worker_every_time_fails_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let r = worker_killer(dir.path(), Duration::from_secs(2), Duration::from_secs(50))
        .await
        .expect("the run");
    println!("{r:?}");
    assert!(r.ended, "the run never ended: taken over forever? {r:?}");
    assert_eq!(r.run_status, "failed", "{r:?}");
    assert_eq!(r.step_status, "failed", "{r:?}");
    assert_eq!(r.started, 3, "three attempts ran: {r:?}");
    assert_eq!(r.deaths, 3, "{r:?}");
    assert_eq!(
        r.attempt, 4,
        "the claim after the third loss records the failure: {r:?}"
    );
    assert!(
        r.error.contains("attempt 3 was lost with its worker"),
        "{r:?}"
    );
    assert!(r.chain_ok);
}

/// A worker stopped past its lease while it runs steps: another takes them over; when it
/// is continued, its stale attempts are stopped (or their results refused), never recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_lease_has_its_stale_completions_refused() {
    let dir = tempfile::tempdir().unwrap();
    let setup = StopSetup {
        runs: 8,
        in_flight: 6,
        steps: 3,
        step_secs: 6.0,
        workers: 3,
        concurrency: 4,
        lease: Duration::from_secs(2),
        rounds: 4,
        hold: (Duration::from_millis(200), Duration::from_secs(1)),
        seed: 0x5eed_c4a0_0002,
        deadline: Duration::from_secs(55),
    };
    let report = sigstop(&setup, dir.path()).await.expect("the chaos run");
    report.print("SIGSTOP past the lease (reduced)");
    let a = &report.audit;
    assert!(report.all_ended, "runs still open at the deadline");
    assert_eq!(a.runs_succeeded, 8, "{:?}", a.problems);
    assert!(
        report.rounds >= 2 && report.stale_attempts >= 2,
        "{report:?}"
    );
    assert_eq!(report.stale_accepted, 0, "{:?}", a.problems);
    assert_eq!(report.both_recorded, 0, "{:?}", a.problems);
    assert_eq!(a.steps_lost, 0, "{:?}", a.problems);
    assert_eq!(a.executed_again, 0, "{:?}", a.problems);
    assert_eq!(a.chains_broken, 0, "{:?}", a.problems);
    assert!(
        report.exited_by_themselves.is_empty(),
        "{:?}",
        report.exited_by_themselves
    );
}

/// The database restarted (fast and immediate), its backends terminated, and unreachable
/// for longer than a lease, while runs are in flight: no run is lost or stuck, and every
/// worker carries on by itself (none exits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarts_and_outages_lose_no_run_and_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let lease = Duration::from_secs(2);
    let setup = DbSetup {
        runs: 40,
        in_flight: 8,
        workers: 3,
        concurrency: 6,
        lease,
        step_secs: 0.3,
        faults: vec![
            DbFault::RestartFast,
            DbFault::TerminateBackends,
            DbFault::RestartImmediate,
            DbFault::Outage(lease * 2),
        ],
        between: Duration::from_secs(3),
        deadline: Duration::from_secs(55),
    };
    let report = database(&setup, dir.path()).await.expect("the chaos run");
    report.print("database faults (reduced)");
    let a = &report.audit;
    assert!(report.all_ended, "runs still open at the deadline");
    assert_eq!(
        report.faults.len(),
        4,
        "every fault happened while runs were open"
    );
    assert_eq!(report.runs_lost, 0, "{:?}", a.problems);
    assert_eq!(report.runs_stuck, 0, "{:?}", a.problems);
    assert_eq!(a.steps_lost, 0, "{:?}", a.problems);
    assert_eq!(a.executed_again, 0, "{:?}", a.problems);
    assert_eq!(a.chains_broken, 0, "{:?}", a.problems);
    assert!(
        report.exited_by_themselves.is_empty(),
        "{:?}",
        report.exited_by_themselves
    );
    assert!(
        report.faults.iter().all(|f| f.first_claim.is_some()),
        "{:?}",
        report.faults
    );
}
