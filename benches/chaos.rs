//! The engine under fault injection, on a throwaway PostgreSQL cluster the bench owns
//! (`initdb` into a temp dir, a free port; see tests/common/engine_chaos.rs), with real
//! `runway worker` processes (this build's binary). Prints a table per scenario and one
//! JSON line; exits non-zero when a figure that must be 0 is not. docs/RELIABILITY.md
//! records the figures.
//!
//! `cargo bench --bench chaos`; `RUNWAY_BENCH_SCENARIOS=1,3` picks scenarios (default all).
//! Scenario 1 (SIGKILL): 200 runs of a 20-step DAG, 3 workers, a random worker SIGKILLed
//! every 0-3 s and started again. Scenario 2 (slow, not dead): 40 runs of four 8 s steps,
//! a worker running steps SIGSTOPped until they are all taken over, then SIGCONTed, 15
//! times. Scenario 3 (database faults): 200 runs of the DAG while Postgres is restarted
//! (`pg_ctl stop -m fast`, `-m immediate`), its backends terminated and it is down for
//! 12 s, twice each. `RUNWAY_BENCH_SEED` repeats a run; `RUNWAY_BENCH_RUNS` scales
//! scenario 1; `RUNWAY_BENCH_LEASE_MS` sets the workers' lease (`runway worker --lease`,
//! default here 5 s).

#[path = "../tests/common/engine_chaos.rs"]
mod engine_chaos;

use std::time::Duration;

use engine_chaos::{DbFault, DbSetup, KillSetup, StopSetup, database, sigkill, sigstop};

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

    let scenarios = std::env::var("RUNWAY_BENCH_SCENARIOS").unwrap_or_else(|_| "1,2,3".into());
    let wanted = |n: &str| scenarios.split(',').any(|s| s.trim() == n);

    if wanted("1") {
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
    }

    if wanted("2") {
        let dir = tempfile::tempdir().expect("a temp dir");
        let setup = StopSetup {
            runs: 40,
            in_flight: 8,
            steps: 4,
            step_secs: 8.0,
            workers: 3,
            concurrency: 4,
            lease,
            rounds: 15,
            hold: (Duration::from_millis(200), Duration::from_secs(2)),
            seed,
            deadline: Duration::from_secs(1200),
        };
        let report = sigstop(&setup, dir.path()).await.expect("scenario 2");
        report.print(&format!(
            "scenario 2, SIGSTOP past the lease: 40 runs x 4 steps of 8 s, 8 open at a time, 3 workers (concurrency 4), lease {lease:?}, seed {seed}"
        ));
        let a = &report.audit;
        failed |= !report.all_ended
            || a.runs_succeeded != setup.runs
            || report.stale_accepted != 0
            || report.both_recorded != 0
            || a.steps_lost != 0
            || a.executed_again != 0
            || a.chains_broken != 0
            || !report.exited_by_themselves.is_empty();
        json["sigstop"] = report.json();
    }

    if wanted("3") {
        let dir = tempfile::tempdir().expect("a temp dir");
        let outage = Duration::from_secs(12);
        let round = [
            DbFault::RestartFast,
            DbFault::TerminateBackends,
            DbFault::RestartImmediate,
            DbFault::Outage(outage),
        ];
        let setup = DbSetup {
            runs: 200,
            in_flight: 12,
            workers: 3,
            concurrency: 8,
            lease,
            step_secs: 0.3,
            faults: round.iter().chain(round.iter()).copied().collect(),
            between: Duration::from_secs(6),
            deadline: Duration::from_secs(1200),
        };
        let report = database(&setup, dir.path()).await.expect("scenario 3");
        report.print(&format!(
            "scenario 3, database faults: 200 runs x 20 steps, 3 workers (concurrency 8), lease {lease:?}"
        ));
        let a = &report.audit;
        failed |= !report.all_ended
            || report.faults.len() != setup.faults.len()
            || report.runs_lost != 0
            || report.runs_stuck != 0
            || a.steps_lost != 0
            || a.executed_again != 0
            || a.chains_broken != 0
            || !report.exited_by_themselves.is_empty();
        json["database"] = report.json();
    }

    println!("{json}");
    if failed {
        std::process::exit(1);
    }
}
