//! The store's schedule operations, written once for both backends like `ops.rs`:
//! `schedule_transitions!()` expands next to `transitions!()` inside `store::postgres` and
//! `store::sqlite`, so it uses that expansion's private helpers (`begin`, `run_insert`,
//! `append`, `finish_in`, ...). Each backend adds `lock_schedule(conn, id, skip)`: a row
//! lock on Postgres (`FOR UPDATE`, or `FOR UPDATE SKIP LOCKED` for schedulers, which skip a
//! schedule another scheduler is working on instead of waiting), nothing more on SQLite,
//! whose write transaction already excludes every other writer.
//!
//! Exactly once per tick: a tick is recorded by one transaction that takes the schedule's
//! lock, inserts the `(schedule_id, tick_at)` row, creates the run, and moves
//! `next_fire_at` past the tick with an UPDATE guarded by its old value. Two schedulers
//! that race for a tick are serialized by the lock; if anything ever let both through, the
//! primary key and the guard refuse the second, and its transaction (run included) rolls
//! back.
//!
//! Every early return after the lock rolls back explicitly: a dropped transaction's
//! ROLLBACK is only queued, so its connection could go back to the pool still holding the
//! schedule's lock, and the caller's next transaction (on another connection) would find
//! its own schedule "busy".
//!
//! Locking order: a schedule transaction takes the schedule's lock first, then creates a
//! new run (whose lock key it may take, as `run_create` does); it never locks an existing
//! run. Run transitions never lock a schedule. So the two never wait on each other in a
//! cycle.

#[allow(unused_imports)]
pub(super) mod prelude {
    pub(in crate::store) use crate::store::schedule_model::{
        Added, Fire, FireOutcome, FirePlan, FireRow, Fired, Held, NewSchedule, Notice, OpenFire,
        OpenFireRow, PlanFire, Schedule, ScheduleEvent, ScheduleEventRow, ScheduleKind,
        ScheduleRow, ScheduleStatus, Settled, TickRecord,
    };
}

macro_rules! schedule_transitions {
    () => {
        use $crate::store::schedule_ops::prelude::*;

        // ---------------------------------------------------------------- reads

        pub(in crate::store) async fn schedule_get(pool: &Pool, id: &str) -> Result<Schedule> {
            sqlx::query_as::<_, ScheduleRow>("SELECT * FROM schedules WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| Error::ScheduleNotFound(id.to_owned()))?
                .try_into()
        }

        pub(in crate::store) async fn schedules_list(
            pool: &Pool,
            include_ended: bool,
        ) -> Result<Vec<Schedule>> {
            let rows = sqlx::query_as::<_, ScheduleRow>(
                "SELECT * FROM schedules \
                 WHERE $1 OR status IN ('active', 'paused') ORDER BY id",
            )
            .bind(include_ended)
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn schedules_of_run(
            pool: &Pool,
            parent_run_id: &str,
        ) -> Result<Vec<Schedule>> {
            let rows = sqlx::query_as::<_, ScheduleRow>(
                "SELECT * FROM schedules WHERE parent_run_id = $1 ORDER BY next_fire_at, id",
            )
            .bind(parent_run_id)
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn schedule_fires(
            pool: &Pool,
            id: &str,
            limit: u32,
        ) -> Result<Vec<Fire>> {
            let rows = sqlx::query_as::<_, FireRow>(
                "SELECT * FROM schedule_fires WHERE schedule_id = $1 \
                 ORDER BY tick_at DESC LIMIT $2",
            )
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn schedule_events(
            pool: &Pool,
            id: &str,
        ) -> Result<Vec<ScheduleEvent>> {
            let rows = sqlx::query_as::<_, ScheduleEventRow>(
                "SELECT * FROM schedule_events WHERE schedule_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        /// Schedules a scheduler should look at: a tick is due, a started run ended and was
        /// not observed yet, or a deferred tick waits.
        pub(in crate::store) async fn schedules_to_visit(
            pool: &Pool,
            now: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<String>> {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM schedules WHERE status = 'active' AND next_fire_at <= $1 \
                 UNION \
                 SELECT f.schedule_id FROM schedule_fires f \
                 JOIN schedules s ON s.id = f.schedule_id \
                 LEFT JOIN runs r ON r.id = f.run_id \
                 WHERE f.settled_at IS NULL AND f.outcome IN ('started', 'deferred') \
                 AND ((f.outcome = 'started' \
                       AND r.status IN ('succeeded', 'failed', 'cancelled')) \
                      OR (f.outcome = 'deferred' AND s.status = 'active')) \
                 LIMIT $2",
            )
            .bind(millis(now))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            Ok(ids)
        }

        async fn fetch_schedule(conn: &mut Conn, id: &str) -> Result<Schedule> {
            sqlx::query_as::<_, ScheduleRow>("SELECT * FROM schedules WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?
                .try_into()
        }

        async fn fetch_fire(conn: &mut Conn, id: &str, tick_at: i64) -> Result<Fire> {
            sqlx::query_as::<_, FireRow>(
                "SELECT * FROM schedule_fires WHERE schedule_id = $1 AND tick_at = $2",
            )
            .bind(id)
            .bind(tick_at)
            .fetch_one(&mut *conn)
            .await?
            .try_into()
        }

        // ---------------------------------------------------------------- changes

        /// Appends to the schedule's audit trail; the caller holds the schedule's lock (or
        /// has just inserted it).
        async fn schedule_event(
            conn: &mut Conn,
            id: &str,
            kind: &str,
            actor: &str,
            data: serde_json::Value,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO schedule_events (schedule_id, seq, at, kind, actor, data) \
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 \
                 FROM schedule_events WHERE schedule_id = $1",
            )
            .bind(id)
            .bind(now)
            .bind(kind)
            .bind(actor)
            .bind(Json(&data))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn schedule_insert(conn: &mut Conn, new: &NewSchedule, now: i64) -> Result<()> {
            sqlx::query(
                "INSERT INTO schedules (id, kind, playbook, content_hash, definition, params, \
                 cron, timezone, overlap, catch_up_ms, catch_up_fire, pause_after_failures, \
                 notify, status, next_fire_at, parent_run_id, parent_step_id, added_by, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'active', \
                 $14, $15, $16, $17, $18, $18)",
            )
            .bind(&new.id)
            .bind(new.kind.as_str())
            .bind(&new.playbook)
            .bind(&new.content_hash)
            .bind(&new.definition)
            .bind(Json(&new.params))
            .bind(new.cron.as_deref())
            .bind(&new.timezone)
            .bind(new.overlap.as_str())
            .bind(i64::try_from(new.catch_up.as_millis()).unwrap_or(i64::MAX))
            .bind(new.catch_up_fire.as_str())
            .bind(new.pause_after_failures.map(|n| i64::from(n)))
            .bind(new.notify.as_ref().map(Json))
            .bind(millis(new.next_fire_at))
            .bind(new.parent.as_ref().map(|p| p.0.as_str()))
            .bind(new.parent.as_ref().map(|p| p.1.as_str()))
            .bind(&new.added_by)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            schedule_event(&mut *conn, &new.id, "added", &new.added_by, added_data(new), now)
                .await
        }

        fn added_data(new: &NewSchedule) -> serde_json::Value {
            json!({
                "playbook": new.playbook, "content_hash": new.content_hash,
                "params": new.params, "cron": new.cron, "timezone": new.timezone,
                "overlap": new.overlap.as_str(),
                "catch_up_ms": i64::try_from(new.catch_up.as_millis()).unwrap_or(i64::MAX),
                "catch_up_fire": new.catch_up_fire.as_str(),
                "pause_after_failures": new.pause_after_failures, "notify": new.notify,
                "next_fire_at": millis(new.next_fire_at),
                "parent_run_id": new.parent.as_ref().map(|p| &p.0),
                "parent_step_id": new.parent.as_ref().map(|p| &p.1),
            })
        }

        /// Registers a schedule, or recognizes it: the same configuration again is
        /// `Unchanged`; a different one is refused with `ScheduleExists` unless `replace`,
        /// which re-pins it (its next tick counted from `new.next_fire_at`); a removed one
        /// is revived.
        pub(in crate::store) async fn schedule_add(
            pool: &Pool,
            new: &NewSchedule,
            replace: bool,
        ) -> Result<(Schedule, Added)> {
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let added = match lock_schedule(&mut tx, &new.id, false).await? {
                Held::Missing => {
                    schedule_insert(&mut tx, new, now).await?;
                    Added::New
                }
                Held::Busy | Held::Taken => {
                    let old = fetch_schedule(&mut tx, &new.id).await?;
                    let differences = old.differences(new);
                    let revived = old.status == ScheduleStatus::Removed;
                    if differences.is_empty() && !revived {
                        tx.rollback().await?;
                        return Ok((old, Added::Unchanged));
                    }
                    if !replace && !revived {
                        tx.rollback().await?;
                        return Err(Error::ScheduleExists {
                            id: new.id.clone(),
                            differences: differences.join(", "),
                        });
                    }
                    // A paused schedule stays paused; its next tick is counted on resume.
                    let status = if revived {
                        ScheduleStatus::Active
                    } else {
                        old.status
                    };
                    sqlx::query(
                        "UPDATE schedules SET playbook = $2, content_hash = $3, definition = $4, \
                         params = $5, cron = $6, timezone = $7, overlap = $8, catch_up_ms = $9, \
                         catch_up_fire = $10, pause_after_failures = $11, notify = $12, \
                         status = $13, status_reason = NULL, next_fire_at = $14, \
                         added_by = $15, updated_at = $16 WHERE id = $1",
                    )
                    .bind(&new.id)
                    .bind(&new.playbook)
                    .bind(&new.content_hash)
                    .bind(&new.definition)
                    .bind(Json(&new.params))
                    .bind(new.cron.as_deref())
                    .bind(&new.timezone)
                    .bind(new.overlap.as_str())
                    .bind(i64::try_from(new.catch_up.as_millis()).unwrap_or(i64::MAX))
                    .bind(new.catch_up_fire.as_str())
                    .bind(new.pause_after_failures.map(|n| i64::from(n)))
                    .bind(new.notify.as_ref().map(Json))
                    .bind(status.as_str())
                    .bind(millis(new.next_fire_at))
                    .bind(&new.added_by)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let mut data = added_data(new);
                    data["changed"] = json!(differences);
                    data["previous_content_hash"] = json!(old.content_hash);
                    let kind = if revived { "added" } else { "replaced" };
                    schedule_event(&mut tx, &new.id, kind, &new.added_by, data, now).await?;
                    Added::Replaced
                }
            };
            let schedule = fetch_schedule(&mut tx, &new.id).await?;
            tx.commit().await?;
            Ok((schedule, added))
        }

        /// The shared body of pause, resume and remove: a status change guarded by the
        /// statuses it may leave, with its audit entry.
        #[allow(clippy::too_many_arguments)]
        async fn schedule_move(
            pool: &Pool,
            id: &str,
            from: &[ScheduleStatus],
            expected: &'static str,
            to: ScheduleStatus,
            by: &str,
            reason: Option<&str>,
            next: Option<DateTime<Utc>>,
        ) -> Result<Schedule> {
            let now = now_ms();
            let mut tx = begin(pool).await?;
            if lock_schedule(&mut tx, id, false).await? == Held::Missing {
                tx.rollback().await?;
                return Err(Error::ScheduleNotFound(id.to_owned()));
            }
            let old = fetch_schedule(&mut tx, id).await?;
            if !from.contains(&old.status) {
                tx.rollback().await?;
                return Err(Error::ScheduleNotIn {
                    id: id.to_owned(),
                    expected,
                    actual: old.status,
                });
            }
            let resumed = to == ScheduleStatus::Active;
            sqlx::query(
                "UPDATE schedules SET status = $2, status_reason = $3, \
                 next_fire_at = COALESCE($4, next_fire_at), updated_at = $5, \
                 consecutive_failures = CASE WHEN $6 THEN 0 ELSE consecutive_failures END \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(to.as_str())
            .bind(reason)
            .bind(next.map(millis))
            .bind(now)
            .bind(resumed)
            .execute(&mut *tx)
            .await?;
            let kind = match to {
                ScheduleStatus::Active => "resumed",
                ScheduleStatus::Paused => "paused",
                ScheduleStatus::Removed => "removed",
                ScheduleStatus::Done => "done",
            };
            let data = json!({
                "from": old.status.as_str(), "reason": reason, "next_fire_at": next.map(millis),
            });
            schedule_event(&mut tx, id, kind, by, data, now).await?;
            let schedule = fetch_schedule(&mut tx, id).await?;
            tx.commit().await?;
            Ok(schedule)
        }

        pub(in crate::store) async fn schedule_pause(
            pool: &Pool,
            id: &str,
            by: &str,
            reason: Option<&str>,
        ) -> Result<Schedule> {
            let from = [ScheduleStatus::Active];
            schedule_move(pool, id, &from, "active", ScheduleStatus::Paused, by, reason, None)
                .await
        }

        pub(in crate::store) async fn schedule_resume(
            pool: &Pool,
            id: &str,
            by: &str,
            next: DateTime<Utc>,
        ) -> Result<Schedule> {
            let from = [ScheduleStatus::Paused];
            schedule_move(
                pool, id, &from, "paused", ScheduleStatus::Active, by, None, Some(next),
            )
            .await
        }

        pub(in crate::store) async fn schedule_remove(
            pool: &Pool,
            id: &str,
            by: &str,
        ) -> Result<Schedule> {
            let from = [ScheduleStatus::Active, ScheduleStatus::Paused];
            schedule_move(
                pool, id, &from, "active or paused", ScheduleStatus::Removed, by, None, None,
            )
            .await
        }

        // ---------------------------------------------------------------- ticks

        /// Counts an observed outcome (`Some(true)`: a failure, `Some(false)`: a success,
        /// `None`: neither, such as a cancel) and pauses the schedule when its consecutive
        /// failures reach `pause_after_failures`. Returns the pause's reason.
        async fn count_outcome(
            conn: &mut Conn,
            schedule: &Schedule,
            failures: &mut u32,
            failed: Option<bool>,
            run_id: Option<&str>,
            now: i64,
        ) -> Result<Option<String>> {
            match failed {
                Some(true) => *failures += 1,
                Some(false) => *failures = 0,
                None => {}
            }
            sqlx::query("UPDATE schedules SET consecutive_failures = $2 WHERE id = $1")
                .bind(&schedule.id)
                .bind(i64::from(*failures))
                .execute(&mut *conn)
                .await?;
            let Some(limit) = schedule.pause_after_failures else {
                return Ok(None);
            };
            if failed != Some(true) || *failures < limit {
                return Ok(None);
            }
            let reason = format!(
                "{} consecutive failed runs (pause_after_failures: {limit}; the last: {})",
                *failures,
                run_id.unwrap_or("a tick that could not start a run")
            );
            let paused = sqlx::query(
                "UPDATE schedules SET status = 'paused', status_reason = $2, updated_at = $3 \
                 WHERE id = $1 AND status = 'active'",
            )
            .bind(&schedule.id)
            .bind(&reason)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if paused == 0 {
                return Ok(None);
            }
            schedule_event(
                &mut *conn,
                &schedule.id,
                "paused",
                "scheduler",
                json!({ "from": "active", "reason": reason, "consecutive_failures": *failures }),
                now,
            )
            .await?;
            Ok(Some(reason))
        }

        /// Records the end of every started run of the schedule that ended since the last
        /// look: its status on the tick's row, a failure notice queued when the schedule has
        /// a webhook, the consecutive-failure count, and the pause it may cause. A schedule
        /// another scheduler holds is skipped (it settles it).
        pub(in crate::store) async fn schedule_settle(
            pool: &Pool,
            id: &str,
            now: DateTime<Utc>,
        ) -> Result<Settled> {
            let now = millis(now);
            let mut tx = begin(pool).await?;
            match lock_schedule(&mut tx, id, true).await? {
                Held::Missing => {
                    tx.rollback().await?;
                    return Err(Error::ScheduleNotFound(id.to_owned()))
                }
                Held::Busy => {
                    tx.rollback().await?;
                    return Ok(Settled::default())
                }
                Held::Taken => {}
            }
            let schedule = fetch_schedule(&mut tx, id).await?;
            let ended: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT f.tick_at, r.id, r.status FROM schedule_fires f \
                 JOIN runs r ON r.id = f.run_id \
                 WHERE f.schedule_id = $1 AND f.settled_at IS NULL AND f.outcome = 'started' \
                 AND r.status IN ('succeeded', 'failed', 'cancelled') ORDER BY f.tick_at",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            if ended.is_empty() {
                tx.rollback().await?;
                return Ok(Settled::default());
            }
            let mut settled = Settled::default();
            let mut failures = schedule.consecutive_failures;
            for (tick_at, run_id, status) in ended {
                let status: RunStatus = status.parse()?;
                let failed = status == RunStatus::Failed;
                let notify = failed && schedule.notify.is_some();
                sqlx::query(
                    "UPDATE schedule_fires SET run_status = $3, settled_at = $4, \
                     notify_state = $5, notify_next_at = $6 \
                     WHERE schedule_id = $1 AND tick_at = $2 AND settled_at IS NULL",
                )
                .bind(id)
                .bind(tick_at)
                .bind(status.as_str())
                .bind(now)
                .bind(notify.then_some("pending"))
                .bind(notify.then_some(now))
                .execute(&mut *tx)
                .await?;
                let counted = match status {
                    RunStatus::Failed => Some(true),
                    RunStatus::Succeeded => Some(false),
                    _ => None,
                };
                if let Some(reason) =
                    count_outcome(&mut tx, &schedule, &mut failures, counted, Some(&run_id), now)
                        .await?
                {
                    settled.paused = Some(reason);
                }
                settled.fires.push(fetch_fire(&mut tx, id, tick_at).await?);
            }
            tx.commit().await?;
            Ok(settled)
        }

        /// Records the schedule's next tick as `plan` decides (see `PlanFire`), exactly once:
        /// the tick's row, its run and the move of `next_fire_at` commit together or not at
        /// all. `Busy` when another scheduler holds the schedule, `Idle` when nothing is due.
        pub(in crate::store) async fn schedule_fire(
            pool: &Pool,
            id: &str,
            now: DateTime<Utc>,
            by: &str,
            plan: &dyn PlanFire,
        ) -> Result<Fired> {
            let now_at = now;
            let now = millis(now);
            let mut tx = begin(pool).await?;
            match lock_schedule(&mut tx, id, true).await? {
                Held::Missing => {
                    tx.rollback().await?;
                    return Err(Error::ScheduleNotFound(id.to_owned()))
                }
                Held::Busy => {
                    tx.rollback().await?;
                    return Ok(Fired::Busy)
                }
                Held::Taken => {}
            }
            let schedule = fetch_schedule(&mut tx, id).await?;
            if schedule.status != ScheduleStatus::Active {
                tx.rollback().await?;
                return Ok(Fired::Idle);
            }
            let rows = sqlx::query_as::<_, OpenFireRow>(
                "SELECT f.tick_at, f.outcome, f.run_id, r.status AS run_status \
                 FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id \
                 WHERE f.schedule_id = $1 AND f.settled_at IS NULL \
                 AND f.outcome IN ('started', 'deferred') ORDER BY f.tick_at",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let open: Vec<OpenFire> = convert(rows)?;
            let Some(decided) = plan.plan(&schedule, &open, now_at) else {
                tx.rollback().await?;
                return Ok(Fired::Idle);
            };
            let tick_at = match decided {
                FirePlan::StartDeferred { tick_at, run } => {
                    let tick_at = millis(tick_at);
                    let (outcome, run_id, reason) = match &run {
                        Ok(run) => {
                            let run = start_run(&mut tx, &schedule, run, tick_at, by, true).await?;
                            (FireOutcome::Started, Some(run), None)
                        }
                        Err(error) => (FireOutcome::Failed, None, Some(error.as_str())),
                    };
                    let failed = run.is_err();
                    let notify = failed && schedule.notify.is_some();
                    let moved = sqlx::query(
                        "UPDATE schedule_fires SET outcome = $3, run_id = $4, \
                         reason = COALESCE($5, reason), fired_by = $6, fired_at = $7, \
                         settled_at = $8, notify_state = $9, notify_next_at = $10 \
                         WHERE schedule_id = $1 AND tick_at = $2 AND outcome = 'deferred'",
                    )
                    .bind(id)
                    .bind(tick_at)
                    .bind(outcome.as_str())
                    .bind(run_id.as_deref())
                    .bind(reason)
                    .bind(by)
                    .bind(now)
                    .bind(failed.then_some(now))
                    .bind(notify.then_some("pending"))
                    .bind(notify.then_some(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if moved == 0 {
                        tx.rollback().await?;
                        return Err(tick_not_next(id, tick_at));
                    }
                    if failed {
                        let mut failures = schedule.consecutive_failures;
                        count_outcome(&mut tx, &schedule, &mut failures, Some(true), None, now)
                            .await?;
                    }
                    tick_at
                }
                FirePlan::Tick {
                    tick_at,
                    record,
                    next,
                } => {
                    let tick_at = millis(tick_at);
                    if schedule.next_fire_at.map(millis) != Some(tick_at) {
                        tx.rollback().await?;
                        return Err(tick_not_next(id, tick_at));
                    }
                    let (outcome, through, reason, failed) = match &record {
                        TickRecord::Start(_) => (FireOutcome::Started, None, None, None),
                        TickRecord::Defer { reason } => {
                            (FireOutcome::Deferred, None, Some(reason.as_str()), None)
                        }
                        TickRecord::Skip { through, reason } => {
                            (FireOutcome::Skipped, Some(millis(*through)), Some(reason.as_str()), None)
                        }
                        TickRecord::Miss { through, reason } => {
                            (FireOutcome::Missed, Some(millis(*through)), Some(reason.as_str()), None)
                        }
                        TickRecord::Fail { error } => {
                            (FireOutcome::Failed, None, Some(error.as_str()), Some(true))
                        }
                    };
                    let run_id = match &record {
                        TickRecord::Start(run) => {
                            Some(start_run(&mut tx, &schedule, run, tick_at, by, false).await?)
                        }
                        _ => None,
                    };
                    // A failed tick has no run to observe: it is settled at once.
                    let notify = failed.is_some() && schedule.notify.is_some();
                    let inserted = sqlx::query(
                        "INSERT INTO schedule_fires (schedule_id, tick_at, outcome, through_at, \
                         reason, run_id, fired_by, fired_at, settled_at, notify_state, \
                         notify_next_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(tick_at)
                    .bind(outcome.as_str())
                    .bind(through)
                    .bind(reason)
                    .bind(run_id.as_deref())
                    .bind(by)
                    .bind(now)
                    .bind(failed.map(|_| now))
                    .bind(notify.then_some("pending"))
                    .bind(notify.then_some(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        tx.rollback().await?;
                        return Err(tick_not_next(id, tick_at));
                    }
                    let moved = sqlx::query(
                        "UPDATE schedules SET next_fire_at = $3, updated_at = $4, \
                         status = CASE WHEN $3 IS NULL THEN 'done' ELSE status END \
                         WHERE id = $1 AND next_fire_at = $2",
                    )
                    .bind(id)
                    .bind(tick_at)
                    .bind(next.map(millis))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if moved == 0 {
                        tx.rollback().await?;
                        return Err(tick_not_next(id, tick_at));
                    }
                    if next.is_none() {
                        schedule_event(
                            &mut tx,
                            id,
                            "done",
                            by,
                            json!({ "last_tick_at": tick_at }),
                            now,
                        )
                        .await?;
                    }
                    if failed.is_some() {
                        let mut failures = schedule.consecutive_failures;
                        count_outcome(&mut tx, &schedule, &mut failures, failed, None, now)
                            .await?;
                    }
                    tick_at
                }
            };
            let fire = fetch_fire(&mut tx, id, tick_at).await?;
            tx.commit().await?;
            Ok(Fired::Recorded(fire))
        }

        fn tick_not_next(id: &str, tick_at: i64) -> Error {
            Error::TickNotNext {
                id: id.to_owned(),
                tick: $crate::store::model::time(tick_at)
                    .map_or_else(|_| tick_at.to_string(), |t| t.to_rfc3339()),
            }
        }

        /// Creates a scheduled run on the tick's transaction and says in its evidence which
        /// schedule and tick started it.
        async fn start_run(
            tx: &mut Conn,
            schedule: &Schedule,
            new: &NewRun,
            tick_at: i64,
            by: &str,
            deferred: bool,
        ) -> Result<String> {
            check_new_run(new)?;
            let now = now_ms();
            let run = run_insert(&mut *tx, new, now).await?;
            let event = NewEvent::run(
                "run.scheduled",
                json!({
                    "schedule_id": schedule.id, "tick_at": tick_at,
                    "content_hash": schedule.content_hash, "scheduler": by,
                    "deferred": deferred,
                }),
            );
            append(&mut *tx, &run.id, &[event], now).await?;
            Ok(run.id)
        }

        // ---------------------------------------------------------------- notices

        /// Claims up to `limit` due failure notices for `lease_for` (another sender retries
        /// one whose claim lapsed: at least once), counting the attempt. Each claim is one
        /// UPDATE guarded by the notice's due time, so two senders never claim the same one.
        pub(in crate::store) async fn schedule_notices_claim(
            pool: &Pool,
            now: DateTime<Utc>,
            lease_for: Duration,
            limit: u32,
        ) -> Result<Vec<Notice>> {
            let now = millis(now);
            let due: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT schedule_id, tick_at, notify_next_at FROM schedule_fires \
                 WHERE notify_state = 'pending' AND notify_next_at <= $1 \
                 ORDER BY notify_next_at LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut notices = Vec::new();
            for (id, tick_at, due_at) in due {
                let claimed = sqlx::query_as::<_, FireRow>(
                    "UPDATE schedule_fires SET notify_next_at = $4, \
                     notify_attempts = notify_attempts + 1 \
                     WHERE schedule_id = $1 AND tick_at = $2 AND notify_state = 'pending' \
                     AND notify_next_at = $3 RETURNING *",
                )
                .bind(&id)
                .bind(tick_at)
                .bind(due_at)
                .bind(plus(now, lease_for))
                .fetch_optional(pool)
                .await?;
                let Some(fire) = claimed else { continue };
                let fire: Fire = fire.try_into()?;
                let schedule = schedule_get(pool, &id).await?;
                let run = match &fire.run_id {
                    Some(run_id) => Some(run_get(pool, run_id).await?),
                    None => None,
                };
                notices.push(Notice {
                    schedule,
                    fire,
                    run,
                });
            }
            Ok(notices)
        }

        /// Records a notice's delivery, or its failure: tried again at `retry_at`, or given
        /// up when that is `None`.
        pub(in crate::store) async fn schedule_notice_done(
            pool: &Pool,
            id: &str,
            tick_at: DateTime<Utc>,
            error: Option<&str>,
            retry_at: Option<DateTime<Utc>>,
        ) -> Result<()> {
            let state = match (error, retry_at) {
                (None, _) => "sent",
                (Some(_), Some(_)) => "pending",
                (Some(_), None) => "gave_up",
            };
            sqlx::query(
                "UPDATE schedule_fires SET notify_state = $3, notify_error = $4, \
                 notify_next_at = $5, notified_at = CASE WHEN $4 IS NULL THEN $6 ELSE NULL END \
                 WHERE schedule_id = $1 AND tick_at = $2 AND notify_state = 'pending'",
            )
            .bind(id)
            .bind(millis(tick_at))
            .bind(state)
            .bind(error)
            .bind(retry_at.map(millis))
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        }

        // ---------------------------------------------------------------- follow-ups

        /// Finishes a `followup` step and registers the one-off schedule it asked for, in one
        /// transaction: the parent's evidence says it scheduled a run exactly when the
        /// schedule exists.
        pub(in crate::store) async fn step_finish_with_followup(
            pool: &Pool,
            guard: &Guard,
            finish: &Finish,
            decide: &dyn Decide,
            followup: &NewSchedule,
        ) -> Result<StepRun> {
            check_step(guard.status(), finish.status)?;
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, guard.run_id())
                .await?
                .ok_or_else(|| Error::RunNotFound(guard.run_id().to_owned()))?;
            let (mut events, mut wakes) = (Vec::new(), Vec::new());
            let step = finish_in(
                &mut tx, &locked.run, guard, finish, decide, now, &mut events, &mut wakes,
                None,
            )
            .await?;
            schedule_insert(&mut tx, followup, now).await?;
            push_jobs(&mut tx, &wakes).await?;
            append_at(&mut tx, guard.run_id(), &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok(step)
        }
    };
}

pub(super) use schedule_transitions;
