//! Follow-up runs end to end, on SQLite and Postgres: a `followup` step registers a one-off
//! run of another playbook and ends; the parent's evidence says so (schedule id, due
//! time); the scheduler (its clock injected) starts the run when it is due, once, as a
//! child of the step; a worker runs it. The engine and the scheduler only meet in the
//! store.

#[path = "common/db.rs"]
mod db;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use runway::engine::{self, Config, Engine, Origin};
use runway::scheduler::{self, Scheduler};
use runway::source::Source;
use runway::state::RunStatus;
use runway::store::{FireOutcome, Run, ScheduleKind, ScheduleStatus, Store};
use tokio_util::sync::CancellationToken;

use db::Db;

const GO_LIVE: &str = "runway: 1
name: launch
params:
  site: { type: string, required: true }
steps:
  - id: launch
    noop: {}
  - id: schedule-review
    followup:
      playbook: review
      after: 24h
      params: { site: '{{params.site}}', day: '1' }
";

const REVIEW: &str = "runway: 1
name: review
params:
  site: { type: string, required: true }
  day: { type: integer, required: true }
steps:
  - id: look
    noop: {}
";

async fn run_until_ended(store: &Store, run_id: &str) -> Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = store.run_get(run_id).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        ensure!(
            Instant::now() < deadline,
            "run {run_id} did not end: {:?}",
            run.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

conformance!(a_followup_step_schedules_a_child_run_that_fires_once_when_due);

async fn a_followup_step_schedules_a_child_run_that_fires_once_when_due(db: Db) -> Result<()> {
    let store = &db.store;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("launch.yaml"), GO_LIVE)?;
    std::fs::write(dir.path().join("review.yaml"), REVIEW)?;
    let config = Config {
        workdir: dir.path().to_owned(),
        workflows: dir.path().to_owned(),
        ..Config::default()
    };
    let engine = Engine::new(store.clone(), config);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(engine.clone().work(stop.clone()));

    let source = Source {
        name: "launch.yaml".into(),
        text: GO_LIVE.into(),
    };
    let plan = engine::compile(source, dir.path())?;
    let params =
        runway::plan::bind_params(&plan.playbook.params, &[("site".into(), "north".into())])
            .map_err(|e| anyhow::anyhow!("{}", e[0].message))?;
    let origin = Origin {
        starter: "alice".into(),
        trigger: "manual".into(),
        parent: None,
    };
    let parent = store
        .run_create(&engine::new_run(&plan, GO_LIVE, params, &origin).map_err(anyhow::Error::msg)?)
        .await?;
    let parent = run_until_ended(store, &parent.id).await?;
    ensure!(parent.status == RunStatus::Succeeded, "{:?}", parent.error);

    // The step's result and the parent's evidence name the follow-up and its due time.
    let steps = store.steps_of_run(&parent.id).await?;
    let step = steps
        .iter()
        .find(|s| s.step_id == "schedule-review")
        .unwrap();
    let outputs = step.outputs.clone().context("outputs")?;
    let id = format!("followup/{}/schedule-review", parent.id);
    ensure!(outputs["schedule_id"] == id.as_str(), "{outputs}");
    let due: DateTime<Utc> = outputs["due_at"].as_str().unwrap().parse()?;
    let started = step.started_at.context("started")?;
    ensure!(
        due == started + chrono::Duration::hours(24),
        "{due} vs {started}"
    );
    let events = store.events_of_run(&parent.id).await?;
    let scheduled = events
        .iter()
        .find(|e| e.kind == "step.followup_scheduled")
        .context("the parent's chain records the follow-up")?;
    ensure!(scheduled.data["schedule_id"] == id.as_str());
    ensure!(scheduled.data["due_at"] == due.to_rfc3339().as_str());
    ensure!(scheduled.data["params"]["day"] == 1, "{}", scheduled.data);
    ensure!(store.events_verify(&parent.id).await?.is_none());

    let followups = store.schedules_of_run(&parent.id).await?;
    ensure!(followups.len() == 1);
    let f = &followups[0];
    ensure!(f.kind == ScheduleKind::Once && f.playbook == "review" && f.next_fire_at == Some(due));
    ensure!(f.added_by == "alice" && f.parent_step_id.as_deref() == Some("schedule-review"));

    // Not before it is due; then once, however many passes and schedulers.
    let config = scheduler::Config {
        workflows: dir.path().to_owned(),
        ..scheduler::Config::default()
    };
    let (a, b) = (
        Scheduler::new(store.clone(), config.clone()),
        Scheduler::new(store.clone(), config),
    );
    ensure!(
        a.pass(due - chrono::Duration::seconds(1))
            .await
            .fired
            .is_empty()
    );
    let late = due + chrono::Duration::hours(3);
    let (pa, pb) = tokio::join!(a.pass(late), b.pass(late));
    ensure!(
        pa.errors.is_empty() && pb.errors.is_empty(),
        "{:?} {:?}",
        pa.errors,
        pb.errors
    );
    ensure!(pa.fired.len() + pb.fired.len() == 1);
    ensure!(
        a.pass(late + chrono::Duration::days(30))
            .await
            .fired
            .is_empty()
    );
    let fire = store.schedule_fires(&id, 10).await?;
    ensure!(fire.len() == 1 && fire[0].outcome == FireOutcome::Started && fire[0].tick_at == due);
    ensure!(store.schedule_get(&id).await?.status == ScheduleStatus::Done);

    // The child: linked to the parent's step, run by the worker.
    let child = store
        .run_child(&parent.id, "schedule-review")
        .await?
        .context("the follow-up is a child of the step")?;
    ensure!(child.trigger == format!("followup:{}/schedule-review", parent.id));
    ensure!(
        child.starter == "alice" && child.params["site"] == "north" && child.params["day"] == 1
    );
    ensure!(child.definition == REVIEW);
    let child = run_until_ended(store, &child.id).await?;
    ensure!(child.status == RunStatus::Succeeded, "{:?}", child.error);
    let child_events = store.events_of_run(&child.id).await?;
    ensure!(child_events[0].data["parent_run_id"] == parent.id.as_str());
    ensure!(
        child_events
            .iter()
            .any(|e| e.kind == "run.scheduled" && e.data["schedule_id"] == id.as_str())
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), worker).await;
    Ok(())
}
