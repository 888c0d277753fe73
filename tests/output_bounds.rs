//! Scenario 5 in the suite: steps that flood stdout (200 MB of zeros, 200 MB of `yes`),
//! print one 100 MB line, write invalid UTF-8 to stdout and stderr, or leave a 50 MB
//! `RUNWAY_OUTPUT`, on one `runway worker`: its memory stays bounded, what is stored stays
//! within the capture limit with the truncation marked, and a small run started meanwhile
//! completes. The bench (`cargo bench --bench hygiene`) floods 2 GB (docs/RELIABILITY.md).

#[path = "common/output_bounds.rs"]
mod output_bounds;
#[path = "common/procs.rs"]
mod procs;

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_output_are_stored_within_the_limit_and_do_not_grow_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let setup = output_bounds::Setup {
        flood: 200 * MIB,
        line: 100 * MIB,
        random: 20 * MIB,
        output_file: 50 * MIB,
        trickle_secs: 4,
        dir: dir.path().to_owned(),
    };
    let report = output_bounds::run(&setup).await.expect("the flood");
    report.print("output bounds (suite sizes)");
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.steps.len(), 6);
    // The worker holds two 64 KiB tails and a 64 KiB read buffer per stream of each running
    // step, whatever the step prints: a flood of 540 MB must not show in its peak memory
    // beyond a few MiB of buffers and the store's page cache.
    assert!(
        report.flood_peak <= report.baseline_peak + 32 * MIB,
        "peak {} after the flood, {} after a small run",
        report.flood_peak,
        report.baseline_peak
    );
}
