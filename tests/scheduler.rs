//! The scheduler against real databases (`NAME::sqlite`, `NAME::postgres`), its clock
//! injected: every overlap policy, both catch-up modes, failure notices to a real local
//! webhook (at least once, across a scheduler that dies after claiming one), the pause
//! after consecutive failures, and a daily Berlin schedule across both DST transitions.
//! Runs are ended by hand (`run_set_status_if`): no worker runs here, so a started run
//! stays active exactly as long as the test says.

#[path = "common/db.rs"]
mod db;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use chrono::{DateTime, Utc};
use runway::compiler::compile_all;
use runway::plan::Plan;
use runway::scheduler::{Config, Pass, Scheduler, register};
use runway::source::Source;
use runway::state::RunStatus;
use runway::store::{FireOutcome, NewSchedule, NoticeState, Run, ScheduleStatus, Store};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use db::Db;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn playbook(schedule: &str) -> String {
    format!(
        "runway: 1\nname: check\nparams:\n  target: {{ type: string, required: true }}\n\
         secrets: [HOOK]\nschedules:\n{schedule}\nsteps:\n  - id: probe\n    noop: {{}}\n"
    )
}

fn compile(text: &str) -> Plan {
    let source = Source {
        name: "check.yaml".into(),
        text: text.into(),
    };
    let compiled = compile_all(vec![source], &[]).pop().unwrap();
    compiled
        .plan
        .unwrap_or_else(|| panic!("{:?}", compiled.diagnostics))
}

/// Registers the playbook's only schedule as of `now`.
async fn add(store: &Store, schedule: &str, now: DateTime<Utc>) -> Result<NewSchedule> {
    let text = playbook(schedule);
    let plan = compile(&text);
    let new = register::pin(&plan, &text, &plan.playbook.schedules[0], &[], "alice", now)
        .map_err(|e| anyhow::anyhow!("{}", e[0].message))?;
    store.schedule_add(&new, false).await?;
    Ok(new)
}

fn scheduler(store: &Store) -> Arc<Scheduler> {
    let config = Config {
        workflows: std::env::temp_dir().join("runway-no-workflows"),
        notice_lease: Duration::from_secs(60),
        ..Config::default()
    };
    Scheduler::new(store.clone(), config)
}

async fn pass(s: &Scheduler, now: &str) -> Result<Pass> {
    let pass = s.pass(at(now)).await;
    ensure!(pass.errors.is_empty(), "{:?}", pass.errors);
    Ok(pass)
}

/// (tick, outcome) of every recorded tick, oldest first.
async fn ticks(store: &Store, id: &str) -> Result<Vec<(String, FireOutcome)>> {
    let mut fires = store.schedule_fires(id, 1000).await?;
    fires.reverse();
    Ok(fires
        .into_iter()
        .map(|f| (f.tick_at.format("%H:%M").to_string(), f.outcome))
        .collect())
}

async fn scheduled_runs(store: &Store) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = store
        .runs_list(None, 1000)
        .await?
        .into_iter()
        .filter(|r| r.trigger.starts_with("schedule:"))
        .collect();
    runs.reverse();
    Ok(runs)
}

async fn end(store: &Store, run: &Run, to: RunStatus) -> Result<()> {
    store
        .run_set_status_if(&run.id, RunStatus::Running, to, Some("probe said no"))
        .await?;
    Ok(())
}

const EVERY_5: &str = "    cron: '*/5 * * * *'\n    params: { target: north }";

conformance!(
    overlap_skip_records_ticks_skipped_while_a_run_is_active,
    overlap_queue_defers_one_tick_and_starts_it_when_the_run_ends,
    overlap_allow_starts_a_run_every_tick,
    catch_up_fires_missed_ticks_inside_the_window_and_records_the_rest,
    catch_up_latest_fires_only_the_latest_missed_tick,
    failed_runs_notify_at_least_once_and_pause_the_schedule,
    a_daily_berlin_schedule_fires_once_on_both_transition_days,
);

async fn overlap_skip_records_ticks_skipped_while_a_run_is_active(db: Db) -> Result<()> {
    let store = &db.store;
    let s = scheduler(store);
    let new = add(
        store,
        &format!("  - id: five\n{EVERY_5}\n    overlap: skip"),
        at("2026-05-04T10:00:00Z"),
    )
    .await?;
    pass(&s, "2026-05-04T10:00:01Z").await?;
    pass(&s, "2026-05-04T10:05:01Z").await?;
    pass(&s, "2026-05-04T10:10:01Z").await?;
    let runs = scheduled_runs(store).await?;
    ensure!(runs.len() == 1, "{}", runs.len());
    ensure!(runs[0].starter == "alice" && runs[0].trigger == "schedule:check/five");
    ensure!(runs[0].params["target"] == "north");
    end(store, &runs[0], RunStatus::Succeeded).await?;
    pass(&s, "2026-05-04T10:15:01Z").await?;
    ensure!(
        ticks(store, &new.id).await?
            == [
                ("10:00".into(), FireOutcome::Started),
                ("10:05".into(), FireOutcome::Skipped),
                ("10:10".into(), FireOutcome::Skipped),
                ("10:15".into(), FireOutcome::Started),
            ]
    );
    let skipped = &store.schedule_fires(&new.id, 10).await?[1];
    ensure!(skipped.reason.as_deref().unwrap().contains(&runs[0].id));
    ensure!(store.schedule_fires(&new.id, 10).await?[3].run_status == Some(RunStatus::Succeeded));
    Ok(())
}

async fn overlap_queue_defers_one_tick_and_starts_it_when_the_run_ends(db: Db) -> Result<()> {
    let store = &db.store;
    let s = scheduler(store);
    let new = add(
        store,
        &format!("  - id: five\n{EVERY_5}\n    overlap: queue"),
        at("2026-05-04T10:00:00Z"),
    )
    .await?;
    pass(&s, "2026-05-04T10:00:01Z").await?;
    pass(&s, "2026-05-04T10:05:01Z").await?;
    pass(&s, "2026-05-04T10:10:01Z").await?;
    ensure!(
        ticks(store, &new.id).await?
            == [
                ("10:00".into(), FireOutcome::Started),
                ("10:05".into(), FireOutcome::Deferred),
                ("10:10".into(), FireOutcome::Skipped),
            ]
    );
    let first = scheduled_runs(store).await?.remove(0);
    end(store, &first, RunStatus::Failed).await?;
    // The next pass (no tick due) starts the queued one.
    let p = pass(&s, "2026-05-04T10:11:00Z").await?;
    ensure!(p.fired.len() == 1 && p.settled == 1);
    let runs = scheduled_runs(store).await?;
    ensure!(runs.len() == 2);
    let queued = &store.schedule_fires(&new.id, 10).await?[1];
    ensure!(queued.outcome == FireOutcome::Started && queued.run_id.as_ref() == Some(&runs[1].id));
    let events = store.events_of_run(&runs[1].id).await?;
    ensure!(
        events
            .iter()
            .any(|e| e.kind == "run.scheduled" && e.data["deferred"] == true)
    );
    Ok(())
}

async fn overlap_allow_starts_a_run_every_tick(db: Db) -> Result<()> {
    let store = &db.store;
    let s = scheduler(store);
    let new = add(
        store,
        &format!("  - id: five\n{EVERY_5}\n    overlap: allow"),
        at("2026-05-04T10:00:00Z"),
    )
    .await?;
    for now in ["10:00:01", "10:05:01", "10:10:01"] {
        pass(&s, &format!("2026-05-04T{now}Z")).await?;
    }
    ensure!(scheduled_runs(store).await?.len() == 3);
    ensure!(
        ticks(store, &new.id)
            .await?
            .iter()
            .all(|(_, o)| *o == FireOutcome::Started)
    );
    Ok(())
}

async fn catch_up_fires_missed_ticks_inside_the_window_and_records_the_rest(db: Db) -> Result<()> {
    let store = &db.store;
    let s = scheduler(store);
    let new = add(
        store,
        &format!("  - id: five\n{EVERY_5}\n    overlap: allow\n    catch_up: 12m"),
        at("2026-05-04T10:00:00Z"),
    )
    .await?;
    // Every scheduler was down from 10:00 to 10:31:30: ticks 10:20, 10:25 and 10:30 are
    // inside the 12 minute window, 10:00 to 10:15 are not.
    let p = pass(&s, "2026-05-04T10:31:30Z").await?;
    ensure!(p.fired.len() == 4, "{}", p.fired.len());
    ensure!(
        ticks(store, &new.id).await?
            == [
                ("10:00".into(), FireOutcome::Missed),
                ("10:20".into(), FireOutcome::Started),
                ("10:25".into(), FireOutcome::Started),
                ("10:30".into(), FireOutcome::Started),
            ]
    );
    let missed = store.schedule_fires(&new.id, 10).await?.pop().unwrap();
    ensure!(missed.through_at == Some(at("2026-05-04T10:15:00Z")));
    ensure!(missed.reason.unwrap().contains("12m"));
    ensure!(scheduled_runs(store).await?.len() == 3);
    // Nothing fires twice, and the next tick is 10:35.
    ensure!(pass(&s, "2026-05-04T10:34:00Z").await?.fired.is_empty());
    ensure!(store.schedule_get(&new.id).await?.next_fire_at == Some(at("2026-05-04T10:35:00Z")));
    Ok(())
}

async fn catch_up_latest_fires_only_the_latest_missed_tick(db: Db) -> Result<()> {
    let store = &db.store;
    let s = scheduler(store);
    let new = add(
        store,
        &format!(
            "  - id: five\n{EVERY_5}\n    overlap: allow\n    catch_up: {{ window: 1h, fire: latest }}"
        ),
        at("2026-05-04T10:00:00Z"),
    )
    .await?;
    pass(&s, "2026-05-04T10:31:30Z").await?;
    ensure!(
        ticks(store, &new.id).await?
            == [
                ("10:00".into(), FireOutcome::Skipped),
                ("10:30".into(), FireOutcome::Started),
            ]
    );
    let skipped = store.schedule_fires(&new.id, 10).await?.pop().unwrap();
    ensure!(skipped.through_at == Some(at("2026-05-04T10:25:00Z")));
    ensure!(scheduled_runs(store).await?.len() == 1);
    Ok(())
}

/// A webhook on a free loopback port: records each message body and answers `status`.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    status: Arc<std::sync::atomic::AtomicU16>,
}

async fn hook() -> Result<Hook> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
    let (b, st) = (bodies.clone(), status.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (b, st) = (b.clone(), st.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + length {
                        continue;
                    }
                    let body = &buf[head_end + 4..head_end + 4 + length];
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(body).unwrap_or_default());
                    let code = st.load(std::sync::atomic::Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    return;
                }
            });
        }
    });
    Ok(Hook {
        url,
        bodies,
        status,
    })
}

async fn failed_runs_notify_at_least_once_and_pause_the_schedule(db: Db) -> Result<()> {
    let store = &db.store;
    let hook = hook().await?;
    hook.status.store(503, std::sync::atomic::Ordering::SeqCst);
    let s = scheduler(store);
    let new = add(
        store,
        &format!(
            "  - id: five\n{EVERY_5}\n    overlap: allow\n    pause_after_failures: 2\n    \
             notify: {{ url: '{}', message: 'check of {{{{params.target}}}} failed' }}",
            hook.url
        ),
        at("2026-05-04T10:00:00Z"),
    )
    .await?;
    pass(&s, "2026-05-04T10:00:01Z").await?;
    let first = scheduled_runs(store).await?.remove(0);
    end(store, &first, RunStatus::Failed).await?;
    // Observed and sent; the webhook answers 503, so the notice stays pending.
    let p = pass(&s, "2026-05-04T10:01:00Z").await?;
    ensure!(p.settled == 1 && p.notices_sent == 0 && p.notices_failed == 1);
    ensure!(hook.bodies.lock().unwrap().len() == 1);
    let fire = store.schedule_fires(&new.id, 1).await?.remove(0);
    ensure!(fire.notify_state == Some(NoticeState::Pending) && fire.notify_attempts == 1);
    ensure!(
        fire.notify_error.as_deref().unwrap().contains("503"),
        "{:?}",
        fire.notify_error
    );
    // After the backoff it is sent again, and this time delivered.
    hook.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let p = pass(&s, "2026-05-04T10:01:11Z").await?;
    ensure!(p.notices_sent == 1, "{p:?}");
    let body = hook.bodies.lock().unwrap().last().cloned().unwrap();
    ensure!(body["run"] == first.id.as_str(), "{body}");
    ensure!(body["step"] == "schedule:check/five", "{body}");
    let message = body["message"].as_str().unwrap();
    ensure!(message.starts_with("check of north failed\n"), "{message}");
    ensure!(
        message.contains(&format!("Scheduled run {} of `check` failed", first.id)),
        "{message}"
    );
    ensure!(message.contains("probe said no"), "{message}");
    ensure!(store.schedule_fires(&new.id, 1).await?[0].notify_state == Some(NoticeState::Sent));

    // A scheduler that claims a notice and dies before sending it: the claim lapses and
    // another sends it.
    pass(&s, "2026-05-04T10:05:01Z").await?;
    let second = scheduled_runs(store).await?.remove(1);
    end(store, &second, RunStatus::Failed).await?;
    let dead = scheduler(store);
    dead.store
        .schedule_settle(&new.id, at("2026-05-04T10:06:00Z"))
        .await?;
    let claimed = dead
        .store
        .schedule_notices_claim(at("2026-05-04T10:06:00Z"), Duration::from_secs(60), 10)
        .await?;
    ensure!(claimed.len() == 1);
    drop(dead);
    let before = hook.bodies.lock().unwrap().len();
    let p = pass(&s, "2026-05-04T10:06:30Z").await?;
    ensure!(p.notices_sent == 0, "still claimed by the dead scheduler");
    let p = pass(&s, "2026-05-04T10:07:01Z").await?;
    ensure!(p.notices_sent == 1, "{p:?}");
    ensure!(hook.bodies.lock().unwrap().len() == before + 1);
    let last = hook.bodies.lock().unwrap().last().cloned().unwrap();
    let text = last["message"].as_str().unwrap();
    // Two failures in a row: paused, and the notice says so.
    ensure!(
        text.contains("The schedule is paused (2 consecutive failed runs"),
        "{text}"
    );
    let sched = store.schedule_get(&new.id).await?;
    ensure!(sched.status == ScheduleStatus::Paused);
    ensure!(pass(&s, "2026-05-04T10:10:01Z").await?.fired.is_empty());
    // Failed scheduled runs are plain failed runs: `runway runs --failed` lists them.
    let failed = store.runs_list(Some(RunStatus::Failed), 10).await?;
    ensure!(
        failed
            .iter()
            .filter(|r| r.trigger == "schedule:check/five")
            .count()
            == 2
    );
    Ok(())
}

async fn a_daily_berlin_schedule_fires_once_on_both_transition_days(db: Db) -> Result<()> {
    let store = &db.store;
    let s = scheduler(store);
    let nightly = "    cron: '30 2 * * *'\n    timezone: Europe/Berlin\n    \
                   params: { target: north }\n    overlap: allow";
    // A pass every 15 minutes over four days around each transition of 2026.
    let mut fired = Vec::new();
    for (id, from) in [
        ("spring", "2026-03-27T12:00:00Z"),
        ("autumn", "2026-10-23T12:00:00Z"),
    ] {
        let new = add(store, &format!("  - id: {id}\n{nightly}"), at(from)).await?;
        let mut now = at(from);
        for _ in 0..4 * 96 {
            s.pass(now).await;
            now += chrono::Duration::minutes(15);
        }
        let mut fires = store.schedule_fires(&new.id, 100).await?;
        fires.reverse();
        for f in fires {
            ensure!(f.outcome == FireOutcome::Started, "{f:?}");
            fired.push(f.tick_at);
        }
        store.schedule_remove(&new.id, "alice").await?;
    }
    let expected: Vec<DateTime<Utc>> = [
        "2026-03-28T01:30:00Z", // 02:30 CET
        "2026-03-29T01:00:00Z", // spring forward: 02:30 does not exist; 03:00 CEST
        "2026-03-30T00:30:00Z", // 02:30 CEST
        "2026-03-31T00:30:00Z",
        "2026-10-24T00:30:00Z", // 02:30 CEST
        "2026-10-25T00:30:00Z", // fall back: the first 02:30 (CEST), not the second
        "2026-10-26T01:30:00Z", // 02:30 CET
        "2026-10-27T01:30:00Z",
    ]
    .iter()
    .map(|t| at(t))
    .collect();
    ensure!(fired == expected, "{fired:?}");
    ensure!(scheduled_runs(store).await?.len() == 8);
    Ok(())
}
