//! Evidence on both backends (`NAME::sqlite`, `NAME::postgres`): the store's evidence read
//! and recorded chain head, reports derived from the chain agreeing with the rows, and
//! tampering, in the database and in exported JSON, always detected.
//!
//! Tampering is random but reproducible: each case draws its edit from a seeded generator
//! and names the seed when it fails. Database edits go around the append-only triggers the
//! way someone with the database's superuser or file would (disabling the Postgres trigger,
//! dropping the SQLite ones).

#[path = "common/db.rs"]
mod db;
#[path = "common/webhook.rs"]
mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runway::engine::human::{Operator, Request, prepare};
use runway::engine::{self, Config, Decider, Engine, Origin};
use runway::plan::{bind_params, content_hash};
use runway::report::{self, Format, verify};
use runway::source::Source;
use runway::state::{RunStatus, StepStatus};
use runway::store::{
    Event, Finish, Guard, NewEvent, NewRun, NewStep, Run, StepList, Store, Verdict, chain, new_id,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use db::{Db, exec};

conformance!(
    evidence_is_read_in_one_snapshot_with_the_recorded_head_and_links,
    the_recorded_head_follows_every_event_and_never_moves_back,
    a_report_of_a_real_run_agrees_with_its_rows_and_its_export_verifies,
    database_tampering_is_always_detected,
    exported_json_tampering_is_always_detected,
    an_approval_that_times_out_escalates_and_waits_on,
    reports_render_as_their_snapshots,
);

// ---------------------------------------------------------------------------------------
// Runs made through the store's operations (fast; used where many runs are needed)

const SMALL: &str = "runway: 1\nname: small\nsteps:\n  - id: a\n    noop: {}\n  - id: b\n    noop: {}\n  - id: c\n    noop: {}\n";

fn small_run(parent: Option<(&str, &str)>) -> NewRun {
    NewRun {
        id: new_id(),
        playbook: "small".into(),
        content_hash: content_hash(SMALL),
        definition: SMALL.into(),
        params: json!({ "school_slug": "north" }),
        starter: "alice".into(),
        trigger: "manual".into(),
        lock_key: None,
        queue_on_lock: true,
        parent_run_id: parent.map(|p| p.0.to_owned()),
        parent_step_id: parent.map(|p| p.1.to_owned()),
        steps: ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, id)| NewStep {
                step_id: (*id).into(),
                list: StepList::Main,
                status: if i == 0 {
                    StepStatus::Ready
                } else {
                    StepStatus::Pending
                },
                max_attempts: 3,
                outputs: None,
            })
            .collect(),
    }
}

/// A run of [`SMALL`] taken to its end through the store: `a` retried once then done,
/// `b` done with outputs, `c` failed, notes appended: about fifteen events.
async fn small_finished_run(store: &Store) -> Result<Run> {
    let run = store.run_create(&small_run(None)).await?;
    let claim = |step: &'static str| {
        let (store, run_id) = (store.clone(), run.id.clone());
        async move {
            store
                .step_claim(&run_id, step, "w1", Duration::from_secs(3600))
                .await?
                .lease()
                .context("leased")
        }
    };
    let lease = claim("a").await?;
    let retry = runway::store::Retry {
        ready_at: chrono::Utc::now(),
        error: Some("exited with status 1".into()),
        checkpoint: Some(b"batch=3".to_vec()),
    };
    store.step_retry_later(&lease, &retry).await?;
    let lease = claim("a").await?;
    let mut done = Finish::new(StepStatus::Succeeded);
    done.then = vec![runway::store::Decision::ready("b")];
    store.step_finish(&Guard::Lease(lease), &done).await?;
    let lease = claim("b").await?;
    let mut done = Finish::new(StepStatus::Succeeded);
    done.outputs = Some(json!({ "rows": 12, "stdout": "imported 12 rows\n" }));
    done.then = vec![runway::store::Decision::ready("c")];
    store.step_finish(&Guard::Lease(lease), &done).await?;
    store
        .events_append(
            &run.id,
            &[NewEvent::run(
                "note",
                json!({ "text": "half way", "n": [1, 2] }),
            )],
        )
        .await?;
    let lease = claim("c").await?;
    let mut failed = Finish::new(StepStatus::Failed);
    failed.error = Some("timed out after 10s".into());
    failed.run_status = Some(RunStatus::Failed);
    store.step_finish(&Guard::Lease(lease), &failed).await?;
    // Last, an event that changes no status: only the recorded head shows it missing.
    store
        .events_append(
            &run.id,
            &[NewEvent::run("note", json!({ "text": "ended" }))],
        )
        .await?;
    Ok(store.run_get(&run.id).await?)
}

/// Everything `runway verify RUN` looks at: the chain's first bad event and the store's
/// disagreements with it.
async fn verdict_of(store: &Store, run_id: &str) -> Result<(Option<i64>, Vec<String>)> {
    let evidence = store.evidence_of_run(run_id).await?;
    let r = report::report(&evidence, chrono::Utc::now());
    Ok((r.summary.chain.first_bad, r.store.problems))
}

async fn evidence_is_read_in_one_snapshot_with_the_recorded_head_and_links(db: Db) -> Result<()> {
    let store = &db.store;
    let parent = small_finished_run(store).await?;
    let child = store
        .run_create(&small_run(Some((&parent.id, "b"))))
        .await?;
    let e = store.evidence_of_run(&parent.id).await?;
    assert_eq!(e.run.id, parent.id);
    assert_eq!(
        e.steps
            .iter()
            .map(|s| s.step_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(e.steps[0].checkpoint.as_deref(), Some(&b"batch=3"[..]));
    let last = e.events.last().context("events")?;
    let head = e.head.clone().context("a recorded head")?;
    assert_eq!(
        (head.seq, head.hash.as_str()),
        (last.seq, last.hash.as_str())
    );
    assert_eq!(e.events, store.events_of_run(&parent.id).await?);
    assert_eq!(
        e.children.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [child.id.as_str()]
    );
    assert!(e.parent.is_none());
    let c = store.evidence_of_run(&child.id).await?;
    assert_eq!(c.parent.map(|p| p.id), Some(parent.id.clone()));
    let err = store.evidence_of_run("nope").await.unwrap_err();
    assert!(matches!(err, runway::store::Error::RunNotFound(_)), "{err}");
    // The report reads the chain the same way the rows say.
    assert_eq!(verdict_of(store, &parent.id).await?, (None, Vec::new()));
    let r = report::report(
        &store.evidence_of_run(&parent.id).await?,
        chrono::Utc::now(),
    );
    let a = &r.summary.steps[0];
    assert_eq!((a.status.as_str(), a.attempts), ("succeeded", 2));
    assert_eq!(a.checkpoint_bytes, Some(7));
    assert_eq!(r.summary.children[0].run_id, child.id);
    assert!(!r.summary.children[0].sealed, "linked by the store only");
    assert_eq!(r.summary.run.status, "failed");
    Ok(())
}

async fn the_recorded_head_follows_every_event_and_never_moves_back(db: Db) -> Result<()> {
    let store = &db.store;
    let run = store.run_create(&small_run(None)).await?;
    for i in 0..3 {
        store
            .events_append(&run.id, &[NewEvent::run("note", json!({ "i": i }))])
            .await?;
        let e = store.evidence_of_run(&run.id).await?;
        let head = e.head.context("head")?;
        assert_eq!(head.seq, i + 2);
        assert_eq!(head.hash, e.events.last().context("last")?.hash);
    }
    let back = format!("UPDATE run_heads SET seq = 1 WHERE run_id = '{}'", run.id);
    let err = exec(store, &back).await.expect_err("refused");
    assert!(err.contains("only move forward"), "{err}");
    let gone = format!("DELETE FROM run_heads WHERE run_id = '{}'", run.id);
    let err = exec(store, &gone).await.expect_err("refused");
    assert!(err.contains("only move forward"), "{err}");
    // A chain cut short at its end is still a chain; the recorded head tells.
    let run = small_finished_run(store).await?;
    disable_guards(store).await?;
    let last = store.evidence_of_run(&run.id).await?.events.len();
    let cut = format!(
        "DELETE FROM events WHERE run_id = '{}' AND seq = {last}",
        run.id
    );
    exec(store, &cut).await.map_err(anyhow::Error::msg)?;
    let (first_bad, problems) = verdict_of(store, &run.id).await?;
    assert_eq!(first_bad, None, "what is left is a valid chain");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains(&format!("recorded the chain's head as event {last}"))
            && problems[0].contains("events were removed from its end"),
        "{problems:#?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tampering in the database

/// A small deterministic generator (splitmix64): tampering is random, failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn disable_guards(store: &Store) -> Result<()> {
    let statements: &[&str] = match store {
        Store::Postgres(_) => &[
            "ALTER TABLE events DISABLE TRIGGER events_append_only",
            "ALTER TABLE run_heads DISABLE TRIGGER run_heads_forward_only",
        ],
        Store::Sqlite(_) => &[
            "DROP TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete",
            "DROP TRIGGER run_heads_forward_only",
        ],
    };
    for s in statements {
        exec(store, s).await.map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// One random edit of the run's stored evidence; returns what it did, for messages.
async fn tamper(store: &Store, run: &Run, events: &[Event], rng: &mut Rng) -> Result<String> {
    let n = events.len() as i64;
    let id = quote(&run.id);
    let k = rng.range(1, n);
    let e = &events[(k - 1) as usize];
    let (what, sql): (String, Vec<String>) = match rng.range(0, 8) {
        0 => {
            let mut data = e.data.clone();
            edit_leaf(&mut data, rng);
            (
                format!("edit the data of event {k}"),
                vec![format!(
                    "UPDATE events SET data = {} WHERE run_id = {id} AND seq = {k}",
                    quote(&data.to_string())
                )],
            )
        }
        1 => (
            format!("rename the kind of event {k}"),
            vec![format!(
                "UPDATE events SET kind = kind || 'x' WHERE run_id = {id} AND seq = {k}"
            )],
        ),
        2 => (
            format!("move event {k} one millisecond"),
            vec![format!(
                "UPDATE events SET at = at + 1 WHERE run_id = {id} AND seq = {k}"
            )],
        ),
        3 => (
            format!("delete event {k}"),
            vec![format!(
                "DELETE FROM events WHERE run_id = {id} AND seq = {k}"
            )],
        ),
        4 => {
            let j = if k == n { k - 1 } else { k + 1 };
            (
                format!("swap events {k} and {j}"),
                vec![
                    format!("UPDATE events SET seq = 1000000 WHERE run_id = {id} AND seq = {k}"),
                    format!("UPDATE events SET seq = {k} WHERE run_id = {id} AND seq = {j}"),
                    format!("UPDATE events SET seq = {j} WHERE run_id = {id} AND seq = 1000000"),
                ],
            )
        }
        5 => {
            // A forged event slipped in before event k, hashed correctly onto the chain
            // before it, the later events renumbered: the next one no longer links.
            let prev = if k == 1 {
                chain::GENESIS.to_owned()
            } else {
                events[(k - 2) as usize].hash.clone()
            };
            let data = json!({ "operator": "mallory", "verdict": "approve" });
            let hash = chain::hash(&chain::Fields {
                run_id: &run.id,
                seq: k,
                at_ms: e.at.timestamp_millis(),
                kind: "step.decision",
                step_id: Some("b"),
                attempt: Some(1),
                data: &data,
                prev_hash: &prev,
            });
            (
                format!("insert a forged event before event {k}"),
                vec![
                    format!(
                        "UPDATE events SET seq = seq + 1000000 WHERE run_id = {id} AND seq >= {k}"
                    ),
                    format!(
                        "UPDATE events SET seq = seq - 999999 WHERE run_id = {id} AND seq > 1000000"
                    ),
                    format!(
                        "INSERT INTO events (run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash) \
                         VALUES ({id}, {k}, {}, 'step.decision', 'b', 1, {}, {}, {})",
                        e.at.timestamp_millis(),
                        quote(&data.to_string()),
                        quote(&prev),
                        quote(&hash)
                    ),
                ],
            )
        }
        6 => {
            // Edited and re-sealed: its own hash matches, but the next event still links
            // to the old one (or, for the last event, the recorded head does).
            let mut forged = e.clone();
            edit_leaf(&mut forged.data, rng);
            let hash = chain::expected_hash(&forged);
            (
                format!("edit and re-seal event {k}"),
                vec![format!(
                    "UPDATE events SET data = {}, hash = {} WHERE run_id = {id} AND seq = {k}",
                    quote(&forged.data.to_string()),
                    quote(&hash)
                )],
            )
        }
        7 => (
            format!("remove the last {} event(s)", n - k + 1),
            vec![format!(
                "DELETE FROM events WHERE run_id = {id} AND seq >= {k}"
            )],
        ),
        _ => (
            "change a step's row".to_owned(),
            vec![format!(
                "UPDATE step_runs SET status = 'succeeded' WHERE run_id = {id} AND step_id = 'c'"
            )],
        ),
    };
    for s in &sql {
        exec(store, s)
            .await
            .map_err(|e| anyhow::anyhow!("{what}: {s}: {e}"))?;
    }
    Ok(what)
}

/// Changes one leaf (or adds a key) somewhere in `value`.
fn edit_leaf(value: &mut Value, rng: &mut Rng) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.range(0, 4) > 0 => {
            let i = rng.range(0, map.len() as i64 - 1) as usize;
            let key = map.keys().nth(i).cloned().unwrap_or_default();
            if let Some(v) = map.get_mut(&key) {
                edit_leaf(v, rng);
            }
        }
        Value::Object(map) => {
            map.insert("forged".into(), json!(true));
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.range(0, items.len() as i64 - 1) as usize;
            edit_leaf(&mut items[i], rng);
        }
        Value::Array(items) => items.push(json!("forged")),
        Value::String(s) => s.push('x'),
        Value::Number(n) => *value = json!(n.as_f64().unwrap_or(0.0) + 1.0),
        Value::Bool(b) => *b = !*b,
        Value::Null => *value = json!("forged"),
    }
}

async fn database_tampering_is_always_detected(db: Db) -> Result<()> {
    let store = &db.store;
    disable_guards(store).await?;
    for case in 0..40u64 {
        let seed = 0x5eed_0000 + case;
        let mut rng = Rng(seed);
        let run = small_finished_run(store).await?;
        let before = store.evidence_of_run(&run.id).await?;
        ensure!(
            verdict_of(store, &run.id).await? == (None, Vec::new()),
            "seed {seed}: a clean run verifies"
        );
        let what = tamper(store, &run, &before.events, &mut rng).await?;
        let (first_bad, problems) = verdict_of(store, &run.id).await?;
        ensure!(
            first_bad.is_some() || !problems.is_empty(),
            "seed {seed}: `{what}` was not detected"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A real run, through the engine

const GATED: &str = r#"
runway: 1
name: gated
title: Gated release of {{params.app}}
params:
  app: { type: string, default: portal }
secrets: [API_TOKEN]
steps:
  - id: build
    title: Build {{params.app}}
    shell:
      script: |
        if [ ! -f built ]; then touch built; echo "first try fails" >&2; exit 3; fi
        echo "version=1.4.2" >> "$RUNWAY_OUTPUT"
        echo 'built | with `backticks` and ``` fences'
    retry: { attempts: 2, backoff: 100ms }
    mutates: false
  - id: lint
    needs: []
    critical: false
    shell: { argv: ['false'] }
    mutates: false
  - id: optional
    needs: [build]
    when: params.app == "never"
    noop: {}
  - id: child
    needs: [build]
    invoke: { playbook: leaf, params: { note: '{{steps.build.outputs.version}}' } }
  - id: go-no-go
    needs: [build, lint, child]
    gate: {}
  - id: smoke
    checklist:
      items:
        - { id: login, text: 'Login works on {{params.app}}' }
        - { id: export, text: Export works, required: false }
  - id: approve
    approval: { prompt: 'Release {{params.app}} {{steps.build.outputs.version}}?', exclude_starter: true }
  - id: done
    shell: { argv: [echo, done] }
    mutates: false
"#;

const LEAF: &str = "runway: 1\nname: leaf\nparams:\n  note: { type: string }\nsteps:\n  - id: say\n    shell: { argv: [echo, '{{params.note}}'] }\n    mutates: false\n";

/// A run executed by an in-process worker, with people's decisions made the way
/// `runway approve|reject|check` makes them.
struct Live {
    store: Store,
    plan: runway::plan::Plan,
    run: Run,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), engine::Error>>,
}

impl Live {
    /// Writes `files` into `dir` (the workers' workdir and workflows), starts the run of
    /// `main` (one of them) with `params`, started by carol, and a worker.
    async fn start(
        store: &Store,
        dir: &std::path::Path,
        files: &[(&str, &str)],
        params: &[(&str, &str)],
    ) -> Result<Live> {
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        let (name, text) = files[0];
        let plan = engine::compile(
            Source {
                name: name.into(),
                text: text.into(),
            },
            dir,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let given: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let bound =
            bind_params(&plan.playbook.params, &given).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let origin = Origin {
            starter: "carol".into(),
            trigger: "manual".into(),
            parent: None,
        };
        let new = engine::new_run(&plan, text, bound, &origin).map_err(anyhow::Error::msg)?;
        let run = store.run_create(&new).await?;
        let config = Config {
            workdir: dir.to_owned(),
            workflows: dir.to_owned(),
            ..Config::default()
        };
        let engine = Engine::new(store.clone(), config);
        let stop = CancellationToken::new();
        let task = tokio::spawn(Arc::clone(&engine).work(stop.clone()));
        Ok(Live {
            store: store.clone(),
            plan,
            run,
            stop,
            task,
        })
    }

    /// Polls (up to 60 s) until `done` holds for the run's row and steps.
    async fn until(
        &self,
        what: &str,
        done: impl Fn(&Run, &[runway::store::StepRun]) -> bool,
    ) -> Result<Run> {
        let began = Instant::now();
        loop {
            let run = self.store.run_get(&self.run.id).await?;
            let steps = self.store.steps_of_run(&self.run.id).await?;
            if done(&run, &steps) {
                return Ok(run);
            }
            if began.elapsed() > Duration::from_secs(60) {
                bail!("waited in vain for {what}: {run:#?}\n{steps:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn waiting(&self, step: &str) -> Result<Run> {
        self.until(&format!("`{step}` to wait"), |_, steps| {
            steps
                .iter()
                .any(|s| s.step_id == step && s.status == StepStatus::Waiting)
        })
        .await
    }

    /// `who` decides at `step` (an item of a checklist when `item` is given).
    async fn decide(
        &self,
        step: &str,
        who: &str,
        verdict: Verdict,
        item: Option<&str>,
    ) -> Result<()> {
        let run = self.store.run_get(&self.run.id).await?;
        let operator = Operator {
            name: who.into(),
            roles: Vec::new(),
        };
        let request = Request {
            verdict,
            item: item.map(str::to_owned),
            comment: Some(format!("{who} looked at {step}")),
            plan_hash: None,
        };
        let (new, judge) =
            prepare(&self.plan, &run, step, &operator, &request).map_err(anyhow::Error::msg)?;
        self.store
            .step_decide(
                &run.id,
                step,
                &new,
                judge.as_ref(),
                &Decider { plan: &self.plan },
            )
            .await?;
        Ok(())
    }

    /// Waits for the run to end and stops the worker.
    async fn end(self) -> Result<Run> {
        let end = self
            .until("the run to end", |run, _| run.status.is_terminal())
            .await?;
        self.stop.cancel();
        self.task.await??;
        Ok(end)
    }
}

/// Runs [`GATED`] to its end, answering the checklist and the approval as other people
/// would; returns the run.
async fn gated_run(store: &Store, dir: &std::path::Path) -> Result<Run> {
    let live = Live::start(
        store,
        dir,
        &[("gated.yaml", GATED), ("leaf.yaml", LEAF)],
        &[],
    )
    .await?;
    live.waiting("smoke").await?;
    // The optional item first: passing the required one ends the checklist.
    live.decide("smoke", "bob", Verdict::Na, Some("export"))
        .await?;
    live.decide("smoke", "bob", Verdict::Pass, Some("login"))
        .await?;
    live.waiting("approve").await?;
    live.decide("approve", "alice", Verdict::Approve, None)
        .await?;
    let end = live.end().await?;
    ensure!(end.status == RunStatus::Succeeded, "{end:?}");
    Ok(end)
}

async fn a_report_of_a_real_run_agrees_with_its_rows_and_its_export_verifies(db: Db) -> Result<()> {
    let store = &db.store;
    let dir = tempfile::tempdir()?;
    let run = gated_run(store, dir.path()).await?;
    let evidence = store.evidence_of_run(&run.id).await?;
    let r = report::report(&evidence, chrono::Utc::now());
    assert!(r.store.problems.is_empty(), "{:#?}", r.store.problems);
    assert!(r.summary.chain.intact);
    let s = &r.summary;
    assert_eq!(s.playbook.title, "Gated release of {{params.app}}");
    assert!(s.playbook.definition_matches);
    let step = |id: &str| s.steps.iter().find(|e| e.id == id).unwrap();
    assert_eq!(step("build").title, "Build portal");
    assert_eq!((step("build").attempts, step("build").max_attempts), (2, 2));
    assert!(step("build").history.iter().any(|h| h.kind == "step.retry"));
    assert_eq!(step("lint").status, "warned");
    assert_eq!(step("optional").status, "skipped");
    assert_eq!(s.gates.len(), 1);
    let gate = &s.gates[0];
    assert_eq!((gate.verdict.as_str(), gate.go), ("GO", true));
    let checks: Vec<(&str, &str, bool)> = gate
        .checks
        .iter()
        .map(|c| (c.id.as_str(), c.result.as_str(), c.critical))
        .collect();
    assert_eq!(
        checks,
        [
            ("build", "passed", true),
            ("lint", "warned", false),
            ("child", "passed", true)
        ]
    );
    assert_eq!(s.approvals.len(), 1);
    let a = &s.approvals[0];
    assert_eq!(a.prompt, "Release portal 1.4.2?");
    assert_eq!(
        (a.operator.as_str(), a.verdict.as_str()),
        ("alice", "approve")
    );
    assert!(a.plan_hash_matches);
    assert_eq!(a.plan_hash, s.run.plan_hash);
    let items: Vec<(&str, Option<&str>)> = s.checklists[0]
        .items
        .iter()
        .map(|i| (i.text.as_str(), i.answer.as_deref()))
        .collect();
    assert_eq!(
        items,
        [
            ("Login works on portal", Some("pass")),
            ("Export works", Some("na"))
        ]
    );
    assert_eq!(s.children.len(), 1);
    assert!(s.children[0].sealed);
    assert_eq!(s.children[0].status.as_deref(), Some("succeeded"));
    assert_eq!(s.secrets, ["API_TOKEN"]);
    // The child's own report names its parent.
    let child = store.evidence_of_run(&s.children[0].run_id).await?;
    let cr = report::report(&child, chrono::Utc::now());
    assert!(cr.store.problems.is_empty(), "{:#?}", cr.store.problems);
    let parent = cr.summary.run.parent.context("parent")?;
    assert_eq!(
        (parent.run_id.as_str(), parent.step_id.as_deref()),
        (run.id.as_str(), Some("child"))
    );

    // Every format renders; the export verifies offline and against the store.
    for format in [Format::Md, Format::Html, Format::Json] {
        let text = report::render(&r, format)?;
        assert!(
            text.contains(s.chain.head_hash.as_deref().unwrap()),
            "{format:?}"
        );
    }
    let export = verify::parse(&report::render(&r, Format::Json)?)?;
    let v = verify::offline(&export);
    assert!(v.problems.is_empty(), "{:#?}", v.problems);
    let (agrees, sentence) = verify::against_store(&export, &evidence);
    assert!(agrees, "{sentence}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tampering in exported JSON

/// The JSON pointers of every leaf under `value`.
fn leaves(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// Whether the file is refused, by the parser or by the offline checks.
fn refused(root: &Value) -> bool {
    match verify::parse(&root.to_string()) {
        Err(_) => true,
        Ok(export) => !verify::offline(&export).problems.is_empty(),
    }
}

async fn exported_json_tampering_is_always_detected(db: Db) -> Result<()> {
    let store = &db.store;
    let dir = tempfile::tempdir()?;
    let run = gated_run(store, dir.path()).await?;
    let evidence = store.evidence_of_run(&run.id).await?;
    let text = report::render(&report::report(&evidence, chrono::Utc::now()), Format::Json)?;
    let clean: Value = serde_json::from_str(&text)?;
    ensure!(!refused(&clean), "the clean export verifies");
    let n = clean["events"].as_array().context("events")?.len();
    let mut sealed = Vec::new();
    for part in ["summary", "definition", "events"] {
        leaves(&clean[part], format!("/{part}"), &mut sealed);
    }
    for case in 0..120u64 {
        let seed = 0xf11e_0000 + case;
        let mut rng = Rng(seed);
        let mut forged = clean.clone();
        let events = forged["events"].as_array_mut().context("events")?;
        let (i, j) = (
            rng.range(0, n as i64 - 1) as usize,
            rng.range(0, n as i64 - 2) as usize,
        );
        let what = match rng.range(0, 4) {
            0 => {
                events.remove(i);
                format!("delete event {}", i + 1)
            }
            1 => {
                let j = if j >= i { j + 1 } else { j };
                events.swap(i, j);
                format!("swap events {} and {}", i + 1, j + 1)
            }
            2 => {
                let copy = events[j].clone();
                events.insert(i, copy);
                format!("insert a copy of event {} at {}", j + 1, i + 1)
            }
            _ => {
                let at = &sealed[rng.range(0, sealed.len() as i64 - 1) as usize];
                let leaf = forged.pointer_mut(at).context("leaf")?;
                edit_leaf(leaf, &mut rng);
                format!("edit {at}")
            }
        };
        ensure!(refused(&forged), "seed {seed}: `{what}` was not detected");
    }

    // Rewriting the chain consistently from an edit on makes a file that verifies on its
    // own: only the store (or a head recorded elsewhere) shows it is not the run's chain.
    let mut forged: Vec<Event> = serde_json::from_value(clean["events"].clone())?;
    let k = forged.len() / 2;
    forged[k].data = json!({ "operator": "mallory" });
    for i in k..forged.len() {
        if i > 0 {
            forged[i].prev_hash = forged[i - 1].hash.clone();
        }
        forged[i].hash = chain::expected_hash(&forged[i]);
    }
    let mut export = verify::parse(&text)?;
    export.events = forged;
    assert_eq!(chain::verify(&export.events), None, "self-consistent");
    let (agrees, sentence) = verify::against_store(&export, &evidence);
    assert!(!agrees, "{sentence}");
    assert!(
        sentence.contains(&format!("differs from the store at event {}", k + 1)),
        "{sentence}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Escalation

const PAGED: &str = r#"
runway: 1
name: paged
params:
  pager: { type: url }
steps:
  - id: approve
    approval:
      prompt: Go?
      on_timeout: escalate
      escalate: { url: '{{params.pager}}', message: 'Run {{run.id}} waits for an approval' }
    timeout: 1s
  - id: after
    noop: {}
"#;

async fn an_approval_that_times_out_escalates_and_waits_on(db: Db) -> Result<()> {
    let store = &db.store;
    let dir = tempfile::tempdir()?;
    let hook = webhook::Webhook::start(200);
    let live = Live::start(
        store,
        dir.path(),
        &[("paged.yaml", PAGED)],
        &[("pager", &hook.url("/page"))],
    )
    .await?;
    let escalated = |_: &Run, steps: &[runway::store::StepRun]| {
        steps.iter().any(|s| {
            s.step_id == "approve" && s.status == StepStatus::Waiting && s.ready_at.is_none()
        })
    };
    live.until("the escalation", escalated).await?;
    let sent = hook.wait_for(1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].target.as_str()),
        ("POST", "/page")
    );
    let body: Value = serde_json::from_str(&sent[0].body)?;
    assert_eq!(
        body["message"],
        format!("Run {} waits for an approval", live.run.id)
    );
    assert_eq!(body["step"], "approve");
    let events = store.events_of_run(&live.run.id).await?;
    let e: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "step.escalated")
        .collect();
    assert_eq!(e.len(), 1, "escalated once");
    assert_eq!(e[0].data["delivered"], true);
    assert_eq!(e[0].data["status"], 200);
    // Still waiting, for people only: the approval decides the run.
    assert_eq!(
        store.run_get(&live.run.id).await?.status,
        RunStatus::Waiting
    );
    live.decide("approve", "alice", Verdict::Approve, None)
        .await?;
    let run_id = live.run.id.clone();
    let end = live.end().await?;
    assert_eq!(end.status, RunStatus::Succeeded);
    assert_eq!(hook.received().len(), 1, "no second escalation");
    let r = report::report(&store.evidence_of_run(&run_id).await?, chrono::Utc::now());
    assert!(r.store.problems.is_empty(), "{:#?}", r.store.problems);
    let esc = &r.summary.escalations;
    assert_eq!(esc.len(), 1);
    assert!(
        esc[0].delivered && esc[0].message.contains(&run_id),
        "{esc:#?}"
    );
    assert!(report::render(&r, Format::Md)?.contains("## Escalations"));

    // A pager that cannot be reached: recorded as undelivered, and the step still waits.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let live = Live::start(
        store,
        dir.path(),
        &[("paged.yaml", PAGED)],
        &[("pager", &format!("http://{closed}/page"))],
    )
    .await?;
    live.until("the escalation", escalated).await?;
    let events = store.events_of_run(&live.run.id).await?;
    let e = events
        .iter()
        .find(|e| e.kind == "step.escalated")
        .context("escalated")?;
    assert_eq!(e.data["delivered"], false);
    assert!(
        e.data["error"].as_str().is_some_and(|t| !t.is_empty()),
        "{e:?}"
    );
    live.decide("approve", "bob", Verdict::Reject, None).await?;
    let end = live.end().await?;
    assert_eq!(end.status, RunStatus::Failed);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Snapshots of rendered reports

/// Replaces what differs from one run to the next (ids, times, durations, hashes, paths)
/// with fixed placeholders, so that a report of the same run reads the same every time.
fn normalize(text: &str, dir: &std::path::Path) -> String {
    let text = text.replace(&dir.display().to_string(), "<DIR>");
    let rules: [(&str, &str); 9] = [
        (r"sha256:[0-9a-f]{64}", "sha256:<HASH>"),
        (r"\b[0-9a-f]{64}\b", "<HASH>"),
        (r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "<ID>"),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "<TIME>",
        ),
        (r"\b\d+(\.\d+)? (ms|s|min|h)( \d+ (s|min))?\b", "<SPAN>"),
        (r"(?m)[ \t]+$", ""),
        // Which worker ran a step, and the order in which concurrent steps' events
        // interleave, differ between runs; each step's own history keeps its order.
        (r"started on [^ <\n]+", "started on <WORKER>"),
        (r"(?m)^- \d+ · ", "- <SEQ> · "),
        (r#"<li value="\d+">"#, r#"<li value="SEQ">"#),
    ];
    rules.iter().fold(text, |t, (pattern, with)| {
        regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&t, *with)
            .into_owned()
    })
}

/// Compares `text` with `tests/snapshots/NAME`; `RUNWAY_UPDATE_SNAPSHOTS=1` writes it
/// instead (review the diff before committing it).
fn snapshot(name: &str, text: &str) -> Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("RUNWAY_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, text)?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no snapshot at {}: run with RUNWAY_UPDATE_SNAPSHOTS=1 to write it",
            path.display()
        )
    })?;
    if want != text {
        let line = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| want.lines().count().min(text.lines().count()));
        bail!(
            "{name} differs from its snapshot at line {}:\n  snapshot: {:?}\n  rendered: {:?}\n\
             (RUNWAY_UPDATE_SNAPSHOTS=1 rewrites it; review the diff)",
            line + 1,
            want.lines().nth(line).unwrap_or("<end>"),
            text.lines().nth(line).unwrap_or("<end>"),
        );
    }
    Ok(())
}

/// The same gated run renders to the same Markdown and HTML on both backends, once what
/// differs between runs (ids, times, hashes) is normalized: a change to a template or to
/// the summary shows up as a reviewed snapshot diff.
async fn reports_render_as_their_snapshots(db: Db) -> Result<()> {
    let store = &db.store;
    let dir = tempfile::tempdir()?;
    let run = gated_run(store, dir.path()).await?;
    let evidence = store.evidence_of_run(&run.id).await?;
    let r = report::report(&evidence, chrono::Utc::now());
    for (format, name) in [
        (Format::Md, "gated-report.md"),
        (Format::Html, "gated-report.html"),
    ] {
        let text = report::render(&r, format)?;
        snapshot(name, &normalize(&text, dir.path()))?;
    }
    Ok(())
}
