//! The schedule operations of [`Store`] (their SQL is in `schedule_ops.rs`; the states and
//! tick outcomes are in `schedule_model.rs`).
//!
//! The clock is the caller's wherever a tick is decided (`now` arguments), so a test or a
//! benchmark can drive ten thousand ticks through the real transactions in seconds.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::schedule_model::{
    Added, Fire, Fired, NewSchedule, Notice, PlanFire, Schedule, ScheduleEvent, Settled,
};
use super::{Decide, Finish, Guard, Result, StepRun, Store, dispatch, postgres, sqlite};

impl Store {
    /// Registers a schedule (see `schedule_ops::schedule_add`): `Unchanged` when the same
    /// configuration is there already; [`super::Error::ScheduleExists`] for a different one
    /// unless `replace`.
    pub async fn schedule_add(
        &self,
        new: &NewSchedule,
        replace: bool,
    ) -> Result<(Schedule, Added)> {
        dispatch!(self, schedule_add(new, replace))
    }

    pub async fn schedule_get(&self, id: &str) -> Result<Schedule> {
        dispatch!(self, schedule_get(id))
    }

    /// Active and paused schedules by id; with `include_ended`, removed and done ones too.
    pub async fn schedules_list(&self, include_ended: bool) -> Result<Vec<Schedule>> {
        dispatch!(self, schedules_list(include_ended))
    }

    /// The follow-ups a run scheduled (their runs have it as `parent_run_id` once they fire).
    pub async fn schedules_of_run(&self, parent_run_id: &str) -> Result<Vec<Schedule>> {
        dispatch!(self, schedules_of_run(parent_run_id))
    }

    /// The schedule's most recent ticks first.
    pub async fn schedule_fires(&self, id: &str, limit: u32) -> Result<Vec<Fire>> {
        dispatch!(self, schedule_fires(id, limit))
    }

    /// The schedule's audit trail: added, replaced, paused, resumed, removed, done.
    pub async fn schedule_events(&self, id: &str) -> Result<Vec<ScheduleEvent>> {
        dispatch!(self, schedule_events(id))
    }

    /// Active → paused, by an operator.
    pub async fn schedule_pause(
        &self,
        id: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Schedule> {
        dispatch!(self, schedule_pause(id, by, reason))
    }

    /// Paused → active, its next tick at `next` (ticks while paused never fire) and its
    /// consecutive failures counted from zero.
    pub async fn schedule_resume(
        &self,
        id: &str,
        by: &str,
        next: DateTime<Utc>,
    ) -> Result<Schedule> {
        dispatch!(self, schedule_resume(id, by, next))
    }

    /// Active or paused → removed. The row, its ticks and its audit trail stay.
    pub async fn schedule_remove(&self, id: &str, by: &str) -> Result<Schedule> {
        dispatch!(self, schedule_remove(id, by))
    }

    /// Ids of the schedules with work for a scheduler at `now` (a due tick, an ended run
    /// to observe, a deferred tick), at most `limit`.
    pub async fn schedules_to_visit(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        dispatch!(self, schedules_to_visit(now, limit))
    }

    /// Observes the schedule's ended runs (outcomes, failure notices, the pause after
    /// consecutive failures) in one transaction.
    pub async fn schedule_settle(&self, id: &str, now: DateTime<Utc>) -> Result<Settled> {
        dispatch!(self, schedule_settle(id, now))
    }

    /// Records the schedule's next tick as `plan` decides, with its run, exactly once.
    pub async fn schedule_fire(
        &self,
        id: &str,
        now: DateTime<Utc>,
        by: &str,
        plan: &dyn PlanFire,
    ) -> Result<Fired> {
        dispatch!(self, schedule_fire(id, now, by, plan))
    }

    /// Claims due failure notices for `lease_for` (at least once: a lapsed claim is taken
    /// again).
    pub async fn schedule_notices_claim(
        &self,
        now: DateTime<Utc>,
        lease_for: Duration,
        limit: u32,
    ) -> Result<Vec<Notice>> {
        dispatch!(self, schedule_notices_claim(now, lease_for, limit))
    }

    /// A claimed notice was delivered (`error` is `None`), or failed: tried again at
    /// `retry_at`, or given up without one.
    pub async fn schedule_notice_done(
        &self,
        id: &str,
        tick_at: DateTime<Utc>,
        error: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        dispatch!(self, schedule_notice_done(id, tick_at, error, retry_at))
    }

    /// Finishes a running `followup` step and registers its one-off schedule together.
    pub async fn step_finish_with_followup(
        &self,
        guard: &Guard,
        finish: &Finish,
        decide: &dyn Decide,
        followup: &NewSchedule,
    ) -> Result<StepRun> {
        dispatch!(
            self,
            step_finish_with_followup(guard, finish, decide, followup)
        )
    }
}
