//! The engine chaos harness, shared by `tests/engine_chaos.rs` (reduced runs in the suite)
//! and `benches/chaos.rs` (the full runs, printing figures; docs/RELIABILITY.md).
//!
//! The harness owns everything it breaks: a throwaway PostgreSQL cluster ([`Cluster`]:
//! `initdb` into a temp dir, a free port, `pg_ctl` start and stop, so it can restart the
//! database under the workers) and real `runway worker` processes ([`Workers`]) that it
//! SIGKILLs, SIGSTOPs and starts again. It never asks the engine whether the engine did
//! well: every shell step appends `S` (started) and `E` (ended) lines with its run, step,
//! attempt, idempotency key, its worker's pid and the time to a ledger file (`O_APPEND`,
//! one short `write` each, so concurrent writers never interleave), and losses, duplicates
//! and overlaps are counted from that ledger and held against the store's rows and events
//! afterwards ([`Audit`]), with every run's hash chain verified.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use runway::engine::Origin;
use runway::store::Store;

// ------------------------------------------------------------------------- randomness

/// A small deterministic generator (xorshift64*), so a run can be repeated by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next() % span)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------- cluster

/// A PostgreSQL cluster of our own in a temp dir, on a free port, stopped and removed when
/// dropped. Run as the `postgres` system user when we are root (initdb refuses root).
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// How the database is stopped: `pg_ctl stop -m fast` (clients disconnected, a clean
/// shutdown) or `-m immediate` (no shutdown checkpoint: crash recovery on the next start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    Fast,
    Immediate,
}

impl StopMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

fn pg_bin() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure!(
        !path.is_empty(),
        "no initdb under /usr/lib/postgresql/*/bin or on PATH: install PostgreSQL (Debian: \
         apt-get install postgresql)"
    );
    Ok(Path::new(&path)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_owned())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Cluster {
    /// `initdb` and start a new cluster (trust auth, `fsync=off`: the machine does not
    /// crash, the database process does, which fsync does not change).
    pub fn new() -> Result<Cluster> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("runway-chaos-pg")
            .tempdir()?;
        let as_postgres = nix::unistd::Uid::effective().is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()?
                .success();
            ensure!(ok, "chown postgres {}", dir.path().display());
        }
        let cluster = Cluster {
            bin,
            port: free_port()?,
            dir,
            as_postgres,
        };
        let data = cluster.data();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .output()?;
        ensure!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The server URL (database `postgres`).
    pub fn server(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()?;
        ensure!(
            status.success(),
            "pg_ctl start failed; see {}",
            self.log().display()
        );
        Ok(())
    }

    pub fn stop(&self, mode: StopMode) -> Result<()> {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", mode.as_str(), "stop"])
            .stdout(Stdio::null())
            .status()?;
        ensure!(status.success(), "pg_ctl stop -m {}", mode.as_str());
        Ok(())
    }

    /// A fresh database on this cluster.
    pub async fn create_db(&self, name: &str) -> Result<String> {
        let admin = sqlx::PgPool::connect(&self.server()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok(self.url(name))
    }

    /// `pg_terminate_backend` on every other client of `database`: how many were ended.
    pub async fn terminate_backends(&self, database: &str) -> Result<u64> {
        let admin = sqlx::PgPool::connect(&self.server()).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .fetch_one(&admin)
        .await?;
        admin.close().await;
        Ok(n as u64)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------- workers

/// `runway worker` processes, each slot restarted under a new pid when it dies.
pub struct Workers {
    dir: PathBuf,
    url: String,
    lease: Duration,
    concurrency: usize,
    slots: Vec<Option<Child>>,
    stopped: Vec<bool>,
    /// Processes started over the run, restarts included.
    pub started: usize,
}

impl Workers {
    pub fn start(
        dir: &Path,
        url: &str,
        n: usize,
        concurrency: usize,
        lease: Duration,
    ) -> Result<Workers> {
        let mut workers = Workers {
            dir: dir.to_owned(),
            url: url.to_owned(),
            lease,
            concurrency,
            slots: (0..n).map(|_| None).collect(),
            stopped: vec![false; n],
            started: 0,
        };
        for i in 0..n {
            workers.spawn(i)?;
        }
        Ok(workers)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn spawn(&mut self, i: usize) -> Result<u32> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("worker-{i}.log")))?;
        let child = Command::new(env!("CARGO_BIN_EXE_runway"))
            .args(["worker", "--no-scheduler", "--concurrency"])
            .arg(self.concurrency.to_string())
            .arg("--lease")
            .arg(format!("{}ms", self.lease.as_millis()))
            .current_dir(&self.dir)
            .env("RUNWAY_DATABASE_URL", &self.url)
            .env("RUNWAY_WORKFLOWS", &self.dir)
            .env("RUNWAY_LOG", "warn,runway=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("runway worker starts")?;
        let pid = child.id();
        self.slots[i] = Some(child);
        self.stopped[i] = false;
        self.started += 1;
        Ok(pid)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slots[i].as_ref().map(Child::id)
    }

    pub fn signal(&self, i: usize, sig: Signal) {
        if let Some(pid) = self.pid(i) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// SIGKILL, reaped: returns the pid that died.
    pub fn kill(&mut self, i: usize) -> Option<u32> {
        let mut child = self.slots[i].take()?;
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        Some(pid)
    }

    pub fn stop(&mut self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
        self.stopped[i] = true;
    }

    pub fn cont(&mut self, i: usize) {
        self.signal(i, Signal::SIGCONT);
        self.stopped[i] = false;
    }

    /// Slots whose process has exited by itself (not killed by us): their pids and status.
    pub fn exited(&mut self) -> Vec<(usize, u32, String)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push((i, child.id(), status.to_string()));
                *slot = None;
            }
        }
        out
    }

    /// SIGTERM to all (continued first), then wait for them.
    pub fn shutdown(&mut self) {
        for i in 0..self.slots.len() {
            self.signal(i, Signal::SIGCONT);
            self.signal(i, Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for slot in &mut self.slots {
            if let Some(child) = slot {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            *slot = None;
        }
    }

    /// The last lines of every worker's log, for a failure message.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.slots.len() {
            let text = std::fs::read_to_string(self.dir.join(format!("worker-{i}.log")))
                .unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- worker-{i}.log\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.slots.iter_mut().flatten() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                Signal::SIGCONT,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// --------------------------------------------------------------------------- playbook

/// The line a shell step appends to the ledger: `TAG run step attempt key worker-pid ns`.
fn ledger_line(tag: &str, ledger: &Path) -> String {
    format!(
        "printf '{tag} %s %s %s %s %s %s\\n' \"$RUNWAY_RUN_ID\" \"$RUNWAY_STEP_ID\" \
         \"$RUNWAY_ATTEMPT\" \"$RUNWAY_IDEMPOTENCY_KEY\" \"$PPID\" \"$(date +%s%N)\" >> '{}'",
        ledger.display()
    )
}

/// A shell step's script: start line, `secs` of work, end line.
fn work(ledger: &Path, secs: f64) -> String {
    format!(
        "{}\nsleep {secs}\n{}",
        ledger_line("S", ledger),
        ledger_line("E", ledger)
    )
}

/// The 20-step DAG of scenario 1: a fan-out of four joined in two pairs, a step that fails
/// once per run (a marker file, so it fails exactly once whatever its attempt numbers are)
/// and then succeeds on its retry, a durable `wait` alongside it, a join, a fan-out of five
/// and its join, then a chain of four. Nineteen shell steps and one wait. Every step has
/// attempts to spare (`defaults.retry`): an attempt lost with its worker counts as one.
pub fn dag(dir: &Path, step_secs: f64, wait: &str, attempts: u32) -> String {
    let ledger = dir.join("ledger");
    let w = work(&ledger, step_secs);
    let flaky = format!(
        "{}\nif [ ! -e '{dir}/flaky-'\"$RUNWAY_RUN_ID\" ]; then\n  : > '{dir}/flaky-'\"$RUNWAY_RUN_ID\"\n  \
         {}\n  exit 1\nfi\nsleep {step_secs}\n{}",
        ledger_line("S", &ledger),
        ledger_line("F", &ledger),
        ledger_line("E", &ledger),
        dir = dir.display(),
    );
    let mut s = format!(
        "runway: 1\nname: chaos\ndefaults:\n  retry: {{ attempts: {attempts}, backoff: 200ms, max_backoff: 1s }}\nsteps:\n"
    );
    let shell = |s: &mut String, id: &str, needs: &[&str], script: &str| {
        s.push_str(&format!(
            "  - id: {id}\n    needs: [{}]\n",
            needs.join(", ")
        ));
        s.push_str("    shell:\n      script: |\n");
        for line in script.lines() {
            s.push_str(&format!("        {line}\n"));
        }
    };
    shell(&mut s, "a", &[], &w);
    for b in ["b1", "b2", "b3", "b4"] {
        shell(&mut s, b, &["a"], &w);
    }
    shell(&mut s, "c", &["b1", "b2"], &w);
    shell(&mut s, "d", &["b3", "b4"], &w);
    shell(&mut s, "flaky", &["c"], &flaky);
    s.push_str(&format!(
        "  - id: pause\n    needs: [d]\n    wait: {wait}\n"
    ));
    shell(&mut s, "join", &["flaky", "pause"], &w);
    for g in ["g1", "g2", "g3", "g4", "g5"] {
        shell(&mut s, g, &["join"], &w);
    }
    shell(&mut s, "h", &["g1", "g2", "g3", "g4", "g5"], &w);
    for (id, after) in [("i", "h"), ("j", "i"), ("k", "j"), ("l", "k")] {
        shell(&mut s, id, &[after], &w);
    }
    s
}

/// The shell steps of [`dag`] (every step but the wait).
pub const DAG_SHELL_STEPS: usize = 19;
pub const DAG_STEPS: usize = 20;

/// Creates runs of one playbook (written to `dir/chaos.yaml` for the record).
pub struct Starter {
    plan: runway::plan::Plan,
    text: String,
}

impl Starter {
    pub fn new(dir: &Path, text: &str) -> Result<Starter> {
        let source = runway::source::Source {
            name: "chaos.yaml".into(),
            text: text.to_owned(),
        };
        std::fs::write(dir.join("chaos.yaml"), text)?;
        Ok(Starter {
            plan: runway::engine::compile(source, dir)?,
            text: text.to_owned(),
        })
    }

    pub async fn start(&self, store: &Store, runs: usize) -> Result<Vec<String>> {
        let origin = Origin {
            starter: "chaos".into(),
            trigger: "manual".into(),
            parent: None,
        };
        let mut ids = Vec::with_capacity(runs);
        for _ in 0..runs {
            let new =
                runway::engine::new_run(&self.plan, &self.text, serde_json::Map::new(), &origin)
                    .map_err(|e| anyhow::anyhow!(e))?;
            ids.push(store.run_create(&new).await?.id);
        }
        Ok(ids)
    }
}

/// Compiles `text` and creates `runs` runs of it at once.
pub async fn create_runs(
    store: &Store,
    dir: &Path,
    text: &str,
    runs: usize,
) -> Result<Vec<String>> {
    Starter::new(dir, text)?.start(store, runs).await
}

// ----------------------------------------------------------------------------- ledger

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tag: char,
    pub run: String,
    pub step: String,
    pub attempt: i32,
    pub key: String,
    pub pid: u32,
    pub at: DateTime<Utc>,
}

/// Every line of the ledger; a line that does not parse is an error (writers interleaved).
pub fn read_ledger(dir: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(dir.join("ledger")).unwrap_or_default();
    let mut lines = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let f: Vec<&str> = l.split(' ').collect();
        ensure!(f.len() == 7, "ledger line {}: `{l}`", n + 1);
        let ns: i64 = f[6]
            .parse()
            .with_context(|| format!("ledger line {}", n + 1))?;
        lines.push(Line {
            tag: f[0].chars().next().unwrap_or('?'),
            run: f[1].to_owned(),
            step: f[2].to_owned(),
            attempt: f[3].parse()?,
            key: f[4].to_owned(),
            pid: f[5].parse()?,
            at: DateTime::from_timestamp_nanos(ns),
        });
    }
    Ok(lines)
}

// ------------------------------------------------------------------------------ audit

/// What the ledger and the store say, counted from outside the engine.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub runs: usize,
    pub runs_succeeded: usize,
    /// Runs not succeeded, with their status (for the failure message).
    pub runs_not_succeeded: Vec<(String, String)>,
    /// Runs whose event chain does not verify.
    pub chains_broken: usize,
    /// Shell steps of succeeded runs without an `E` line for their recorded attempt.
    pub steps_lost: usize,
    /// `E` lines (a step's side effect done) beyond the recorded attempt's, that are not
    /// the attempt that was running when its worker died or stalled (`step.lease_expired`).
    pub executed_again: usize,
    /// Attempts run again because their worker died (or stalled) before recording them.
    pub attempts_lost: usize,
    /// Of those, how many had done their side effect (an `E` line) before the worker died.
    pub lost_after_side_effect: usize,
    /// Steps with more than one idempotency key across their attempts.
    pub keys_changed: usize,
    /// Two attempts of one step whose `S`..`E` spans overlap in time.
    pub concurrent: usize,
    /// Flaky attempts (an `F` line): the retry path.
    pub flaky_failures: usize,
    /// Problems found, in words (empty when all is well).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Expired {
    pub run: String,
    pub step: String,
    pub attempt: i32,
    /// The lease holder's worker id (`host:pid:suffix`).
    pub worker: String,
    pub at: DateTime<Utc>,
}

/// Events of one kind, from the store.
/// run_id, step_id, attempt, data, at: an `events` row as the harness reads it.
type EventRow = (
    String,
    Option<String>,
    Option<i32>,
    sqlx::types::Json<serde_json::Value>,
    i64,
);

pub async fn events_of_kind(
    store: &Store,
    kind: &str,
) -> Result<Vec<(String, String, i32, serde_json::Value, DateTime<Utc>)>> {
    let Store::Postgres(pool) = store else {
        bail!("the engine chaos harness runs on Postgres");
    };
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT run_id, step_id, attempt, data, at FROM events WHERE kind = $1 ORDER BY at",
    )
    .bind(kind)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(run, step, attempt, data, at)| {
            (
                run,
                step.unwrap_or_default(),
                attempt.unwrap_or_default(),
                data.0,
                DateTime::from_timestamp_millis(at).unwrap_or_default(),
            )
        })
        .collect())
}

pub async fn expired_leases(store: &Store) -> Result<Vec<Expired>> {
    Ok(events_of_kind(store, "step.lease_expired")
        .await?
        .into_iter()
        .map(|(run, step, attempt, data, at)| Expired {
            run,
            step,
            attempt,
            worker: data["worker"].as_str().unwrap_or_default().to_owned(),
            at,
        })
        .collect())
}

/// When each attempt was claimed (`step.running`), by (run, step, attempt).
pub async fn claims(store: &Store) -> Result<HashMap<(String, String, i32), DateTime<Utc>>> {
    let mut out = HashMap::new();
    for (run, step, attempt, _, at) in events_of_kind(store, "step.running").await? {
        out.entry((run, step, attempt)).or_insert(at);
    }
    Ok(out)
}

/// Counts runs, losses, re-executions, overlaps and chain breaks for `runs`.
pub async fn audit(store: &Store, dir: &Path, runs: &[String]) -> Result<Audit> {
    let mut a = Audit {
        runs: runs.len(),
        ..Audit::default()
    };
    let ledger = read_ledger(dir)?;
    let mut by_step: BTreeMap<(String, String), Vec<&Line>> = BTreeMap::new();
    for l in &ledger {
        by_step
            .entry((l.run.clone(), l.step.clone()))
            .or_default()
            .push(l);
    }
    a.flaky_failures = ledger.iter().filter(|l| l.tag == 'F').count();
    let lost: BTreeSet<(String, String, i32)> = expired_leases(store)
        .await?
        .into_iter()
        .map(|e| (e.run, e.step, e.attempt))
        .collect();
    a.attempts_lost = lost.len();
    for run_id in runs {
        let run = store.run_get(run_id).await?;
        if run.status == runway::state::RunStatus::Succeeded {
            a.runs_succeeded += 1;
        } else {
            a.runs_not_succeeded
                .push((run_id.clone(), run.status.as_str().to_owned()));
        }
        if let Some(seq) = store.events_verify(run_id).await? {
            a.chains_broken += 1;
            a.problems
                .push(format!("run {run_id}: event chain breaks at seq {seq}"));
        }
        for row in store.steps_of_run(run_id).await? {
            if run.status != runway::state::RunStatus::Succeeded
                && row.status != runway::state::StepStatus::Succeeded
            {
                a.problems.push(format!(
                    "run {run_id}: step {} {} at attempt {}: {}",
                    row.step_id,
                    row.status,
                    row.attempt,
                    row.error.as_deref().unwrap_or("no error")
                ));
            }
            let key = (run_id.clone(), row.step_id.clone());
            let lines = by_step.get(&key).map(Vec::as_slice).unwrap_or_default();
            if lines.is_empty() && row.step_id == "pause" {
                continue;
            }
            let keys: BTreeSet<&str> = lines.iter().map(|l| l.key.as_str()).collect();
            if keys.len() > 1 {
                a.keys_changed += 1;
                a.problems.push(format!(
                    "{run_id}/{}: idempotency keys {keys:?}",
                    row.step_id
                ));
            }
            if run.status == runway::state::RunStatus::Succeeded
                && !lines
                    .iter()
                    .any(|l| l.tag == 'E' && l.attempt == row.attempt)
            {
                a.steps_lost += 1;
                a.problems.push(format!(
                    "{run_id}/{}: recorded {} at attempt {} without its side effect",
                    row.step_id, row.status, row.attempt
                ));
            }
            let mut ends: BTreeMap<i32, usize> = BTreeMap::new();
            for l in lines.iter().filter(|l| l.tag == 'E') {
                *ends.entry(l.attempt).or_default() += 1;
            }
            for (&attempt, &n) in &ends {
                let explained = attempt == row.attempt
                    || lost.contains(&(run_id.clone(), row.step_id.clone(), attempt));
                if lost.contains(&(run_id.clone(), row.step_id.clone(), attempt)) {
                    a.lost_after_side_effect += 1;
                }
                if n > 1 || !explained {
                    a.executed_again += n - usize::from(explained);
                    a.problems.push(format!(
                        "{run_id}/{}: attempt {attempt} ended {n} time(s); recorded attempt {} ({})",
                        row.step_id, row.attempt, row.status
                    ));
                }
            }
            a.concurrent += overlaps(lines);
        }
    }
    for (id, status) in &a.runs_not_succeeded {
        a.problems.push(format!("run {id} ended {status}"));
    }
    Ok(a)
}

/// Pairs of attempts of one step whose executions overlapped in time: each attempt spans
/// from its `S` line to its `E` or `F` line (or to forever, if it has neither: its process
/// died with its worker's group or was killed, which cannot be told apart from here, so
/// the span ends at its next attempt's start only when the store says it was lost).
fn overlaps(lines: &[&Line]) -> usize {
    let mut spans: BTreeMap<i32, (DateTime<Utc>, Option<DateTime<Utc>>)> = BTreeMap::new();
    for l in lines {
        let span = spans.entry(l.attempt).or_insert((l.at, None));
        match l.tag {
            'S' => span.0 = l.at,
            _ => span.1 = Some(l.at),
        }
    }
    let spans: Vec<(i32, DateTime<Utc>, Option<DateTime<Utc>>)> =
        spans.into_iter().map(|(a, (s, e))| (a, s, e)).collect();
    let mut n = 0;
    for (i, (_, s1, e1)) in spans.iter().enumerate() {
        for (_, s2, _) in &spans[i + 1..] {
            // Attempts start in order; one still going when the next starts overlaps it.
            // An attempt without an end (its process was killed) did not do its side
            // effect, so it cannot have raced the next one to it.
            if let Some(e1) = e1
                && e1 > s2
                && s1 < s2
            {
                n += 1;
            }
        }
    }
    n
}

// ---------------------------------------------------------------------- percentiles

/// The `p`th percentile (nearest rank) of sorted `xs`.
pub fn percentile(xs: &[Duration], p: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// Waits until every run is terminal (or `deadline`), calling `tick` about every 100 ms.
pub async fn until_runs_end(
    store: &Store,
    runs: usize,
    deadline: Instant,
    mut tick: impl AsyncFnMut() -> Result<()>,
) -> Result<bool> {
    let Store::Postgres(pool) = store else {
        bail!("the engine chaos harness runs on Postgres");
    };
    let mut last_check = Instant::now() - Duration::from_secs(1);
    loop {
        tick().await?;
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            let ended: Result<i64, _> = sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled')",
            )
            .fetch_one(pool)
            .await;
            // The database may be down on purpose (scenario 3): ask again later.
            if let Ok(n) = ended
                && n as usize >= runs
            {
                return Ok(true);
            }
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Appends one line to `dir/harness.log` (what the harness did, and when).
pub fn note(dir: &Path, text: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("harness.log"))
    {
        let _ = writeln!(f, "{} {text}", Utc::now().to_rfc3339());
    }
}

// ------------------------------------------------------------------ scenario 1: SIGKILL

/// Scenario 1: `runs` runs of [`dag`], `workers` workers, a random one SIGKILLed every
/// `every` and started again at once.
#[derive(Debug, Clone)]
pub struct KillSetup {
    pub runs: usize,
    /// Runs open at once: new runs are started as others end, so the workers are busy but
    /// not saturated (a saturated queue makes a taken-over step wait behind the others,
    /// which measures the backlog, not the takeover).
    pub in_flight: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub lease: Duration,
    pub step_secs: f64,
    pub wait: String,
    pub attempts: u32,
    pub every: (Duration, Duration),
    pub seed: u64,
    pub deadline: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct KillReport {
    pub audit: Audit,
    pub kills: usize,
    pub processes: usize,
    /// Worker processes that exited by themselves (a crash, or giving up): must be 0.
    pub exited_by_themselves: Vec<String>,
    /// Kill → the orphaned attempt's next attempt claimed, one per orphaned attempt.
    pub takeovers: Vec<Duration>,
    /// Kill → the orphaned step reaped (ready again, its job pushed): the lease bound.
    pub reaped: Vec<Duration>,
    /// Leases that expired on a worker we did not kill (a stall under load).
    pub expired_on_live_workers: usize,
    pub wall: Duration,
    pub all_ended: bool,
    pub lease: Duration,
}

impl KillReport {
    pub fn p_reaped(&self, p: f64) -> Duration {
        let mut xs = self.reaped.clone();
        xs.sort();
        percentile(&xs, p)
    }

    pub fn p(&self, p: f64) -> Duration {
        let mut xs = self.takeovers.clone();
        xs.sort();
        percentile(&xs, p)
    }

    pub fn print(&self, title: &str) {
        let a = &self.audit;
        println!("{title}");
        println!("| figure | value |");
        println!("| --- | --- |");
        println!(
            "| runs completed (succeeded) | {} / {} |",
            a.runs_succeeded, a.runs
        );
        println!("| steps lost | {} |", a.steps_lost);
        println!("| finished steps executed again | {} |", a.executed_again);
        println!(
            "| attempts lost with their worker (run again) | {} |",
            a.attempts_lost
        );
        println!(
            "| of those, side effect done before the kill | {} |",
            a.lost_after_side_effect
        );
        println!("| attempts of one step overlapping | {} |", a.concurrent);
        println!("| idempotency key changed | {} |", a.keys_changed);
        println!("| event chains that do not verify | {} |", a.chains_broken);
        println!("| flaky failures retried | {} |", a.flaky_failures);
        println!("| SIGKILLs | {} |", self.kills);
        println!(
            "| worker processes (restarts included) | {} |",
            self.processes
        );
        println!(
            "| workers that exited by themselves | {} |",
            self.exited_by_themselves.len()
        );
        println!(
            "| kill → step reaped (ready again) p50 / p99 / max | {:.2} s / {:.2} s / {:.2} s (lease {:.1} s) |",
            self.p_reaped(50.0).as_secs_f64(),
            self.p_reaped(99.0).as_secs_f64(),
            self.p_reaped(100.0).as_secs_f64(),
            self.lease.as_secs_f64()
        );
        println!(
            "| kill → next attempt started p50 / p99 / max | {:.2} s / {:.2} s / {:.2} s |",
            self.p(50.0).as_secs_f64(),
            self.p(99.0).as_secs_f64(),
            self.p(100.0).as_secs_f64(),
        );
        println!(
            "| leases expired on live workers | {} |",
            self.expired_on_live_workers
        );
        println!("| wall time | {:.0} s |", self.wall.as_secs_f64());
        for p in a.problems.iter().take(20) {
            println!("  problem: {p}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let a = &self.audit;
        serde_json::json!({
            "scenario": "sigkill", "runs": a.runs, "succeeded": a.runs_succeeded,
            "steps_lost": a.steps_lost, "executed_again": a.executed_again,
            "attempts_lost": a.attempts_lost, "lost_after_side_effect": a.lost_after_side_effect,
            "concurrent": a.concurrent, "keys_changed": a.keys_changed,
            "chains_broken": a.chains_broken, "flaky_failures": a.flaky_failures,
            "kills": self.kills, "processes": self.processes,
            "exited_by_themselves": self.exited_by_themselves.len(),
            "takeover_p50_s": self.p(50.0).as_secs_f64(),
            "takeover_p99_s": self.p(99.0).as_secs_f64(),
            "takeover_max_s": self.p(100.0).as_secs_f64(),
            "takeovers": self.takeovers.len(),
            "reaped_p50_s": self.p_reaped(50.0).as_secs_f64(),
            "reaped_p99_s": self.p_reaped(99.0).as_secs_f64(),
            "reaped_max_s": self.p_reaped(100.0).as_secs_f64(),
            "expired_on_live_workers": self.expired_on_live_workers,
            "lease_s": self.lease.as_secs_f64(), "wall_s": self.wall.as_secs_f64(),
        })
    }
}

/// A worker SIGKILLed at `at` (its pid).
#[derive(Debug, Clone, Copy)]
struct Kill {
    pid: u32,
    at: DateTime<Utc>,
}

fn worker_pid(worker_id: &str) -> Option<u32> {
    worker_id.split(':').nth(1)?.parse().ok()
}

/// Runs scenario 1 on its own cluster in `dir`.
pub async fn sigkill(setup: &KillSetup, dir: &Path) -> Result<KillReport> {
    let cluster = Cluster::new()?;
    let url = cluster.create_db("runway_chaos").await?;
    let store = Store::connect(&url).await?;
    let text = dag(dir, setup.step_secs, &setup.wait, setup.attempts);
    let starter = Starter::new(dir, &text)?;
    let mut runs = starter
        .start(&store, setup.in_flight.min(setup.runs))
        .await?;
    let wall = Instant::now();
    let mut workers = Workers::start(dir, &url, setup.workers, setup.concurrency, setup.lease)?;
    let mut rng = Rng::new(setup.seed);
    let mut kills: Vec<Kill> = Vec::new();
    let mut exited = Vec::new();
    let mut next = Instant::now() + rng.between(setup.every);
    let mut topped_up = Instant::now();
    let all_ended = until_runs_end(&store, setup.runs, wall + setup.deadline, async || {
        if runs.len() < setup.runs && topped_up.elapsed() >= Duration::from_millis(250) {
            topped_up = Instant::now();
            let open = setup
                .in_flight
                .saturating_sub(runs.len() - ended_runs(&store).await?);
            let more = starter
                .start(&store, open.min(setup.runs - runs.len()))
                .await?;
            runs.extend(more);
        }
        for (i, pid, status) in workers.exited() {
            exited.push(format!("worker {pid} exited: {status}"));
            workers.spawn(i)?;
        }
        if Instant::now() >= next {
            next = Instant::now() + rng.between(setup.every);
            let i = rng.below(workers.len());
            if let Some(pid) = workers.kill(i) {
                kills.push(Kill {
                    pid,
                    at: Utc::now(),
                });
                note(dir, &format!("SIGKILL worker {pid}"));
            }
            workers.spawn(i)?;
        }
        Ok(())
    })
    .await?;
    let elapsed = wall.elapsed();
    workers.shutdown();
    let audit = audit(&store, dir, &runs).await?;
    // Takeover latency: from the kill of the lease holder to the next attempt's claim.
    let claimed = claims(&store).await?;
    let by_pid: HashMap<u32, DateTime<Utc>> = kills.iter().map(|k| (k.pid, k.at)).collect();
    let mut takeovers = Vec::new();
    let mut reaped = Vec::new();
    let mut expired_on_live_workers = 0;
    for e in expired_leases(&store).await? {
        let killed = worker_pid(&e.worker).and_then(|pid| by_pid.get(&pid));
        let Some(killed_at) = killed else {
            expired_on_live_workers += 1;
            continue;
        };
        reaped.push((e.at - *killed_at).to_std().unwrap_or_default());
        if let Some(next) = claimed.get(&(e.run.clone(), e.step.clone(), e.attempt + 1)) {
            takeovers.push((*next - *killed_at).to_std().unwrap_or_default());
        }
    }
    store.close().await;
    drop(cluster);
    Ok(KillReport {
        audit,
        kills: kills.len(),
        processes: workers.started,
        exited_by_themselves: exited,
        takeovers,
        reaped,
        expired_on_live_workers,
        wall: elapsed,
        all_ended,
        lease: setup.lease,
    })
}

// ------------------------------------------------------- a step that kills its worker

/// One run of a step that SIGKILLs the worker running it, every attempt, with workers
/// started again as they die: the run must fail once the step's attempts (lost ones
/// included) are used up, not be taken over forever. Returns the run's status, the step's
/// recorded attempt and error, and how many workers it killed.
pub async fn worker_killer(
    dir: &Path,
    lease: Duration,
    deadline: Duration,
) -> Result<KillerReport> {
    let cluster = Cluster::new()?;
    let url = cluster.create_db("runway_chaos").await?;
    let store = Store::connect(&url).await?;
    let text = format!(
        "runway: 1\nname: chaos\nsteps:\n  - id: killer\n    shell:\n      script: |\n        \
         {}\n        kill -9 \"$PPID\"\n        sleep 5\n",
        ledger_line("S", &dir.join("ledger"))
    );
    let runs = create_runs(&store, dir, &text, 1).await?;
    let mut workers = Workers::start(dir, &url, 2, 2, lease)?;
    let mut deaths = 0;
    let ended = until_runs_end(&store, 1, Instant::now() + deadline, async || {
        for (i, pid, _) in workers.exited() {
            deaths += 1;
            note(dir, &format!("worker {pid} died; started again"));
            workers.spawn(i)?;
        }
        Ok(())
    })
    .await?;
    workers.shutdown();
    let run = store.run_get(&runs[0]).await?;
    let step = store
        .steps_of_run(&runs[0])
        .await?
        .into_iter()
        .find(|s| s.step_id == "killer")
        .context("the step's row")?;
    let started = read_ledger(dir)?.len();
    let chain_ok = store.events_verify(&runs[0]).await?.is_none();
    store.close().await;
    Ok(KillerReport {
        ended,
        run_status: run.status.as_str().to_owned(),
        step_status: step.status.as_str().to_owned(),
        attempt: step.attempt,
        error: step.error.unwrap_or_default(),
        deaths,
        started,
        chain_ok,
    })
}

#[derive(Debug, Clone)]
pub struct KillerReport {
    pub ended: bool,
    pub run_status: String,
    pub step_status: String,
    pub attempt: i32,
    pub error: String,
    /// Workers that died (killed by the step).
    pub deaths: usize,
    /// Times the step started (ledger `S` lines).
    pub started: usize,
    pub chain_ok: bool,
}

// ------------------------------------------------------- scenario 2: slow, not dead

/// A long shell step that says how it ended: `S` when it starts, `T` when it is sent
/// SIGTERM (its worker stopping it: lease lost, timeout, cancel), `E` when it finishes.
/// The sleep runs in the background and bash waits for it, so the trap runs at once.
fn long_work(ledger: &Path, secs: f64) -> String {
    format!(
        "{}\ntrap '{}; exit 143' TERM\nsleep {secs} &\nwait $!\n{}",
        ledger_line("S", ledger),
        ledger_line("T", ledger).replace('\'', "'\\''"),
        ledger_line("E", ledger)
    )
}

/// A chain of `steps` long steps, attempts to spare.
pub fn chain(dir: &Path, steps: usize, step_secs: f64, attempts: u32) -> String {
    let ledger = dir.join("ledger");
    let mut s = format!(
        "runway: 1\nname: chaos\ndefaults:\n  retry: {{ attempts: {attempts}, backoff: 200ms }}\nsteps:\n"
    );
    for i in 0..steps {
        s.push_str(&format!("  - id: s{i}\n    shell:\n      script: |\n"));
        for line in long_work(&ledger, step_secs).lines() {
            s.push_str(&format!("        {line}\n"));
        }
    }
    s
}

#[derive(Debug, Clone)]
pub struct StopSetup {
    pub runs: usize,
    /// Runs open at once (see [`KillSetup::in_flight`]): fewer than the workers' slots, so
    /// a taken-over step is claimed at once rather than after a backlog.
    pub in_flight: usize,
    pub steps: usize,
    pub step_secs: f64,
    pub workers: usize,
    pub concurrency: usize,
    pub lease: Duration,
    /// Stop rounds at most (fewer if the runs end first).
    pub rounds: usize,
    /// After the stopped worker's steps are all taken over, it stays stopped this much
    /// longer (drawn at random) before SIGCONT.
    pub hold: (Duration, Duration),
    pub seed: u64,
    pub deadline: Duration,
}

/// What became of one attempt held by a stopped worker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleFate {
    /// Its worker, continued, found the lease lost and SIGTERMed its process group (`T`).
    KilledOnResume,
    /// It finished while its worker was stopped (`E`); its worker's completion was refused.
    FinishedResultRefused,
    /// Neither line: its process was SIGKILLed, which bash cannot trap: the reaper that
    /// reaped the attempt sweeps its processes (by the attempt's token) on its own host.
    KilledWhenReaped,
}

#[derive(Debug, Clone, Default)]
pub struct StopReport {
    pub audit: Audit,
    pub rounds: usize,
    /// Attempts held by a stopped worker and taken over by another.
    pub stale_attempts: usize,
    /// Events recorded for a stale attempt after its lease expired (a completion, a
    /// retry, a park): must be 0.
    pub stale_accepted: usize,
    /// Steps with two attempts both recorded as ended: must be 0.
    pub both_recorded: usize,
    /// Stale attempts whose process was still running when the takeover started.
    pub ran_concurrently: usize,
    /// The longest such overlap (takeover's start to the stale process' end).
    pub max_overlap: Duration,
    pub fates: BTreeMap<String, usize>,
    /// Stopped → the step's takeover claimed, per stale attempt.
    pub takeovers: Vec<Duration>,
    /// Log lines of the continued workers saying they dropped or were refused a result.
    pub refusals_logged: usize,
    pub exited_by_themselves: Vec<String>,
    pub all_ended: bool,
    pub lease: Duration,
    pub wall: Duration,
}

impl StopReport {
    pub fn p(&self, p: f64) -> Duration {
        let mut xs = self.takeovers.clone();
        xs.sort();
        percentile(&xs, p)
    }

    pub fn print(&self, title: &str) {
        let a = &self.audit;
        println!("{title}");
        println!("| figure | value |");
        println!("| --- | --- |");
        println!(
            "| runs completed (succeeded) | {} / {} |",
            a.runs_succeeded, a.runs
        );
        println!("| SIGSTOP rounds (each past the lease) | {} |", self.rounds);
        println!(
            "| attempts held by a stopped worker, taken over | {} |",
            self.stale_attempts
        );
        println!(
            "| **stale completions accepted** | **{}** |",
            self.stale_accepted
        );
        println!(
            "| **steps with two attempts recorded** | **{}** |",
            self.both_recorded
        );
        for (fate, n) in &self.fates {
            println!("| stale attempt: {fate} | {n} |");
        }
        println!(
            "| stale process still running when the takeover started | {} (longest overlap {:.1} s) |",
            self.ran_concurrently,
            self.max_overlap.as_secs_f64()
        );
        println!(
            "| results dropped or refused (continued workers' logs) | {} |",
            self.refusals_logged
        );
        println!("| steps lost | {} |", a.steps_lost);
        println!("| finished steps executed again | {} |", a.executed_again);
        println!("| event chains that do not verify | {} |", a.chains_broken);
        println!(
            "| takeover after SIGSTOP p50 / max | {:.2} s / {:.2} s (lease {:.1} s) |",
            self.p(50.0).as_secs_f64(),
            self.p(100.0).as_secs_f64(),
            self.lease.as_secs_f64()
        );
        println!(
            "| workers that exited by themselves | {} |",
            self.exited_by_themselves.len()
        );
        println!("| wall time | {:.0} s |", self.wall.as_secs_f64());
        for p in a.problems.iter().take(20) {
            println!("  problem: {p}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let a = &self.audit;
        serde_json::json!({
            "scenario": "sigstop", "runs": a.runs, "succeeded": a.runs_succeeded,
            "rounds": self.rounds, "stale_attempts": self.stale_attempts,
            "stale_accepted": self.stale_accepted, "both_recorded": self.both_recorded,
            "ran_concurrently": self.ran_concurrently,
            "max_overlap_s": self.max_overlap.as_secs_f64(), "fates": self.fates,
            "refusals_logged": self.refusals_logged, "steps_lost": a.steps_lost,
            "executed_again": a.executed_again, "chains_broken": a.chains_broken,
            "takeover_p50_s": self.p(50.0).as_secs_f64(),
            "takeover_max_s": self.p(100.0).as_secs_f64(),
            "exited_by_themselves": self.exited_by_themselves.len(),
            "lease_s": self.lease.as_secs_f64(), "wall_s": self.wall.as_secs_f64(),
        })
    }
}

/// (run, step, attempt).
type Attempt = (String, String, i32);

/// A stopped worker's pid, when it was stopped and when it was continued.
type Stopped = (u32, DateTime<Utc>, DateTime<Utc>);

/// The attempts `pid`'s worker holds now: (run, step, attempt).
async fn held_by(store: &Store, pid: u32) -> Result<Vec<(String, String, i32)>> {
    let Store::Postgres(pool) = store else {
        bail!("the engine chaos harness runs on Postgres");
    };
    Ok(sqlx::query_as(
        "SELECT run_id, step_id, attempt FROM step_runs WHERE status = 'running' \
         AND lease_owner LIKE $1",
    )
    .bind(format!("%:{pid}:%"))
    .fetch_all(pool)
    .await?)
}

/// Scenario 2: a worker running steps is SIGSTOPped until every step it holds has been
/// taken over by another (its lease expired and was reaped), then a little longer, then
/// SIGCONTed; round after round.
pub async fn sigstop(setup: &StopSetup, dir: &Path) -> Result<StopReport> {
    let cluster = Cluster::new()?;
    let url = cluster.create_db("runway_chaos").await?;
    let store = Store::connect(&url).await?;
    // Many attempts to spare: an 8 s step outlives a round, so the same step can be held
    // by the stopped worker round after round, and every lost attempt counts.
    let text = chain(dir, setup.steps, setup.step_secs, 20);
    let starter = Starter::new(dir, &text)?;
    let mut runs = starter
        .start(&store, setup.in_flight.min(setup.runs))
        .await?;
    let wall = Instant::now();
    let mut workers = Workers::start(dir, &url, setup.workers, setup.concurrency, setup.lease)?;
    let mut rng = Rng::new(setup.seed);
    let mut report = StopReport {
        lease: setup.lease,
        ..StopReport::default()
    };
    // (run, step, attempt) held by a stopped worker → (its pid, when it was stopped, when
    // it was continued).
    let mut stale: BTreeMap<Attempt, Stopped> = BTreeMap::new();
    let deadline = wall + setup.deadline;
    let mut all_ended = false;
    'rounds: while Instant::now() < deadline {
        tokio::time::sleep(rng.between((Duration::from_millis(300), Duration::from_secs(1)))).await;
        for (i, pid, status) in workers.exited() {
            report
                .exited_by_themselves
                .push(format!("worker {pid} exited: {status}"));
            workers.spawn(i)?;
        }
        let ended = ended_runs(&store).await?;
        if ended >= setup.runs {
            all_ended = true;
            break;
        }
        if runs.len() < setup.runs {
            let open = setup.in_flight.saturating_sub(runs.len() - ended);
            runs.extend(
                starter
                    .start(&store, open.min(setup.runs - runs.len()))
                    .await?,
            );
        }
        if report.rounds >= setup.rounds {
            continue;
        }
        // A worker holding at least one running step, picked at random among those.
        let start = rng.below(workers.len());
        let mut target = None;
        for k in 0..workers.len() {
            let i = (start + k) % workers.len();
            if let Some(pid) = workers.pid(i) {
                let held = held_by(&store, pid).await?;
                if !held.is_empty() {
                    target = Some((i, pid, held));
                    break;
                }
            }
        }
        let Some((i, pid, held)) = target else {
            continue;
        };
        workers.stop(i);
        let stopped_at = Utc::now();
        note(dir, &format!("SIGSTOP worker {pid} holding {held:?}"));
        // Everything it held is claimed again by another worker (or its run ended).
        loop {
            if Instant::now() > deadline {
                workers.cont(i);
                break 'rounds;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if held_by(&store, pid).await?.is_empty() {
                break;
            }
        }
        tokio::time::sleep(rng.between(setup.hold)).await;
        workers.cont(i);
        let continued_at = Utc::now();
        note(dir, &format!("SIGCONT worker {pid}"));
        report.rounds += 1;
        for h in held {
            stale.insert(h, (pid, stopped_at, continued_at));
        }
    }
    if !all_ended {
        all_ended = until_runs_end(&store, setup.runs, deadline, async || Ok(())).await?;
    }
    report.wall = wall.elapsed();
    workers.shutdown();
    report.all_ended = all_ended;
    report.audit = audit(&store, dir, &runs).await?;

    // What became of every stale attempt, from the ledger and the events.
    let ledger = read_ledger(dir)?;
    let claimed = claims(&store).await?;
    let Store::Postgres(pool) = &store else {
        bail!("the engine chaos harness runs on Postgres");
    };
    let ended: Vec<(String, String, i32, String)> = sqlx::query_as(
        "SELECT run_id, step_id, attempt, kind FROM events WHERE step_id IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let mut recorded_ends: HashMap<(String, String), usize> = HashMap::new();
    for (run, step, attempt, kind) in &ended {
        let key = (run.clone(), step.clone(), *attempt);
        if stale.contains_key(&key) && kind != "step.running" && kind != "step.lease_expired" {
            report.stale_accepted += 1;
            report
                .audit
                .problems
                .push(format!("stale attempt {key:?} recorded {kind}"));
        }
        if matches!(
            kind.as_str(),
            "step.succeeded" | "step.failed" | "step.warned"
        ) {
            *recorded_ends
                .entry((run.clone(), step.clone()))
                .or_default() += 1;
        }
    }
    report.both_recorded = recorded_ends.values().filter(|n| **n > 1).count();
    for ((run, step, attempt), (_, stopped_at, _)) in &stale {
        let Some(next) = claimed.get(&(run.clone(), step.clone(), attempt + 1)) else {
            // The run ended (or the step was not taken over) before another claim.
            continue;
        };
        report.stale_attempts += 1;
        report
            .takeovers
            .push((*next - *stopped_at).to_std().unwrap_or_default());
        let end = ledger
            .iter()
            .find(|l| &l.run == run && &l.step == step && l.attempt == *attempt && l.tag != 'S');
        let fate = match end.map(|l| l.tag) {
            Some('T') => StaleFate::KilledOnResume,
            Some('E') => StaleFate::FinishedResultRefused,
            _ => StaleFate::KilledWhenReaped,
        };
        *report.fates.entry(format!("{fate:?}")).or_default() += 1;
        if let Some(end) = end
            && end.at > *next
        {
            report.ran_concurrently += 1;
            report.max_overlap = report
                .max_overlap
                .max((end.at - *next).to_std().unwrap_or_default());
        }
    }
    for i in 0..workers.len() {
        let log = std::fs::read_to_string(dir.join(format!("worker-{i}.log"))).unwrap_or_default();
        report.refusals_logged += log
            .lines()
            .filter(|l| {
                l.contains("lease lost; result dropped") || l.contains("late completion refused")
            })
            .count();
    }
    store.close().await;
    drop(cluster);
    Ok(report)
}

async fn ended_runs(store: &Store) -> Result<usize> {
    let Store::Postgres(pool) = store else {
        bail!("the engine chaos harness runs on Postgres");
    };
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled')",
    )
    .fetch_one(pool)
    .await?;
    Ok(n as usize)
}

// ------------------------------------------------------- scenario 3: database faults

/// One thing done to the database while runs are in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// `pg_ctl stop -m fast`, then start at once.
    RestartFast,
    /// `pg_ctl stop -m immediate` (crash recovery on start), then start at once.
    RestartImmediate,
    /// `pg_terminate_backend` on every client of the database.
    TerminateBackends,
    /// `pg_ctl stop -m fast`, unreachable for this long (longer than a lease), then start.
    Outage(Duration),
}

impl DbFault {
    pub fn name(self) -> String {
        match self {
            DbFault::RestartFast => "pg_ctl stop -m fast, start".into(),
            DbFault::RestartImmediate => "pg_ctl stop -m immediate, start".into(),
            DbFault::TerminateBackends => "pg_terminate_backend (all clients)".into(),
            DbFault::Outage(d) => {
                format!("down {:.0} s (stop -m fast, wait, start)", d.as_secs_f64())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbSetup {
    pub runs: usize,
    pub in_flight: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub lease: Duration,
    pub step_secs: f64,
    pub faults: Vec<DbFault>,
    /// Time between the database coming back (or a fault ending) and the next fault.
    pub between: Duration,
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct FaultOutcome {
    pub fault: String,
    /// How long the database was unreachable (0 for terminated backends).
    pub down: Duration,
    /// Database back → the first step claimed by any worker.
    pub first_claim: Option<Duration>,
    /// Database back → every worker alive then has claimed a step again.
    pub all_workers: Option<Duration>,
    /// Steps whose lease expired because of this fault (retried, counted as attempts).
    pub leases_expired: usize,
}

#[derive(Debug, Clone, Default)]
pub struct DbReport {
    pub audit: Audit,
    pub faults: Vec<FaultOutcome>,
    /// Runs not succeeded (lost): must be 0.
    pub runs_lost: usize,
    /// Runs still open when everything should have ended (they would need an operator).
    pub runs_stuck: usize,
    pub exited_by_themselves: Vec<String>,
    /// Log lines where a worker said it lost the queue and reconnected.
    pub reconnects_logged: usize,
    pub all_ended: bool,
    pub lease: Duration,
    pub wall: Duration,
}

impl DbReport {
    pub fn print(&self, title: &str) {
        let a = &self.audit;
        println!("{title}");
        println!(
            "| fault | down | first step claimed after | every worker claiming after | leases expired |"
        );
        println!("| --- | --- | --- | --- | --- |");
        let secs = |d: Option<Duration>| {
            d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        for f in &self.faults {
            println!(
                "| {} | {:.1} s | {} | {} | {} |",
                f.fault,
                f.down.as_secs_f64(),
                secs(f.first_claim),
                secs(f.all_workers),
                f.leases_expired
            );
        }
        println!();
        println!("| figure | value |");
        println!("| --- | --- |");
        println!(
            "| runs completed (succeeded) | {} / {} |",
            a.runs_succeeded, a.runs
        );
        println!("| **runs lost** | **{}** |", self.runs_lost);
        println!(
            "| **runs needing manual repair** | **{}** |",
            self.runs_stuck
        );
        println!("| steps lost | {} |", a.steps_lost);
        println!("| finished steps executed again | {} |", a.executed_again);
        println!("| attempts lost and run again | {} |", a.attempts_lost);
        println!("| event chains that do not verify | {} |", a.chains_broken);
        println!(
            "| workers that exited by themselves | {} |",
            self.exited_by_themselves.len()
        );
        println!(
            "| \"reconnecting\" lines in the workers' logs | {} |",
            self.reconnects_logged
        );
        println!("| wall time | {:.0} s |", self.wall.as_secs_f64());
        for p in a.problems.iter().take(20) {
            println!("  problem: {p}");
        }
        for e in self.exited_by_themselves.iter().take(10) {
            println!("  exited: {e}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let a = &self.audit;
        let faults: Vec<serde_json::Value> = self
            .faults
            .iter()
            .map(|f| {
                serde_json::json!({
                    "fault": f.fault, "down_s": f.down.as_secs_f64(),
                    "first_claim_s": f.first_claim.map(|d| d.as_secs_f64()),
                    "all_workers_s": f.all_workers.map(|d| d.as_secs_f64()),
                    "leases_expired": f.leases_expired,
                })
            })
            .collect();
        serde_json::json!({
            "scenario": "database", "runs": a.runs, "succeeded": a.runs_succeeded,
            "runs_lost": self.runs_lost, "runs_stuck": self.runs_stuck,
            "steps_lost": a.steps_lost, "executed_again": a.executed_again,
            "attempts_lost": a.attempts_lost, "chains_broken": a.chains_broken,
            "exited_by_themselves": self.exited_by_themselves.len(),
            "reconnects_logged": self.reconnects_logged, "faults": faults,
            "lease_s": self.lease.as_secs_f64(), "wall_s": self.wall.as_secs_f64(),
        })
    }
}

/// Scenario 3: runs of [`dag`] while the database is restarted (fast, immediate), its
/// backends terminated, and made unreachable for longer than a lease. Workers that exit
/// are counted (they must not) and started again so the runs can still be judged.
pub async fn database(setup: &DbSetup, dir: &Path) -> Result<DbReport> {
    let cluster = Cluster::new()?;
    let url = cluster.create_db("runway_chaos").await?;
    let store = Store::connect(&url).await?;
    let text = dag(dir, setup.step_secs, "1s", 8);
    let starter = Starter::new(dir, &text)?;
    let mut runs = starter
        .start(&store, setup.in_flight.min(setup.runs))
        .await?;
    let wall = Instant::now();
    let deadline = wall + setup.deadline;
    let mut workers = Workers::start(dir, &url, setup.workers, setup.concurrency, setup.lease)?;
    let mut report = DbReport {
        lease: setup.lease,
        ..DbReport::default()
    };
    // (fault, down for, when it came back, worker pids alive then)
    let mut done: Vec<(DbFault, Duration, DateTime<Utc>, Vec<u32>)> = Vec::new();
    let mut faults = setup.faults.iter().copied();
    let mut next_fault = Instant::now() + setup.between;
    let mut topped_up = Instant::now();
    let mut all_ended = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, pid, status) in workers.exited() {
            report
                .exited_by_themselves
                .push(format!("worker {pid} exited: {status}"));
            note(
                dir,
                &format!("worker {pid} exited by itself ({status}); started again"),
            );
            workers.spawn(i)?;
        }
        let Ok(ended) = ended_runs(&store).await else {
            continue;
        };
        if ended >= setup.runs {
            all_ended = true;
            break;
        }
        if runs.len() < setup.runs && topped_up.elapsed() >= Duration::from_millis(250) {
            topped_up = Instant::now();
            let open = setup.in_flight.saturating_sub(runs.len() - ended);
            if let Ok(more) = starter
                .start(&store, open.min(setup.runs - runs.len()))
                .await
            {
                runs.extend(more);
            }
        }
        if Instant::now() < next_fault {
            continue;
        }
        let Some(fault) = faults.next() else {
            next_fault = deadline;
            continue;
        };
        note(dir, &format!("fault: {}", fault.name()));
        let down_at = Instant::now();
        match fault {
            DbFault::RestartFast => {
                cluster.stop(StopMode::Fast)?;
                cluster.start()?;
            }
            DbFault::RestartImmediate => {
                cluster.stop(StopMode::Immediate)?;
                cluster.start()?;
            }
            DbFault::TerminateBackends => {
                let n = cluster.terminate_backends("runway_chaos").await?;
                note(dir, &format!("terminated {n} backends"));
            }
            DbFault::Outage(d) => {
                cluster.stop(StopMode::Fast)?;
                tokio::time::sleep(d).await;
                cluster.start()?;
            }
        }
        let down = match fault {
            DbFault::TerminateBackends => Duration::ZERO,
            _ => down_at.elapsed(),
        };
        let back = Utc::now();
        note(dir, "database back");
        let alive: Vec<u32> = (0..workers.len()).filter_map(|i| workers.pid(i)).collect();
        done.push((fault, down, back, alive));
        next_fault = Instant::now() + setup.between;
    }
    if !all_ended {
        all_ended = until_runs_end(&store, setup.runs, deadline, async || Ok(())).await?;
    }
    report.wall = wall.elapsed();
    workers.shutdown();
    report.all_ended = all_ended;
    report.audit = audit(&store, dir, &runs).await?;
    report.runs_lost = report
        .audit
        .runs
        .saturating_sub(report.audit.runs_succeeded)
        + setup.runs.saturating_sub(runs.len());
    report.runs_stuck = report
        .audit
        .runs_not_succeeded
        .iter()
        .filter(|(_, status)| !matches!(status.as_str(), "succeeded" | "failed" | "cancelled"))
        .count();

    // Recovery after each fault, from the claims the workers recorded.
    let running = events_of_kind(&store, "step.running").await?;
    let expired = expired_leases(&store).await?;
    for (k, (fault, down, back, alive)) in done.iter().enumerate() {
        let until = done.get(k + 1).map(|(_, _, b, _)| *b);
        let in_window = |at: &DateTime<Utc>| *at >= *back && until.is_none_or(|u| *at < u);
        let claims_after: Vec<(u32, DateTime<Utc>)> = running
            .iter()
            .filter(|(_, _, _, _, at)| in_window(at))
            .filter_map(|(_, _, _, data, at)| Some((worker_pid(data["worker"].as_str()?)?, *at)))
            .collect();
        let first_claim = claims_after
            .iter()
            .map(|(_, at)| *at)
            .min()
            .map(|at| (at - *back).to_std().unwrap_or_default());
        let mut all_workers = Some(Duration::ZERO);
        for pid in alive {
            match claims_after
                .iter()
                .filter(|(p, _)| p == pid)
                .map(|(_, at)| *at)
                .min()
            {
                Some(at) => {
                    let d = (at - *back).to_std().unwrap_or_default();
                    all_workers = all_workers.map(|w| w.max(d));
                }
                None => all_workers = None,
            }
        }
        let leases_expired = expired.iter().filter(|e| in_window(&e.at)).count();
        report.faults.push(FaultOutcome {
            fault: fault.name(),
            down: *down,
            first_claim,
            all_workers,
            leases_expired,
        });
    }
    for i in 0..workers.len() {
        let log = std::fs::read_to_string(dir.join(format!("worker-{i}.log"))).unwrap_or_default();
        report.reconnects_logged += log.lines().filter(|l| l.contains("reconnecting")).count();
    }
    store.close().await;
    drop(cluster);
    Ok(report)
}
