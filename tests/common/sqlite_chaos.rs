//! Scenario 6, the embedded store under SIGKILL: shared by `tests/sqlite_chaos.rs` (a
//! reduced run in the suite) and `benches/hygiene.rs` (100 runs, printing figures).
//!
//! Each run is one `runway run` process on a SQLite file, SIGKILLed at a random instant
//! after it printed its run id, then `runway run --resume RUN` (itself SIGKILLed at random
//! now and then, and resumed again) until the run ends. The playbook has ten shell steps
//! (a chain, a fan-out of three and its join, a chain again); each appends
//! `run step attempt` to `ledger` as its side effect. Lanes (each its own SQLite file and
//! directory) run in parallel to use the machine.
//!
//! The contract, checked from the ledger against the store: every run succeeded; every
//! step's succeeded attempt wrote the ledger once; an earlier attempt of a step appears
//! only if its lease expired (it was running when its process died); no attempt appears
//! twice, and none after the one that succeeded (a finished step never runs again). No
//! process of any attempt is left once the runs are over, and every run's chain verifies.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runway::state::{RunStatus, StepStatus};
use runway::store::{StepList, Store};

use super::procs::{self, Rng};

pub const STEPS: [&str; 10] = ["a1", "a2", "a3", "f1", "f2", "f3", "j", "z1", "z2", "z3"];

const PLAYBOOK: &str = r#"runway: 1
name: chaos
steps:
  - { id: a1, shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: a2, shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: a3, shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: f1, needs: [a3], shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: f2, needs: [a3], shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: f3, needs: [a3], shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: j, needs: [f1, f2, f3], shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: z1, shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: z2, shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
  - { id: z3, shell: { script: '@work', env: { CHAOS_MARK: '@mark' } } }
"#;

/// A step's work: a short sleep (so kills land mid-step), then its side effect.
const WORK: &str = r#"sleep 0.25; echo "$RUNWAY_RUN_ID $RUNWAY_STEP_ID $RUNWAY_ATTEMPT" >> ledger"#;

#[derive(Debug, Clone)]
pub struct Setup {
    pub runs: usize,
    /// Runs go in parallel lanes, each with its own SQLite file.
    pub lanes: usize,
    pub seed: u64,
    /// `runway run --lease`: how soon a resumed process takes a dead one's steps over.
    pub lease: &'static str,
    /// A kill lands uniformly in this long after the run id is printed.
    pub kill_within: Duration,
    /// Chance that a resuming process is killed too (at a random instant), and resumed again.
    pub kill_resume: f64,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub runs: usize,
    pub completed: usize,
    pub kills: usize,
    /// Kills that found the process already exited (the run had ended first).
    pub kills_too_late: usize,
    pub resumes: usize,
    /// Step attempts executed in all (ledger lines).
    pub attempts: usize,
    /// Attempts that were running when their process died and ran again (allowed).
    pub in_flight_reruns: usize,
    /// Ledger lines of an attempt after the one that succeeded, a duplicate attempt, or an
    /// earlier attempt whose lease never expired: a finished step run again (must be 0).
    pub finished_reexecuted: usize,
    /// Succeeded steps whose succeeded attempt is not in the ledger (must be 0).
    pub missing_effects: usize,
    /// Processes of any attempt still alive after the last run ended (must be 0).
    pub leftover_processes: usize,
    pub broken_chains: usize,
    /// The longest a resume took to finish its run.
    pub max_resume: Duration,
    pub wall: Duration,
    /// Problems, one line each (empty when the contract held).
    pub problems: Vec<String>,
}

impl Report {
    pub fn print(&self, title: &str) {
        println!("{title}");
        println!("| figure | value |\n| --- | --- |");
        println!("| runs | {} |", self.runs);
        println!("| **completed** | **{}/{}** |", self.completed, self.runs);
        println!(
            "| SIGKILLs (of which after the run had ended) | {} ({}) |",
            self.kills, self.kills_too_late
        );
        println!("| `runway run --resume` processes | {} |", self.resumes);
        println!(
            "| step attempts executed (ledger lines) | {} |",
            self.attempts
        );
        println!(
            "| attempts in flight at a kill, run again | {} |",
            self.in_flight_reruns
        );
        println!(
            "| **finished steps re-executed** | **{}** |",
            self.finished_reexecuted
        );
        println!(
            "| succeeded steps without their effect | {} |",
            self.missing_effects
        );
        println!(
            "| attempt processes left after the runs | {} |",
            self.leftover_processes
        );
        println!("| broken evidence chains | {} |", self.broken_chains);
        println!(
            "| longest resume | {:.1} s |",
            self.max_resume.as_secs_f64()
        );
        println!("| wall time | {:.0} s |", self.wall.as_secs_f64());
        for p in &self.problems {
            println!("  problem: {p}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": "sqlite_chaos", "runs": self.runs, "completed": self.completed,
            "kills": self.kills, "kills_too_late": self.kills_too_late,
            "resumes": self.resumes, "attempts": self.attempts,
            "in_flight_reruns": self.in_flight_reruns,
            "finished_reexecuted": self.finished_reexecuted,
            "missing_effects": self.missing_effects,
            "leftover_processes": self.leftover_processes,
            "broken_chains": self.broken_chains,
            "max_resume_s": self.max_resume.as_secs_f64(), "wall_s": self.wall.as_secs_f64(),
        })
    }

    /// Whether the contract held.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.completed == self.runs
            && self.finished_reexecuted == 0
            && self.missing_effects == 0
            && self.leftover_processes == 0
            && self.broken_chains == 0
    }
}

/// What one lane did, before the store is read.
#[derive(Debug, Default)]
struct Lane {
    dir: PathBuf,
    url: String,
    runs: Vec<String>,
    kills: usize,
    kills_too_late: usize,
    resumes: usize,
    max_resume: Duration,
}

pub async fn run(setup: &Setup) -> Result<Report> {
    let began = Instant::now();
    let mark = format!(
        "chaos-{:016x}-{}",
        Rng::new(setup.seed).next(),
        std::process::id()
    );
    let mut tasks = Vec::new();
    for lane in 0..setup.lanes {
        let runs = setup.runs / setup.lanes + usize::from(lane < setup.runs % setup.lanes);
        let dir = setup.dir.join(format!("lane-{lane}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("chaos.yaml"),
            PLAYBOOK.replace("@work", WORK).replace("@mark", &mark),
        )?;
        let url = format!("sqlite://{}", dir.join("runway.db").display());
        let mut rng = Rng::new(setup.seed ^ (lane as u64 + 1).wrapping_mul(0x9e37_79b9));
        let setup = setup.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            drive_lane(&setup, dir, url, runs, &mut rng)
        }));
    }
    let mut lanes = Vec::new();
    for t in tasks {
        lanes.push(t.await??);
    }
    let mut report = Report {
        runs: setup.runs,
        ..Report::default()
    };
    // Orphans would have had a lease period and a reaper tick to be swept; the last resume
    // waited for its run's end, so anything still carrying the mark is a leftover.
    let entry = format!("CHAOS_MARK={mark}");
    report.leftover_processes = procs::marked(&entry, "").len();
    for lane in &lanes {
        report.kills += lane.kills;
        report.kills_too_late += lane.kills_too_late;
        report.resumes += lane.resumes;
        report.max_resume = report.max_resume.max(lane.max_resume);
        check_lane(lane, &mut report).await?;
    }
    report.wall = began.elapsed();
    Ok(report)
}

/// Runs this lane's runs one after another, each killed and resumed.
fn drive_lane(
    setup: &Setup,
    dir: PathBuf,
    url: String,
    runs: usize,
    rng: &mut Rng,
) -> Result<Lane> {
    let mut lane = Lane {
        dir: dir.clone(),
        url: url.clone(),
        ..Lane::default()
    };
    let lease = ["--lease", setup.lease];
    for _ in 0..runs {
        let mut args = vec!["run", "chaos.yaml"];
        args.extend(lease);
        let mut child = procs::runway(&dir, &url, &args)
            .stdout(Stdio::piped())
            .stderr(procs::log(&dir, "run")?)
            .spawn()
            .context("runway run starts")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().context("runway run printed nothing")??;
        let run_id = first
            .strip_prefix("run ")
            .and_then(|r| r.split_whitespace().next())
            .with_context(|| format!("a run id in `{first}`"))?
            .to_owned();
        // Keep reading, so the process never blocks on a full pipe before its kill.
        let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
        std::thread::sleep(rng.between(Duration::ZERO, setup.kill_within));
        lane.kills += 1;
        if !procs::kill9(&mut child) {
            lane.kills_too_late += 1;
        }
        let _ = drain.join();
        lane.runs.push(run_id.clone());

        // Resume until the run ends; a resuming process may itself be killed.
        let mut attempts = 0;
        loop {
            attempts += 1;
            ensure!(
                attempts <= 10,
                "run {run_id}: still not over after 10 resumes"
            );
            let mut args = vec!["run", "--resume", &run_id];
            args.extend(lease);
            let started = Instant::now();
            let mut child = procs::runway(&dir, &url, &args)
                .stdout(procs::log(&dir, "resume")?)
                .stderr(procs::log(&dir, "resume")?)
                .spawn()
                .context("runway run --resume starts")?;
            lane.resumes += 1;
            let kill_at = rng
                .chance(setup.kill_resume)
                .then(|| rng.between(Duration::ZERO, setup.kill_within * 2));
            let deadline = Duration::from_secs(90);
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break Some(status);
                }
                if kill_at.is_some_and(|at| started.elapsed() >= at) {
                    lane.kills += 1;
                    if !procs::kill9(&mut child) {
                        lane.kills_too_late += 1;
                    }
                    break None;
                }
                if started.elapsed() > deadline {
                    procs::kill9(&mut child);
                    bail!(
                        "run {run_id}: a resume did not finish in {deadline:?}\n{}",
                        procs::log_tail(&dir, "resume", 40)
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            match status {
                Some(s) if s.success() => {
                    lane.max_resume = lane.max_resume.max(started.elapsed());
                    break;
                }
                Some(s) => bail!(
                    "run {run_id}: `runway run --resume` exited {s}\n{}",
                    procs::log_tail(&dir, "resume", 40)
                ),
                None => {}
            }
        }
    }
    Ok(lane)
}

/// Holds the lane's ledger against its store.
async fn check_lane(lane: &Lane, report: &mut Report) -> Result<()> {
    let store = Store::connect(&lane.url).await?;
    // run → step → attempts written, in order.
    let mut ledger: BTreeMap<(String, String), Vec<i32>> = BTreeMap::new();
    let text = std::fs::read_to_string(lane.dir.join("ledger")).unwrap_or_default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(f.len() == 3, "ledger line `{line}`");
        ledger
            .entry((f[0].to_owned(), f[1].to_owned()))
            .or_default()
            .push(f[2].parse().context("attempt")?);
        report.attempts += 1;
    }
    let problem = |report: &mut Report, p: String| {
        if report.problems.len() < 20 {
            report.problems.push(p);
        }
    };
    for run_id in &lane.runs {
        let run = store.run_get(run_id).await?;
        if run.status == RunStatus::Succeeded {
            report.completed += 1;
        } else {
            problem(
                report,
                format!("run {run_id} is {} ({:?})", run.status, run.error),
            );
        }
        if store.events_verify(run_id).await?.is_some() {
            report.broken_chains += 1;
            problem(
                report,
                format!("run {run_id}: the evidence chain does not verify"),
            );
        }
        let expired: BTreeSet<(String, i32)> = store
            .events_of_run(run_id)
            .await?
            .into_iter()
            .filter(|e| e.kind == "step.lease_expired")
            .filter_map(|e| Some((e.step_id?, e.attempt?)))
            .collect();
        let steps = store.steps_of_run(run_id).await?;
        for id in STEPS {
            let row = steps
                .iter()
                .find(|s| s.step_id == id && s.list == StepList::Main)
                .with_context(|| format!("run {run_id}: no row for {id}"))?;
            let written = ledger
                .get(&(run_id.clone(), id.to_owned()))
                .cloned()
                .unwrap_or_default();
            if row.status != StepStatus::Succeeded {
                problem(report, format!("run {run_id} {id}: {}", row.status));
                continue;
            }
            let mut seen = BTreeSet::new();
            for &a in &written {
                let fine = seen.insert(a)
                    && (a == row.attempt
                        || (a < row.attempt && expired.contains(&(id.to_owned(), a))));
                if !fine {
                    report.finished_reexecuted += 1;
                    problem(
                        report,
                        format!(
                            "run {run_id} {id}: attempt {a} ran though the step had finished \
                             (succeeded attempt {}, ledger {written:?}, expired {expired:?})",
                            row.attempt
                        ),
                    );
                } else if a < row.attempt {
                    report.in_flight_reruns += 1;
                }
            }
            if !written.contains(&row.attempt) {
                report.missing_effects += 1;
                problem(
                    report,
                    format!(
                        "run {run_id} {id}: succeeded attempt {} is not in the ledger {written:?}",
                        row.attempt
                    ),
                );
            }
        }
    }
    store.close().await;
    Ok(())
}
