//! Scenario 6 in the suite: `runway run` on SQLite SIGKILLed at random instants and
//! resumed, 15 runs in three parallel lanes; every run completes and no finished step runs
//! again. The full version (100 runs) is `cargo bench --bench hygiene` (docs/RELIABILITY.md).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/sqlite_chaos.rs"]
mod sqlite_chaos;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runway_run_killed_at_random_then_resumed_completes_every_run_without_rerunning_finished_steps()
 {
    let dir = tempfile::tempdir().unwrap();
    let setup = sqlite_chaos::Setup {
        runs: 15,
        lanes: 3,
        seed: std::env::var("RUNWAY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_0006),
        lease: "2s",
        kill_within: Duration::from_millis(2000),
        kill_resume: 0.2,
        dir: dir.path().to_owned(),
    };
    eprintln!("seed {} (RUNWAY_TEST_SEED repeats it)", setup.seed);
    let report = sqlite_chaos::run(&setup).await.expect("the chaos run");
    report.print("SQLite: runway run SIGKILLed and resumed");
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.completed, 15);
    assert_eq!(report.finished_reexecuted, 0);
    assert_eq!(report.leftover_processes, 0);
    assert!(report.kills >= 15, "{report:?}");
}
