//! The scheduler chaos harness, shared by `tests/scheduler_chaos.rs` (a reduced run in the
//! suite) and `benches/scheduler.rs` (the full one, printing figures).
//!
//! Real `runway scheduler` processes share one store and one simulated clock (every
//! process computes the same time from `--simulated-clock START,RATE,EPOCH`, so a process
//! started again after a kill agrees with the others). Every minute of simulated time is a
//! tick of each schedule (overlap `allow`, so each tick is one run). Meanwhile the busiest
//! scheduler (the one that recorded the most ticks so far) is SIGKILLed (and started again)
//! or SIGSTOPped (and continued) at random. At the end every tick must have exactly one
//! started row and exactly one run, checked independently: the expected ticks are every
//! whole minute of the simulated span, and duplicates are counted from the runs'
//! `run.scheduled` events, not from the tick rows (whose key would hide them).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use runway::scheduler::register;
use runway::store::Store;

/// What to run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `postgres://...` or `sqlite://...`, an empty database.
    pub url: String,
    pub processes: usize,
    pub schedules: usize,
    /// Simulated minutes (each one a tick of every schedule).
    pub minutes: i64,
    /// Simulated seconds per real second.
    pub rate: f64,
    pub kill: bool,
    pub stop: bool,
    /// Real time between two chaos actions, drawn uniformly from this range.
    pub every: (Duration, Duration),
    pub seed: u64,
    /// Where the playbook and the schedulers' logs go.
    pub dir: PathBuf,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub expected: usize,
    pub started: usize,
    /// Ticks with more than one run.
    pub duplicates: usize,
    /// Expected ticks inside the catch-up window without a started run.
    pub missed: usize,
    /// Tick rows that are not `started` (there should be none: the window is wider than
    /// any stall).
    pub other_outcomes: usize,
    pub runs: usize,
    pub kills: usize,
    pub stops: usize,
    pub wall: Duration,
    /// Ticks recorded by each scheduler process (by scheduler id).
    pub per_scheduler: BTreeMap<String, usize>,
    /// The latest a tick fired after its time, in simulated seconds.
    pub max_late_secs: i64,
}

impl Report {
    pub fn print(&self, title: &str) {
        println!("{title}");
        println!("  ticks expected      {}", self.expected);
        println!("  ticks started       {}", self.started);
        println!("  runs created        {}", self.runs);
        println!("  duplicate fires     {}", self.duplicates);
        println!("  missed in window    {}", self.missed);
        println!("  other outcomes      {}", self.other_outcomes);
        println!("  SIGKILLs / SIGSTOPs {} / {}", self.kills, self.stops);
        println!("  wall time           {:.1} s", self.wall.as_secs_f64());
        println!(
            "  ticks per second    {:.0}",
            self.started as f64 / self.wall.as_secs_f64().max(0.001)
        );
        println!(
            "  latest tick         {} s (simulated) after its time",
            self.max_late_secs
        );
        for (id, n) in &self.per_scheduler {
            println!("  {id:<44} {n} ticks");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "expected": self.expected, "started": self.started, "runs": self.runs,
            "duplicates": self.duplicates, "missed": self.missed,
            "other_outcomes": self.other_outcomes, "kills": self.kills, "stops": self.stops,
            "wall_s": self.wall.as_secs_f64(), "max_late_s": self.max_late_secs,
            "per_scheduler": self.per_scheduler,
        })
    }
}

/// A small deterministic generator (xorshift64*), so a run can be repeated by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next() % span)
    }
}

struct Proc {
    child: Child,
    stopped: bool,
}

fn spawn(setup: &Setup, clock: &str, n: usize) -> Result<Proc> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.dir.join(format!("scheduler-{n}.log")))?;
    let child = Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(["scheduler", "--poll", "50ms", "--simulated-clock", clock])
        .env("RUNWAY_DATABASE_URL", &setup.url)
        .env("RUNWAY_WORKFLOWS", &setup.dir)
        .env("RUNWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("runway scheduler starts")?;
    Ok(Proc {
        child,
        stopped: false,
    })
}

fn signal(p: &Proc, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.child.id() as i32), sig);
}

fn playbook(schedules: usize) -> String {
    let mut s = String::from("runway: 1\nname: tick\nschedules:\n");
    for i in 0..schedules {
        // Europe/Berlin across its spring-forward night: an interval keeps firing every
        // real minute through the hour the wall clock skips.
        s.push_str(&format!(
            "  - id: s{i}\n    cron: '* * * * *'\n    timezone: Europe/Berlin\n    \
             overlap: allow\n    catch_up: 1d\n"
        ));
    }
    s.push_str("steps:\n  - id: probe\n    noop: {}\n");
    s
}

/// The simulated span starts here: 18:00 UTC the evening before Berlin's 2026 spring
/// forward (01:00 UTC on 29 March).
pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-28T18:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Registers the schedules, runs the schedulers with chaos until every tick of the span is
/// recorded (or a deadline passes), stops them and counts.
pub async fn run(setup: &Setup) -> Result<Report> {
    let store = Store::connect(&setup.url).await?;
    let text = playbook(setup.schedules);
    std::fs::write(setup.dir.join("tick.yaml"), &text)?;
    let source = runway::source::Source {
        name: "tick.yaml".into(),
        text: text.clone(),
    };
    let plan = runway::engine::compile(source, &setup.dir)?;
    let begin = start();
    let end = begin + chrono::Duration::minutes(setup.minutes);
    let mut ids = Vec::new();
    for s in &plan.playbook.schedules {
        let new = register::pin(&plan, &text, s, &[], "bench", begin)
            .map_err(|e| anyhow::anyhow!("{}", e[0].message))?;
        store.schedule_add(&new, false).await?;
        ids.push(new.id);
    }
    // The simulated clock starts a little before the first tick.
    let epoch = Utc::now() + chrono::Duration::milliseconds(500);
    let clock = format!(
        "{},{},{}",
        begin.to_rfc3339(),
        setup.rate,
        epoch.to_rfc3339()
    );
    let mut procs: Vec<Proc> = (0..setup.processes)
        .map(|n| spawn(setup, &clock, n))
        .collect::<Result<_>>()?;
    let mut rng = Rng(setup.seed | 1);
    let mut report = Report::default();
    let wall = Instant::now();
    let span = Duration::from_secs_f64(setup.minutes as f64 * 60.0 / setup.rate);
    let deadline = wall + span * 3 + Duration::from_secs(60);
    let expected = setup.minutes as usize * setup.schedules;
    let mut next_chaos = Instant::now() + rng.between(setup.every);
    let mut pending: Vec<(Instant, usize, bool)> = Vec::new(); // (when, index, restart?)
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        // Continue stopped ones and restart killed ones whose time has come.
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _, _)| *at <= now);
        pending = later;
        for (_, i, restart) in due {
            if restart {
                procs[i] = spawn(setup, &clock, i)?;
            } else {
                signal(&procs[i], nix::sys::signal::Signal::SIGCONT);
                procs[i].stopped = false;
            }
        }
        let recorded = count_before(&store, end).await?;
        if recorded >= expected || now > deadline {
            break;
        }
        // Chaos only while ticks are still being made, and on a scheduler that is up.
        if now >= next_chaos && now < wall + span && (setup.kill || setup.stop) {
            next_chaos = now + rng.between(setup.every);
            let busiest = busiest(&store, &procs, &pending).await?;
            if let Some(i) = busiest {
                let kill = match (setup.kill, setup.stop) {
                    (true, true) => rng.next().is_multiple_of(2),
                    (kill, _) => kill,
                };
                let back =
                    now + rng.between((Duration::from_millis(200), Duration::from_millis(2000)));
                if kill {
                    signal(&procs[i], nix::sys::signal::Signal::SIGKILL);
                    let _ = procs[i].child.wait();
                    report.kills += 1;
                    pending.push((back, i, true));
                } else {
                    signal(&procs[i], nix::sys::signal::Signal::SIGSTOP);
                    procs[i].stopped = true;
                    report.stops += 1;
                    pending.push((back, i, false));
                }
            }
        }
    }
    report.wall = wall.elapsed();
    for p in &mut procs {
        signal(p, nix::sys::signal::Signal::SIGCONT);
        signal(p, nix::sys::signal::Signal::SIGTERM);
    }
    for p in &mut procs {
        let _ = p.child.wait();
    }
    count(&store, &ids, begin, end, &mut report).await?;
    store.close().await;
    Ok(report)
}

/// Index of the live scheduler that recorded the most ticks.
async fn busiest(
    store: &Store,
    procs: &[Proc],
    pending: &[(Instant, usize, bool)],
) -> Result<Option<usize>> {
    let by: HashMap<String, usize> = fired_by(store).await?.into_iter().collect();
    let mut best: Option<(usize, usize)> = None;
    for (i, p) in procs.iter().enumerate() {
        if p.stopped || pending.iter().any(|(_, j, _)| *j == i) {
            continue;
        }
        let pid = format!(":{}:", p.child.id());
        let n: usize = by
            .iter()
            .filter(|(id, _)| id.contains(&pid))
            .map(|(_, n)| *n)
            .sum();
        if best.is_none_or(|(_, m)| n >= m) {
            best = Some((i, n));
        }
    }
    Ok(best.map(|(i, _)| i))
}

async fn fired_by(store: &Store) -> Result<Vec<(String, usize)>> {
    let sql = "SELECT fired_by, COUNT(*) FROM schedule_fires GROUP BY fired_by";
    let rows: Vec<(String, i64)> = match store {
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
    };
    Ok(rows.into_iter().map(|(id, n)| (id, n as usize)).collect())
}

async fn count_before(store: &Store, end: DateTime<Utc>) -> Result<usize> {
    let sql = "SELECT COUNT(*) FROM schedule_fires WHERE tick_at < $1";
    let n: i64 = match store {
        Store::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(end.timestamp_millis())
                .fetch_one(pool)
                .await?
        }
        Store::Sqlite(pool) => {
            sqlx::query_scalar(sql)
                .bind(end.timestamp_millis())
                .fetch_one(pool)
                .await?
        }
    };
    Ok(n as usize)
}

async fn count(
    store: &Store,
    ids: &[String],
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
    report: &mut Report,
) -> Result<()> {
    // Every run a schedule started, by the tick its evidence names.
    let sql = "SELECT r.trigger, e.data FROM runs r JOIN events e ON e.run_id = r.id \
               WHERE e.kind = 'run.scheduled'";
    let rows: Vec<(String, sqlx::types::Json<serde_json::Value>)> = match store {
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
    };
    let mut runs_per_tick: HashMap<(String, i64), usize> = HashMap::new();
    for (trigger, data) in &rows {
        let id = data.0["schedule_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            *trigger == format!("schedule:{id}"),
            "run trigger {trigger} for {id}"
        );
        let tick = data.0["tick_at"].as_i64().unwrap_or_default();
        *runs_per_tick.entry((id, tick)).or_default() += 1;
    }
    // Duplicates anywhere, the ticks made after the span included; runs of the span only.
    report.duplicates = runs_per_tick.values().filter(|n| **n > 1).count();
    report.runs = runs_per_tick
        .iter()
        .filter(|((_, tick), _)| *tick < end.timestamp_millis())
        .map(|(_, n)| *n)
        .sum();
    let mut t = begin;
    while t < end {
        for id in ids {
            report.expected += 1;
            if !runs_per_tick.contains_key(&(id.clone(), t.timestamp_millis())) {
                report.missed += 1;
            }
        }
        t += chrono::Duration::minutes(1);
    }
    for id in ids {
        for f in store.schedule_fires(id, 1_000_000).await? {
            if f.tick_at >= end {
                continue;
            }
            if f.outcome == runway::store::FireOutcome::Started {
                report.started += 1;
                *report.per_scheduler.entry(f.fired_by.clone()).or_default() += 1;
                report.max_late_secs = report
                    .max_late_secs
                    .max((f.fired_at - f.tick_at).num_seconds());
            } else {
                report.other_outcomes += 1;
            }
        }
    }
    Ok(())
}

/// A fresh Postgres database on `server` for one run; the caller drops it with [`drop_db`].
pub async fn create_db(server: &str, name: &str) -> Result<String> {
    let admin = sqlx::PgPool::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

pub async fn drop_db(server: &str, name: &str) -> Result<()> {
    let admin = sqlx::PgPool::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(())
}
