//! Exactly once under chaos: three `runway scheduler` processes on one Postgres fire
//! 10,000 simulated ticks (10 schedules, every minute for 1,000 simulated minutes across
//! Berlin's spring-forward night, at 1,000 simulated seconds per real second) while the
//! busiest one is SIGKILLed (and restarted) or SIGSTOPped (and continued) every 0.5 to 2 s.
//! Prints the figures (duplicate fires and ticks missed inside the catch-up window must be
//! 0) and one JSON line. `cargo bench --bench scheduler`; `RUNWAY_BENCH_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) is the server (a fresh database
//! is created and dropped); `RUNWAY_BENCH_SEED` repeats a run; `RUNWAY_BENCH_TICKS` scales
//! the minutes (ticks = 10 x minutes). docs/RELIABILITY.md records the figures.

#[path = "../tests/common/chaos.rs"]
mod chaos;

use std::time::Duration;

use chaos::{Setup, create_db, drop_db, run};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = std::env::var("RUNWAY_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let seed: u64 = std::env::var("RUNWAY_BENCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let ticks: i64 = std::env::var("RUNWAY_BENCH_TICKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let name = format!("runway_bench_chaos_{}", std::process::id());
    let url = create_db(&server, &name)
        .await
        .expect("a database on the Postgres server");
    let dir = tempfile::tempdir().expect("a temp dir");
    let setup = Setup {
        url,
        processes: 3,
        schedules: 10,
        minutes: ticks / 10,
        rate: 1000.0,
        kill: true,
        stop: true,
        every: (Duration::from_millis(500), Duration::from_millis(2000)),
        seed,
        dir: dir.path().to_owned(),
    };
    let report = run(&setup).await;
    drop_db(&server, &name).await.expect("drop the database");
    let report = report.expect("the chaos run");
    report.print(&format!(
        "scheduler chaos: 3 processes, {} ticks, seed {seed}",
        report.expected
    ));
    let mut json = report.json();
    json["seed"] = seed.into();
    println!("{json}");
    if report.duplicates != 0 || report.missed != 0 {
        std::process::exit(1);
    }
}
