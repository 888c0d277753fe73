//! Crashes with real processes: the built `runway` binary, killed with SIGKILL mid-step.
//!
//! - Postgres: `runway start` and two `runway worker`s; one worker dies while it runs a
//!   step; the other (and a replacement) finish the run once the dead worker's lease has
//!   expired and the step has been reaped.
//! - SQLite: `runway run` dies mid-run; `runway run --resume RUN` finishes it.
//!
//! In both, every step's side effect (a line in `ledger`) happens exactly once, except for
//! the steps in flight when the process died: those may appear twice, with the same
//! idempotency key and attempts 1 and 2.

#[path = "common/db.rs"]
mod db;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runway::state::{RunStatus, StepStatus};
use runway::store::{StepList, StepRun, Store};

use db::{Backend, Db};

/// The default lease is 10 s: a dead worker's step is reaped after at most that (plus a
/// reaper tick), so a run survives a crash within well under this.
const DEADLINE: Duration = Duration::from_secs(60);

const STEPS: [&str; 8] = ["s1", "s2", "p1", "p2", "p3", "s6", "s7", "s8"];

/// Eight steps of ~0.7 s: a chain, a fan-out of three and a chain again. Each appends its
/// side effect to `ledger` at the end, and marks its start and end in `trace`.
const PLAYBOOK: &str = r#"
runway: 1
name: crash
params:
  tag: { type: string, required: true }
steps:
  - id: s1
    shell: { script: '@work' }
  - id: s2
    shell: { script: '@work' }
  - id: p1
    needs: [s2]
    shell: { script: '@work' }
  - id: p2
    needs: [s2]
    shell: { script: '@work' }
  - id: p3
    needs: [s2]
    shell: { script: '@work' }
  - id: s6
    needs: [p1, p2, p3]
    shell: { script: '@work' }
  - id: s7
    shell: { script: '@work' }
  - id: s8
    shell: { script: '@work' }
"#;

const WORK: &str = r#"echo "start $RUNWAY_STEP_ID" >> trace; sleep 0.7; echo "$RUNWAY_STEP_ID $RUNWAY_ATTEMPT $RUNWAY_IDEMPOTENCY_KEY" >> ledger; echo "end $RUNWAY_STEP_ID" >> trace"#;

/// The temp dir (cwd, workflows dir, ledger) and the processes started in it; any still
/// running when this is dropped are killed.
struct Scene {
    dir: tempfile::TempDir,
    url: String,
    children: Vec<(String, Child)>,
}

impl Scene {
    fn new(url: &str) -> Scene {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            dir.path().join("crash.yaml"),
            PLAYBOOK.replace("@work", WORK),
        )
        .expect("write playbook");
        Scene {
            dir,
            url: url.to_owned(),
            children: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runway"));
        c.args(args)
            .current_dir(self.path())
            .env("RUNWAY_DATABASE_URL", &self.url)
            .env("RUNWAY_WORKFLOWS", self.path())
            .env("RUNWAY_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    /// Starts a long-lived process named `name`, its output going to `NAME.log`.
    fn spawn(&mut self, name: &str, args: &[&str]) -> u32 {
        let log = std::fs::File::create(self.log_path(name)).expect("log file");
        let child = self
            .command(args)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("runway starts");
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        pid
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.log"))
    }

    /// SIGKILL to the process named `name`, and reap it.
    fn kill9(&mut self, name: &str) {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .expect("a child of that name");
        let (_, mut child) = self.children.remove(i);
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// SIGTERM to every child still running, then waits (SIGKILL after 10 s).
    fn stop_all(&mut self) {
        for (_, child) in &self.children {
            let _ = kill(
                Pid::from_raw(i32::try_from(child.id()).expect("pid")),
                Signal::SIGTERM,
            );
        }
        let began = Instant::now();
        for (_, child) in &mut self.children {
            while child.try_wait().ok().flatten().is_none() {
                if began.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.children.clear();
    }

    fn lines(&self, file: &str) -> Vec<String> {
        match std::fs::read_to_string(self.path().join(file)) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Ledger lines by step: (attempt, idempotency key) in order.
    fn ledger(&self) -> BTreeMap<String, Vec<(u32, String)>> {
        let mut by_step: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
        for line in self.lines("ledger") {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 3, "ledger line `{line}`");
            by_step
                .entry(f[0].to_owned())
                .or_default()
                .push((f[1].parse().expect("attempt"), f[2].to_owned()));
        }
        by_step
    }

    /// Everything useful when a crash test fails: steps, ledger, trace, process logs.
    fn report(&self, steps: &[StepRun]) -> String {
        let mut out = String::new();
        for s in steps {
            out.push_str(&format!(
                "  {:<5} {:<10} {}/{} lease={:?} error={:?}\n",
                s.step_id,
                s.status.as_str(),
                s.attempt,
                s.max_attempts,
                s.lease_owner,
                s.error
            ));
        }
        out.push_str(&format!(
            "ledger: {:#?}\ntrace: {:?}\n",
            self.lines("ledger"),
            self.lines("trace")
        ));
        if let Ok(entries) = std::fs::read_dir(self.path()) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {}\n", path.display()));
                    for l in tail.into_iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// The crash contract: the run succeeded; every step's side effect happened once with
    /// attempt 1, except the `in_flight` ones: re-run as attempt 2 with the same key.
    fn check_exactly_once(
        &self,
        run_id: &str,
        steps: &[StepRun],
        in_flight: &BTreeSet<String>,
    ) -> Result<()> {
        let report = || self.report(steps);
        let ledger = self.ledger();
        for id in STEPS {
            let key = format!("{run_id}:{id}");
            let row = steps
                .iter()
                .find(|s| s.step_id == id && s.list == StepList::Main)
                .context("step row")?;
            ensure!(
                row.status == StepStatus::Succeeded,
                "{id} is {}\n{}",
                row.status,
                report()
            );
            let lines = ledger.get(id).cloned().unwrap_or_default();
            ensure!(
                lines.iter().all(|(_, k)| *k == key),
                "{id}: one idempotency key across attempts\n{}",
                report()
            );
            if in_flight.contains(id) {
                let attempts: Vec<u32> = lines.iter().map(|(a, _)| *a).collect();
                ensure!(
                    row.attempt == 2
                        && attempts.contains(&2)
                        && attempts.len() <= 2
                        && attempts.iter().all(|a| *a == 1 || *a == 2),
                    "{id} was in flight: attempts {attempts:?}, row attempt {}\n{}",
                    row.attempt,
                    report()
                );
            } else {
                ensure!(
                    lines == [(1, key.clone())] && row.attempt == 1,
                    "{id} ran exactly once: {lines:?}, row attempt {}\n{}",
                    row.attempt,
                    report()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pid in a worker id (`host:pid:suffix`).
fn pid_of(worker: &str) -> Option<u32> {
    worker.split(':').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_worker_killed_mid_step_is_taken_over() {
    db::run(Backend::Postgres, worker_killed_mid_step).await
}

async fn worker_killed_mid_step(db: Db) -> Result<()> {
    let store = db.store.clone();
    let mut scene = Scene::new(&db.url);
    let out = scene
        .command(&["start", "crash.yaml", "-p", "tag=crash"])
        .output()?;
    ensure!(
        out.status.success(),
        "runway start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_id = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(run_id.len() == 26, "a run id: {run_id:?}");

    let pids = [
        (scene.spawn("worker-a", &["worker"]), "worker-a"),
        (scene.spawn("worker-b", &["worker"]), "worker-b"),
    ];

    // Wait until a step after the first two is mid-attempt on one of our workers.
    let began = Instant::now();
    let (victim, victim_pid) = loop {
        let steps = store.steps_of_run(&run_id).await?;
        let trace = scene.lines("trace");
        let mid = steps.iter().find(|s| {
            s.status == StepStatus::Running
                && !["s1"].contains(&s.step_id.as_str())
                && trace.contains(&format!("start {}", s.step_id))
                && !trace.contains(&format!("end {}", s.step_id))
        });
        if let Some(s) = mid
            && let Some(pid) = s.lease_owner.as_deref().and_then(pid_of)
            && let Some((_, name)) = pids.iter().find(|(p, _)| *p == pid)
        {
            break (*name, pid);
        }
        if began.elapsed() > DEADLINE {
            bail!("no step ran on a worker\n{}", scene.report(&steps));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    scene.kill9(victim);
    // What the dead worker held: those steps wait for the reaper, then run again.
    let in_flight: BTreeSet<String> = store
        .steps_of_run(&run_id)
        .await?
        .into_iter()
        .filter(|s| {
            s.status == StepStatus::Running
                && s.lease_owner.as_deref().and_then(pid_of) == Some(victim_pid)
        })
        .map(|s| s.step_id)
        .collect();
    ensure!(!in_flight.is_empty(), "the victim held a step");
    scene.spawn("worker-c", &["worker"]);

    let run = loop {
        let run = store.run_get(&run_id).await?;
        if run.status.is_terminal() {
            break run;
        }
        if began.elapsed() > DEADLINE {
            let steps = store.steps_of_run(&run_id).await?;
            bail!("the run did not end\n{}", scene.report(&steps));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = began.elapsed();
    // Let an orphaned attempt of the dead worker (its shell outlives it) finish writing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    scene.stop_all();
    let steps = store.steps_of_run(&run_id).await?;
    ensure!(
        run.status == RunStatus::Succeeded,
        "run {}: {:?}\n{}",
        run.status,
        run.error,
        scene.report(&steps)
    );
    scene.check_exactly_once(&run_id, &steps, &in_flight)?;

    // The evidence says what happened, and its chain is intact.
    let events = store.events_of_run(&run_id).await?;
    for id in &in_flight {
        ensure!(
            events
                .iter()
                .any(|e| e.kind == "step.lease_expired" && e.step_id.as_deref() == Some(id)),
            "a lease_expired event for {id}: {:?}",
            events.iter().map(|e| &e.kind).collect::<Vec<_>>()
        );
    }
    ensure!(
        store.events_verify(&run_id).await?.is_none(),
        "chain intact"
    );

    // And `runway status --format json` agrees.
    let out = scene
        .command(&["status", &run_id, "--format", "json"])
        .output()?;
    ensure!(out.status.success(), "runway status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(status["status"] == "succeeded", "{status}");
    let attempts: BTreeMap<String, i64> = status["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap_or_default().to_owned(),
                s["attempt"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    for id in STEPS {
        let want = if in_flight.contains(id) { 2 } else { 1 };
        ensure!(attempts.get(id) == Some(&want), "{id}: {attempts:?}");
    }
    eprintln!(
        "killed {victim} holding {in_flight:?}; run ended after {took:?}; ledger {:?}",
        scene.ledger()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_run_killed_mid_step_then_resumed() -> Result<()> {
    let probe = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}",
        probe.path().join("state/runway.db").display()
    );
    let mut scene = Scene::new(&url);

    // `runway run` prints `run ID · crash · running` first.
    let mut child = scene
        .command(&["run", "crash.yaml", "-p", "tag=crash"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(scene.log_path("run"))?)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        lines.map_while(Result::ok).collect::<Vec<_>>()
    });
    let first = rx.recv_timeout(Duration::from_secs(30))?;
    let run_id = first
        .strip_prefix("run ")
        .and_then(|r| r.split_whitespace().next())
        .context("a run id")?
        .to_owned();
    let run_pid = child.id();
    scene.children.push(("run".into(), child));

    // Kill it while a step after the first few is mid-attempt (started, not ended).
    let began = Instant::now();
    loop {
        let trace = scene.lines("trace");
        let done = trace.iter().filter(|l| l.starts_with("end ")).count();
        let open = trace.iter().any(|l| {
            l.strip_prefix("start ")
                .is_some_and(|s| !trace.contains(&format!("end {s}")))
        });
        if done >= 3 && open {
            break;
        }
        if began.elapsed() > DEADLINE {
            bail!("the run did not get going\n{}", scene.report(&[]));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scene.kill9("run");
    let _ = reader.join();

    let store = Store::connect(&url).await?;
    let at_crash = store.steps_of_run(&run_id).await?;
    let in_flight: BTreeSet<String> = at_crash
        .iter()
        .filter(|s| {
            s.status == StepStatus::Running
                && s.lease_owner.as_deref().and_then(pid_of) == Some(run_pid)
        })
        .map(|s| s.step_id.clone())
        .collect();
    ensure!(
        !in_flight.is_empty(),
        "a step was in flight\n{}",
        scene.report(&at_crash)
    );
    ensure!(!store.run_get(&run_id).await?.status.is_terminal());

    // Resume in a new process: the dead process' lease expires, the step is reaped and
    // runs again; steps that finished do not.
    let resume = scene.command(&["run", "--resume", &run_id]).output()?;
    let stdout = String::from_utf8_lossy(&resume.stdout).into_owned();
    let steps = store.steps_of_run(&run_id).await?;
    ensure!(
        resume.status.success(),
        "resume exited {:?}\n{stdout}\n{}\n{}",
        resume.status,
        String::from_utf8_lossy(&resume.stderr),
        scene.report(&steps)
    );
    ensure!(
        stdout.contains(&format!("run {run_id} succeeded")),
        "{stdout}"
    );
    ensure!(
        began.elapsed() < DEADLINE,
        "took {:?}\n{stdout}",
        began.elapsed()
    );
    // Let the dead process' orphaned attempt finish writing, if it is still running.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let run = store.run_get(&run_id).await?;
    ensure!(run.status == RunStatus::Succeeded, "{:?}", run.status);
    scene.check_exactly_once(&run_id, &steps, &in_flight)?;
    ensure!(
        store.events_verify(&run_id).await?.is_none(),
        "chain intact"
    );
    store.close().await;
    eprintln!(
        "killed `runway run` holding {in_flight:?}; resumed in {:?}; ledger {:?}",
        began.elapsed(),
        scene.ledger()
    );
    Ok(())
}
