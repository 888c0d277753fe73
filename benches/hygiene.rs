//! Issue 4, scenarios 4 to 6, at full size, with the real `runway` binary on SQLite:
//!
//! - 4, process hygiene: five steps that fork grandchildren, daemonize (`setsid`, double
//!   fork), `nohup` a child, ignore SIGTERM, or hold stdout open from a `setsid` child,
//!   ended by their timeout, by `runway cancel`, by SIGKILL of `runway run` (then
//!   resumed, or cancelled without a resume), five rounds each: processes left after the
//!   grace period and zombies.
//! - 5, output bounds: 2 GB of zeros and 2 GB of `yes` on stdout, a 100 MB line, 100 MB of
//!   random bytes on stdout and stderr, a 50 MB `RUNWAY_OUTPUT`, while a small run goes
//!   through: the worker's peak memory, the bytes stored per step.
//! - 6, SQLite under SIGKILL: 100 runs of a ten-step playbook, each `runway run` killed at
//!   a random instant and resumed (resumes killed too, now and then): runs completed,
//!   finished steps run again.
//!
//! `cargo bench --bench hygiene`; `RUNWAY_BENCH_SCENARIOS=4,5,6` picks scenarios,
//! `RUNWAY_BENCH_SEED` repeats the random choices, `RUNWAY_BENCH_RUNS` scales scenario 6.
//! Prints a table per scenario and one JSON line; exits 1 if a contract did not hold.
//! docs/RELIABILITY.md records the figures.

#[path = "../tests/common/hygiene.rs"]
mod hygiene;
#[path = "../tests/common/output_bounds.rs"]
mod output_bounds;
#[path = "../tests/common/procs.rs"]
mod procs;
#[path = "../tests/common/sqlite_chaos.rs"]
mod sqlite_chaos;

use std::time::Duration;

const MIB: u64 = 1024 * 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scenarios = std::env::var("RUNWAY_BENCH_SCENARIOS").unwrap_or_else(|_| "4,5,6".into());
    let wants = |n: &str| scenarios.split(',').any(|s| s.trim() == n);
    let seed = procs::seed_from("RUNWAY_BENCH_SEED");
    let runs: usize = std::env::var("RUNWAY_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "hygiene bench, seed {seed}, load average at start {}",
        load.trim()
    );
    let mut json =
        serde_json::json!({ "bench": "hygiene", "seed": seed, "load_start": load.trim() });
    let mut ok = true;

    if wants("4") {
        let dir = tempfile::tempdir().expect("a temp dir");
        let setup = hygiene::Setup {
            rounds: 5,
            modes: vec![
                hygiene::Mode::Timeout,
                hygiene::Mode::Cancel,
                hygiene::Mode::Kill,
                hygiene::Mode::KillCancel,
            ],
            lease: "2s",
            seed,
            dir: dir.path().to_owned(),
        };
        let report = hygiene::run(&setup).await.expect("scenario 4");
        report.print("\n## scenario 4: process hygiene (5 rounds per way of ending)");
        ok &= report.ok();
        json["process_hygiene"] = report.json();
    }
    if wants("5") {
        let dir = tempfile::tempdir().expect("a temp dir");
        let setup = output_bounds::Setup {
            flood: 2048 * MIB,
            line: 100 * MIB,
            random: 100 * MIB,
            output_file: 50 * MIB,
            trickle_secs: 10,
            dir: dir.path().to_owned(),
        };
        let report = output_bounds::run(&setup).await.expect("scenario 5");
        report.print("\n## scenario 5: output bounds (2 GB floods)");
        ok &= report.ok();
        json["output_bounds"] = report.json();
    }
    if wants("6") {
        let dir = tempfile::tempdir().expect("a temp dir");
        let setup = sqlite_chaos::Setup {
            runs,
            lanes: 4,
            seed,
            lease: "2s",
            kill_within: Duration::from_millis(2000),
            kill_resume: 0.2,
            dir: dir.path().to_owned(),
        };
        let report = sqlite_chaos::run(&setup).await.expect("scenario 6");
        report.print(&format!(
            "\n## scenario 6: SQLite, {runs} runs SIGKILLed and resumed"
        ));
        ok &= report.ok();
        json["sqlite_chaos"] = report.json();
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json["load_end"] = load.trim().into();
    println!("{json}");
    if !ok {
        std::process::exit(1);
    }
}
