//! The engine's speed on both stores: a 40-step chain of no-op steps (latency per hop), a
//! 40-wide fan-out and join, and 2,000 independent no-op steps through 1 and 4 workers
//! (throughput). Workers are in-process `Engine`s with their own apalis workers, exactly
//! what `runway worker` runs.
//!
//! `cargo bench --bench engine`. Postgres: `RUNWAY_BENCH_POSTGRES_URL` (a server URL; a
//! fresh database is created per scenario), default `postgres://postgres@127.0.0.1:5432/postgres`;
//! set it to `skip` to measure SQLite only. Prints a table and one JSON line per scenario.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runway::engine::{self, Engine, Origin};
use runway::source::Source;
use runway::state::RunStatus;
use runway::store::Store;
use serde_json::Map;
use tokio_util::sync::CancellationToken;

fn chain(n: usize) -> String {
    let mut s = String::from("runway: 1\nname: chain\nsteps:\n");
    for i in 0..n {
        s.push_str(&format!("  - id: s{i}\n    noop: {{}}\n"));
    }
    s
}

fn fan(n: usize) -> String {
    let mut s = String::from("runway: 1\nname: fan\nsteps:\n  - id: start\n    noop: {}\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - id: s{i}\n    needs: [start]\n    noop: {{}}\n"
        ));
    }
    let all: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    s.push_str(&format!(
        "  - id: join\n    needs: [{}]\n    noop: {{}}\n",
        all.join(", ")
    ));
    s
}

fn wide(n: usize) -> String {
    let mut s = String::from("runway: 1\nname: wide\nsteps:\n");
    for i in 0..n {
        s.push_str(&format!("  - id: s{i}\n    needs: []\n    noop: {{}}\n"));
    }
    s
}

async fn fresh_postgres(server: &str, tag: &str) -> String {
    let db = format!("runway_bench_{tag}_{}", std::process::id());
    let admin = Store::connect(server).await.expect("postgres server");
    if let Store::Postgres(pool) = &admin {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
            .execute(pool)
            .await
            .expect("drop");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(pool)
            .await
            .expect("create");
    }
    admin.close().await;
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

/// Runs `text` once on `workers` in-process workers; returns (wall time, steps).
async fn measure(url: &str, text: &str, workers: usize, concurrency: usize) -> (Duration, usize) {
    let store = Store::connect(url).await.expect("store");
    let plan = engine::compile(
        Source {
            name: "bench".into(),
            text: text.to_owned(),
        },
        std::path::Path::new("workflows"),
    )
    .expect("compiles");
    let steps = plan.playbook.steps.len();
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let engine = Engine::new(
            store.clone(),
            engine::Config {
                concurrency,
                ..engine::Config::default()
            },
        );
        handles.push(tokio::spawn(Arc::clone(&engine).work(stop.clone())));
    }
    // Let the workers register and go idle, so the figure is the engine, not start-up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let origin = Origin {
        starter: "bench".into(),
        trigger: "manual".into(),
        parent: None,
    };
    let new = engine::new_run(&plan, text, Map::new(), &origin).expect("run");
    let started = Instant::now();
    let run = store.run_create(&new).await.expect("create");
    loop {
        let r = store.run_get(&run.id).await.expect("get");
        if r.status == RunStatus::Succeeded {
            break;
        }
        assert!(!r.status.is_terminal(), "bench run ended {}", r.status);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
    store.close().await;
    (took, steps)
}

fn report(backend: &str, scenario: &str, workers: usize, took: Duration, steps: usize) {
    let ms = took.as_secs_f64() * 1000.0;
    let per_step = ms / steps as f64;
    let per_sec = steps as f64 / took.as_secs_f64();
    println!(
        "{backend:<9} {scenario:<22} workers={workers} {ms:>9.1} ms  {per_step:>7.2} ms/step  {per_sec:>8.0} steps/s"
    );
    println!(
        "{{\"backend\":\"{backend}\",\"scenario\":\"{scenario}\",\"workers\":{workers},\"ms\":{ms:.1},\"ms_per_step\":{per_step:.3},\"steps_per_s\":{per_sec:.0}}}"
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = std::env::var("RUNWAY_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let scenarios: [(&str, String, usize, usize); 4] = [
        ("chain-40", chain(40), 1, 4),
        ("fan-out-40-join", fan(40), 1, 4),
        ("independent-2000", wide(2000), 1, 16),
        ("independent-2000", wide(2000), 4, 16),
    ];
    rt.block_on(async {
        for (i, (name, text, workers, concurrency)) in scenarios.iter().enumerate() {
            let sqlite = format!("sqlite://{}/bench-{i}.db", dir.path().display());
            let (took, steps) = measure(&sqlite, text, *workers, *concurrency).await;
            report("sqlite", name, *workers, took, steps);
            if server != "skip" {
                let url = fresh_postgres(&server, &format!("s{i}")).await;
                let (took, steps) = measure(&url, text, *workers, *concurrency).await;
                report("postgres", name, *workers, took, steps);
            }
        }
    });
}
