//! The values of schedules in the store: schedule rows, the ticks schedulers handled
//! (`schedule_fires`), the audit trail of changes, and what a scheduler asks the store to
//! record for a tick.
//!
//! # Schedule states
//!
//! | from           | event                                          | to      | who                                  |
//! | -------------- | ---------------------------------------------- | ------- | ------------------------------------ |
//! | (new)          | `runway schedule add`, a `followup` step       | active  | `schedule_add`, `step_finish_with_followup` |
//! | active         | `runway schedule pause`                        | paused  | `schedule_pause`                     |
//! | active         | `pause_after_failures` consecutive failed runs | paused  | `schedule_settle`, `schedule_fire`   |
//! | paused         | `runway schedule resume`                       | active  | `schedule_resume` (next tick from now) |
//! | active, paused | `runway schedule remove`                       | removed | `schedule_remove`                    |
//! | removed        | `runway schedule add` again                    | active  | `schedule_add`                       |
//! | active         | no tick left (a follow-up fired)               | done    | `schedule_fire`                      |
//!
//! # Tick outcomes (one row per schedule and tick time)
//!
//! `started` (a run was created in the same transaction), `deferred` (overlap `queue`: the
//! run starts when the schedule's active runs end; then it becomes `started`), `skipped`
//! (overlap `skip`, or older ticks superseded under `catch_up: { fire: latest }`), `missed`
//! (later than the catch-up window), `failed` (no run could be created; the reason says why).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use super::error::{Error, Result};
use super::model::{NewRun, time};
use crate::playbook::schedule::{CatchUpFire, Overlap};
use crate::state::{RunStatus, UnknownStatus};

/// Declares a closed set of text values stored in a column.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| UnknownStatus {
                    what: $what,
                    text: s.to_owned(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// A cron schedule, or a one-off follow-up run.
    ScheduleKind, "schedule kind", { Cron => "cron", Once => "once" }
);
text_enum!(
    /// Where a schedule is in its life (the table in the module docs).
    ScheduleStatus, "schedule status", {
        Active => "active", Paused => "paused", Removed => "removed", Done => "done",
    }
);
text_enum!(
    /// What a scheduler recorded for a tick (module docs).
    FireOutcome, "fire outcome", {
        Started => "started", Deferred => "deferred", Skipped => "skipped",
        Missed => "missed", Failed => "failed",
    }
);
text_enum!(
    /// The failure webhook of one tick: pending until answered 2xx, or given up.
    NoticeState, "notice state", { Pending => "pending", Sent => "sent", GaveUp => "gave_up" }
);

/// A schedule to add: its definition pinned and its params already bound.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// `PLAYBOOK/SCHEDULE`, or `followup/RUN/STEP`.
    pub id: String,
    pub kind: ScheduleKind,
    pub playbook: String,
    pub content_hash: String,
    pub definition: String,
    pub params: Value,
    /// `Some` exactly for a cron schedule.
    pub cron: Option<String>,
    pub timezone: String,
    pub overlap: Overlap,
    pub catch_up: std::time::Duration,
    pub catch_up_fire: CatchUpFire,
    pub pause_after_failures: Option<u32>,
    /// The failure webhook's templates, as the playbook wrote them.
    pub notify: Option<Value>,
    /// The run and step that asked for a follow-up.
    pub parent: Option<(String, String)>,
    /// The first tick.
    pub next_fire_at: DateTime<Utc>,
    pub added_by: String,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub kind: ScheduleKind,
    pub playbook: String,
    pub content_hash: String,
    pub definition: String,
    pub params: Value,
    pub cron: Option<String>,
    pub timezone: String,
    pub overlap: Overlap,
    pub catch_up: std::time::Duration,
    pub catch_up_fire: CatchUpFire,
    pub pause_after_failures: Option<u32>,
    pub notify: Option<Value>,
    pub status: ScheduleStatus,
    pub status_reason: Option<String>,
    /// The earliest tick not handled yet; `None` once done.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub parent_run_id: Option<String>,
    pub parent_step_id: Option<String>,
    pub added_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    /// The `trigger` of the runs it starts: `schedule:ID`, or `followup:RUN/STEP`.
    pub fn trigger(&self) -> String {
        match (&self.parent_run_id, &self.parent_step_id) {
            (Some(run), Some(step)) => format!("followup:{run}/{step}"),
            _ => format!("schedule:{}", self.id),
        }
    }

    /// The fields of `new` that differ from this schedule's configuration (empty: the same
    /// schedule, added again).
    pub fn differences(&self, new: &NewSchedule) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |same: bool, name: &'static str| {
            if !same {
                out.push(name);
            }
        };
        check(self.content_hash == new.content_hash, "definition");
        check(self.params == new.params, "params");
        check(self.cron == new.cron, "cron");
        check(self.timezone == new.timezone, "timezone");
        check(self.overlap == new.overlap, "overlap");
        check(
            self.catch_up == new.catch_up && self.catch_up_fire == new.catch_up_fire,
            "catch_up",
        );
        check(
            self.pause_after_failures == new.pause_after_failures,
            "pause_after_failures",
        );
        check(self.notify == new.notify, "notify");
        out
    }
}

/// What `schedule_add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    /// The same configuration was already registered: nothing changed.
    Unchanged,
    /// A new definition or configuration replaced the old one (`--replace`), or a removed
    /// schedule was added again.
    Replaced,
}

/// One handled tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub schedule_id: String,
    pub tick_at: DateTime<Utc>,
    pub outcome: FireOutcome,
    /// The last tick a `skipped` or `missed` row covers.
    pub through_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub run_id: Option<String>,
    pub fired_by: String,
    pub fired_at: DateTime<Utc>,
    /// The run's end, once a scheduler observed it.
    pub run_status: Option<RunStatus>,
    pub settled_at: Option<DateTime<Utc>>,
    pub notify_state: Option<NoticeState>,
    pub notify_attempts: u32,
    /// When a pending notice is tried next.
    pub notify_next_at: Option<DateTime<Utc>>,
    pub notify_error: Option<String>,
    pub notified_at: Option<DateTime<Utc>>,
}

/// A tick whose run has not been observed to end, or a deferred tick, with its run's
/// current status: what the overlap policy looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFire {
    pub tick_at: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub run_id: Option<String>,
    pub run_status: Option<RunStatus>,
}

impl OpenFire {
    /// A started run that has not ended.
    pub fn is_active(&self) -> bool {
        self.outcome == FireOutcome::Started && self.run_status.is_some_and(|s| !s.is_terminal())
    }
}

/// What to record for the schedule's next tick (see [`PlanFire`]).
#[derive(Debug, Clone, PartialEq)]
pub enum FirePlan {
    /// Record the tick at the schedule's `next_fire_at` and move `next_fire_at` to `next`
    /// (`None`: no tick is left, the schedule is done).
    Tick {
        tick_at: DateTime<Utc>,
        record: TickRecord,
        next: Option<DateTime<Utc>>,
    },
    /// Start the run of a deferred tick now that the runs before it ended (`Err`: no run
    /// could be built; the tick is recorded as failed).
    StartDeferred {
        tick_at: DateTime<Utc>,
        run: std::result::Result<Box<NewRun>, String>,
    },
}

/// How one tick is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum TickRecord {
    Start(Box<NewRun>),
    Defer {
        reason: String,
    },
    /// Every tick from this one through `through`.
    Skip {
        through: DateTime<Utc>,
        reason: String,
    },
    Miss {
        through: DateTime<Utc>,
        reason: String,
    },
    Fail {
        error: String,
    },
}

/// The scheduler's decision, asked by `schedule_fire` inside its transaction, after the
/// schedule's lock and with its open ticks read. Must be pure and quick.
pub trait PlanFire: Send + Sync {
    fn plan(&self, schedule: &Schedule, open: &[OpenFire], now: DateTime<Utc>) -> Option<FirePlan>;
}

/// What `schedule_fire` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fired {
    /// Another scheduler holds the schedule right now; it will handle the tick.
    Busy,
    /// Nothing is due (or the schedule is not active).
    Idle,
    Recorded(Fire),
}

/// What `schedule_settle` observed: ticks whose runs ended, and the pause it caused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    pub fires: Vec<Fire>,
    /// The reason, when consecutive failures paused the schedule.
    pub paused: Option<String>,
}

/// A failure notice to send: the tick, its schedule and its run (none when the run could
/// not be created).
#[derive(Debug, Clone)]
pub struct Notice {
    pub schedule: Schedule,
    pub fire: Fire,
    pub run: Option<super::model::Run>,
}

/// An entry of a schedule's audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEvent {
    pub schedule_id: String,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor: String,
    pub data: Value,
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(time).transpose()
}

fn corrupt(what: &'static str, text: &str) -> Error {
    Error::Corrupt(UnknownStatus {
        what,
        text: text.to_owned(),
    })
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ScheduleRow {
    id: String,
    kind: String,
    playbook: String,
    content_hash: String,
    definition: String,
    params: Json<Value>,
    cron: Option<String>,
    timezone: String,
    overlap: String,
    catch_up_ms: i64,
    catch_up_fire: String,
    pause_after_failures: Option<i32>,
    notify: Option<Json<Value>>,
    status: String,
    status_reason: Option<String>,
    next_fire_at: Option<i64>,
    consecutive_failures: i32,
    parent_run_id: Option<String>,
    parent_step_id: Option<String>,
    added_by: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ScheduleRow> for Schedule {
    type Error = Error;

    fn try_from(r: ScheduleRow) -> Result<Schedule> {
        Ok(Schedule {
            kind: r.kind.parse()?,
            overlap: Overlap::parse(&r.overlap).ok_or_else(|| corrupt("overlap", &r.overlap))?,
            catch_up_fire: CatchUpFire::parse(&r.catch_up_fire)
                .ok_or_else(|| corrupt("catch-up mode", &r.catch_up_fire))?,
            catch_up: std::time::Duration::from_millis(u64::try_from(r.catch_up_ms).unwrap_or(0)),
            status: r.status.parse()?,
            next_fire_at: opt_time(r.next_fire_at)?,
            created_at: time(r.created_at)?,
            updated_at: time(r.updated_at)?,
            pause_after_failures: r.pause_after_failures.and_then(|n| u32::try_from(n).ok()),
            consecutive_failures: u32::try_from(r.consecutive_failures).unwrap_or(0),
            params: r.params.0,
            notify: r.notify.map(|j| j.0),
            id: r.id,
            playbook: r.playbook,
            content_hash: r.content_hash,
            definition: r.definition,
            cron: r.cron,
            timezone: r.timezone,
            status_reason: r.status_reason,
            parent_run_id: r.parent_run_id,
            parent_step_id: r.parent_step_id,
            added_by: r.added_by,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct FireRow {
    schedule_id: String,
    tick_at: i64,
    outcome: String,
    through_at: Option<i64>,
    reason: Option<String>,
    run_id: Option<String>,
    fired_by: String,
    fired_at: i64,
    run_status: Option<String>,
    settled_at: Option<i64>,
    notify_state: Option<String>,
    notify_attempts: i32,
    notify_next_at: Option<i64>,
    notify_error: Option<String>,
    notified_at: Option<i64>,
}

impl TryFrom<FireRow> for Fire {
    type Error = Error;

    fn try_from(r: FireRow) -> Result<Fire> {
        Ok(Fire {
            tick_at: time(r.tick_at)?,
            outcome: r.outcome.parse()?,
            through_at: opt_time(r.through_at)?,
            fired_at: time(r.fired_at)?,
            run_status: r.run_status.map(|s| s.parse()).transpose()?,
            settled_at: opt_time(r.settled_at)?,
            notify_state: r.notify_state.map(|s| s.parse()).transpose()?,
            notify_attempts: u32::try_from(r.notify_attempts).unwrap_or(0),
            notify_next_at: opt_time(r.notify_next_at)?,
            notified_at: opt_time(r.notified_at)?,
            schedule_id: r.schedule_id,
            reason: r.reason,
            run_id: r.run_id,
            fired_by: r.fired_by,
            notify_error: r.notify_error,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OpenFireRow {
    tick_at: i64,
    outcome: String,
    run_id: Option<String>,
    run_status: Option<String>,
}

impl TryFrom<OpenFireRow> for OpenFire {
    type Error = Error;

    fn try_from(r: OpenFireRow) -> Result<OpenFire> {
        Ok(OpenFire {
            tick_at: time(r.tick_at)?,
            outcome: r.outcome.parse()?,
            run_status: r.run_status.map(|s| s.parse()).transpose()?,
            run_id: r.run_id,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ScheduleEventRow {
    schedule_id: String,
    seq: i64,
    at: i64,
    kind: String,
    actor: String,
    data: Json<Value>,
}

impl TryFrom<ScheduleEventRow> for ScheduleEvent {
    type Error = Error;

    fn try_from(r: ScheduleEventRow) -> Result<ScheduleEvent> {
        Ok(ScheduleEvent {
            at: time(r.at)?,
            schedule_id: r.schedule_id,
            seq: r.seq,
            kind: r.kind,
            actor: r.actor,
            data: r.data.0,
        })
    }
}

/// Whether a transaction got a schedule's row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    Taken,
    /// Another transaction holds it (only when asked to skip rather than wait).
    Busy,
    Missing,
}
