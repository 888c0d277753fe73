//! The scheduler: fires the ticks of the schedules in the store, exactly once each, however
//! many schedulers run against one Postgres (`runway scheduler`, and the one inside
//! `runway worker`).
//!
//! A pass at `now` visits every schedule with work ([`Store::schedules_to_visit`]):
//!
//! 1. [`Store::schedule_settle`] observes the runs of the schedule that ended (failure
//!    count, the pause after `pause_after_failures`, the failure notice queued);
//! 2. [`Store::schedule_fire`] records due ticks one transaction at a time, each deciding
//!    with [`policy::decide`] (catch-up window, overlap policy) and creating the run in the
//!    same transaction;
//! 3. due failure notices are claimed and sent ([`notice`]).
//!
//! The engine knows nothing of schedules: a scheduled run is a run with a
//! `schedule:ID` (or `followup:RUN/STEP`) trigger, and the scheduler learns how it ended by
//! reading runs, not through a hook in the run-ending transaction. Everything the
//! scheduler knows between passes is in the store, so killing one at any instant loses
//! nothing: its open transaction rolls back (its lock is released, the tick is still due),
//! and the next pass of any scheduler goes on.

pub mod clock;
pub mod notice;
pub mod policy;
pub mod register;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use clock::Clock;

use crate::cadence::Cadence;
use crate::engine::{Origin, new_run};
use crate::plan::Plan;
use crate::source::Source;
use crate::store::{
    self, Fire, FirePlan, Fired, NewRun, OpenFire, PlanFire, Schedule, ScheduleKind, Store,
    TickRecord,
};
use policy::{Decision, Record};

/// How a scheduler behaves; the defaults suit production.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes (a tick fires at most this much after its time, plus a pass).
    pub poll_every: Duration,
    /// Where `invoke` targets of scheduled playbooks are found when compiling them.
    pub workflows: PathBuf,
    /// How long a claimed failure notice is left to its sender before another retries it.
    pub notice_lease: Duration,
    /// How long a failing webhook is retried before its notice is given up (and recorded).
    pub notice_give_up: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            poll_every: Duration::from_secs(1),
            workflows: PathBuf::from("workflows"),
            notice_lease: Duration::from_secs(60),
            notice_give_up: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    pub fired: Vec<Fire>,
    /// Ticks whose runs were observed to end.
    pub settled: usize,
    /// Schedules paused after consecutive failures, with the reason.
    pub paused: Vec<(String, String)>,
    pub notices_sent: usize,
    pub notices_failed: usize,
    /// Schedules this pass could not handle, with the error (the next pass tries again).
    pub errors: Vec<(String, String)>,
}

/// At most this many ticks of one schedule per visit, so a backlog cannot starve the
/// others (the next pass goes on where this one stopped).
const TICKS_PER_VISIT: usize = 100;

/// At most this many schedules per pass.
const VISITS_PER_PASS: u32 = 500;

pub struct Scheduler {
    pub store: Store,
    pub config: Config,
    /// Unique per process: host, pid and a random suffix; recorded on every tick it fires.
    pub id: String,
    plans: Mutex<HashMap<String, Arc<Plan>>>,
}

impl Scheduler {
    pub fn new(store: Store, config: Config) -> Arc<Scheduler> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".to_owned());
        let id = format!(
            "scheduler:{host}:{}:{}",
            std::process::id(),
            &store::new_id()[20..]
        );
        Arc::new(Scheduler {
            store,
            config,
            id,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Passes every `poll_every` until `stop`, deciding ticks by `clock`.
    pub async fn run(self: Arc<Scheduler>, clock: Clock, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.config.poll_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let pass = self.pass(clock.now()).await;
            for f in &pass.fired {
                tracing::info!(schedule.id = %f.schedule_id, tick = %f.tick_at, outcome = %f.outcome, run.id = ?f.run_id, "tick");
            }
            for (id, reason) in &pass.paused {
                tracing::warn!(schedule.id = %id, "schedule paused: {reason}");
            }
            for (id, error) in &pass.errors {
                tracing::warn!(schedule.id = %id, "scheduler: {error}");
            }
        }
    }

    /// One pass at `now` (module docs). Never fails as a whole: a schedule that cannot be
    /// handled is reported in [`Pass::errors`] and visited again next time.
    pub async fn pass(&self, now: DateTime<Utc>) -> Pass {
        let mut pass = Pass::default();
        match self.store.schedules_to_visit(now, VISITS_PER_PASS).await {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.visit(&id, now, &mut pass).await {
                        pass.errors.push((id, e.to_string()));
                    }
                }
            }
            Err(e) => pass.errors.push(("(all)".to_owned(), e.to_string())),
        }
        if let Err(e) = self.send_notices(now, &mut pass).await {
            pass.errors.push(("(notices)".to_owned(), e.to_string()));
        }
        pass
    }

    async fn visit(
        &self,
        id: &str,
        now: DateTime<Utc>,
        pass: &mut Pass,
    ) -> Result<(), store::Error> {
        let settled = self.store.schedule_settle(id, now).await?;
        pass.settled += settled.fires.len();
        if let Some(reason) = settled.paused {
            pass.paused.push((id.to_owned(), reason));
        }
        // Compiled before the tick's transaction, so it only looks the plan up.
        let schedule = self.store.schedule_get(id).await?;
        let _ = self.plan_of(&schedule);
        let planner = Planner { scheduler: self };
        for _ in 0..TICKS_PER_VISIT {
            match self
                .store
                .schedule_fire(id, now, &self.id, &planner)
                .await?
            {
                Fired::Recorded(fire) => pass.fired.push(fire),
                Fired::Busy | Fired::Idle => break,
            }
        }
        Ok(())
    }

    /// The plan a schedule pinned, compiled once per process (by content hash). Failures
    /// are not cached: an `invoke` target that is missing now may be there next time.
    fn plan_of(&self, schedule: &Schedule) -> Result<Arc<Plan>, String> {
        if let Some(plan) = self
            .plans
            .lock()
            .expect("plan cache")
            .get(&schedule.content_hash)
        {
            return Ok(plan.clone());
        }
        let source = Source {
            name: format!("{} (schedule {})", schedule.playbook, schedule.id),
            text: schedule.definition.clone(),
        };
        let plan = crate::engine::compile(source, &self.config.workflows)
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        self.plans
            .lock()
            .expect("plan cache")
            .insert(schedule.content_hash.clone(), plan.clone());
        Ok(plan)
    }

    /// The run a tick starts: the pinned plan with the schedule's params, started by whoever
    /// added the schedule (a follow-up: the run that asked for it), linked to its parent.
    fn run_of(&self, schedule: &Schedule) -> Result<NewRun, String> {
        let plan = self.plan_of(schedule)?;
        let params = schedule
            .params
            .as_object()
            .cloned()
            .ok_or_else(|| format!("schedule {} has no params object", schedule.id))?;
        let origin = Origin {
            starter: schedule.added_by.clone(),
            trigger: schedule.trigger(),
            parent: schedule
                .parent_run_id
                .clone()
                .zip(schedule.parent_step_id.clone()),
        };
        new_run(&plan, &schedule.definition, params, &origin)
    }

    async fn send_notices(&self, now: DateTime<Utc>, pass: &mut Pass) -> Result<(), store::Error> {
        let notices = self
            .store
            .schedule_notices_claim(now, self.config.notice_lease, 20)
            .await?;
        for n in notices {
            let names: Vec<String> = match self.plan_of(&n.schedule) {
                Ok(plan) => plan
                    .playbook
                    .secrets
                    .iter()
                    .map(|s| s.value.clone())
                    .collect(),
                Err(_) => Vec::new(),
            };
            match notice::deliver(&n, &names).await {
                Ok(()) => {
                    pass.notices_sent += 1;
                    self.store
                        .schedule_notice_done(&n.schedule.id, n.fire.tick_at, None, None)
                        .await?;
                }
                Err(error) => {
                    pass.notices_failed += 1;
                    tracing::warn!(schedule.id = %n.schedule.id, tick = %n.fire.tick_at, "failure notice not delivered: {error}");
                    let since = n.fire.settled_at.unwrap_or(n.fire.fired_at);
                    let give_up = chrono::Duration::from_std(self.config.notice_give_up)
                        .unwrap_or(chrono::Duration::MAX);
                    let retry_at = (now - since < give_up)
                        .then(|| now + notice_backoff(n.fire.notify_attempts));
                    self.store
                        .schedule_notice_done(
                            &n.schedule.id,
                            n.fire.tick_at,
                            Some(&error),
                            retry_at,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// 10 s after the first failed attempt, doubling up to 10 minutes.
fn notice_backoff(attempts: u32) -> chrono::Duration {
    let secs = 10u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(6));
    chrono::Duration::seconds(secs.min(600) as i64)
}

/// The store's [`PlanFire`]: [`policy::decide`], with runs built from the pinned plan.
struct Planner<'a> {
    scheduler: &'a Scheduler,
}

impl PlanFire for Planner<'_> {
    fn plan(&self, schedule: &Schedule, open: &[OpenFire], now: DateTime<Utc>) -> Option<FirePlan> {
        let cadence = match (&schedule.kind, &schedule.cron) {
            (ScheduleKind::Cron, Some(cron)) => match Cadence::parse(cron, &schedule.timezone) {
                Ok(c) => Some(c),
                // Validated when added; only a time zone database that dropped the zone
                // gets here. The schedule ends with the reason on its last tick.
                Err(e) => {
                    return Some(FirePlan::Tick {
                        tick_at: schedule.next_fire_at.filter(|&t| t <= now)?,
                        record: TickRecord::Fail {
                            error: e.to_string(),
                        },
                        next: None,
                    });
                }
            },
            _ => None,
        };
        Some(
            match policy::decide(schedule, cadence.as_ref(), open, now)? {
                Decision::StartDeferred { tick_at } => FirePlan::StartDeferred {
                    tick_at,
                    run: self.scheduler.run_of(schedule).map(Box::new),
                },
                Decision::Tick {
                    tick_at,
                    record,
                    next,
                } => FirePlan::Tick {
                    tick_at,
                    next,
                    record: match record {
                        Record::Start => match self.scheduler.run_of(schedule) {
                            Ok(run) => TickRecord::Start(Box::new(run)),
                            Err(error) => TickRecord::Fail { error },
                        },
                        Record::Defer { reason } => TickRecord::Defer { reason },
                        Record::Skip { through, reason } => TickRecord::Skip { through, reason },
                        Record::Miss { through, reason } => TickRecord::Miss { through, reason },
                    },
                },
            },
        )
    }
}
