//! The engine's speed and memory on both stores, next to the database's own ceiling.
//!
//! `cargo bench --bench engine [-- FILTER...]` runs the scenarios whose name contains one of
//! the filters (all when none is given); a scenario of one store is also named with the
//! store first, `postgres/chain-40`:
//!
//! - `pgbench-1`, `pgbench-4`: `pgbench` inserting one row per transaction with 1 and 4
//!   clients, the ceiling for commits per second on this machine (Postgres only; skipped
//!   when `pgbench` is not installed); the median of 3 runs of 5 s, without TLS as the engine.
//! - `chain-40`: a 40-step chain of no-op steps: latency per hop (the median of 5 runs on
//!   one worker, after a first run reported apart: the first after connecting).
//! - `fan-out-40-join`: one step, 40 parallel steps, a join (likewise).
//! - `steps-10000`: 10,000 no-op steps (100 runs of 100 parallel steps, created up front)
//!   through 1 and 4 workers of 16 slots, and 4 workers of 4 (one shape: `steps-10000-4x16`):
//!   throughput (the median of 3 runs).
//! - `one-run-2000`: 2,000 parallel no-op steps of one run, through 4 workers: the bound
//!   that the per-run lock sets (every transition of a run is serialized).
//! - `report-1000`: the evidence report of one finished 1,000-step run (100 stages of 10
//!   shell steps that print a line): reading the evidence, building the summary, and
//!   rendering Markdown, HTML (with the DAG) and the JSON export; median of 5.
//! - `memory`: resident memory of a `runway worker` process idle, and with 1,000 runs
//!   waiting at approvals.
//!
//! Workers are in-process `Engine`s with their own apalis workers, exactly what
//! `runway worker` runs (the memory scenario runs the real binary). Postgres:
//! `RUNWAY_BENCH_POSTGRES_URL` (a server URL; a fresh database per scenario), default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `skip` measures SQLite only; with
//! `RUNWAY_BENCH_KEEP` set, the databases are left on the server to look at. Prints a
//! table line and a JSON line per figure.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runway::engine::{self, Engine, Origin};
use runway::plan::Plan;
use runway::source::Source;
use runway::state::RunStatus;
use runway::store::{Store, default_connections};
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

/// Runs of the chain and the fan-out each figure is the median of.
const LATENCY_RUNS: usize = 5;

/// Runs of pgbench and of each 10,000-step shape each figure is the median of.
const REPEATS: usize = 3;

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

/// `n` shell steps in stages of 10, each after the step 10 before it, each printing a line.
fn layered(n: usize) -> String {
    let mut s = String::from("runway: 1\nname: layered\nsteps:\n");
    for i in 0..n {
        let needs = if i < 10 {
            "[]".to_owned()
        } else {
            format!("[s{}]", i - 10)
        };
        s.push_str(&format!(
            "  - id: s{i}\n    needs: {needs}\n    shell: {{ argv: [echo, 'step {i} done'] }}\n    mutates: false\n"
        ));
    }
    s
}

const APPROVAL: &str =
    "runway: 1\nname: gate\nsteps:\n  - id: approve\n    approval: { prompt: 'Go?' }\n";

fn compile(text: &str) -> Plan {
    engine::compile(
        Source {
            name: "bench".into(),
            text: text.to_owned(),
        },
        Path::new("workflows"),
    )
    .expect("the bench playbook compiles")
}

/// The databases this run created, dropped when it ends (each scenario's figures are
/// printed by then; a run stopped half-way leaves its own for the next run of its tag).
static CREATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Drops the databases [`fresh_postgres`] created.
async fn drop_created(server: &str) {
    let mut created: Vec<String> = std::mem::take(&mut *CREATED.lock().expect("created databases"));
    created.sort();
    created.dedup();
    if created.is_empty() || std::env::var_os("RUNWAY_BENCH_KEEP").is_some() {
        return;
    }
    let admin = sqlx::PgPool::connect(server)
        .await
        .expect("postgres server");
    for db in created {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .expect("drop");
    }
    admin.close().await;
}

async fn fresh_postgres(server: &str, tag: &str) -> String {
    let db = format!("runway_bench_{tag}_{}", std::process::id());
    CREATED.lock().expect("created databases").push(db.clone());
    let admin = sqlx::PgPool::connect(server)
        .await
        .expect("postgres server");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
        .execute(&admin)
        .await
        .expect("drop");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await
        .expect("create");
    admin.close().await;
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

struct Workers {
    stop: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<Result<(), engine::Error>>>,
}

/// A store (pools) for each of `workers` workers, as `runway worker` processes have,
/// connected before anything is timed.
async fn worker_stores(url: &str, workers: usize, connections: u32) -> Vec<Store> {
    let mut stores = Vec::with_capacity(workers);
    for _ in 0..workers {
        stores.push(
            Store::connect_with(url, connections)
                .await
                .expect("a worker's store"),
        );
    }
    stores
}

/// A worker of `concurrency` slots on each store.
fn start_workers(stores: Vec<Store>, concurrency: usize) -> Workers {
    let stop = CancellationToken::new();
    let handles = stores
        .into_iter()
        .map(|store| {
            let engine = Engine::new(
                store,
                engine::Config {
                    concurrency,
                    ..engine::Config::default()
                },
            );
            tokio::spawn(Arc::clone(&engine).work(stop.clone()))
        })
        .collect();
    Workers { stop, handles }
}

impl Workers {
    async fn stop(self) {
        self.stop.cancel();
        for h in self.handles {
            let _ = h.await;
        }
    }
}

async fn create_runs(store: &Store, plan: &Plan, text: &str, n: usize) -> Vec<String> {
    let origin = Origin {
        starter: "bench".into(),
        trigger: "manual".into(),
        parent: None,
    };
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let new = engine::new_run(plan, text, Map::new(), &origin).expect("run");
        ids.push(store.run_create(&new).await.expect("create").id);
    }
    ids
}

/// Waits until every run in `ids` is in `status`.
async fn await_all(store: &Store, ids: &[String], status: RunStatus) {
    let mut left: Vec<&String> = ids.iter().collect();
    while let Some(id) = left.last() {
        let r = store.run_get(id).await.expect("get");
        if r.status == status {
            left.pop();
            continue;
        }
        assert!(!r.status.is_terminal(), "bench run {id} ended {}", r.status);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs of `text` on idle workers of one store, one after another: for each, its wall time
/// from creation to success, and from its first step's start to its last step's end (what
/// the steps and the transitions between them cost, without the first job's fetch). The
/// first run is the one a worker that has just connected makes (its connections have not
/// prepared a statement yet); the others, what a worker that has been running makes.
async fn latencies(url: &str, text: &str, runs: usize) -> Vec<(Duration, Duration, usize)> {
    let store = Store::connect(url).await.expect("store");
    let plan = compile(text);
    let workers = start_workers(worker_stores(url, 1, default_connections(4)).await, 4);
    // Let the worker register and go idle, so the figure is the engine, not start-up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let ids = create_runs(&store, &plan, text, 1).await;
        await_all(&store, &ids, RunStatus::Succeeded).await;
        let took = started.elapsed();
        let steps = store.steps_of_run(&ids[0]).await.expect("steps");
        let first = steps.iter().filter_map(|s| s.started_at).min();
        let last = steps.iter().filter_map(|s| s.finished_at).max();
        let inside = match (first, last) {
            (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        out.push((took, inside, plan.playbook.steps.len()));
    }
    workers.stop().await;
    store.close().await;
    out
}

/// `runs` runs of `text`, created before the workers start: the time until all succeeded.
async fn throughput(
    url: &str,
    text: &str,
    runs: usize,
    (workers, slots): (usize, usize),
    connections: u32,
) -> (Duration, usize) {
    let store = Store::connect(url).await.expect("store");
    let plan = compile(text);
    let ids = create_runs(&store, &plan, text, runs).await;
    let stores = worker_stores(url, workers, connections).await;
    let cpu = Cpu::now();
    let started = Instant::now();
    let pool = start_workers(stores, slots);
    await_all(&store, &ids, RunStatus::Succeeded).await;
    let took = started.elapsed();
    let steps = runs * plan.playbook.steps.len();
    // Postgres only: on SQLite the time spent in fsync is counted in the process' CPU
    // time but as the machine's idle (iowait), so the two do not compare.
    if let (true, Some(before), Some(after)) = (url.starts_with("postgres"), cpu, Cpu::now()) {
        let per_step = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_S / steps as f64;
        println!(
            "          cpu per step: this process {:.0} µs, the whole machine {:.0} µs, idle {:.0} µs ({workers}x{slots}, {connections} connections each, {} ms)",
            per_step(after.own - before.own),
            per_step(after.busy - before.busy),
            per_step(after.idle - before.idle),
            took.as_millis()
        );
    }
    pool.stop().await;
    store.close().await;
    (took, steps)
}

/// Connections to Postgres for all workers together: four a core of the database's two
/// (docs/PERFORMANCE.md, "Connections").
const CONNECTIONS_BUDGET: u32 = 8;

/// Linux's clock ticks a second (`getconf CLK_TCK`), in which /proc counts CPU time.
const TICKS_PER_S: f64 = 100.0;

/// CPU time from /proc, to say where a throughput run's CPU went: this process (the
/// engines and the bench), and the whole machine (the rest is mostly Postgres when it is
/// local), in clock ticks, so read them over seconds, not milliseconds. `None` where
/// there is no /proc.
struct Cpu {
    own: u64,
    busy: u64,
    idle: u64,
}

impl Cpu {
    fn now() -> Option<Self> {
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command's closing parenthesis the fields start at the 3rd (state):
        // utime and stime, the 14th and 15th, are the 12th and 13th there.
        let f: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let all = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = all
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = cpu.get(3)? + cpu.get(4)?;
        let busy = cpu.iter().take(8).sum::<u64>() - idle;
        Some(Self { own, busy, idle })
    }
}

/// Prints one figure: `workers` workers of `slots` slots each took `took` for `steps` steps.
fn report(
    backend: &str,
    scenario: &str,
    (workers, slots): (usize, usize),
    took: Duration,
    steps: usize,
) -> f64 {
    let ms = took.as_secs_f64() * 1000.0;
    let per_step = ms / steps as f64;
    let per_sec = steps as f64 / took.as_secs_f64();
    println!(
        "{backend:<9} {scenario:<18} workers={workers}x{slots:<3} {ms:>9.1} ms  {per_step:>7.3} ms/step  {per_sec:>8.0} steps/s"
    );
    println!(
        "{}",
        json!({
            "backend": backend, "scenario": scenario, "workers": workers, "slots": slots,
            "ms": (ms * 10.0).round() / 10.0, "ms_per_step": (per_step * 1000.0).round() / 1000.0,
            "steps_per_s": per_sec.round(),
        })
    );
    per_sec
}

/// pgbench's TPS for a one-row INSERT per transaction with `clients` clients, or `None`
/// when pgbench is not installed.
fn pgbench(url: &str, clients: usize) -> Option<f64> {
    let bin = ["/usr/lib/postgresql/15/bin/pgbench", "pgbench"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())?;
    let script = tempfile::NamedTempFile::new().expect("script");
    std::fs::write(script.path(), "INSERT INTO bench_rows (v) VALUES (1);\n").expect("write");
    let psql = Command::new("psql")
        .args([
            url,
            "-q",
            "-c",
            "CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, v int)",
        ])
        .output()
        .ok()?;
    if !psql.status.success() {
        return None;
    }
    let mut runs = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        // Over the engine's transport: sqlx is built without TLS, and libpq's default
        // (`prefer`) would put pgbench on TLS wherever the server offers it, a lower
        // ceiling than the engine's plain TCP.
        let out = Command::new(bin)
            .env("PGSSLMODE", "disable")
            .args([
                "-n",
                "-T",
                "5",
                "-c",
                &clients.to_string(),
                "-j",
                &clients.to_string(),
                "-f",
            ])
            .arg(script.path())
            .arg(url)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let tps: f64 = text
            .lines()
            .find(|l| l.starts_with("tps ="))?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()?;
        runs.push(tps);
    }
    runs.sort_by(f64::total_cmp);
    let tps = runs[REPEATS / 2];
    let all: Vec<f64> = runs.iter().map(|t| t.round()).collect();
    println!(
        "postgres  pgbench-{clients:<10} clients={clients} {tps:>9.0} TPS (one-row INSERT per transaction; median of {all:?})"
    );
    println!(
        "{}",
        json!({ "backend": "postgres", "scenario": format!("pgbench-{clients}"), "tps": tps, "runs_tps": all })
    );
    Some(tps)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A `runway worker` process: idle, then with 1,000 runs parked at an approval.
async fn memory(backend: &str, url: &str) {
    let store = Store::connect(url).await.expect("store");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(["worker", "--concurrency", "4"])
        .env("RUNWAY_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runway worker");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = memory_of(worker.id());
    let plan = compile(APPROVAL);
    let ids = create_runs(&store, &plan, APPROVAL, 1000).await;
    await_all(&store, &ids, RunStatus::Waiting).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (waiting, peak) = memory_of(worker.id());
    let _ = worker.kill();
    let _ = worker.wait();
    store.close().await;
    println!(
        "{backend:<9} memory             idle {idle:.1} MiB; 1,000 runs at approvals {waiting:.1} MiB (peak {peak:.1} MiB)"
    );
    println!(
        "{}",
        json!({
            "backend": backend, "scenario": "memory", "idle_mib": (idle * 10.0).round() / 10.0,
            "waiting_1000_mib": (waiting * 10.0).round() / 10.0, "peak_mib": (peak * 10.0).round() / 10.0,
        })
    );
}

/// The median of `f`'s time over five calls.
fn median_of_5<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(5);
    let mut last = None;
    for _ in 0..5 {
        let began = Instant::now();
        last = Some(f());
        times.push(began.elapsed());
    }
    times.sort();
    (times[2], last.expect("five calls"))
}

/// Runs one 1,000-step run to its end, then times its evidence report.
async fn report_1000(backend: &str, url: &str) {
    use runway::report::{self, Format};
    let store = Store::connect(url).await.expect("store");
    let text = layered(1000);
    let plan = compile(&text);
    let workers = start_workers(worker_stores(url, 1, default_connections(8)).await, 8);
    let ids = create_runs(&store, &plan, &text, 1).await;
    await_all(&store, &ids, RunStatus::Succeeded).await;
    workers.stop().await;
    let mut reads = Vec::new();
    for _ in 0..5 {
        let began = Instant::now();
        let evidence = store.evidence_of_run(&ids[0]).await.expect("evidence");
        reads.push((began.elapsed(), evidence));
    }
    reads.sort_by_key(|r| r.0);
    let (read, evidence) = reads.swap_remove(2);
    let events = evidence.events.len();
    let (build, r) = median_of_5(|| report::report(&evidence, chrono::Utc::now()));
    assert!(r.store.problems.is_empty(), "{:?}", r.store.problems);
    let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let mut figures = vec![("read", read), ("build", build)];
    let mut sizes = Vec::new();
    for (name, format) in [
        ("md", Format::Md),
        ("html", Format::Html),
        ("json", Format::Json),
    ] {
        let (took, text) = median_of_5(|| report::render(&r, format).expect("render"));
        figures.push((name, took));
        sizes.push((name, text.len()));
    }
    let slowest = figures[2..].iter().map(|f| f.1).max().expect("formats");
    let total = read + build + slowest;
    println!(
        "{backend:<9} report-1000        {events} events: read {:.1} ms, build {:.1} ms, md {:.1} ms, html {:.1} ms, json {:.1} ms; read+build+slowest {:.1} ms (goal < 200)",
        ms(read),
        ms(build),
        ms(figures[2].1),
        ms(figures[3].1),
        ms(figures[4].1),
        ms(total)
    );
    let mut line = json!({ "backend": backend, "scenario": "report-1000", "events": events, "total_ms": ms(total) });
    for (name, took) in &figures {
        line[format!("{name}_ms")] = json!(ms(*took));
    }
    for (name, bytes) in &sizes {
        line[format!("{name}_bytes")] = json!(bytes);
    }
    println!("{line}");
    store.close().await;
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = std::env::var("RUNWAY_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let postgres = server != "skip";
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = |tag: &str| format!("sqlite://{}/bench-{tag}.db", dir.path().display());
    rt.block_on(async {
        let mut tps4 = None;
        if postgres {
            for clients in [1, 4] {
                let name = format!("pgbench-{clients}");
                if wanted(&name) {
                    let url = fresh_postgres(&server, &name.replace('-', "_")).await;
                    let tps = pgbench(&url, clients);
                    if clients == 4 {
                        tps4 = tps;
                    }
                }
            }
        }
        let mut backends = vec!["sqlite"];
        if postgres {
            backends.push("postgres");
        }
        for backend in &backends {
            let sqlite = &sqlite;
            let server = &server;
            let url = async |tag: &str| match *backend {
                "sqlite" => sqlite(tag),
                _ => fresh_postgres(server, tag).await,
            };
            // A filter may name the backend too: `postgres/chain-40`.
            let wanted = |name: &str| wanted(&format!("{backend}/{name}"));
            for (name, text) in [("chain-40", chain(40)), ("fan-out-40-join", fan(40))] {
                if wanted(name) {
                    // One run is 40 transitions, a few milliseconds each on a shared
                    // machine: the median of several runs on one fresh database, after the
                    // first (reported apart: connections that prepare every statement
                    // for the first time).
                    let mut tries = latencies(&url(&name.replace('-', "_")).await, &text, LATENCY_RUNS + 1).await;
                    let (_, cold, _) = tries.remove(0);
                    tries.sort_by_key(|t| t.1);
                    let all: Vec<f64> = tries.iter().map(|t| (t.1.as_secs_f64() * 1e4).round() / 10.0).collect();
                    let (took, inside, steps) = tries[LATENCY_RUNS / 2];
                    report(backend, name, (1, 4), took, steps);
                    let ms = inside.as_secs_f64() * 1000.0;
                    let per = ms / steps as f64;
                    let cold_ms = cold.as_secs_f64() * 1000.0;
                    println!(
                        "{backend:<9} {name:<18} first start to last end {ms:.1} ms: {per:.3} ms per step (median of {LATENCY_RUNS} runs: {all:?} ms; the first run after connecting: {cold_ms:.1} ms)"
                    );
                    println!(
                        "{}",
                        json!({ "backend": backend, "scenario": name, "inside_ms": (ms * 10.0).round() / 10.0,
                                "inside_ms_per_step": (per * 1000.0).round() / 1000.0, "runs_inside_ms": all,
                                "first_run_inside_ms": (cold_ms * 10.0).round() / 10.0 })
                    );
                }
            }
            // 16 slots a worker, and four workers of `runway worker`'s default 4: as many
            // slots as the one worker has, in four processes. Each with `runway worker`'s
            // default connections, then (Postgres) with the database's budget split
            // between the workers, as docs/PERFORMANCE.md tells an operator to, where that
            // differs. A filter
            // picks one shape by its name (`steps-10000-4x16`, `steps-10000-4x4-c2`).
            let shapes = [(1, 16), (4, 16), (4, 4)];
            let sized = shapes
                .map(|shape| (shape, CONNECTIONS_BUDGET / shape.0 as u32))
                .into_iter()
                .filter(|(shape, c)| *backend == "postgres" && *c != default_connections(shape.1));
            let shapes = shapes
                .map(|shape| (shape, default_connections(shape.1)))
                .into_iter()
                .chain(sized);
            for (shape, connections) in shapes {
                let c = if connections == default_connections(shape.1) {
                    String::new()
                } else {
                    format!("-c{connections}")
                };
                let name = format!("steps-10000{c}");
                if wanted(&format!("steps-10000-{}x{}{c}", shape.0, shape.1)) {
                    let tag = format!("steps_{}x{}{}", shape.0, shape.1, c.replace('-', "_"));
                    // The median of a few runs, each on a fresh database: one run moved
                    // by a tenth from the next on this shared machine.
                    let mut runs = Vec::with_capacity(REPEATS);
                    for _ in 0..REPEATS {
                        let url = url(&tag).await;
                        runs.push(throughput(&url, &wide(100), 100, shape, connections).await);
                    }
                    runs.sort_by_key(|r| r.0);
                    let all: Vec<u128> = runs.iter().map(|r| r.0.as_millis()).collect();
                    let (took, steps) = runs[REPEATS / 2];
                    let per_sec = report(backend, &name, shape, took, steps);
                    println!(
                        "{backend:<9} {name:<18} workers={}x{:<3} median of {REPEATS} runs: {all:?} ms",
                        shape.0, shape.1
                    );
                    if *backend == "postgres"
                        && let Some(tps) = tps4
                    {
                        println!(
                            "postgres  {name:<18} workers={}x{:<3} {:.2} of pgbench-4 TPS / 2 (goal 0.5)",
                            shape.0,
                            shape.1,
                            per_sec / (tps / 2.0)
                        );
                    }
                }
            }
            if wanted("one-run-2000") {
                let (took, steps) = throughput(&url("one_run").await, &wide(2000), 1, (4, 16), default_connections(16)).await;
                report(backend, "one-run-2000", (4, 16), took, steps);
            }
            if wanted("report-1000") {
                report_1000(backend, &url("report").await).await;
            }
            if wanted("memory") {
                memory(backend, &url("memory").await).await;
            }
        }
        if postgres {
            drop_created(&server).await;
        }
    });
}
