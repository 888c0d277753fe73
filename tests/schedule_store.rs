//! Conformance of the store's schedule operations, the same body on SQLite and Postgres
//! (`NAME::sqlite`, `NAME::postgres`): registering, pausing, resuming and removing
//! schedules, recording ticks exactly once, observing ended runs, failure notices and
//! follow-ups. The clock is passed in; nothing here waits.

#[path = "common/db.rs"]
mod db;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use runway::playbook::schedule::{CatchUpFire, Overlap};
use runway::state::{RunStatus, StepStatus};
use runway::store::{
    Added, Error, Finish, FireOutcome, FirePlan, Fired, Guard, NewRun, NewSchedule, NewStep,
    NoDecide, NoticeState, OpenFire, PlanFire, Schedule, ScheduleKind, ScheduleStatus, StepList,
    Store, TickRecord, new_id,
};
use serde_json::json;

use db::{Db, exec};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const FIVE_MINUTES: chrono::Duration = chrono::Duration::minutes(5);

fn new_schedule(id: &str, next: &str) -> NewSchedule {
    NewSchedule {
        id: id.into(),
        kind: ScheduleKind::Cron,
        playbook: "check".into(),
        content_hash: "c0ffee".into(),
        definition: "runway: 1\nname: check\n".into(),
        params: json!({ "target": "north" }),
        cron: Some("*/5 * * * *".into()),
        timezone: "UTC".into(),
        overlap: Overlap::Skip,
        catch_up: Duration::from_secs(60),
        catch_up_fire: CatchUpFire::All,
        pause_after_failures: Some(2),
        notify: Some(json!({ "url": "http://127.0.0.1:9/hook", "message": "failed" })),
        parent: None,
        next_fire_at: at(next),
        added_by: "alice".into(),
    }
}

fn run_for(schedule: &Schedule) -> NewRun {
    NewRun {
        id: new_id(),
        playbook: schedule.playbook.clone(),
        content_hash: schedule.content_hash.clone(),
        definition: schedule.definition.clone(),
        params: schedule.params.clone(),
        starter: schedule.added_by.clone(),
        trigger: schedule.trigger(),
        lock_key: None,
        queue_on_lock: true,
        parent_run_id: schedule.parent_run_id.clone(),
        parent_step_id: schedule.parent_step_id.clone(),
        steps: vec![NewStep {
            step_id: "probe".into(),
            list: StepList::Main,
            status: StepStatus::Ready,
            max_attempts: 1,
            outputs: None,
        }],
    }
}

/// Starts a run for every due tick, five minutes apart; defers when told to.
struct EveryTick {
    defer: bool,
}

impl PlanFire for EveryTick {
    fn plan(&self, s: &Schedule, open: &[OpenFire], now: DateTime<Utc>) -> Option<FirePlan> {
        if let Some(d) = open.iter().find(|f| f.outcome == FireOutcome::Deferred)
            && !open.iter().any(OpenFire::is_active)
        {
            return Some(FirePlan::StartDeferred {
                tick_at: d.tick_at,
                run: Ok(Box::new(run_for(s))),
            });
        }
        let tick_at = s.next_fire_at.filter(|&t| t <= now)?;
        let record = if self.defer && open.iter().any(OpenFire::is_active) {
            TickRecord::Defer {
                reason: "queued".into(),
            }
        } else {
            TickRecord::Start(Box::new(run_for(s)))
        };
        Some(FirePlan::Tick {
            tick_at,
            record,
            next: Some(tick_at + FIVE_MINUTES),
        })
    }
}

/// Always names the same tick, whatever the schedule says.
struct Stale(DateTime<Utc>);

impl PlanFire for Stale {
    fn plan(&self, s: &Schedule, _: &[OpenFire], _: DateTime<Utc>) -> Option<FirePlan> {
        Some(FirePlan::Tick {
            tick_at: self.0,
            record: TickRecord::Start(Box::new(run_for(s))),
            next: Some(self.0 + FIVE_MINUTES),
        })
    }
}

async fn fire_all(
    store: &Store,
    id: &str,
    now: DateTime<Utc>,
    plan: &dyn PlanFire,
) -> Result<usize> {
    let mut n = 0;
    while let Fired::Recorded(_) = store.schedule_fire(id, now, "test", plan).await? {
        n += 1;
    }
    Ok(n)
}

async fn runs_of(store: &Store, trigger: &str) -> Result<Vec<runway::store::Run>> {
    Ok(store
        .runs_list(None, 10_000)
        .await?
        .into_iter()
        .filter(|r| r.trigger == trigger)
        .collect())
}

conformance!(
    add_is_new_then_unchanged_then_refused_or_replaced,
    pause_resume_and_remove_are_guarded_and_audited,
    each_due_tick_is_recorded_once_with_its_run,
    concurrent_schedulers_record_each_tick_once,
    a_stale_plan_records_nothing_and_creates_no_run,
    settle_records_outcomes_counts_failures_and_pauses,
    a_deferred_tick_starts_when_the_active_run_ends,
    a_failed_tick_is_settled_at_once_and_queues_a_notice,
    notices_are_claimed_once_retried_and_given_up,
    a_followup_is_registered_with_its_step_and_fires_once,
    the_database_refuses_to_edit_schedule_events,
);

async fn add_is_new_then_unchanged_then_refused_or_replaced(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:05:00Z");
    let (s, added) = store.schedule_add(&new, false).await?;
    ensure!(added == Added::New, "{added:?}");
    ensure!(s.status == ScheduleStatus::Active && s.next_fire_at == Some(new.next_fire_at));
    ensure!(s.trigger() == "schedule:check/every-5-minutes");
    let (_, again) = store.schedule_add(&new, false).await?;
    ensure!(again == Added::Unchanged);

    let mut edited = new.clone();
    edited.content_hash = "beef".into();
    edited.cron = Some("*/10 * * * *".into());
    match store.schedule_add(&edited, false).await {
        Err(Error::ScheduleExists { differences, .. }) => {
            ensure!(differences == "definition, cron", "{differences}")
        }
        other => anyhow::bail!("{other:?}"),
    }
    ensure!(store.schedule_get(&new.id).await?.content_hash == "c0ffee");
    let (s, replaced) = store.schedule_add(&edited, true).await?;
    ensure!(replaced == Added::Replaced && s.content_hash == "beef");

    store.schedule_remove(&new.id, "bob").await?;
    ensure!(store.schedules_list(false).await?.is_empty());
    ensure!(store.schedules_list(true).await?.len() == 1);
    let (s, revived) = store.schedule_add(&edited, false).await?;
    ensure!(revived == Added::Replaced && s.status == ScheduleStatus::Active);
    let kinds: Vec<String> = store
        .schedule_events(&new.id)
        .await?
        .into_iter()
        .map(|e| format!("{}:{}", e.kind, e.actor))
        .collect();
    ensure!(
        kinds
            == [
                "added:alice",
                "replaced:alice",
                "removed:bob",
                "added:alice"
            ],
        "{kinds:?}"
    );
    Ok(())
}

async fn pause_resume_and_remove_are_guarded_and_audited(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:05:00Z");
    store.schedule_add(&new, false).await?;
    let s = store
        .schedule_pause(&new.id, "bob", Some("maintenance"))
        .await?;
    ensure!(
        s.status == ScheduleStatus::Paused && s.status_reason.as_deref() == Some("maintenance")
    );
    ensure!(matches!(
        store.schedule_pause(&new.id, "bob", None).await,
        Err(Error::ScheduleNotIn {
            actual: ScheduleStatus::Paused,
            ..
        })
    ));
    // Nothing fires while paused.
    ensure!(
        fire_all(
            store,
            &new.id,
            at("2026-01-01T11:00:00Z"),
            &EveryTick { defer: false }
        )
        .await?
            == 0
    );
    let s = store
        .schedule_resume(&new.id, "bob", at("2026-01-01T12:00:00Z"))
        .await?;
    ensure!(
        s.status == ScheduleStatus::Active && s.next_fire_at == Some(at("2026-01-01T12:00:00Z"))
    );
    ensure!(matches!(
        store
            .schedule_resume(&new.id, "bob", at("2026-01-01T12:00:00Z"))
            .await,
        Err(Error::ScheduleNotIn {
            actual: ScheduleStatus::Active,
            ..
        })
    ));
    store.schedule_remove(&new.id, "carol").await?;
    ensure!(matches!(
        store.schedule_remove(&new.id, "carol").await,
        Err(Error::ScheduleNotIn {
            actual: ScheduleStatus::Removed,
            ..
        })
    ));
    ensure!(matches!(
        store.schedule_pause("check/nope", "bob", None).await,
        Err(Error::ScheduleNotFound(id)) if id == "check/nope"
    ));
    let kinds: Vec<String> = store
        .schedule_events(&new.id)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect();
    ensure!(
        kinds == ["added", "paused", "resumed", "removed"],
        "{kinds:?}"
    );
    Ok(())
}

async fn each_due_tick_is_recorded_once_with_its_run(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:00:00Z");
    store.schedule_add(&new, false).await?;
    let plan = EveryTick { defer: false };
    // 10:00, 10:05, 10:10 are due at 10:12; 10:15 is not.
    ensure!(fire_all(store, &new.id, at("2026-01-01T10:12:00Z"), &plan).await? == 3);
    ensure!(fire_all(store, &new.id, at("2026-01-01T10:12:00Z"), &plan).await? == 0);
    let s = store.schedule_get(&new.id).await?;
    ensure!(s.next_fire_at == Some(at("2026-01-01T10:15:00Z")));
    let fires = store.schedule_fires(&new.id, 10).await?;
    let ticks: Vec<DateTime<Utc>> = fires.iter().map(|f| f.tick_at).collect();
    ensure!(
        ticks
            == [
                at("2026-01-01T10:10:00Z"),
                at("2026-01-01T10:05:00Z"),
                at("2026-01-01T10:00:00Z")
            ],
        "{ticks:?}"
    );
    let runs = runs_of(store, "schedule:check/every-5-minutes").await?;
    ensure!(runs.len() == 3);
    for f in &fires {
        ensure!(f.outcome == FireOutcome::Started && f.fired_by == "test");
        let run_id = f.run_id.as_deref().context("a started tick has a run")?;
        let events = store.events_of_run(run_id).await?;
        let scheduled = events
            .iter()
            .find(|e| e.kind == "run.scheduled")
            .context("run.scheduled")?;
        ensure!(scheduled.data["schedule_id"] == "check/every-5-minutes");
        ensure!(scheduled.data["tick_at"] == f.tick_at.timestamp_millis());
        let run = store.run_get(run_id).await?;
        ensure!(run.starter == "alice" && run.params == json!({ "target": "north" }));
    }
    Ok(())
}

async fn concurrent_schedulers_record_each_tick_once(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T00:00:00Z");
    store.schedule_add(&new, false).await?;
    // Six hours of ticks, four schedulers racing for them.
    let now = at("2026-01-01T05:59:59Z");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, id) = (store.clone(), new.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                match store
                    .schedule_fire(&id, now, "racer", &EveryTick { defer: false })
                    .await?
                {
                    Fired::Recorded(_) => n += 1,
                    Fired::Busy => tokio::time::sleep(Duration::from_millis(1)).await,
                    Fired::Idle => return Ok::<usize, Error>(n),
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    ensure!(total == 72, "{total} ticks recorded");
    ensure!(store.schedule_fires(&new.id, 1000).await?.len() == 72);
    ensure!(
        runs_of(store, "schedule:check/every-5-minutes")
            .await?
            .len()
            == 72
    );
    Ok(())
}

async fn a_stale_plan_records_nothing_and_creates_no_run(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:05:00Z");
    store.schedule_add(&new, false).await?;
    let stale = Stale(at("2026-01-01T10:00:00Z"));
    ensure!(matches!(
        store
            .schedule_fire(&new.id, at("2026-01-01T10:06:00Z"), "test", &stale)
            .await,
        Err(Error::TickNotNext { .. })
    ));
    ensure!(store.schedule_fires(&new.id, 10).await?.is_empty());
    ensure!(store.runs_list(None, 10).await?.is_empty());
    // Recording 10:05 and then naming it again is refused by the tick's row.
    store
        .schedule_fire(
            &new.id,
            at("2026-01-01T10:06:00Z"),
            "test",
            &EveryTick { defer: false },
        )
        .await?;
    let again = Stale(at("2026-01-01T10:05:00Z"));
    ensure!(matches!(
        store
            .schedule_fire(&new.id, at("2026-01-01T10:11:00Z"), "test", &again)
            .await,
        Err(Error::TickNotNext { .. })
    ));
    ensure!(store.runs_list(None, 10).await?.len() == 1);
    Ok(())
}

async fn settle_records_outcomes_counts_failures_and_pauses(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:00:00Z");
    store.schedule_add(&new, false).await?;
    let plan = EveryTick { defer: false };
    fire_all(store, &new.id, at("2026-01-01T10:11:00Z"), &plan).await?;
    let mut fires = store.schedule_fires(&new.id, 10).await?;
    fires.reverse();
    let run = |i: usize| fires[i].run_id.clone().unwrap();
    // Nothing ended yet: nothing to settle.
    ensure!(
        store
            .schedule_settle(&new.id, at("2026-01-01T10:11:00Z"))
            .await?
            .fires
            .is_empty()
    );
    store
        .run_set_status_if(
            &run(0),
            RunStatus::Running,
            RunStatus::Failed,
            Some("probe failed"),
        )
        .await?;
    store
        .run_set_status_if(&run(1), RunStatus::Running, RunStatus::Succeeded, None)
        .await?;
    let settled = store
        .schedule_settle(&new.id, at("2026-01-01T10:12:00Z"))
        .await?;
    ensure!(settled.fires.len() == 2 && settled.paused.is_none());
    ensure!(settled.fires[0].run_status == Some(RunStatus::Failed));
    ensure!(settled.fires[0].notify_state == Some(NoticeState::Pending));
    ensure!(settled.fires[1].notify_state.is_none());
    // A success in between: the count starts again.
    ensure!(store.schedule_get(&new.id).await?.consecutive_failures == 0);
    store
        .run_set_status_if(
            &run(2),
            RunStatus::Running,
            RunStatus::Failed,
            Some("again"),
        )
        .await?;
    fire_all(store, &new.id, at("2026-01-01T10:16:00Z"), &plan).await?;
    let fourth = store.schedule_fires(&new.id, 1).await?[0]
        .run_id
        .clone()
        .unwrap();
    store
        .run_set_status_if(
            &fourth,
            RunStatus::Running,
            RunStatus::Failed,
            Some("and again"),
        )
        .await?;
    let settled = store
        .schedule_settle(&new.id, at("2026-01-01T10:17:00Z"))
        .await?;
    let reason = settled.paused.context("two failures in a row pause it")?;
    ensure!(reason.contains("2 consecutive failed runs"), "{reason}");
    ensure!(reason.contains(&fourth), "{reason}");
    let s = store.schedule_get(&new.id).await?;
    ensure!(s.status == ScheduleStatus::Paused && s.consecutive_failures == 2);
    ensure!(store.schedule_events(&new.id).await?.last().unwrap().actor == "scheduler");
    // Settling again finds nothing new.
    ensure!(
        store
            .schedule_settle(&new.id, at("2026-01-01T10:18:00Z"))
            .await?
            .fires
            .is_empty()
    );
    Ok(())
}

async fn a_deferred_tick_starts_when_the_active_run_ends(db: Db) -> Result<()> {
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:00:00Z");
    store.schedule_add(&new, false).await?;
    let plan = EveryTick { defer: true };
    ensure!(fire_all(store, &new.id, at("2026-01-01T10:06:00Z"), &plan).await? == 2);
    let fires = store.schedule_fires(&new.id, 10).await?;
    ensure!(fires[0].outcome == FireOutcome::Deferred && fires[0].run_id.is_none());
    let first = fires[1].run_id.clone().unwrap();
    // Still active: the deferred tick waits.
    ensure!(fire_all(store, &new.id, at("2026-01-01T10:07:00Z"), &plan).await? == 0);
    store
        .run_set_status_if(&first, RunStatus::Running, RunStatus::Succeeded, None)
        .await?;
    ensure!(fire_all(store, &new.id, at("2026-01-01T10:08:00Z"), &plan).await? == 1);
    let deferred = &store.schedule_fires(&new.id, 10).await?[0];
    ensure!(deferred.tick_at == at("2026-01-01T10:05:00Z"));
    ensure!(
        deferred.outcome == FireOutcome::Started && deferred.reason.as_deref() == Some("queued")
    );
    let events = store
        .events_of_run(deferred.run_id.as_deref().unwrap())
        .await?;
    ensure!(
        events
            .iter()
            .any(|e| e.kind == "run.scheduled" && e.data["deferred"] == true)
    );
    Ok(())
}

async fn a_failed_tick_is_settled_at_once_and_queues_a_notice(db: Db) -> Result<()> {
    struct Broken;
    impl PlanFire for Broken {
        fn plan(&self, s: &Schedule, _: &[OpenFire], now: DateTime<Utc>) -> Option<FirePlan> {
            let tick_at = s.next_fire_at.filter(|&t| t <= now)?;
            Some(FirePlan::Tick {
                tick_at,
                record: TickRecord::Fail {
                    error: "the playbook does not compile".into(),
                },
                next: Some(tick_at + FIVE_MINUTES),
            })
        }
    }
    let store = &db.store;
    let new = new_schedule("check/every-5-minutes", "2026-01-01T10:00:00Z");
    store.schedule_add(&new, false).await?;
    ensure!(fire_all(store, &new.id, at("2026-01-01T10:06:00Z"), &Broken).await? == 2);
    let fires = store.schedule_fires(&new.id, 10).await?;
    for f in &fires {
        ensure!(f.outcome == FireOutcome::Failed && f.settled_at.is_some());
        ensure!(f.notify_state == Some(NoticeState::Pending));
    }
    // Two failed ticks in a row reach pause_after_failures: 2.
    let s = store.schedule_get(&new.id).await?;
    ensure!(s.status == ScheduleStatus::Paused, "{:?}", s.status);
    ensure!(s.status_reason.unwrap().contains("could not start a run"));
    ensure!(store.runs_list(None, 10).await?.is_empty());
    Ok(())
}

async fn notices_are_claimed_once_retried_and_given_up(db: Db) -> Result<()> {
    let store = &db.store;
    let mut new = new_schedule("check/every-5-minutes", "2026-01-01T10:00:00Z");
    new.pause_after_failures = None;
    store.schedule_add(&new, false).await?;
    fire_all(
        store,
        &new.id,
        at("2026-01-01T10:06:00Z"),
        &EveryTick { defer: false },
    )
    .await?;
    for f in store.schedule_fires(&new.id, 10).await? {
        store
            .run_set_status_if(
                f.run_id.as_deref().unwrap(),
                RunStatus::Running,
                RunStatus::Failed,
                Some("boom"),
            )
            .await?;
    }
    let now = at("2026-01-01T10:07:00Z");
    store.schedule_settle(&new.id, now).await?;
    let lease = Duration::from_secs(60);
    let claimed = store.schedule_notices_claim(now, lease, 10).await?;
    ensure!(claimed.len() == 2, "{}", claimed.len());
    ensure!(claimed.iter().all(|n| {
        n.run
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Failed)
    }));
    ensure!(claimed.iter().all(|n| n.fire.notify_attempts == 1));
    // Claimed: nobody else gets them until the claim lapses.
    ensure!(
        store
            .schedule_notices_claim(now, lease, 10)
            .await?
            .is_empty()
    );
    let later = now + chrono::Duration::seconds(61);
    let again = store.schedule_notices_claim(later, lease, 10).await?;
    ensure!(again.len() == 2 && again.iter().all(|n| n.fire.notify_attempts == 2));
    let (a, b) = (&again[0].fire, &again[1].fire);
    store
        .schedule_notice_done(&new.id, a.tick_at, None, None)
        .await?;
    let retry = later + chrono::Duration::seconds(10);
    store
        .schedule_notice_done(&new.id, b.tick_at, Some("503 from the hook"), Some(retry))
        .await?;
    ensure!(
        store
            .schedule_notices_claim(later, lease, 10)
            .await?
            .is_empty()
    );
    let third = store.schedule_notices_claim(retry, lease, 10).await?;
    ensure!(third.len() == 1 && third[0].fire.tick_at == b.tick_at);
    ensure!(third[0].fire.notify_error.as_deref() == Some("503 from the hook"));
    store
        .schedule_notice_done(&new.id, b.tick_at, Some("still 503"), None)
        .await?;
    let fires = store.schedule_fires(&new.id, 10).await?;
    let states: Vec<Option<NoticeState>> = fires.iter().map(|f| f.notify_state).collect();
    ensure!(
        states == [Some(NoticeState::GaveUp), Some(NoticeState::Sent)],
        "{states:?}"
    );
    ensure!(fires[1].notified_at.is_some() && fires[0].notified_at.is_none());
    Ok(())
}

async fn a_followup_is_registered_with_its_step_and_fires_once(db: Db) -> Result<()> {
    let store = &db.store;
    let mut parent = run_for(
        &store
            .schedule_add(&new_schedule("x/y", "2030-01-01T00:00:00Z"), false)
            .await?
            .0,
    );
    parent.trigger = "manual".into();
    let parent = store.run_create(&parent).await?;
    let step = store
        .step_claim(&parent.id, "probe", "w1", Duration::from_secs(3600))
        .await?;
    let lease = step.lease().context("leased")?;
    let mut followup = new_schedule(
        &format!("followup/{}/probe", parent.id),
        "2026-01-02T10:00:00Z",
    );
    followup.kind = ScheduleKind::Once;
    followup.cron = None;
    followup.parent = Some((parent.id.clone(), "probe".into()));
    followup.notify = None;
    let mut finish = Finish::new(StepStatus::Succeeded);
    finish.events.push(runway::store::NewEvent::step(
        "step.followup_scheduled",
        "probe",
        1,
        json!({ "schedule_id": followup.id }),
    ));
    store
        .step_finish_with_followup(&Guard::Lease(lease.clone()), &finish, &NoDecide, &followup)
        .await?;
    // A second finish of the same attempt changes nothing, the follow-up included.
    ensure!(matches!(
        store
            .step_finish_with_followup(&Guard::Lease(lease), &finish, &NoDecide, &followup)
            .await,
        Err(Error::LeaseLost { .. })
    ));
    let of_run = store.schedules_of_run(&parent.id).await?;
    ensure!(of_run.len() == 1 && of_run[0].kind == ScheduleKind::Once);
    let s = &of_run[0];
    ensure!(s.trigger() == format!("followup:{}/probe", parent.id));
    let events = store.events_of_run(&parent.id).await?;
    ensure!(events.iter().any(|e| e.kind == "step.followup_scheduled"));
    struct Once;
    impl PlanFire for Once {
        fn plan(&self, s: &Schedule, _: &[OpenFire], now: DateTime<Utc>) -> Option<FirePlan> {
            Some(FirePlan::Tick {
                tick_at: s.next_fire_at.filter(|&t| t <= now)?,
                record: TickRecord::Start(Box::new(run_for(s))),
                next: None,
            })
        }
    }
    ensure!(fire_all(store, &s.id, at("2026-01-02T09:59:59Z"), &Once).await? == 0);
    ensure!(fire_all(store, &s.id, at("2026-01-05T00:00:00Z"), &Once).await? == 1);
    ensure!(fire_all(store, &s.id, at("2026-01-06T00:00:00Z"), &Once).await? == 0);
    let s = store.schedule_get(&s.id).await?;
    ensure!(s.status == ScheduleStatus::Done && s.next_fire_at.is_none());
    let child = store
        .run_child(&parent.id, "probe")
        .await?
        .context("the follow-up run is the step's child")?;
    ensure!(child.trigger == format!("followup:{}/probe", parent.id));
    Ok(())
}

async fn the_database_refuses_to_edit_schedule_events(db: Db) -> Result<()> {
    let store = &db.store;
    store
        .schedule_add(
            &new_schedule("check/every-5-minutes", "2026-01-01T10:05:00Z"),
            false,
        )
        .await?;
    ensure!(
        exec(store, "UPDATE schedule_events SET actor = 'mallory'")
            .await
            .is_err()
    );
    ensure!(exec(store, "DELETE FROM schedule_events").await.is_err());
    ensure!(store.schedule_events("check/every-5-minutes").await?[0].actor == "alice");
    Ok(())
}
