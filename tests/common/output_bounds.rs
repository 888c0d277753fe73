//! Scenario 5, output bounds: shared by `tests/output_bounds.rs` (reduced sizes) and
//! `benches/hygiene.rs` (2 GB). One `runway worker` on a SQLite file runs a flood of
//! shell steps side by side: zeros to stdout, `yes` to stdout, one line of many megabytes,
//! random bytes (invalid UTF-8) on stdout and stderr, a `RUNWAY_OUTPUT` file far over its
//! limit, and output kept flowing for seconds; meanwhile a small run of three steps is
//! started and must complete. Measured from outside: the worker's peak resident memory
//! (`VmHWM`) against its peak after a small run alone, and the bytes each step stored in its
//! row and in its ending event, against the capture limit (64 KiB per stream, as stored).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runway::state::{RunStatus, StepStatus};
use runway::store::Store;

use super::procs;

/// The capture limit of stdout and of stderr (`exec::Limits::default`), as stored.
pub const TAIL_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Setup {
    /// Bytes of zeros, and of `yes`, to stdout.
    pub flood: u64,
    /// Bytes of the single line.
    pub line: u64,
    /// Bytes of random data, to stdout and to stderr each.
    pub random: u64,
    /// Bytes written to `RUNWAY_OUTPUT` (the limit is 1 MiB).
    pub output_file: u64,
    /// How long the trickle step keeps writing (the small run must finish meanwhile).
    pub trickle_secs: u32,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct StepFigures {
    pub step: String,
    pub status: String,
    /// Bytes the step wrote to stdout / stderr, as the capture counted them.
    pub stdout_total: u64,
    pub stderr_total: u64,
    /// Bytes of the stored stdout / stderr text, escaped as stored (JSON).
    pub stdout_stored: usize,
    pub stderr_stored: usize,
    /// Bytes of the step's whole `outputs` in its row, and of its ending event's data.
    pub row_bytes: usize,
    pub event_bytes: usize,
    pub truncated_marked: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<StepFigures>,
    /// `VmHWM` of the worker after a small run alone, and after the flood.
    pub baseline_peak: u64,
    pub flood_peak: u64,
    /// The small run started during the flood: its wall time, and whether the flood run
    /// was still running when it completed.
    pub small_run_secs: f64,
    pub small_run_during_flood: bool,
    pub wall: Duration,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn print(&self, title: &str) {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!("{title}");
        println!(
            "| step | status | stdout bytes written | stderr bytes written | stored stdout | stored stderr | row `outputs` | ending event | truncation marked | took |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for s in &self.steps {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
                s.step,
                s.status,
                s.stdout_total,
                s.stderr_total,
                s.stdout_stored,
                s.stderr_stored,
                s.row_bytes,
                s.event_bytes,
                if s.truncated_marked { "yes" } else { "no" },
                s.seconds
            );
        }
        println!(
            "  worker peak RSS (VmHWM): {:.1} MiB after a small run alone, {:.1} MiB after the flood",
            mib(self.baseline_peak),
            mib(self.flood_peak)
        );
        println!(
            "  small run started during the flood: completed in {:.1} s, flood still running then: {}",
            self.small_run_secs, self.small_run_during_flood
        );
        println!("  wall time {:.0} s", self.wall.as_secs_f64());
        for p in &self.problems {
            println!("  problem: {p}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "step": s.step, "status": s.status, "stdout_total": s.stdout_total,
                    "stderr_total": s.stderr_total, "stdout_stored": s.stdout_stored,
                    "stderr_stored": s.stderr_stored, "row_bytes": s.row_bytes,
                    "event_bytes": s.event_bytes, "truncated": s.truncated_marked,
                    "seconds": s.seconds,
                })
            })
            .collect();
        serde_json::json!({
            "scenario": "output_bounds", "steps": steps,
            "baseline_peak_bytes": self.baseline_peak, "flood_peak_bytes": self.flood_peak,
            "small_run_s": self.small_run_secs,
            "small_run_during_flood": self.small_run_during_flood,
            "wall_s": self.wall.as_secs_f64(), "problems": self.problems.len(),
        })
    }
}

fn flood_playbook(s: &Setup) -> String {
    format!(
        r#"runway: 1
name: flood
steps:
  - id: zeros
    needs: []
    shell: {{ argv: [head, -c, '{flood}', /dev/zero] }}
  - id: yes
    needs: []
    shell: {{ script: 'set +o pipefail; yes | head -c "$N"', env: {{ N: '{flood}' }} }}
  - id: one-line
    needs: []
    shell: {{ script: 'head -c "$N" /dev/zero | tr "\0" x; echo', env: {{ N: '{line}' }} }}
  - id: invalid-utf8
    needs: []
    shell: {{ script: 'head -c "$N" /dev/urandom; head -c "$N" /dev/urandom >&2', env: {{ N: '{random}' }} }}
  - id: big-output-file
    needs: []
    critical: false
    shell: {{ script: 'set +o pipefail; yes k=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv | head -c "$N" > "$RUNWAY_OUTPUT"', env: {{ N: '{output}' }} }}
  - id: trickle
    needs: []
    shell: {{ script: 'end=$((SECONDS + $T)); while [ $SECONDS -lt $end ]; do head -c 1048576 /dev/zero; done', env: {{ T: '{trickle}' }} }}
"#,
        flood = s.flood,
        line = s.line,
        random = s.random,
        output = s.output_file,
        trickle = s.trickle_secs,
    )
}

const SMALL: &str = r#"runway: 1
name: small
steps:
  - { id: one, shell: { argv: [echo, one] } }
  - { id: two, shell: { argv: [echo, two] } }
  - { id: three, shell: { argv: [echo, three] } }
"#;

pub async fn run(setup: &Setup) -> Result<Report> {
    let began = Instant::now();
    let dir = &setup.dir;
    std::fs::write(dir.join("flood.yaml"), flood_playbook(setup))?;
    std::fs::write(dir.join("small.yaml"), SMALL)?;
    let url = format!("sqlite://{}", dir.join("runway.db").display());
    let mut worker = procs::runway(
        dir,
        &url,
        &["worker", "--concurrency", "8", "--no-scheduler"],
    )
    .env("RUNWAY_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(procs::log(dir, "worker")?)
    .spawn()
    .context("runway worker starts")?;
    // It announces itself once its store is open and migrated; a `runway start` racing that
    // first migration of a new file would find the database locked.
    let ready = procs::wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(dir.join("worker.log")).is_ok_and(|l| l.contains("worker "))
    });
    if !ready {
        procs::kill9(&mut worker);
        bail!(
            "the worker did not start
{}",
            procs::log_tail(dir, "worker", 20)
        );
    }
    let result = measure(setup, &url, &mut worker, began).await;
    procs::kill9(&mut worker);
    result
}

async fn measure(setup: &Setup, url: &str, worker: &mut Child, began: Instant) -> Result<Report> {
    let dir = &setup.dir;
    let mut report = Report::default();
    let start = |playbook: &str, wait: bool| -> Result<(String, bool)> {
        let mut args = vec!["start", playbook];
        if wait {
            args.push("--wait");
        }
        let out = procs::runway(dir, url, &args).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = text.lines().next().unwrap_or_default().trim().to_owned();
        ensure!(
            id.len() == 26,
            "runway start {playbook}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((id, out.status.success()))
    };

    // The baseline: a small run alone.
    let (_, ok) = start("small.yaml", true)?;
    ensure!(
        ok,
        "the small run alone failed\n{}",
        procs::log_tail(dir, "worker", 30)
    );
    report.baseline_peak = procs::peak_rss(worker.id()).context("the worker's VmHWM")?;

    let store = Store::connect(url).await?;
    let (flood, _) = start("flood.yaml", false)?;
    // Once the flood's steps are all running, a small run is started and must complete.
    let running = async {
        for _ in 0..600 {
            let steps = store.steps_of_run(&flood).await?;
            if steps
                .iter()
                .all(|s| s.status != StepStatus::Ready && s.status != StepStatus::Pending)
            {
                return Ok::<bool, anyhow::Error>(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    };
    ensure!(running.await?, "the flood's steps did not all start");
    let small_began = Instant::now();
    let (small, ok) = start("small.yaml", true)?;
    report.small_run_secs = small_began.elapsed().as_secs_f64();
    ensure!(ok, "the small run during the flood failed");
    report.small_run_during_flood = !store.run_get(&flood).await?.status.is_terminal();
    ensure!(
        store.run_get(&small).await?.status == RunStatus::Succeeded,
        "small run"
    );

    let deadline = Instant::now() + Duration::from_secs(600);
    let run = loop {
        let run = store.run_get(&flood).await?;
        if run.status.is_terminal() {
            break run;
        }
        if Instant::now() > deadline || worker.try_wait()?.is_some() {
            bail!(
                "the flood run did not end ({})\n{}",
                run.status,
                procs::log_tail(dir, "worker", 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    report.flood_peak = procs::peak_rss(worker.id()).context("the worker's VmHWM")?;
    if run.status != RunStatus::Succeeded {
        report
            .problems
            .push(format!("the flood run is {} ({:?})", run.status, run.error));
    }

    let events = store.events_of_run(&flood).await?;
    for row in store.steps_of_run(&flood).await? {
        let outputs = row.outputs.clone().unwrap_or_default();
        let stored = |key: &str| {
            outputs[key]
                .as_str()
                .map_or(0, |s| serde_json::to_string(s).map_or(0, |j| j.len() - 2))
        };
        let total = |key: &str| outputs["truncated"][key].as_u64();
        let ending = events
            .iter()
            .rev()
            .find(|e| {
                e.step_id.as_deref() == Some(row.step_id.as_str())
                    && matches!(
                        e.kind.as_str(),
                        "step.succeeded" | "step.warned" | "step.failed"
                    )
            })
            .map(|e| serde_json::to_string(&e.data).map_or(0, |j| j.len()));
        let figures = StepFigures {
            step: row.step_id.clone(),
            status: row.status.as_str().to_owned(),
            stdout_total: total("stdout_bytes").unwrap_or(stored("stdout") as u64),
            stderr_total: total("stderr_bytes").unwrap_or(stored("stderr") as u64),
            stdout_stored: stored("stdout"),
            stderr_stored: stored("stderr"),
            row_bytes: serde_json::to_string(&outputs).map_or(0, |j| j.len()),
            event_bytes: ending.unwrap_or(0),
            truncated_marked: outputs.get("truncated").is_some(),
            seconds: match (row.started_at, row.finished_at) {
                (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
                _ => 0.0,
            },
        };
        check(setup, &row.step_id, &row, &figures, &mut report.problems);
        report.steps.push(figures);
    }
    store.close().await;
    report.wall = began.elapsed();
    Ok(report)
}

/// What each step must show.
fn check(
    setup: &Setup,
    step: &str,
    row: &runway::store::StepRun,
    f: &StepFigures,
    problems: &mut Vec<String>,
) {
    let mut fail = |what: String| problems.push(format!("{step}: {what}"));
    if f.stdout_stored > TAIL_LIMIT || f.stderr_stored > TAIL_LIMIT {
        fail(format!(
            "stored {} + {} bytes of output, over the {TAIL_LIMIT}-byte limit",
            f.stdout_stored, f.stderr_stored
        ));
    }
    // Two tails, the exit code and the truncation record; an error message at most.
    let row_cap = 2 * TAIL_LIMIT + 1024;
    if f.row_bytes > row_cap || f.event_bytes > row_cap + 1024 {
        fail(format!(
            "row outputs {} / event {} bytes, over {row_cap}",
            f.row_bytes, f.event_bytes
        ));
    }
    if f.event_bytes == 0 {
        fail("no ending event".into());
    }
    let expect_total = |want: u64, got: u64, stream: &str, fail: &mut dyn FnMut(String)| {
        if got != want {
            fail(format!("{stream}: {got} bytes counted, {want} written"));
        }
    };
    match step {
        "zeros" | "yes" => expect_total(setup.flood, f.stdout_total, "stdout", &mut fail),
        "one-line" => expect_total(setup.line + 1, f.stdout_total, "stdout", &mut fail),
        "invalid-utf8" => {
            expect_total(setup.random, f.stdout_total, "stdout", &mut fail);
            expect_total(setup.random, f.stderr_total, "stderr", &mut fail);
        }
        _ => {}
    }
    match step {
        "big-output-file" => {
            let refused = row.status == StepStatus::Warned
                && row
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("RUNWAY_OUTPUT") && e.contains("over the limit"));
            if !refused {
                fail(format!(
                    "should be refused (warned, RUNWAY_OUTPUT over the limit): {} {:?}",
                    row.status, row.error
                ));
            }
            if row.outputs.as_ref().is_some_and(|o| o.get("k").is_some()) {
                fail("kept values of an oversized RUNWAY_OUTPUT".into());
            }
        }
        _ => {
            if row.status != StepStatus::Succeeded {
                fail(format!("{} ({:?})", row.status, row.error));
            }
            if !f.truncated_marked {
                fail("truncation is not marked".into());
            }
        }
    }
}
