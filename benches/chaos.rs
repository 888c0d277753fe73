//! The engine under fault injection, on a throwaway PostgreSQL cluster the bench owns
//! (`initdb` into a temp dir, a free port; see tests/common/engine_chaos.rs), with real
//! `runway worker` processes (this build's binary). Prints a table per scenario and one
//! JSON line; exits non-zero when a figure that must be 0 is not. docs/RELIABILITY.md
//! records the figures.
//!
//! `cargo bench --bench chaos`. Scenario 1 (SIGKILL): 200 runs of a 20-step DAG, 3 workers,
//! a random worker SIGKILLed every 0-3 s and started again. `RUNWAY_BENCH_SEED` repeats a
//! run; `RUNWAY_BENCH_RUNS` scales it; `RUNWAY_BENCH_LEASE_MS` sets the workers' lease
//! (`runway worker --lease`, default here 5 s).

#[path = "../tests/common/engine_chaos.rs"]
mod engine_chaos;

use std::time::Duration;

use engine_chaos::{KillSetup, sigkill};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seed: u64 =
        env("RUNWAY_BENCH_SEED").unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let runs: usize = env("RUNWAY_BENCH_RUNS").unwrap_or(200);
    let lease = Duration::from_millis(env("RUNWAY_BENCH_LEASE_MS").unwrap_or(5000));
    let mut failed = false;
    let mut json = serde_json::json!({ "seed": seed });

    let dir = tempfile::tempdir().expect("a temp dir");
    let setup = KillSetup {
        runs,
        in_flight: 12,
        workers: 3,
        concurrency: 8,
        lease,
        step_secs: 0.3,
        wait: "2s".into(),
        attempts: 6,
        every: (Duration::ZERO, Duration::from_secs(3)),
        seed,
        deadline: Duration::from_secs(1800),
    };
    let report = sigkill(&setup, dir.path()).await.expect("scenario 1");
    report.print(&format!(
        "scenario 1, SIGKILL: {runs} runs x 20 steps, 3 workers (concurrency 8), lease {:?}, seed {seed}",
        lease
    ));
    let a = &report.audit;
    failed |= !report.all_ended
        || a.runs_succeeded != runs
        || a.steps_lost != 0
        || a.executed_again != 0
        || a.keys_changed != 0
        || a.chains_broken != 0
        || !report.exited_by_themselves.is_empty();
    json["sigkill"] = report.json();

    println!("{json}");
    if failed {
        std::process::exit(1);
    }
}
