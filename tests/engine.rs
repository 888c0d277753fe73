//! The engine end to end, through the library: playbooks written to a temp dir, compiled,
//! created in a fresh store and executed by an in-process worker (`Engine::work`), on
//! SQLite and on Postgres (`NAME::sqlite`, `NAME::postgres`).
//!
//! Side effects are counted from outside the engine: shell steps append a line to a
//! `ledger` file in the temp dir (`@log` in the fixtures expands to that), and phase marks
//! to a `trace` file (`@start`, and `end STEP` from `@log`).

#[path = "common/db.rs"]
mod db;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runway::engine::{self, Config, Decider, Engine, Origin};
use runway::plan::{Plan, bind_params};
use runway::source::Source;
use runway::state::{RunStatus, StepStatus};
use runway::store::{Run, StepJob, StepList, StepRun, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use db::Db;

/// How long any run may take before the test fails with its step table.
const DEADLINE: Duration = Duration::from_secs(60);

/// `@log`: the step's side effect, one ledger line, and its end mark in the trace.
const LOG: &str = r#"echo "$RUNWAY_STEP_ID $RUNWAY_ATTEMPT $RUNWAY_IDEMPOTENCY_KEY" >> ledger; echo "end $RUNWAY_STEP_ID" >> trace"#;
/// `@start`: the step's start mark in the trace.
const START: &str = r#"echo "start $RUNWAY_STEP_ID" >> trace"#;

conformance!(
    dag_runs_parallel_branches_and_joins_once,
    failed_attempts_are_retried_with_backoff_and_one_idempotency_key,
    a_timeout_kills_the_whole_process_tree,
    when_false_skips_and_the_skip_propagates,
    a_non_critical_failure_warns_and_the_run_succeeds,
    a_critical_failure_undoes_in_reverse_completion_order_then_on_failure,
    a_gate_says_no_go_on_a_critical_check_and_go_on_warnings,
    invoke_runs_a_child_playbook_with_params,
    invoke_of_a_failing_child_fails_the_step,
    wait_parks_without_a_worker_then_succeeds,
    an_approval_parks_the_run_durably,
    an_approval_without_a_decision_fails_at_its_timeout,
    runs_sharing_a_lock_run_one_after_the_other,
    cancel_stops_the_running_step_and_undoes_completed_ones,
    a_checkpoint_reaches_the_next_attempt,
    a_duplicated_job_does_nothing,
    a_false_expect_fails_the_step_naming_the_expression,
    outputs_reach_later_steps_through_templates,
    secrets_are_masked_in_outputs_errors_and_events,
    a_worker_stops_with_jobs_in_flight,
);

// ---------------------------------------------------------------------------------------
// Harness

/// A temp dir holding the playbooks (it is also the workers' workdir and workflows dir),
/// the ledger and trace files, and the store.
struct World {
    store: Store,
    dir: tempfile::TempDir,
}

/// One ledger line: a completed side effect.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    step: String,
    attempt: u32,
    key: String,
}

/// An in-process worker, stopped by [`Worker::stop`].
struct Worker {
    engine: Arc<Engine>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), engine::Error>>,
}

impl Worker {
    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .context("the worker stops within 15 s")?
            .context("the worker task")?
            .context("the worker ends cleanly")
    }
}

impl World {
    fn new(db: &Db) -> World {
        World {
            store: db.store.clone(),
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a playbook with `@log` and `@start` expanded; returns its text.
    fn write(&self, file: &str, yaml: &str) -> String {
        let text = yaml.replace("@start", START).replace("@log", LOG);
        std::fs::write(self.path().join(file), &text).expect("write playbook");
        text
    }

    fn compile(&self, file: &str) -> Result<(Plan, String)> {
        let text = std::fs::read_to_string(self.path().join(file))?;
        let source = Source {
            name: file.to_owned(),
            text: text.clone(),
        };
        let plan = engine::compile(source, self.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((plan, text))
    }

    /// Compiles `file`, binds `params` and creates the run.
    async fn start(&self, file: &str, params: &[(&str, &str)]) -> Result<(Run, Plan)> {
        let (plan, text) = self.compile(file)?;
        let given: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let bound = bind_params(&plan.playbook.params, &given)
            .map_err(|e| anyhow::anyhow!("bind params: {e:?}"))?;
        let origin = Origin {
            starter: "tester".into(),
            trigger: "manual".into(),
            parent: None,
        };
        let new = engine::new_run(&plan, &text, bound, &origin).map_err(anyhow::Error::msg)?;
        let run = self.store.run_create(&new).await?;
        Ok((run, plan))
    }

    fn config(&self) -> Config {
        Config {
            workdir: self.path().to_owned(),
            workflows: self.path().to_owned(),
            ..Config::default()
        }
    }

    fn worker(&self) -> Worker {
        self.worker_with(self.config())
    }

    fn worker_with(&self, config: Config) -> Worker {
        let engine = Engine::new(self.store.clone(), config);
        let stop = CancellationToken::new();
        let task = tokio::spawn(engine.clone().work(stop.clone()));
        Worker { engine, stop, task }
    }

    fn ledger(&self) -> Vec<Entry> {
        read_lines(&self.path().join("ledger"))
            .into_iter()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 3, "ledger line `{l}`");
                Entry {
                    step: f[0].to_owned(),
                    attempt: f[1].parse().expect("attempt"),
                    key: f[2].to_owned(),
                }
            })
            .collect()
    }

    /// The steps in the ledger, in order.
    fn ledger_steps(&self) -> Vec<String> {
        self.ledger().into_iter().map(|e| e.step).collect()
    }

    fn trace(&self) -> Vec<String> {
        read_lines(&self.path().join("trace"))
    }

    /// Position of `line` in the trace (it must be there exactly once).
    fn at(&self, line: &str) -> usize {
        let trace = self.trace();
        let hits: Vec<usize> = trace
            .iter()
            .enumerate()
            .filter(|(_, l)| *l == line)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits.len(), 1, "`{line}` once in the trace: {trace:#?}");
        hits[0]
    }

    async fn steps(&self, run_id: &str) -> Result<HashMap<String, StepRun>> {
        Ok(self
            .store
            .steps_of_run(run_id)
            .await?
            .into_iter()
            .map(|s| (s.step_id.clone(), s))
            .collect())
    }

    /// The run and its steps as a table, for failure messages.
    async fn table(&self, run_id: &str) -> String {
        let mut out = String::new();
        match self.store.run_get(run_id).await {
            Ok(run) => out.push_str(&format!(
                "run {} {} {:?}\n",
                run.id,
                run.status,
                run.error.as_deref().unwrap_or("")
            )),
            Err(e) => out.push_str(&format!("run {run_id}: {e}\n")),
        }
        for s in self.store.steps_of_run(run_id).await.unwrap_or_default() {
            out.push_str(&format!(
                "  {:<13} {:<14} {:<10} {}/{} lease={:?} ready_at={:?} error={:?}\n",
                s.list.as_str(),
                s.step_id,
                s.status.as_str(),
                s.attempt,
                s.max_attempts,
                s.lease_owner,
                s.ready_at.map(|t| t.to_rfc3339()),
                s.error.as_deref().unwrap_or("")
            ));
        }
        out.push_str(&format!(
            "ledger: {:?}\ntrace: {:?}\n",
            read_lines(&self.path().join("ledger")),
            self.trace()
        ));
        out
    }

    /// Polls until `done` holds for the run and its steps; fails with the step table after
    /// [`DEADLINE`].
    async fn wait_for<F>(&self, run_id: &str, what: &str, done: F) -> Result<Run>
    where
        F: Fn(&Run, &HashMap<String, StepRun>) -> bool,
    {
        let began = Instant::now();
        loop {
            let run = self.store.run_get(run_id).await?;
            let steps = self.steps(run_id).await?;
            if done(&run, &steps) {
                return Ok(run);
            }
            if began.elapsed() > DEADLINE {
                bail!(
                    "timed out after {DEADLINE:?} waiting for {what}\n{}",
                    self.table(run_id).await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the run to end, then checks that its evidence alone tells its story: an
    /// intact chain whose statuses are the rows' (what `runway verify RUN` checks).
    async fn wait_end(&self, run_id: &str) -> Result<Run> {
        let run = self
            .wait_for(run_id, "the run to end", |run, _| run.status.is_terminal())
            .await?;
        let evidence = self.store.evidence_of_run(run_id).await?;
        let report = runway::report::report(&evidence, chrono::Utc::now());
        ensure!(
            report.summary.chain.intact && report.store.problems.is_empty(),
            "the evidence of run {run_id} does not verify: {:#?}\n{}",
            report.store.problems,
            self.table(run_id).await
        );
        Ok(run)
    }

    /// Fails with the step table unless every `(step, status)` holds.
    async fn expect_statuses(&self, run_id: &str, want: &[(&str, StepStatus)]) -> Result<()> {
        let steps = self.steps(run_id).await?;
        for (id, status) in want {
            let got = steps.get(*id).map(|s| s.status);
            ensure!(
                got == Some(*status),
                "step `{id}` is {got:?}, expected {status:?}\n{}",
                self.table(run_id).await
            );
        }
        Ok(())
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// A number no other test (or earlier run) uses, for process markers.
fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    u64::from(nanos) * 1000 + u64::from(std::process::id() % 1000)
}

/// Processes whose command line matches `pattern` (`pgrep -af`).
fn processes(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-af", pattern])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits up to 15 s for every process matching `pattern` to be gone.
async fn all_gone(pattern: &str) -> Result<()> {
    let began = Instant::now();
    loop {
        let left = processes(pattern);
        if left.is_empty() {
            return Ok(());
        }
        if began.elapsed() > Duration::from_secs(15) {
            bail!("processes survived: {left:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn key(run: &Run, step: &str) -> String {
    format!("{}:{step}", run.id)
}

// ---------------------------------------------------------------------------------------
// Tests

async fn dag_runs_parallel_branches_and_joins_once(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "dag.yaml",
        r#"
runway: 1
name: dag
steps:
  - id: root
    shell:
      script: |
        @start
        sleep 1
        @log
  - id: left
    needs: [root]
    shell:
      script: |
        @start
        sleep 1
        @log
  - id: right
    needs: [root]
    shell:
      script: |
        @start
        sleep 1
        @log
  - id: join
    needs: [left, right]
    shell:
      script: |
        @start
        @log
  - id: free
    needs: []
    shell:
      script: |
        @start
        @log
"#,
    );
    let (run, _) = w.start("dag.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );

    let mut steps = w.ledger_steps();
    steps.sort();
    assert_eq!(
        steps,
        ["free", "join", "left", "right", "root"],
        "each once"
    );
    // Both branches started before either ended: they ran in parallel.
    for branch in ["left", "right"] {
        for other in ["left", "right"] {
            assert!(
                w.at(&format!("start {branch}")) < w.at(&format!("end {other}")),
                "{branch} started before {other} ended: {:?}",
                w.trace()
            );
        }
        assert!(w.at(&format!("start {branch}")) > w.at("end root"));
        assert!(w.at("start join") > w.at(&format!("end {branch}")));
    }
    // `needs: []` starts at once, alongside the first step rather than after it.
    assert!(w.at("start free") < w.at("end root"), "{:?}", w.trace());
    let rows = w.steps(&run.id).await?;
    assert!(rows["free"].started_at < rows["root"].finished_at);
    assert!(rows.values().all(|s| s.attempt == 1));
    Ok(())
}

async fn failed_attempts_are_retried_with_backoff_and_one_idempotency_key(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "retry.yaml",
        r#"
runway: 1
name: retry
steps:
  - id: flaky
    retry: { attempts: 3, backoff: 400ms }
    shell:
      script: |
        @log
        date +%s%N >> times
        [ "$RUNWAY_ATTEMPT" -ge 3 ]
  - id: stubborn
    critical: false
    retry: { attempts: 2, backoff: 100ms }
    shell:
      script: |
        @log
        echo "nope on attempt $RUNWAY_ATTEMPT" >&2
        exit 3
"#,
    );
    let (run, _) = w.start("retry.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );

    let ledger = w.ledger();
    let of =
        |step: &str| -> Vec<Entry> { ledger.iter().filter(|e| e.step == step).cloned().collect() };
    let flaky = of("flaky");
    assert_eq!(
        flaky.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3],
        "{ledger:?}"
    );
    assert!(
        flaky.iter().all(|e| e.key == key(&run, "flaky")),
        "{flaky:?}"
    );
    let stubborn = of("stubborn");
    assert_eq!(
        stubborn.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(stubborn.iter().all(|e| e.key == key(&run, "stubborn")));

    // Exponential backoff with 50-100% jitter: 400ms then 800ms, at least half of each.
    let times: Vec<u128> = read_lines(&w.path().join("times"))
        .iter()
        .map(|t| t.parse().expect("nanos"))
        .collect();
    assert_eq!(times.len(), 3);
    let gap = |i: usize| Duration::from_nanos(u64::try_from(times[i + 1] - times[i]).unwrap());
    assert!(
        gap(0) >= Duration::from_millis(200),
        "first gap {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_millis(400),
        "second gap {:?}",
        gap(1)
    );

    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["flaky"].status, StepStatus::Succeeded);
    assert_eq!(rows["flaky"].attempt, 3);
    assert_eq!(rows["flaky"].idempotency_key, key(&run, "flaky"));
    assert_eq!(rows["stubborn"].status, StepStatus::Warned);
    assert_eq!(rows["stubborn"].attempt, 2);
    let error = rows["stubborn"].error.clone().unwrap_or_default();
    assert!(
        error.contains("exited with status 3") && error.contains("nope on attempt 2"),
        "{error}"
    );
    let retried = w
        .store
        .events_of_run(&run.id)
        .await?
        .into_iter()
        .filter(|e| e.step_id.as_deref() == Some("flaky"))
        .count();
    assert!(retried >= 3, "flaky's attempts are in the evidence");
    Ok(())
}

async fn a_timeout_kills_the_whole_process_tree(db: Db) -> Result<()> {
    let w = World::new(&db);
    let mark = unique();
    w.write(
        "hang.yaml",
        &r#"
runway: 1
name: hang
steps:
  - id: hang
    timeout: 1s
    shell:
      script: |
        @start
        (setsid sleep 1000.MARK &)
        bash -c 'sleep 1001.MARK & wait' &
        sleep 1002.MARK &
        sleep 1003.MARK
        @log
  - id: after
    shell: { script: '@log' }
"#
        .replace("MARK", &mark.to_string()),
    );
    let pattern = format!(r"sleep 100[0-9]\.{mark}");
    let (run, _) = w.start("hang.yaml", &[]).await?;
    let began = Instant::now();
    let worker = w.worker();
    // All four sleeps were running at some point.
    w.wait_for(&run.id, "the sleeps to start", |_, _| {
        processes(&pattern).len() >= 4
    })
    .await?;
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Failed,
        "{}",
        w.table(&run.id).await
    );
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "the timeout was enforced"
    );
    w.expect_statuses(
        &run.id,
        &[
            ("hang", StepStatus::Failed),
            ("after", StepStatus::Cancelled),
        ],
    )
    .await?;
    let rows = w.steps(&run.id).await?;
    let error = rows["hang"].error.clone().unwrap_or_default();
    assert!(error.contains("timed out after 1s"), "{error}");
    assert!(w.ledger().is_empty(), "nothing got past the sleep");
    all_gone(&pattern).await
}

async fn when_false_skips_and_the_skip_propagates(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "when.yaml",
        r#"
runway: 1
name: when
params:
  go: { type: boolean, default: false }
steps:
  - id: maybe
    when: params.go
    shell: { script: '@log' }
  - id: after-maybe
    needs: [maybe]
    shell: { script: '@log' }
  - id: chained
    needs: [after-maybe]
    shell: { script: '@log' }
  - id: also
    needs: []
    shell: { script: '@log' }
  - id: mixed
    needs: [maybe, also]
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("when.yaml", &[]).await?;
    let (run_go, _) = w.start("when.yaml", &[("go", "true")]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    let end_go = w.wait_end(&run_go.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    ensure!(
        end_go.status == RunStatus::Succeeded,
        "{}",
        w.table(&run_go.id).await
    );
    w.expect_statuses(
        &run.id,
        &[
            ("maybe", StepStatus::Skipped),
            ("after-maybe", StepStatus::Skipped),
            ("chained", StepStatus::Skipped),
            ("also", StepStatus::Succeeded),
            ("mixed", StepStatus::Succeeded),
        ],
    )
    .await?;
    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["maybe"].attempt, 0, "a skipped step never runs");
    let ran: Vec<String> = w
        .ledger()
        .into_iter()
        .filter(|e| e.key.starts_with(&run.id))
        .map(|e| e.step)
        .collect();
    let mut ran_sorted = ran.clone();
    ran_sorted.sort();
    assert_eq!(ran_sorted, ["also", "mixed"], "{ran:?}");
    let ran_go = w
        .ledger()
        .into_iter()
        .filter(|e| e.key.starts_with(&run_go.id))
        .count();
    assert_eq!(ran_go, 5, "with go=true every step runs");
    Ok(())
}

async fn a_non_critical_failure_warns_and_the_run_succeeds(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "soft.yaml",
        r#"
runway: 1
name: soft
steps:
  - id: soft
    critical: false
    shell:
      script: |
        @log
        echo "disk almost full" >&2
        exit 4
  - id: next
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("soft.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    assert_eq!(end.error, None);
    w.expect_statuses(
        &run.id,
        &[
            ("soft", StepStatus::Warned),
            ("next", StepStatus::Succeeded),
        ],
    )
    .await?;
    let rows = w.steps(&run.id).await?;
    let error = rows["soft"].error.clone().unwrap_or_default();
    assert!(
        error.contains("exited with status 4") && error.contains("disk almost full"),
        "{error}"
    );
    assert_eq!(w.ledger_steps(), ["soft", "next"]);
    Ok(())
}

async fn a_critical_failure_undoes_in_reverse_completion_order_then_on_failure(
    db: Db,
) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "unwind.yaml",
        r#"
runway: 1
name: unwind
steps:
  - id: slow
    needs: []
    undo: undo-slow
    shell:
      script: |
        sleep 0.8
        @log
  - id: quick
    needs: []
    undo: undo-quick
    shell: { script: '@log' }
  - id: boom
    needs: [slow, quick]
    undo: undo-boom
    shell:
      script: |
        @log
        echo "migration 42 failed" >&2
        exit 3
  - id: never
    shell: { script: '@log' }
compensations:
  - id: undo-slow
    shell: { script: '@log' }
  - id: undo-quick
    shell: { script: '@log' }
  - id: undo-boom
    shell: { script: '@log' }
on_failure:
  - id: alert
    shell: { script: '@log' }
  - id: page
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("unwind.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Failed,
        "{}",
        w.table(&run.id).await
    );
    let error = end.error.clone().unwrap_or_default();
    assert!(
        error.contains("`boom`") && error.contains("exited with status 3"),
        "{error}"
    );
    // quick finished before slow, so slow is undone first.
    assert_eq!(
        w.ledger_steps(),
        [
            "quick",
            "slow",
            "boom",
            "undo-slow",
            "undo-quick",
            "alert",
            "page"
        ],
        "{}",
        w.table(&run.id).await
    );
    w.expect_statuses(
        &run.id,
        &[
            ("slow", StepStatus::Succeeded),
            ("quick", StepStatus::Succeeded),
            ("boom", StepStatus::Failed),
            ("never", StepStatus::Cancelled),
            ("undo-slow", StepStatus::Succeeded),
            ("undo-quick", StepStatus::Succeeded),
            ("undo-boom", StepStatus::Skipped),
            ("alert", StepStatus::Succeeded),
            ("page", StepStatus::Succeeded),
        ],
    )
    .await?;
    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["undo-slow"].list, StepList::Compensation);
    assert_eq!(rows["alert"].list, StepList::OnFailure);
    assert!(rows["undo-slow"].finished_at <= rows["undo-quick"].started_at);
    assert!(rows["undo-quick"].finished_at <= rows["alert"].started_at);
    assert!(rows["alert"].finished_at <= rows["page"].started_at);
    Ok(())
}

async fn a_gate_says_no_go_on_a_critical_check_and_go_on_warnings(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "gated.yaml",
        r#"
runway: 1
name: gated
params:
  hard: { type: string, default: fail }
steps:
  - id: c1
    needs: []
    shell: { script: '@log' }
  - id: c2
    needs: []
    shell:
      env: { HARD: '{{params.hard}}' }
      script: |
        sleep 0.5
        @log
        [ "$HARD" != fail ]
  - id: c3
    needs: []
    critical: false
    shell:
      script: |
        sleep 1
        @log
        exit 1
  - id: go-no-go
    needs: [c1, c2, c3]
    gate: {}
  - id: ship
    shell: { script: '@log' }
"#,
    );
    let (no_go, _) = w.start("gated.yaml", &[]).await?;
    let (go, _) = w.start("gated.yaml", &[("hard", "pass")]).await?;
    let worker = w.worker();
    let end_no_go = w.wait_end(&no_go.id).await?;
    let end_go = w.wait_end(&go.id).await?;
    worker.stop().await?;

    ensure!(
        end_no_go.status == RunStatus::Failed,
        "{}",
        w.table(&no_go.id).await
    );
    w.expect_statuses(
        &no_go.id,
        &[
            ("c1", StepStatus::Succeeded),
            ("c2", StepStatus::Failed),
            // Every check runs even after a critical one failed: then the gate decides.
            ("c3", StepStatus::Warned),
            ("go-no-go", StepStatus::Failed),
            ("ship", StepStatus::Cancelled),
        ],
    )
    .await?;
    let rows = w.steps(&no_go.id).await?;
    assert_eq!(
        rows["go-no-go"].error.as_deref(),
        Some("NO-GO: failed checks: c2")
    );
    let error = end_no_go.error.clone().unwrap_or_default();
    assert!(error.contains("go-no-go"), "{error}");

    ensure!(
        end_go.status == RunStatus::Succeeded,
        "{}",
        w.table(&go.id).await
    );
    w.expect_statuses(
        &go.id,
        &[
            ("c1", StepStatus::Succeeded),
            ("c2", StepStatus::Succeeded),
            ("c3", StepStatus::Warned),
            ("go-no-go", StepStatus::Succeeded),
            ("ship", StepStatus::Succeeded),
        ],
    )
    .await?;

    let verdicts = |events: Vec<runway::store::Event>| -> Vec<serde_json::Value> {
        events
            .into_iter()
            .filter(|e| e.kind == "gate.verdict")
            .map(|e| e.data)
            .collect()
    };
    let v = verdicts(w.store.events_of_run(&no_go.id).await?);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["verdict"], "NO-GO");
    assert_eq!(v[0]["failed"], serde_json::json!(["c2"]));
    assert_eq!(v[0]["warned"], serde_json::json!(["c3"]));
    let v = verdicts(w.store.events_of_run(&go.id).await?);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["verdict"], "GO");
    assert_eq!(v[0]["warned"], serde_json::json!(["c3"]));

    let shipped: Vec<Entry> = w
        .ledger()
        .into_iter()
        .filter(|e| e.step == "ship")
        .collect();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].key, key(&go, "ship"));
    Ok(())
}

const CHILD: &str = r#"
runway: 1
name: child
params:
  who: { type: string, required: true }
steps:
  - id: greet
    shell:
      env: { WHO: '{{params.who}}' }
      script: |
        @log
        echo "hello $WHO" >> trace
"#;

async fn invoke_runs_a_child_playbook_with_params(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write("child.yaml", CHILD);
    w.write(
        "parent.yaml",
        r#"
runway: 1
name: parent
params:
  who: { type: string, default: bob }
steps:
  - id: call
    invoke: { playbook: child, params: { who: '{{params.who}}' } }
  - id: after
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("parent.yaml", &[("who", "carol")]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    let child = w
        .store
        .run_child(&run.id, "call")
        .await?
        .context("the child run exists")?;
    assert_eq!(child.playbook, "child");
    assert_eq!(child.status, RunStatus::Succeeded);
    assert_eq!(child.parent_run_id.as_deref(), Some(run.id.as_str()));
    assert_eq!(child.parent_step_id.as_deref(), Some("call"));
    assert_eq!(child.params["who"], "carol");
    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["call"].status, StepStatus::Succeeded);
    let outputs = rows["call"].outputs.clone().unwrap_or_default();
    assert_eq!(outputs["child_run_id"], child.id.as_str(), "{outputs}");
    assert_eq!(w.ledger_steps(), ["greet", "after"]);
    assert_eq!(w.ledger()[0].key, key(&child, "greet"));
    assert!(w.trace().contains(&"hello carol".to_owned()));
    Ok(())
}

async fn invoke_of_a_failing_child_fails_the_step(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "broken-child.yaml",
        r#"
runway: 1
name: broken-child
steps:
  - id: explode
    shell:
      script: |
        @log
        exit 9
"#,
    );
    w.write(
        "caller.yaml",
        r#"
runway: 1
name: caller
steps:
  - id: call
    invoke: { playbook: broken-child }
  - id: after
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("caller.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Failed,
        "{}",
        w.table(&run.id).await
    );
    let child = w
        .store
        .run_child(&run.id, "call")
        .await?
        .context("the child run exists")?;
    assert_eq!(child.status, RunStatus::Failed);
    assert_eq!(child.parent_run_id.as_deref(), Some(run.id.as_str()));
    w.expect_statuses(
        &run.id,
        &[
            ("call", StepStatus::Failed),
            ("after", StepStatus::Cancelled),
        ],
    )
    .await?;
    let rows = w.steps(&run.id).await?;
    let error = rows["call"].error.clone().unwrap_or_default();
    assert!(error.contains(&child.id), "{error}");
    assert_eq!(w.ledger_steps(), ["explode"]);
    Ok(())
}

async fn wait_parks_without_a_worker_then_succeeds(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "pause.yaml",
        r#"
runway: 1
name: pause
steps:
  - id: pause
    wait: 1s
  - id: busy
    needs: []
    shell:
      script: |
        sleep 0.3
        @log
  - id: after
    needs: [pause]
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("pause.yaml", &[]).await?;
    // One slot: the parked timer must not hold it.
    let worker = w.worker_with(Config {
        concurrency: 1,
        ..w.config()
    });
    w.wait_for(&run.id, "the wait to park", |_, steps| {
        let p = &steps["pause"];
        p.status == StepStatus::Waiting && p.lease_owner.is_none() && p.ready_at.is_some()
    })
    .await?;
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    let rows = w.steps(&run.id).await?;
    let pause = &rows["pause"];
    assert_eq!(pause.status, StepStatus::Succeeded);
    let waited = pause.finished_at.unwrap() - run.created_at;
    assert!(
        waited >= chrono::Duration::milliseconds(1000),
        "waited {waited:?}"
    );
    assert!(rows["busy"].finished_at < pause.finished_at);
    let mut ledger = w.ledger_steps();
    ledger.sort();
    assert_eq!(ledger, ["after", "busy"]);
    Ok(())
}

async fn an_approval_parks_the_run_durably(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "approve.yaml",
        r#"
runway: 1
name: approve
steps:
  - id: before
    shell: { script: '@log' }
  - id: approve
    approval: { prompt: 'Go?' }
  - id: after
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("approve.yaml", &[]).await?;
    let worker = w.worker();
    let parked = |_: &Run, steps: &HashMap<String, StepRun>| {
        let a = &steps["approve"];
        a.status == StepStatus::Waiting && a.lease_owner.is_none() && a.ready_at.is_none()
    };
    w.wait_for(&run.id, "the approval to park", parked).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let engine = worker.engine.clone();
    // A duplicate delivery of the finished first step, mid-run, does nothing.
    engine
        .handle(StepJob {
            run_id: run.id.clone(),
            step_id: "before".into(),
            attempt: 1,
        })
        .await?;
    worker.stop().await?;

    // A new worker (as after a restart) finds the run still parked.
    let worker = w.worker();
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker.stop().await?;
    let now = w.store.run_get(&run.id).await?;
    ensure!(!now.status.is_terminal(), "{}", w.table(&run.id).await);
    let steps = w.steps(&run.id).await?;
    ensure!(parked(&now, &steps), "{}", w.table(&run.id).await);
    w.expect_statuses(
        &run.id,
        &[
            ("before", StepStatus::Succeeded),
            ("after", StepStatus::Pending),
        ],
    )
    .await?;
    assert_eq!(w.ledger_steps(), ["before"]);
    assert_eq!(steps["before"].attempt, 1);
    Ok(())
}

async fn an_approval_without_a_decision_fails_at_its_timeout(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "late.yaml",
        r#"
runway: 1
name: late
steps:
  - id: approve
    approval: { prompt: 'Go?' }
    timeout: 1s
  - id: after
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("late.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Failed,
        "{}",
        w.table(&run.id).await
    );
    w.expect_statuses(
        &run.id,
        &[
            ("approve", StepStatus::Failed),
            ("after", StepStatus::Cancelled),
        ],
    )
    .await?;
    let rows = w.steps(&run.id).await?;
    let error = rows["approve"].error.clone().unwrap_or_default();
    assert!(error.contains("no decision within 1s"), "{error}");
    let waited = rows["approve"].finished_at.unwrap() - run.created_at;
    assert!(waited >= chrono::Duration::milliseconds(1000), "{waited:?}");
    assert!(w.ledger().is_empty());
    Ok(())
}

async fn runs_sharing_a_lock_run_one_after_the_other(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "locked.yaml",
        r#"
runway: 1
name: locked
params:
  key: { type: string, required: true }
lock: 'lk/{{params.key}}'
steps:
  - id: work
    shell:
      script: |
        sleep 1
        @log
"#,
    );
    let (first, _) = w.start("locked.yaml", &[("key", "a")]).await?;
    let (second, _) = w.start("locked.yaml", &[("key", "a")]).await?;
    let (other, _) = w.start("locked.yaml", &[("key", "b")]).await?;
    assert_eq!(first.status, RunStatus::Running);
    assert_eq!(second.status, RunStatus::Queued);
    assert_eq!(
        other.status,
        RunStatus::Running,
        "another key is not blocked"
    );
    assert_eq!(second.lock_key.as_deref(), Some("lk/a"));

    let worker = w.worker();
    w.wait_for(&first.id, "the first run's step to run", |_, s| {
        s["work"].status == StepStatus::Running
    })
    .await?;
    let queued = w.store.run_get(&second.id).await?;
    assert_eq!(queued.status, RunStatus::Queued);
    assert_eq!(w.steps(&second.id).await?["work"].attempt, 0);

    let ends = [
        w.wait_end(&first.id).await?,
        w.wait_end(&second.id).await?,
        w.wait_end(&other.id).await?,
    ];
    worker.stop().await?;
    for end in &ends {
        ensure!(
            end.status == RunStatus::Succeeded,
            "{}",
            w.table(&end.id).await
        );
    }
    let a = &w.steps(&first.id).await?["work"];
    let b = &w.steps(&second.id).await?["work"];
    let c = &w.steps(&other.id).await?["work"];
    assert!(
        b.started_at >= a.finished_at,
        "the second run started after the first ended: {a:?} {b:?}"
    );
    assert!(c.started_at < a.finished_at, "key b ran alongside key a");
    assert_eq!(w.ledger().len(), 3);
    Ok(())
}

async fn cancel_stops_the_running_step_and_undoes_completed_ones(db: Db) -> Result<()> {
    let w = World::new(&db);
    let mark = unique();
    w.write(
        "cancel.yaml",
        &r#"
runway: 1
name: cancel
steps:
  - id: prep
    undo: unprep
    shell: { script: '@log' }
  - id: long
    undo: unlong
    shell:
      script: |
        @start
        sleep 1000.MARK
        @log
  - id: never
    shell: { script: '@log' }
compensations:
  - id: unprep
    shell: { script: '@log' }
  - id: unlong
    shell: { script: '@log' }
on_failure:
  - id: alarm
    shell: { script: '@log' }
"#
        .replace("MARK", &mark.to_string()),
    );
    let pattern = format!(r"sleep 1000\.{mark}");
    let (run, plan) = w.start("cancel.yaml", &[]).await?;
    let worker = w.worker();
    w.wait_for(&run.id, "the long step to run", |_, s| {
        s["long"].status == StepStatus::Running && !processes(&pattern).is_empty()
    })
    .await?;
    w.store
        .run_cancel(&run.id, "tester", "reason", &Decider { plan: &plan })
        .await?;
    let end = w.wait_end(&run.id).await?;
    // The running step's process is stopped (when its worker sees the lease gone).
    let gone = all_gone(&pattern).await;
    worker.stop().await?;
    gone?;
    ensure!(
        end.status == RunStatus::Cancelled,
        "{}",
        w.table(&run.id).await
    );
    w.expect_statuses(
        &run.id,
        &[
            ("prep", StepStatus::Succeeded),
            ("long", StepStatus::Cancelled),
            ("never", StepStatus::Cancelled),
            ("unprep", StepStatus::Succeeded),
            ("unlong", StepStatus::Skipped),
            ("alarm", StepStatus::Skipped),
        ],
    )
    .await?;
    // Let a late result of `long` arrive, if any would; none may be recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.ledger_steps(), ["prep", "unprep"]);
    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["long"].status, StepStatus::Cancelled);
    assert!(w.trace().contains(&"start long".to_owned()));
    Ok(())
}

async fn a_checkpoint_reaches_the_next_attempt(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "resume.yaml",
        r#"
runway: 1
name: resume
steps:
  - id: batches
    retry: { attempts: 2, backoff: 100ms }
    shell:
      script: |
        @log
        if [ -s "$RUNWAY_CHECKPOINT" ]; then
          echo "resumed $(cat "$RUNWAY_CHECKPOINT") on $RUNWAY_ATTEMPT" >> trace
        else
          echo "batch=7" > "$RUNWAY_CHECKPOINT"
          exit 1
        fi
"#,
    );
    let (run, _) = w.start("resume.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    assert!(
        w.trace().contains(&"resumed batch=7 on 2".to_owned()),
        "{:?}",
        w.trace()
    );
    let attempts: Vec<u32> = w.ledger().iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["batches"].attempt, 2);
    Ok(())
}

async fn a_duplicated_job_does_nothing(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "twice.yaml",
        r#"
runway: 1
name: twice
steps:
  - id: a
    shell: { script: '@log' }
  - id: b
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("twice.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    let rows = w.store.steps_of_run(&run.id).await?;
    let events = w.store.events_of_run(&run.id).await?;
    let ledger = w.ledger();
    for (step, attempt) in [("a", 1), ("b", 1), ("a", 2), ("b", 0)] {
        worker
            .engine
            .handle(StepJob {
                run_id: run.id.clone(),
                step_id: step.into(),
                attempt,
            })
            .await?;
    }
    // Also a job naming a step the plan does not have.
    worker
        .engine
        .handle(StepJob {
            run_id: run.id.clone(),
            step_id: "nope".into(),
            attempt: 1,
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await?;
    assert_eq!(w.ledger(), ledger, "no side effect repeated");
    assert_eq!(w.store.steps_of_run(&run.id).await?, rows);
    assert_eq!(w.store.events_of_run(&run.id).await?, events);
    assert_eq!(w.store.run_get(&run.id).await?, end);
    Ok(())
}

async fn a_false_expect_fails_the_step_naming_the_expression(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "expect.yaml",
        r#"
runway: 1
name: expect
steps:
  - id: probe
    retry: { attempts: 2, backoff: 100ms }
    shell:
      script: |
        @log
        echo "n=1" >> "$RUNWAY_OUTPUT"
    expect: outputs.n == "2"
  - id: after
    shell: { script: '@log' }
"#,
    );
    let (run, _) = w.start("expect.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Failed,
        "{}",
        w.table(&run.id).await
    );
    let rows = w.steps(&run.id).await?;
    assert_eq!(rows["probe"].status, StepStatus::Failed);
    let error = rows["probe"].error.clone().unwrap_or_default();
    assert!(error.contains(r#"outputs.n == "2""#), "{error}");
    assert!(error.contains("false"), "{error}");
    // A false expect is a failed attempt like any other: it is retried.
    assert_eq!(rows["probe"].attempt, 2);
    assert_eq!(
        rows["probe"].outputs.as_ref().map(|o| o["n"].clone()),
        Some("1".into())
    );
    assert_eq!(w.ledger_steps(), ["probe", "probe"]);
    let run_error = end.error.unwrap_or_default();
    assert!(run_error.contains("probe"), "{run_error}");
    Ok(())
}

async fn outputs_reach_later_steps_through_templates(db: Db) -> Result<()> {
    let w = World::new(&db);
    w.write(
        "outputs.yaml",
        r#"
runway: 1
name: outputs
steps:
  - id: a
    shell:
      script: |
        echo "n=42" >> "$RUNWAY_OUTPUT"
        echo "greeting=hello world" >> "$RUNWAY_OUTPUT"
  - id: b
    when: steps.a.outputs.n == "42"
    shell:
      env: { N: '{{steps.a.outputs.n}}', G: '{{steps.a.outputs.greeting}}' }
      script: |
        echo "env $N $G" >> trace
  - id: c
    shell:
      argv: [sh, -c, 'echo "argv $1" >> trace', sh, '{{steps.a.outputs.greeting}}']
"#,
    );
    let (run, _) = w.start("outputs.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    assert_eq!(w.trace(), ["env 42 hello world", "argv hello world"]);
    let rows = w.steps(&run.id).await?;
    let outputs = rows["a"].outputs.clone().context("a has outputs")?;
    assert_eq!(outputs["n"], "42");
    assert_eq!(outputs["exit_code"], 0);
    Ok(())
}

async fn secrets_are_masked_in_outputs_errors_and_events(db: Db) -> Result<()> {
    let w = World::new(&db);
    let name = format!("RW_TEST_CANARY_{}", db.store.backend().to_uppercase());
    let canary = format!("canary-{}", runway::store::new_id());
    // SAFETY: each test runs in its own process under nextest, and the variable's name is
    // unique to this test; nothing else reads or writes it concurrently.
    unsafe { std::env::set_var(&name, &canary) };
    w.write(
        "secret.yaml",
        &r#"
runway: 1
name: secret
secrets: [NAME]
steps:
  - id: leak
    shell:
      env: { TOKEN: '{{secrets.NAME}}' }
      script: |
        echo "token is $TOKEN"
        echo "token=$TOKEN" >> "$RUNWAY_OUTPUT"
        printf %s "$TOKEN" | base64
        echo "to stderr $TOKEN" >&2
        echo "$TOKEN" > seen
  - id: leak-in-error
    critical: false
    shell:
      env: { TOKEN: '{{secrets.NAME}}' }
      script: |
        echo "bad token $TOKEN" >&2
        exit 1
"#
        .replace("NAME", &name),
    );
    let (run, _) = w.start("secret.yaml", &[]).await?;
    let worker = w.worker();
    let end = w.wait_end(&run.id).await?;
    worker.stop().await?;
    ensure!(
        end.status == RunStatus::Succeeded,
        "{}",
        w.table(&run.id).await
    );
    // The step did get the value.
    assert_eq!(
        std::fs::read_to_string(w.path().join("seen"))?.trim(),
        canary
    );
    let rows = w.steps(&run.id).await?;
    let outputs = rows["leak"].outputs.clone().context("outputs")?;
    assert_eq!(outputs["token"], "***", "{outputs}");
    let stdout = outputs["stdout"].as_str().unwrap_or_default();
    assert!(stdout.contains("token is ***"), "{stdout}");
    let error = rows["leak-in-error"].error.clone().unwrap_or_default();
    assert!(error.contains("bad token ***"), "{error}");

    let b64 = {
        let out = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(canary.as_bytes())?;
                c.wait_with_output()
            })?;
        String::from_utf8(out.stdout)?
    };
    let stored = format!(
        "{:?}\n{}\n{:?}",
        w.store.steps_of_run(&run.id).await?,
        serde_json::to_string(&w.store.events_of_run(&run.id).await?)?,
        w.store.run_get(&run.id).await?
    );
    assert!(stored.contains("***"));
    assert!(!stored.contains(&canary), "the canary is stored: {stored}");
    assert!(!stored.contains(&b64), "its base64 is stored: {stored}");
    Ok(())
}

/// A worker told to stop while jobs are in flight (here the jobs of steps the hand-over
/// already ran, fetched a batch at a time) finishes them and stops. apalis' own shutdown
/// freezes its backend while jobs are in flight, and on SQLite that froze the one
/// connection the jobs needed: about one stop in six hung (see `engine::drain`).
async fn a_worker_stops_with_jobs_in_flight(db: Db) -> Result<()> {
    let w = World::new(&db);
    let mut yaml = String::from("runway: 1\nname: fan\nsteps:\n  - id: start\n    noop: {}\n");
    for i in 0..40 {
        yaml.push_str(&format!(
            "  - id: s{i}\n    needs: [start]\n    noop: {{}}\n"
        ));
    }
    w.write("fan.yaml", &yaml);
    for round in 0..8 {
        let worker = w.worker_with(Config {
            concurrency: 16,
            ..w.config()
        });
        let (run, _) = w.start("fan.yaml", &[]).await?;
        let run = w.wait_end(&run.id).await?;
        ensure!(run.status == RunStatus::Succeeded, "round {round}: {run:?}");
        worker
            .stop()
            .await
            .with_context(|| format!("round {round}: stop with jobs in flight"))?;
    }
    Ok(())
}
