//! Scenario 4 in the suite: steps that fork, daemonize, ignore SIGTERM or hold stdout
//! open, ended by their timeout, by `runway cancel`, and by SIGKILL of `runway run` (then
//! resumed): nothing of theirs is left, and no zombie. The bench
//! (`cargo bench --bench hygiene`) runs more rounds (docs/RELIABILITY.md).

#[path = "common/hygiene.rs"]
mod hygiene;
#[path = "common/procs.rs"]
mod procs;

use hygiene::{Mode, Setup};

async fn one_mode(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        rounds: 1,
        modes: vec![mode],
        lease: "2s",
        seed: 0x5eed_0004,
        dir: dir.path().to_owned(),
    };
    let report = hygiene::run(&setup).await.expect("the hygiene round");
    report.print(&format!("process hygiene: {}", mode.name()));
    assert_eq!(report.cells.len(), hygiene::BEHAVIOURS.len());
    assert!(
        report.cells.values().all(|c| c.started >= 2),
        "every step got its processes going: {report:#?}"
    );
    assert_eq!(report.left(), 0, "{report:#?}");
    assert_eq!(report.zombies(), 0, "{report:#?}");
    assert!(report.ok(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_timeout_leaves_no_process_of_any_step_behind() {
    one_mode(Mode::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runway_cancel_leaves_no_process_of_any_step_behind() {
    one_mode(Mode::Cancel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_runway_run_leaves_nothing_once_resumed() {
    one_mode(Mode::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_whose_process_was_sigkilled_leaves_nothing() {
    one_mode(Mode::KillCancel).await;
}
