//! Scenario 4, process hygiene: shared by `tests/process_hygiene.rs` (the suite) and
//! `benches/hygiene.rs` (more rounds, printing figures).
//!
//! Five shell steps that try to outlive their attempt run side by side in one run: one
//! forks a tree of grandchildren, one daemonizes with `setsid` (and a double fork), one
//! puts a `nohup` child in the background, one ignores SIGTERM (and its children inherit
//! that), and one leaves a `setsid` child, ignoring SIGTERM, writing to the step's stdout.
//! Every long-lived process is a `sleep` under a name of this round's own (a symlink), so
//! it can be found by its command line and, once dead, as a zombie by its name; each step
//! also carries a marker in its environment.
//!
//! Each round ends the run one way: (a) the steps' `timeout`, (b) `runway cancel` from
//! another process, (c) SIGKILL of the `runway run` process holding the steps, then
//! `runway run --resume` (the next attempt of each step exits at once). Counted from
//! outside, per step: processes still alive once the run has ended (for a cancel: once the
//! worker had a lease renewal and a grace period to act), and zombies.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runway::state::RunStatus;
use runway::store::Store;

use super::procs::{self, Rng};

/// The behaviours: step id, what it does, and how many marked processes it has once it
/// got going (the bash running the script counts when it carries the marker).
pub const BEHAVIOURS: [(&str, &str); 5] = [
    (
        "grandchildren",
        r#""$SLEEPER" 300 & ( "$SLEEPER" 300 & "$SLEEPER" 300 & wait ) & "$SLEEPER" 300"#,
    ),
    (
        "setsid",
        r#"setsid "$SLEEPER" 300 & ( setsid "$SLEEPER" 300 & ) ; "$SLEEPER" 300"#,
    ),
    (
        "nohup",
        r#"nohup "$SLEEPER" 300 > /dev/null 2>&1 & "$SLEEPER" 300"#,
    ),
    (
        "ignore-term",
        r#"trap '' TERM; "$SLEEPER" 300 & "$SLEEPER" 300"#,
    ),
    (
        "held-stdout",
        r#"setsid bash -c 'trap "" TERM; "$SLEEPER" 300 & while :; do echo tick; sleep 0.05; done' & "$SLEEPER" 300"#,
    ),
];

/// Sleepers each behaviour has running once it got going.
fn sleepers(behaviour: &str) -> usize {
    match behaviour {
        "grandchildren" => 4,
        "setsid" => 3,
        "nohup" | "ignore-term" | "held-stdout" => 2,
        _ => 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Timeout,
    Cancel,
    Kill,
    /// SIGKILL of `runway run`, then `runway cancel` once the lease has expired (no resume).
    KillCancel,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Timeout => "step timeout",
            Mode::Cancel => "runway cancel",
            Mode::Kill => "SIGKILL of runway run, resumed",
            Mode::KillCancel => "SIGKILL of runway run, then runway cancel",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Setup {
    pub rounds: usize,
    pub modes: Vec<Mode>,
    /// `runway run --lease`.
    pub lease: &'static str,
    pub seed: u64,
    pub dir: PathBuf,
}

/// Per mode and behaviour, over every round.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub rounds: usize,
    /// Marked processes seen running before the run was ended (all of them, summed).
    pub started: usize,
    /// Marked processes alive after the grace period (must be 0).
    pub left: usize,
    /// Zombies of marked processes (must be 0).
    pub zombies: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cells: BTreeMap<(Mode, &'static str), Cell>,
    /// The longest it took, from the end being asked for (timeout due, cancel sent, resume
    /// started), until no marked process was left.
    pub slowest_clean: BTreeMap<Mode, Duration>,
    pub wall: Duration,
    pub problems: Vec<String>,
}

impl Report {
    pub fn left(&self) -> usize {
        self.cells.values().map(|c| c.left).sum()
    }

    pub fn zombies(&self) -> usize {
        self.cells.values().map(|c| c.zombies).sum()
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.left() == 0 && self.zombies() == 0
    }

    pub fn print(&self, title: &str) {
        println!("{title}");
        println!("| ended by | step | rounds | processes started | left after grace | zombies |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for ((mode, step), c) in &self.cells {
            println!(
                "| {} | {step} | {} | {} | {} | {} |",
                mode.name(),
                c.rounds,
                c.started,
                c.left,
                c.zombies
            );
        }
        for (mode, d) in &self.slowest_clean {
            println!(
                "  {}: slowest until nothing was left {:.1} s",
                mode.name(),
                d.as_secs_f64()
            );
        }
        println!("  wall time {:.0} s", self.wall.as_secs_f64());
        for p in &self.problems {
            println!("  problem: {p}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let cells: Vec<serde_json::Value> = self
            .cells
            .iter()
            .map(|((mode, step), c)| {
                serde_json::json!({
                    "mode": format!("{mode:?}").to_lowercase(), "step": step,
                    "rounds": c.rounds, "started": c.started, "left": c.left,
                    "zombies": c.zombies,
                })
            })
            .collect();
        let slowest: BTreeMap<String, f64> = self
            .slowest_clean
            .iter()
            .map(|(m, d)| (format!("{m:?}").to_lowercase(), d.as_secs_f64()))
            .collect();
        serde_json::json!({
            "scenario": "process_hygiene", "left": self.left(), "zombies": self.zombies(),
            "cells": cells, "slowest_clean_s": slowest, "wall_s": self.wall.as_secs_f64(),
        })
    }
}

/// One round's names: a directory, the sleeper symlinks, the playbook.
struct Round {
    dir: PathBuf,
    url: String,
    /// The sleepers' names start with this (a zombie keeps at most 15 bytes of its name).
    prefix: String,
}

impl Round {
    fn new(root: &Path, n: usize, rng: &mut Rng, mode: Mode) -> Result<Round> {
        let dir = root.join(format!("round-{n}-{mode:?}"));
        std::fs::create_dir_all(&dir)?;
        // Tests run in parallel processes with the same seed: the pid keeps their names apart.
        let prefix = format!(
            "rwh{:05x}",
            (rng.next() ^ u64::from(std::process::id()).wrapping_mul(0x9e37_79b9)) & 0xf_ffff
        );
        let timeout = if mode == Mode::Timeout { "4s" } else { "10m" };
        let mut yaml = String::from("runway: 1\nname: hygiene\nsteps:\n");
        for (i, (id, script)) in BEHAVIOURS.iter().enumerate() {
            let sleeper = procs::named_sleep(&dir, &format!("{prefix}-{i}"))?;
            // A later attempt (after a kill, the resumed run's) ends at once.
            let body = format!(r#"if [ "$RUNWAY_ATTEMPT" -gt 1 ]; then exit 0; fi; {script}"#);
            yaml.push_str(&format!(
                "  - id: {id}\n    needs: []\n    timeout: {timeout}\n    shell:\n      script: {}\n      env: {{ SLEEPER: '{}', HYG_MARK: '{prefix}-{i}' }}\n",
                serde_json::to_string(&body)?,
                sleeper.display()
            ));
        }
        std::fs::write(dir.join("hygiene.yaml"), yaml)?;
        let url = format!("sqlite://{}", dir.join("runway.db").display());
        Ok(Round { dir, url, prefix })
    }

    /// The marked processes of behaviour `i` alive now.
    fn alive(&self, i: usize) -> usize {
        let tag = format!("{}-{i}", self.prefix);
        procs::marked(&format!("HYG_MARK={tag}"), &format!("/{tag} ")).len()
    }

    fn alive_all(&self) -> usize {
        (0..BEHAVIOURS.len()).map(|i| self.alive(i)).sum()
    }

    fn zombies(&self, i: usize) -> usize {
        procs::zombies_named(&format!("{}-{i}", self.prefix)).len()
    }
}

pub async fn run(setup: &Setup) -> Result<Report> {
    let began = Instant::now();
    let mut rng = Rng::new(setup.seed);
    let mut report = Report::default();
    for n in 0..setup.rounds {
        for &mode in &setup.modes {
            let round = Round::new(&setup.dir, n, &mut rng, mode)?;
            let result = one_round(setup, &round, mode, &mut report).await;
            // Whatever happened, leave nothing behind for the next round (or the machine).
            for i in 0..BEHAVIOURS.len() {
                let tag = format!("{}-{i}", round.prefix);
                for p in procs::marked(&format!("HYG_MARK={tag}"), &format!("/{tag} ")) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p.pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            result.with_context(|| format!("round {n}, {}", mode.name()))?;
        }
    }
    report.wall = began.elapsed();
    Ok(report)
}

/// Starts `runway run` on the round's playbook; returns it and the run id.
fn start(setup: &Setup, round: &Round) -> Result<(Child, String)> {
    use std::io::{BufRead as _, BufReader};
    let mut child = procs::runway(
        &round.dir,
        &round.url,
        &[
            "run",
            "hygiene.yaml",
            "--concurrency",
            "5",
            "--lease",
            setup.lease,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(procs::log(&round.dir, "run")?)
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
    std::thread::spawn(move || lines.map_while(Result::ok).count());
    Ok((child, run_id))
}

async fn one_round(setup: &Setup, round: &Round, mode: Mode, report: &mut Report) -> Result<()> {
    let (mut child, run_id) = start(setup, round)?;
    // Every step got going: each behaviour has its sleepers.
    let going = procs::wait_for(Duration::from_secs(30), || {
        BEHAVIOURS
            .iter()
            .enumerate()
            .all(|(i, (id, _))| sleepers_alive(round, i) >= sleepers(id))
    });
    ensure!(
        going,
        "the steps did not all start: {:?}\n{}",
        (0..BEHAVIOURS.len())
            .map(|i| sleepers_alive(round, i))
            .collect::<Vec<_>>(),
        procs::log_tail(&round.dir, "run", 30)
    );
    let started: Vec<usize> = (0..BEHAVIOURS.len()).map(|i| round.alive(i)).collect();
    let store = Store::connect(&round.url).await?;

    let asked = Instant::now();
    // How long the engine may take, from `asked`, to have nothing left: a lease renewal
    // (a third of the lease) to notice a cancel, the grace period (5 s), the sweep, and
    // generous slack for a loaded machine; for a kill, the lease and a reaper tick first.
    let lease = runway_lease(setup.lease);
    let bound = match mode {
        Mode::Timeout => Duration::from_secs(4 + 5 + 10),
        Mode::Cancel => lease / 3 + Duration::from_secs(5 + 10),
        Mode::Kill => lease + Duration::from_secs(1 + 10),
        Mode::KillCancel => lease + Duration::from_secs(1 + 10),
    };
    match mode {
        Mode::Timeout => {
            let status = wait_exit(&mut child, Duration::from_secs(60))?;
            ensure!(
                status.code() == Some(1),
                "the timed-out run should fail: {status}\n{}",
                procs::log_tail(&round.dir, "run", 30)
            );
        }
        Mode::KillCancel => {
            procs::kill9(&mut child);
            std::thread::sleep(lease + Duration::from_millis(500));
            let out = procs::runway(&round.dir, &round.url, &["cancel", &run_id])
                .output()
                .context("runway cancel")?;
            ensure!(
                out.status.success(),
                "runway cancel: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Mode::Cancel => {
            let out = procs::runway(&round.dir, &round.url, &["cancel", &run_id])
                .output()
                .context("runway cancel")?;
            ensure!(
                out.status.success(),
                "runway cancel: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            wait_exit(&mut child, Duration::from_secs(60))?;
        }
        Mode::Kill => {
            procs::kill9(&mut child);
            let resume = procs::runway(
                &round.dir,
                &round.url,
                &["run", "--resume", &run_id, "--lease", setup.lease],
            )
            .stdout(procs::log(&round.dir, "resume")?)
            .stderr(procs::log(&round.dir, "resume")?)
            .spawn()?;
            let mut resume = resume;
            let status = wait_exit(&mut resume, Duration::from_secs(90))?;
            ensure!(
                status.success(),
                "the resumed run should succeed: {status}\n{}",
                procs::log_tail(&round.dir, "resume", 30)
            );
        }
    }
    let run = store.run_get(&run_id).await?;
    let want = match mode {
        Mode::Timeout => RunStatus::Failed,
        Mode::Cancel | Mode::KillCancel => RunStatus::Cancelled,
        Mode::Kill => RunStatus::Succeeded,
    };
    ensure!(
        run.status == want,
        "run {run_id} is {} ({:?})",
        run.status,
        run.error
    );
    store.close().await;

    // For a cancel, `runway run` ends with the run while its attempts may still be in their
    // grace period; give the engine its bound, then count.
    let clean = procs::wait_for(bound.saturating_sub(asked.elapsed()), || {
        round.alive_all() == 0
    });
    let took = asked.elapsed();
    if clean {
        let slowest = report.slowest_clean.entry(mode).or_default();
        *slowest = (*slowest).max(took);
    }
    // Reparented processes are reaped by init: give it a moment before counting zombies.
    procs::wait_for(Duration::from_secs(2), || {
        (0..BEHAVIOURS.len()).all(|i| round.zombies(i) == 0)
    });
    for (i, (id, _)) in BEHAVIOURS.iter().enumerate() {
        let cell = report.cells.entry((mode, *id)).or_default();
        cell.rounds += 1;
        cell.started += started[i];
        let left = round.alive(i);
        let zombies = round.zombies(i);
        cell.left += left;
        cell.zombies += zombies;
        if left > 0 || zombies > 0 {
            report.problems.push(format!(
                "{} / {id}: {left} left, {zombies} zombies after {took:?}: {:?}",
                mode.name(),
                procs::marked(&format!("HYG_MARK={}-{i}", round.prefix), "")
            ));
        }
    }
    Ok(())
}

/// Sleepers of behaviour `i` alive (by their name in the command line).
fn sleepers_alive(round: &Round, i: usize) -> usize {
    let tag = format!("/{}-{i} ", round.prefix);
    procs::all()
        .into_iter()
        .filter(|p| !p.is_zombie() && p.comm.starts_with(&round.prefix) && p.cmdline.contains(&tag))
        .count()
}

fn runway_lease(text: &str) -> Duration {
    runway::playbook::duration::Duration::parse(text)
        .map(|d| d.as_std())
        .unwrap_or(Duration::from_secs(10))
}

fn wait_exit(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if began.elapsed() > limit {
            procs::kill9(child);
            bail!("runway did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
