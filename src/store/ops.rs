//! The store's operations, written once for both backends.
//!
//! `transitions!()` expands, inside `store::postgres` and `store::sqlite`, to the same set of
//! functions with the same SQL. Both backends accept `$1`-style placeholders, `RETURNING`
//! and `ON CONFLICT`, so nearly every statement is identical text; what differs is written
//! per backend next to the invocation and used here by name:
//!
//! - `type Pool`, `type Conn`, `type Db`: the pool, connection and database types;
//! - `begin(pool)`: a write transaction (`BEGIN IMMEDIATE` on SQLite, so a transaction that
//!   reads before it writes never fails to upgrade its lock);
//! - `lock_run(conn, run_id)` / `try_lock_run(conn, run_id)`: take the run's append lock
//!   (`FOR NO KEY UPDATE` on the run row on Postgres; SQLite's write transaction already
//!   serializes writers) and return it as a [`Locked`](super::model::Locked): the run as
//!   a decision reads it and the head of its chain, read after the lock was granted;
//! - `hand_over_other(conn, run_id, claim, expires, now)`: the hand-over's claim of a ready
//!   step of another running run whose lock nobody holds, with its `step.running` event
//!   (Postgres; `None` on SQLite);
//! - `push_jobs(conn, wakes)`: apalis' `push_tasks` on the caller's transaction.
//!
//! A macro rather than generic functions: code generic over `sqlx::Database` needs a bound
//! for every type it binds or decodes on every function, which would dwarf the SQL. The
//! conformance suite (`tests/store.rs`) runs every operation against both expansions.
//!
//! Locking order, which keeps Postgres free of deadlocks: a transaction that changes a
//! run's steps or events takes that run's lock first, before touching any step row (so
//! transitions of one run are serialized; they take milliseconds). `step_renew_lease` is a
//! single UPDATE of its own step row and waits on nothing else. The only transaction that
//! locks a second run (promoting a queued run when a lock is released) locks a queued run,
//! whose steps nobody else can be changing.

use std::time::Duration;

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use chrono::Utc;

use super::error::{Error, Result};
use super::model::{ClaimNext, Finish, Guard, NewRun, StepJob, StepRun};
use crate::state::{RunStatus, StepStatus};

/// Events per INSERT statement: nine parameters each, well under both backends' limits
/// (SQLite 32,766, Postgres 65,535).
pub(crate) const APPEND_BATCH: usize = 500;

/// The apalis queue (its `job_type` column) that carries every step job.
pub const QUEUE: &str = "runway-steps";

/// Rows the reaper takes per call; it runs again on its next tick for the rest.
pub(super) const REAP_BATCH: i64 = 100;

/// The claim a finishing transaction makes for its worker ([`ClaimNext`]): set up before
/// the decision, so that a step the decision readies is claimed by the same UPDATE
/// (`taken`), one round trip instead of two.
pub(super) struct Handover<'a> {
    pub(super) claim: &'a ClaimNext,
    pub(super) expires: i64,
    pub(super) taken: Option<StepRun>,
}

/// A job to push: wake `job`'s step at `at_ms`, or now when `None`.
#[derive(Debug, Clone)]
pub(super) struct Wake {
    pub(super) job: StepJob,
    pub(super) at_ms: Option<i64>,
    /// The apalis job's id, chosen here so that the step row can name its job
    /// (`step_runs.job_id`, see `push_jobs`) and a hand-over can retire it.
    pub(super) id: String,
}

impl Wake {
    pub(super) fn new(run_id: &str, step_id: &str, attempt: i32, at_ms: Option<i64>) -> Wake {
        Wake {
            job: StepJob {
                run_id: run_id.to_owned(),
                step_id: step_id.to_owned(),
                attempt,
            },
            at_ms,
            id: ulid::Ulid::generate().to_string(),
        }
    }

    /// The apalis task; `rank` is its place among the jobs of its run pushed together
    /// (see [`tasks`]). `max_attempts(1)`: apalis' own retries re-fetch at once, without
    /// backoff, so they are off and a retry is a new delayed job. `run_at` has one-second
    /// resolution in apalis, so a delayed job is rounded up: a job that arrives before its
    /// step is due finds it not claimable.
    fn task(&self, rank: usize) -> Task<Vec<u8>> {
        let payload = serde_json::to_vec(&self.job).expect("a StepJob always serializes");
        let builder = TaskBuilder::new(payload)
            .max_attempts(1)
            .priority(RANKS - rank.min(RANKS - 1))
            .task_id(TaskId::from_string(self.id.clone()));
        match self.at_ms {
            Some(ms) => builder
                .run_at_timestamp(ms.div_euclid(1000) as u64 + u64::from(ms % 1000 != 0))
                .build(),
            None => builder.build(),
        }
    }
}

/// The apalis tasks of `wakes`, in order. Workers fetch jobs by priority, then due time:
/// each job's priority falls with its place among the jobs of its run in this push, so the
/// queue serves runs in turn (every run's first step before any run's second) instead of
/// one run's whole fan-out first. Measured: 100 runs of 100 steps created together sent the
/// first 64 jobs fetched, and so 64 slots of four workers, to the first run, whose lock
/// they then took one after the other.
pub(super) fn tasks(wakes: &[Wake]) -> Vec<Task<Vec<u8>>> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    wakes
        .iter()
        .map(|w| {
            let rank = match seen.iter_mut().find(|(run, _)| *run == w.job.run_id) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((&w.job.run_id, 0));
                    0
                }
            };
            w.task(rank)
        })
        .collect()
}

/// The priority levels of [`tasks`]: the 64th job of a run's push and those after it share
/// the lowest.
const RANKS: usize = 64;

/// What `push_jobs` records on the woken steps' rows: each wake's run, step and job id,
/// as a JSON array (one statement whatever the number of wakes).
pub(super) fn wake_ids(wakes: &[Wake]) -> Vec<serde_json::Value> {
    wakes
        .iter()
        .map(|w| {
            serde_json::json!({ "run_id": w.job.run_id, "step_id": w.job.step_id, "job": w.id })
        })
        .collect()
}

/// The data of the `step.<status>` event a finish appends (`worker`: the lease's holder,
/// none for a parked step's decision).
pub(super) fn finish_event_data(worker: Option<&str>, finish: &Finish) -> serde_json::Value {
    serde_json::json!({
        "worker": worker,
        "outputs": finish.outputs,
        "error": finish.error,
        "then": finish.then.iter().map(|d| serde_json::json!({
            "step_id": d.step_id, "status": d.status.as_str()
        })).collect::<Vec<_>>(),
    })
}

/// The data of the `step.<status>` event of a pending step decided after step `after`.
pub(super) fn ready_event_data(after: &str, error: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "decided_after": after, "error": error })
}

/// The data of the `step.running` event of a step claimed by `worker` until `expires`.
pub(super) fn running_event_data(worker: &str, expires: i64) -> serde_json::Value {
    serde_json::json!({ "worker": worker, "lease_expires_at": expires })
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(super) fn plus(now_ms: i64, d: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn check_step(from: StepStatus, to: StepStatus) -> Result<()> {
    if StepStatus::can_transition(from, to) {
        Ok(())
    } else {
        Err(Error::InvalidTransition {
            what: "step",
            from: from.as_str(),
            to: to.as_str(),
        })
    }
}

pub(super) fn check_run(from: RunStatus, to: RunStatus) -> Result<()> {
    if RunStatus::can_transition(from, to) {
        Ok(())
    } else {
        Err(Error::InvalidTransition {
            what: "run",
            from: from.as_str(),
            to: to.as_str(),
        })
    }
}

/// A new run's steps start pending, ready or skipped: nothing has run yet, except steps
/// kept (succeeded or warned, with their outputs) from the run a retry continues.
pub(super) fn check_new_run(new: &NewRun) -> Result<()> {
    for s in &new.steps {
        if !matches!(
            s.status,
            StepStatus::Pending
                | StepStatus::Ready
                | StepStatus::Skipped
                | StepStatus::Succeeded
                | StepStatus::Warned
        ) {
            return Err(Error::InvalidTransition {
                what: "new step",
                from: "(new)",
                to: s.status.as_str(),
            });
        }
    }
    Ok(())
}

/// The guard columns of a guarded step statement: `status = $a AND ($b IS NULL OR
/// lease_owner = $b) AND ($c IS NULL OR attempt = $c)`.
pub(super) fn guard_binds(guard: &Guard) -> (&'static str, Option<&str>, Option<i32>) {
    match guard {
        Guard::Lease(l) => ("running", Some(&l.worker), Some(l.attempt)),
        Guard::Ready { .. } => ("ready", None, None),
        Guard::Waiting { .. } => ("waiting", None, None),
    }
}

/// Everything the expansion uses, glob-imported so a backend module's own imports of the
/// same names do not clash with it. (A name a backend also imports itself shadows the glob
/// and leaves the re-export here unused, hence the `allow`.)
#[allow(unused_imports)]
pub(super) mod prelude {
    pub(in crate::store) use super::{
        Handover, REAP_BATCH, Wake, check_new_run, check_run, check_step, finish_event_data,
        finish_set, guard_binds, guarded, now_ms, plus, ready_event_data, running_event_data,
    };
    pub(in crate::store) use crate::state::{RunStatus, StepStatus};
    pub(in crate::store) use crate::store::chain;
    pub(in crate::store) use crate::store::error::{Error, Result};
    pub(in crate::store) use crate::store::evidence::Head;
    pub(in crate::store) use crate::store::model::{
        ClaimNext, Decide, DecisionRow, Ended, Event, EventRow, Finish, Guard, Judge, Lease,
        NewEvent, NewRun, NewStepDecision, Retry, Run, RunRow, StepDecision, StepRow, StepRun,
        convert, millis,
    };
    pub(in crate::store) use chrono::{DateTime, Utc};
    pub(in crate::store) use serde_json::json;
    pub(in crate::store) use sqlx::types::Json;
    pub(in crate::store) use std::time::Duration;
}

/// The one guarded UPDATE shared by finish, retry and park: `$set` is the SET list, using
/// parameters `$6` onwards; the guard (see [`guard_binds`]) is `$1` to `$5`.
macro_rules! guarded {
    ($($set:tt)+) => {
        concat!(
            "UPDATE step_runs SET ",
            $($set)+,
            " WHERE run_id = $1 AND step_id = $2 AND status = $3 \
             AND ($4 IS NULL OR lease_owner = $4) AND ($5 IS NULL OR attempt = $5) \
             RETURNING *"
        )
    };
}

/// The SET list of a finishing UPDATE (`guarded!`): parameters `$6` to `$10`.
macro_rules! finish_set {
    () => {
        "status = $6, outputs = $7, checkpoint = COALESCE($8, checkpoint), \
         error = $9, finished_at = $10, lease_owner = NULL, lease_expires_at = NULL, \
         ready_at = NULL"
    };
}

macro_rules! transitions {
    () => {
        use $crate::store::ops::prelude::*;

        // ---------------------------------------------------------------- reads

        pub(in crate::store) async fn run_get(pool: &Pool, run_id: &str) -> Result<Run> {
            sqlx::query_as::<_, RunRow>("SELECT * FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?
                .try_into()
        }

        pub(in crate::store) async fn runs_list(
            pool: &Pool,
            status: Option<RunStatus>,
            limit: u32,
        ) -> Result<Vec<Run>> {
            let rows = sqlx::query_as::<_, RunRow>(
                "SELECT * FROM runs WHERE ($1 IS NULL OR status = $1) \
                 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(status.map(RunStatus::as_str))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn steps_of_run(
            pool: &Pool,
            run_id: &str,
        ) -> Result<Vec<StepRun>> {
            let rows = sqlx::query_as::<_, StepRow>(
                "SELECT * FROM step_runs WHERE run_id = $1 ORDER BY position",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn steps_named(
            pool: &Pool,
            run_id: &str,
            ids: &[String],
        ) -> Result<Vec<StepRun>> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = pool.acquire().await?;
            steps_by_ids(&mut conn, run_id, ids).await
        }

        pub(in crate::store) async fn events_of_run(
            pool: &Pool,
            run_id: &str,
        ) -> Result<Vec<Event>> {
            let rows = sqlx::query_as::<_, EventRow>(
                "SELECT * FROM events WHERE run_id = $1 ORDER BY seq",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn events_verify(
            pool: &Pool,
            run_id: &str,
        ) -> Result<Option<i64>> {
            Ok(chain::verify(&events_of_run(pool, run_id).await?))
        }

        async fn fetch_run(conn: &mut Conn, run_id: &str) -> Result<Run> {
            sqlx::query_as::<_, RunRow>("SELECT * FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_one(&mut *conn)
                .await?
                .try_into()
        }

        /// The current status of a step, for the error of a guarded statement that
        /// matched no row.
        async fn step_status(
            conn: &mut Conn,
            run_id: &str,
            step_id: &str,
        ) -> Result<(StepStatus, Option<i64>)> {
            let row: Option<(String, Option<i64>)> = sqlx::query_as(
                "SELECT status, ready_at FROM step_runs WHERE run_id = $1 AND step_id = $2",
            )
            .bind(run_id)
            .bind(step_id)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                Some((status, ready_at)) => Ok((status.parse()?, ready_at)),
                None => Err(Error::StepNotFound {
                    run_id: run_id.to_owned(),
                    step_id: step_id.to_owned(),
                }),
            }
        }

        /// Why a guarded statement matched no row.
        async fn guard_error(conn: &mut Conn, guard: &Guard) -> Error {
            let (run_id, step_id) = (guard.run_id(), guard.step_id());
            match (guard, step_status(conn, run_id, step_id).await) {
                (_, Err(e)) => e,
                (Guard::Lease(l), Ok(_)) => Error::LeaseLost {
                    run_id: l.run_id.clone(),
                    step_id: l.step_id.clone(),
                    attempt: l.attempt,
                },
                (_, Ok((actual, _))) => Error::StepNotIn {
                    run_id: run_id.to_owned(),
                    step_id: step_id.to_owned(),
                    expected: guard.status(),
                    actual,
                },
            }
        }

        // ---------------------------------------------------------------- events

        /// Appends `events` to the run's chain, reading its head first. The caller holds
        /// the run's append lock, so the head read here is still the head when the rows
        /// are inserted (and the `(run_id, seq)` key would refuse a fork if it were not).
        async fn append(
            conn: &mut Conn,
            run_id: &str,
            events: &[NewEvent],
            now: i64,
        ) -> Result<Vec<Event>> {
            let head: Option<(i64, String)> =
                sqlx::query_as("SELECT seq, hash FROM run_heads WHERE run_id = $1")
                    .bind(run_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let mut head = head.map_or_else(Head::genesis, |(seq, hash)| Head { seq, hash });
            append_at(conn, run_id, &mut head, events, now).await
        }

        /// Appends `events` after `head`, the head read with the run's lock (see
        /// `lock_run`), and moves `head` to the last of them: a transaction that appends
        /// twice passes the same head both times. One round trip fewer than [`append`].
        async fn append_at(
            conn: &mut Conn,
            run_id: &str,
            head: &mut Head,
            events: &[NewEvent],
            now: i64,
        ) -> Result<Vec<Event>> {
            let out = chain_at(run_id, head, events, now)?;
            insert_events(conn, &out, now).await?;
            Ok(out)
        }

        /// The rows that append `events` to the chain after `head` (hashed, not yet
        /// written), and `head` moved to the last of them. The caller holds the run's
        /// lock and inserts the rows with [`insert_events`] in the same transaction.
        fn chain_at(
            run_id: &str,
            head: &mut Head,
            events: &[NewEvent],
            now: i64,
        ) -> Result<Vec<Event>> {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let (mut seq, mut prev) = (head.seq, head.hash.clone());
            let at = $crate::store::model::time(now)?;
            let mut out = Vec::with_capacity(events.len());
            for e in events {
                seq += 1;
                let hash = chain::hash(&chain::Fields {
                    run_id,
                    seq,
                    at_ms: now,
                    kind: &e.kind,
                    step_id: e.step_id.as_deref(),
                    attempt: e.attempt,
                    data: &e.data,
                    prev_hash: &prev,
                });
                out.push(Event {
                    run_id: run_id.to_owned(),
                    seq,
                    at,
                    kind: e.kind.clone(),
                    step_id: e.step_id.clone(),
                    attempt: e.attempt,
                    data: e.data.clone(),
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                });
            }
            if let Some(last) = out.last() {
                *head = Head {
                    seq: last.seq,
                    hash: last.hash.clone(),
                };
            }
            Ok(out)
        }

        /// Inserts chained rows (see [`chain_at`]), of one run or of several, all stamped
        /// `now`: one statement for all of a transaction's events (a finish that decides a
        /// fan-out appends dozens, a hand-over to another run appends to two chains), one
        /// round trip instead of one per event or per run.
        async fn insert_events(conn: &mut Conn, rows: &[Event], now: i64) -> Result<()> {
            for chunk in rows.chunks($crate::store::ops::APPEND_BATCH) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO events \
                     (run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash) ",
                );
                insert.push_values(chunk, |mut row, e| {
                    row.push_bind(e.run_id.as_str())
                        .push_bind(e.seq)
                        .push_bind(now)
                        .push_bind(e.kind.as_str())
                        .push_bind(e.step_id.as_deref())
                        .push_bind(e.attempt)
                        .push_bind(Json(&e.data))
                        .push_bind(e.prev_hash.as_str())
                        .push_bind(e.hash.as_str());
                });
                insert.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        pub(in crate::store) async fn events_append(
            pool: &Pool,
            run_id: &str,
            events: &[NewEvent],
        ) -> Result<Vec<Event>> {
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
            let out = append_at(&mut tx, run_id, &mut locked.head, events, now_ms()).await?;
            tx.commit().await?;
            Ok(out)
        }

        // ---------------------------------------------------------------- locks

        /// Takes `key` for `run_id` with one guarded INSERT. `None` when taken (or already
        /// held by `run_id`), otherwise the holder.
        async fn lock_insert(
            conn: &mut Conn,
            key: &str,
            run_id: &str,
            now: i64,
        ) -> Result<Option<String>> {
            let inserted = sqlx::query(
                "INSERT INTO locks (key, run_id, acquired_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(run_id)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(None);
            }
            let holder: Option<String> =
                sqlx::query_scalar("SELECT run_id FROM locks WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(holder.filter(|h| h != run_id))
        }

        pub(in crate::store) async fn lock_acquire(
            pool: &Pool,
            key: &str,
            run_id: &str,
        ) -> Result<()> {
            let mut conn = pool.acquire().await?;
            match lock_insert(&mut conn, key, run_id, now_ms()).await? {
                None => Ok(()),
                Some(holder) => Err(Error::LockHeld {
                    key: key.to_owned(),
                    holder,
                }),
            }
        }

        pub(in crate::store) async fn lock_release(
            pool: &Pool,
            key: &str,
            run_id: &str,
        ) -> Result<()> {
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut wakes = Vec::new();
            if !release(&mut tx, key, run_id, now, &mut wakes).await? {
                return Err(Error::LockNotHeld {
                    key: key.to_owned(),
                    run_id: run_id.to_owned(),
                });
            }
            push_jobs(&mut tx, &wakes).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Releases `key` if `run_id` holds it, and starts the oldest run queued on it.
        async fn release(
            conn: &mut Conn,
            key: &str,
            run_id: &str,
            now: i64,
            wakes: &mut Vec<Wake>,
        ) -> Result<bool> {
            let released = sqlx::query("DELETE FROM locks WHERE key = $1 AND run_id = $2")
                .bind(key)
                .bind(run_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if released == 0 {
                return Ok(false);
            }
            // A candidate may be cancelled between this read and its lock: then its status
            // is no longer queued and the next one is tried.
            loop {
                let next: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM runs WHERE lock_key = $1 AND status = 'queued' \
                     ORDER BY created_at, id LIMIT 1",
                )
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(next) = next else { break };
                let Some(mut locked) = lock_run(conn, &next).await? else {
                    continue;
                };
                if locked.run.status != RunStatus::Queued {
                    continue;
                }
                if lock_insert(conn, key, &next, now).await?.is_some() {
                    break;
                }
                sqlx::query("UPDATE runs SET status = 'running', started_at = $2 WHERE id = $1")
                    .bind(&next)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                let ready: Vec<(String, i32)> = sqlx::query_as(
                    "SELECT step_id, attempt FROM step_runs \
                     WHERE run_id = $1 AND status = 'ready' ORDER BY position",
                )
                .bind(&next)
                .fetch_all(&mut *conn)
                .await?;
                wakes.extend(ready.iter().map(|(s, a)| Wake::new(&next, s, a + 1, None)));
                let event = NewEvent::run(
                    "run.running",
                    json!({ "from": "queued", "lock_key": key, "released_by": run_id }),
                );
                append_at(conn, &next, &mut locked.head, &[event], now).await?;
                break;
            }
            Ok(true)
        }

        // ---------------------------------------------------------------- runs

        pub(in crate::store) async fn run_create(pool: &Pool, new: &NewRun) -> Result<Run> {
            check_new_run(new)?;
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let run = run_insert(&mut tx, new, now).await?;
            tx.commit().await?;
            Ok(run)
        }

        /// Inserts the run, its steps, its lock (or its place in the lock's queue), its
        /// jobs and `run.created` on the caller's transaction.
        async fn run_insert(tx: &mut Conn, new: &NewRun, now: i64) -> Result<Run> {
            let mut status = if new.lock_key.is_some() {
                RunStatus::Queued
            } else {
                RunStatus::Running
            };
            sqlx::query(
                "INSERT INTO runs (id, playbook, content_hash, definition, params, starter, \
                 trigger, status, lock_key, parent_run_id, parent_step_id, created_at, \
                 started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&new.id)
            .bind(&new.playbook)
            .bind(&new.content_hash)
            .bind(&new.definition)
            .bind(Json(&new.params))
            .bind(&new.starter)
            .bind(&new.trigger)
            .bind(status.as_str())
            .bind(new.lock_key.as_deref())
            .bind(new.parent_run_id.as_deref())
            .bind(new.parent_step_id.as_deref())
            .bind(now)
            .bind((status == RunStatus::Running).then_some(now))
            .execute(&mut *tx)
            .await?;
            let mut holder = None;
            if let Some(key) = &new.lock_key {
                // The run row exists now, so the lock row can reference it.
                holder = lock_insert(&mut *tx, key, &new.id, now).await?;
                if let Some(holder) = holder.as_ref().filter(|_| !new.queue_on_lock) {
                    // The caller's transaction rolls back: nothing of this run remains.
                    return Err(Error::LockHeld {
                        key: key.clone(),
                        holder: holder.clone(),
                    });
                }
                if holder.is_none() {
                    status = RunStatus::Running;
                    sqlx::query(
                        "UPDATE runs SET status = 'running', started_at = $2 WHERE id = $1",
                    )
                    .bind(&new.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let mut ready = Vec::new();
            for (position, step) in new.steps.iter().enumerate() {
                let is_ready = step.status == StepStatus::Ready;
                sqlx::query(
                    "INSERT INTO step_runs (run_id, step_id, position, list, status, \
                     max_attempts, ready_at, idempotency_key, finished_at, outputs) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&new.id)
                .bind(&step.step_id)
                .bind(i32::try_from(position).unwrap_or(i32::MAX))
                .bind(step.list.as_str())
                .bind(step.status.as_str())
                .bind(step.max_attempts)
                .bind(is_ready.then_some(now))
                .bind(format!("{}:{}", new.id, step.step_id))
                .bind(step.status.is_terminal().then_some(now))
                .bind(step.outputs.as_ref().map(Json))
                .execute(&mut *tx)
                .await?;
                if is_ready {
                    ready.push(step.step_id.as_str());
                }
            }
            // A queued run's ready steps get their jobs when it takes the lock.
            if status == RunStatus::Running {
                let wakes: Vec<Wake> =
                    ready.iter().map(|s| Wake::new(&new.id, s, 1, None)).collect();
                push_jobs(&mut *tx, &wakes).await?;
            }
            let created = NewEvent::run(
                "run.created",
                json!({
                    "playbook": new.playbook,
                    "content_hash": new.content_hash,
                    "params": new.params,
                    "starter": new.starter,
                    "trigger": new.trigger,
                    "lock_key": new.lock_key,
                    "lock_holder": holder,
                    "parent_run_id": new.parent_run_id,
                    "parent_step_id": new.parent_step_id,
                    "status": status.as_str(),
                    "ready": ready,
                    // Steps that start decided (skipped, or kept by a retry with their
                    // outputs), so the chain alone tells every step's status.
                    "initial": new.steps.iter()
                        .filter(|s| s.status.is_terminal())
                        .map(|s| json!({
                            "step_id": s.step_id, "status": s.status.as_str(), "outputs": s.outputs,
                        }))
                        .collect::<Vec<_>>(),
                }),
            );
            append(&mut *tx, &new.id, &[created], now).await?;
            fetch_run(&mut *tx, &new.id).await
        }

        pub(in crate::store) async fn run_set_status_if(
            pool: &Pool,
            run_id: &str,
            from: RunStatus,
            to: RunStatus,
            error: Option<&str>,
        ) -> Result<Run> {
            check_run(from, to)?;
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
            let actual = locked.run.status;
            if actual != from {
                return Err(Error::RunNotIn {
                    run_id: run_id.to_owned(),
                    expected: from,
                    actual,
                });
            }
            let (mut events, mut wakes) = (Vec::new(), Vec::new());
            let run = run_move(&mut tx, run_id, from, to, error, now, &mut events, &mut wakes)
                .await?;
            push_jobs(&mut tx, &wakes).await?;
            append_at(&mut tx, run_id, &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok(run)
        }

        /// Moves a run whose append lock the caller holds. A run that ends takes its open
        /// steps with it (so no worker can still claim or finish one) and releases its lock
        /// to the next queued run, in the same transaction.
        #[allow(clippy::too_many_arguments)]
        async fn run_move(
            conn: &mut Conn,
            run_id: &str,
            from: RunStatus,
            to: RunStatus,
            error: Option<&str>,
            now: i64,
            events: &mut Vec<NewEvent>,
            wakes: &mut Vec<Wake>,
        ) -> Result<Run> {
            let row = sqlx::query_as::<_, RunRow>(
                "UPDATE runs SET status = $3, error = COALESCE($4, error), \
                 started_at = COALESCE(started_at, $5), finished_at = $6 \
                 WHERE id = $1 AND status = $2 RETURNING *",
            )
            .bind(run_id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(error)
            .bind((to == RunStatus::Running).then_some(now))
            .bind(to.is_terminal().then_some(now))
            .fetch_optional(&mut *conn)
            .await?;
            let run: Run = match row {
                Some(row) => row.try_into()?,
                None => {
                    let actual = fetch_run(conn, run_id).await?.status;
                    return Err(Error::RunNotIn {
                        run_id: run_id.to_owned(),
                        expected: from,
                        actual,
                    });
                }
            };
            events.push(NewEvent::run(
                format!("run.{}", to.as_str()),
                json!({ "from": from.as_str(), "error": error }),
            ));
            if to.is_terminal() {
                let cancelled: Vec<(String, i32)> = sqlx::query_as(
                    "UPDATE step_runs SET status = 'cancelled', lease_owner = NULL, \
                     lease_expires_at = NULL, finished_at = $2 \
                     WHERE run_id = $1 AND status IN ('pending', 'ready', 'running', 'waiting') \
                     RETURNING step_id, attempt",
                )
                .bind(run_id)
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
                for (step_id, attempt) in cancelled {
                    events.push(NewEvent::step(
                        "step.cancelled",
                        &step_id,
                        attempt,
                        json!({ "reason": format!("run {}", to.as_str()) }),
                    ));
                }
                if let Some(key) = &run.lock_key {
                    release(conn, key, run_id, now, wakes).await?;
                }
            }
            Ok(run)
        }

        // ---------------------------------------------------------------- steps

        pub(in crate::store) async fn step_claim(
            pool: &Pool,
            run_id: &str,
            step_id: &str,
            worker: &str,
            lease_for: Duration,
        ) -> Result<StepRun> {
            let now = now_ms();
            let expires = plus(now, lease_for);
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
            let run_status = locked.run.status;
            let active = matches!(run_status, RunStatus::Running | RunStatus::Waiting);
            let row = if active {
                sqlx::query_as::<_, StepRow>(
                    // A due timer of a waiting step continues the same attempt.
                    "UPDATE step_runs SET status = 'running', \
                     attempt = CASE WHEN status = 'waiting' THEN attempt ELSE attempt + 1 END, \
                     lease_owner = $3, lease_expires_at = $4, ready_at = NULL, \
                     started_at = COALESCE(started_at, $5) \
                     WHERE run_id = $1 AND step_id = $2 AND status IN ('ready', 'waiting') \
                     AND ready_at <= $5 \
                     RETURNING *",
                )
                .bind(run_id)
                .bind(step_id)
                .bind(worker)
                .bind(expires)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
            } else {
                None
            };
            let Some(row) = row else {
                let (status, ready_at) = step_status(&mut tx, run_id, step_id).await?;
                // A job that came before its step was due (apalis' one-second `run_at`,
                // clocks that differ between hosts) would otherwise be the step's last
                // wake-up: push another for the due time.
                if let Some(due) = ready_at.filter(|&due| active && due > now) {
                    if matches!(status, StepStatus::Ready | StepStatus::Waiting) {
                        let wake = Wake::new(run_id, step_id, 0, Some(due));
                        push_jobs(&mut tx, &[wake]).await?;
                        tx.commit().await?;
                    }
                }
                return Err(Error::NotClaimable {
                    run_id: run_id.to_owned(),
                    step_id: step_id.to_owned(),
                    status,
                });
            };
            let step: StepRun = row.try_into()?;
            let mut events = vec![running_event(&step, worker, expires)];
            // A step now runs: a waiting run is running again; a running one stays so.
            if run_status == RunStatus::Waiting {
                run_settle(&mut tx, run_id, &mut events, None).await?;
            }
            append_at(&mut tx, run_id, &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok(step)
        }

        /// A step's status, read without a lock or a transaction: a hint (for skipping a job whose step is no longer ready), never a decision.
        pub(in crate::store) async fn step_status_of(
            pool: &Pool,
            run_id: &str,
            step_id: &str,
        ) -> Result<StepStatus> {
            let mut conn = pool.acquire().await?;
            Ok(step_status(&mut conn, run_id, step_id).await?.0)
        }

        pub(in crate::store) async fn step_renew_lease(
            pool: &Pool,
            lease: &Lease,
            lease_for: Duration,
            checkpoint: Option<&[u8]>,
        ) -> Result<DateTime<Utc>> {
            let expires = plus(now_ms(), lease_for);
            let renewed = sqlx::query(
                "UPDATE step_runs SET lease_expires_at = $5, \
                 checkpoint = COALESCE($6, checkpoint) \
                 WHERE run_id = $1 AND step_id = $2 AND status = 'running' \
                 AND lease_owner = $3 AND attempt = $4",
            )
            .bind(&lease.run_id)
            .bind(&lease.step_id)
            .bind(&lease.worker)
            .bind(lease.attempt)
            .bind(expires)
            .bind(checkpoint)
            .execute(pool)
            .await?
            .rows_affected();
            if renewed == 0 {
                let mut conn = pool.acquire().await?;
                return Err(guard_error(&mut conn, &Guard::Lease(lease.clone())).await);
            }
            $crate::store::model::time(expires)
        }

        pub(in crate::store) async fn step_finish(
            pool: &Pool,
            guard: &Guard,
            finish: &Finish,
            decide: &dyn Decide,
            claim: Option<&ClaimNext>,
        ) -> Result<(StepRun, Option<StepRun>)> {
            if !finish.status.is_terminal() || matches!(guard, Guard::Ready { .. }) {
                return Err(Error::InvalidTransition {
                    what: "step",
                    from: guard.status().as_str(),
                    to: finish.status.as_str(),
                });
            }
            check_step(guard.status(), finish.status)?;
            for d in &finish.then {
                check_step(StepStatus::Pending, d.status)?;
            }
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, guard.run_id())
                .await?
                .ok_or_else(|| Error::RunNotFound(guard.run_id().to_owned()))?;
            let (mut events, mut wakes) = (Vec::new(), Vec::new());
            let mut handover = claim.map(|claim| Handover {
                claim,
                expires: plus(now, claim.lease_for),
                taken: None,
            });
            let step = finish_in(
                &mut tx, &locked.run, guard, finish, decide, now, &mut events, &mut wakes,
                handover.as_mut(),
            )
            .await?;
            let next = match handover {
                Some(handover) => {
                    claim_woken(&mut tx, guard.run_id(), handover, now, &mut events, &mut wakes)
                        .await?
                }
                None => None,
            };
            push_jobs(&mut tx, &wakes).await?;
            append_at(&mut tx, guard.run_id(), &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok((step, next))
        }

        /// Claims for `claim.worker` the first ready, due step of `run_id` (the caller
        /// holds that run's lock), and retires the job queued to wake it (`retire_job`):
        /// unless a worker fetched it already (then it finds the step taken), no worker
        /// fetches, reads and acknowledges it for nothing.
        async fn claim_any_ready(
            tx: &mut Conn,
            run_id: &str,
            claim: &ClaimNext,
            expires: i64,
            now: i64,
        ) -> Result<Option<StepRow>> {
            let row = sqlx::query_as::<_, StepRow>(CLAIM_ANY_READY)
                .bind(run_id)
                .bind(&claim.worker)
                .bind(expires)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if !CLAIM_RETIRES_JOB
                && let Some(job_id) = row.as_ref().and_then(|r| r.job_id.as_deref())
            {
                retire_job(tx, job_id).await?;
            }
            Ok(row)
        }

        /// The hand-over's claim for `claim.worker`: the step the decision claimed as it
        /// readied it, or else the first step of `run_id` that this transaction made ready
        /// (instead of pushing its job), with its `step.running` event. The run is active,
        /// since it has a step ready; its status needs no settling. A step claimed in
        /// another run has its `step.running` appended to that run's chain by
        /// `hand_over_other`.
        async fn claim_woken(
            tx: &mut Conn,
            run_id: &str,
            handover: Handover<'_>,
            now: i64,
            events: &mut Vec<NewEvent>,
            wakes: &mut Vec<Wake>,
        ) -> Result<Option<StepRun>> {
            let Handover {
                claim,
                expires,
                taken,
            } = handover;
            if taken.is_some() {
                return Ok(taken);
            }
            let at = wakes
                .iter()
                .position(|w| w.job.run_id == run_id && w.at_ms.is_none());
            let row = if let Some(at) = at {
                // A step this transaction made ready: claimed instead of pushing its job.
                let row = sqlx::query_as::<_, StepRow>(
                    "UPDATE step_runs SET status = 'running', attempt = attempt + 1, \
                     lease_owner = $3, lease_expires_at = $4, ready_at = NULL, \
                     started_at = COALESCE(started_at, $5) \
                     WHERE run_id = $1 AND step_id = $2 AND status = 'ready' \
                     RETURNING *",
                )
                .bind(run_id)
                .bind(&wakes[at].job.step_id)
                .bind(&claim.worker)
                .bind(expires)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    wakes.remove(at);
                }
                row
            } else {
                // Otherwise a ready step of another running run that nobody is
                // transitioning (Postgres): many workers' slots on one run would queue on
                // its lock, one transition at a time. Its `step.running` goes to that
                // run's chain, in this transaction.
                if let Some(step) = hand_over_other(tx, run_id, claim, expires, now).await? {
                    return Ok(Some(step));
                }
                // Else another ready, due step of this run, its job retired with the
                // claim. One transaction per step instead of two.
                claim_any_ready(tx, run_id, claim, expires, now).await?
            };
            let Some(row) = row else {
                return Ok(None);
            };
            let step: StepRun = row.try_into()?;
            events.push(running_event(&step, &claim.worker, expires));
            Ok(Some(step))
        }

        /// The `step.running` event of a step just claimed by `worker` until `expires`.
        fn running_event(step: &StepRun, worker: &str, expires: i64) -> NewEvent {
            NewEvent::step(
                "step.running",
                &step.step_id,
                step.attempt,
                running_event_data(worker, expires),
            )
        }

        /// The body of `step_finish` on the caller's transaction, which holds the run's
        /// lock; the caller pushes `wakes` and appends `events`.
        #[allow(clippy::too_many_arguments)]
        async fn finish_in(
            tx: &mut Conn,
            run: &Run,
            guard: &Guard,
            finish: &Finish,
            decide: &dyn Decide,
            now: i64,
            events: &mut Vec<NewEvent>,
            wakes: &mut Vec<Wake>,
            mut handover: Option<&mut Handover<'_>>,
        ) -> Result<StepRun> {
            let (run_id, step_id) = (guard.run_id(), guard.step_id());
            let run_status = run.status;
            let (g_status, g_worker, g_attempt) = guard_binds(guard);
            let ended = Ended {
                step_id,
                status: finish.status,
            };
            // A plain finish (no decisions of its own, no run status) changes nothing else
            // before the decision reads the rows it needs: where the backend can
            // (`FINISH_READING`), the finishing UPDATE returns them too, one round trip.
            // Only where the backend can use them: SQLite's `advance` reads them itself.
            let reads = (FINISH_READING.is_some()
                && finish.then.is_empty()
                && finish.run_status.is_none())
            .then(|| decide.reads_after(&ended))
            .flatten()
            .filter(|ids| !ids.is_empty());
            let reading = FINISH_READING.filter(|_| reads.is_some());
            let mut finished = sqlx::query_as::<_, StepRow>(
                reading.unwrap_or(guarded!(finish_set!())),
            )
            .bind(run_id)
            .bind(step_id)
            .bind(g_status)
            .bind(g_worker)
            .bind(g_attempt)
            .bind(finish.status.as_str())
            .bind(finish.outputs.as_ref().map(Json))
            .bind(finish.checkpoint.as_deref())
            .bind(finish.error.as_deref())
            .bind(now);
            if reading.is_some() {
                finished = finished.bind(Json(reads.as_deref().unwrap_or_default()));
            }
            let mut rows: Vec<StepRun> = convert(finished.fetch_all(&mut *tx).await?)?;
            let Some(at) = rows.iter().position(|r| r.step_id == step_id) else {
                return Err(guard_error(&mut *tx, guard).await);
            };
            // The finished row is among the rows read when the decision asked for it.
            let asked = reads
                .as_ref()
                .is_some_and(|ids| ids.iter().any(|id| id == step_id));
            let step = if reading.is_some() && asked {
                rows[at].clone()
            } else {
                rows.swap_remove(at)
            };
            let read = reading.map(|_| rows);
            events.push(NewEvent::step(
                format!("step.{}", finish.status.as_str()),
                step_id,
                step.attempt,
                finish_event_data(g_worker, finish),
            ));
            apply_decisions(tx, run_id, step_id, &finish.then, now, events, wakes, None).await?;
            events.extend(finish.events.iter().cloned());
            let moved;
            let run = match finish.run_status {
                Some(to) => {
                    check_run(run_status, to)?;
                    moved = run_move(tx, run_id, run_status, to, None, now, events, wakes).await?;
                    &moved
                }
                None => run,
            };
            let unchanged = advance(
                tx, run, step_id, Some(ended), decide, now, events, wakes,
                handover.as_deref_mut(), read,
            )
            .await?;
            // With a step of the run made ready (or claimed), settling could only move a
            // waiting run to running; a run that was running needs no look (two round
            // trips a hop).
            let readied = handover.is_some_and(|h| h.taken.is_some())
                || wakes
                    .iter()
                    .any(|w| w.job.run_id == run_id && w.at_ms.is_none());
            if !(run_status == RunStatus::Running && readied) {
                run_settle(tx, run_id, events, unchanged).await?;
            }
            Ok(step)
        }


        /// Records the engine's decisions for pending steps: each is one guarded UPDATE
        /// (`status = 'pending'`), a job for each ready one, an event for each. With a
        /// `handover` not yet taken, the first step made ready is claimed by the same
        /// UPDATE instead (its `step.ready` and `step.running` events both recorded, no job).
        #[allow(clippy::too_many_arguments)]
        async fn apply_decisions(
            conn: &mut Conn,
            run_id: &str,
            after: &str,
            then: &[$crate::store::model::Decision],
            now: i64,
            events: &mut Vec<NewEvent>,
            wakes: &mut Vec<Wake>,
            mut handover: Option<&mut Handover<'_>>,
        ) -> Result<()> {
            for d in then {
                check_step(StepStatus::Pending, d.status)?;
                let ready = d.status == StepStatus::Ready;
                if ready
                    && let Some(h) = handover.as_deref_mut().filter(|h| h.taken.is_none())
                {
                    let row = sqlx::query_as::<_, StepRow>(
                        "UPDATE step_runs SET status = 'running', attempt = attempt + 1, \
                         lease_owner = $3, lease_expires_at = $4, ready_at = NULL, \
                         error = $5, started_at = COALESCE(started_at, $6) \
                         WHERE run_id = $1 AND step_id = $2 AND status = 'pending' \
                         RETURNING *",
                    )
                    .bind(run_id)
                    .bind(&d.step_id)
                    .bind(&h.claim.worker)
                    .bind(h.expires)
                    .bind(d.error.as_deref())
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(row) = row {
                        let step: StepRun = row.try_into()?;
                        events.push(NewEvent::step(
                            "step.ready",
                            &d.step_id,
                            step.attempt - 1,
                            ready_event_data(after, d.error.as_deref()),
                        ));
                        events.push(running_event(&step, &h.claim.worker, h.expires));
                        h.taken = Some(step);
                        continue;
                    }
                }
                let decided: Option<i32> = sqlx::query_scalar(
                    "UPDATE step_runs SET status = $3, ready_at = $4, error = $5, \
                     finished_at = $6 \
                     WHERE run_id = $1 AND step_id = $2 AND status = 'pending' \
                     RETURNING attempt",
                )
                .bind(run_id)
                .bind(&d.step_id)
                .bind(d.status.as_str())
                .bind(ready.then_some(now))
                .bind(d.error.as_deref())
                .bind(d.status.is_terminal().then_some(now))
                .fetch_optional(&mut *conn)
                .await?;
                let Some(attempt) = decided else {
                    let (actual, _) = step_status(conn, run_id, &d.step_id).await?;
                    return Err(Error::StepNotIn {
                        run_id: run_id.to_owned(),
                        step_id: d.step_id.clone(),
                        expected: StepStatus::Pending,
                        actual,
                    });
                };
                if ready {
                    wakes.push(Wake::new(run_id, &d.step_id, attempt + 1, None));
                }
                events.push(NewEvent::step(
                    format!("step.{}", d.status.as_str()),
                    &d.step_id,
                    attempt,
                    ready_event_data(after, d.error.as_deref()),
                ));
            }
            Ok(())
        }

        /// Asks `decide` what follows from the run's rows as they are now (the caller holds
        /// the run's lock and has made its own change) and applies the answer.
        #[allow(clippy::too_many_arguments)]
        async fn advance(
            conn: &mut Conn,
            run: &Run,
            after: &str,
            ended: Option<Ended<'_>>,
            decide: &dyn Decide,
            now: i64,
            events: &mut Vec<NewEvent>,
            wakes: &mut Vec<Wake>,
            handover: Option<&mut Handover<'_>>,
            read: Option<Vec<StepRun>>,
        ) -> Result<Option<$crate::store::model::Census>> {
            let run_id = run.id.as_str();
            if run.status.is_terminal() {
                return Ok(None);
            }
            let mut partial = None;
            if let Some(ended) = ended
                && let Some(ids) = decide.reads_after(&ended)
            {
                // The rows `ids` names, unless the caller read them already.
                let rows = match read {
                    Some(rows) => rows,
                    None => steps_by_ids(conn, run_id, &ids).await?,
                };
                partial = decide.decide_after(run, &ended, &rows);
            }
            // A partial answer that starts nothing may be the run's last transition: only
            // when no main step is still open does the whole view have to be read.
            let mut seen = None;
            if partial.as_ref().is_some_and(|adv| adv.is_empty()) {
                let c = census(conn, run_id).await?;
                if !c.main_open {
                    partial = None;
                }
                seen = Some(c);
            }
            let adv = match partial {
                Some(adv) => adv,
                None => {
                    let rows = sqlx::query_as::<_, StepRow>(
                        "SELECT * FROM step_runs WHERE run_id = $1 ORDER BY position",
                    )
                    .bind(run_id)
                    .fetch_all(&mut *conn)
                    .await?;
                    decide.decide(run, &convert(rows)?)
                }
            };
            if adv.is_empty() {
                // Nothing changed since the census (if one was read): it still holds.
                return Ok(seen);
            }
            // The hand-over claims a step as the decision readies it only when nothing
            // after that in this transaction can cancel it again (the run ending, the
            // decision's cancels); otherwise `claim_woken` claims after all of it.
            let handover = handover.filter(|_| adv.run_status.is_none() && adv.cancel.is_empty());
            apply_decisions(conn, run_id, after, &adv.then, now, events, wakes, handover).await?;
            for step_id in &adv.cancel {
                let cancelled: Option<i32> = sqlx::query_scalar(
                    "UPDATE step_runs SET status = 'cancelled', lease_owner = NULL, \
                     lease_expires_at = NULL, ready_at = NULL, finished_at = $3 \
                     WHERE run_id = $1 AND step_id = $2 \
                     AND status IN ('ready', 'running', 'waiting') RETURNING attempt",
                )
                .bind(run_id)
                .bind(step_id)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(attempt) = cancelled {
                    events.push(NewEvent::step(
                        "step.cancelled",
                        step_id,
                        attempt,
                        json!({ "decided_after": after }),
                    ));
                }
            }
            for (other_run, step_id) in &adv.wake {
                // Only the step row of the other run: its run lock is not taken (a child
                // never waits on its parent's lock, so two runs never wait on each other).
                let woken: Option<i32> = sqlx::query_scalar(
                    "UPDATE step_runs SET ready_at = $3 \
                     WHERE run_id = $1 AND step_id = $2 AND status = 'waiting' \
                     RETURNING attempt",
                )
                .bind(other_run)
                .bind(step_id)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(attempt) = woken {
                    wakes.push(Wake::new(other_run, step_id, attempt, None));
                }
            }
            events.extend(adv.events);
            if let Some(to) = adv.run_status {
                check_run(run.status, to)?;
                run_move(
                    conn, run_id, run.status, to, adv.run_error.as_deref(), now, events, wakes,
                )
                .await?;
            }
            Ok(None)
        }

        /// What the run's open steps say now, and the run's status, as this transaction
        /// sees them: one statement of index probes (the open-steps index), whatever the
        /// run's size. Read once for both questions a transition may ask (is a main step
        /// still open? must the run's status move?).
        async fn census(conn: &mut Conn, run_id: &str) -> Result<$crate::store::model::Census> {
            let (status, active, waiting, main_open): (String, bool, bool, bool) =
                sqlx::query_as(
                    "SELECT r.status, \
                     EXISTS (SELECT 1 FROM step_runs WHERE run_id = $1 \
                             AND status IN ('ready', 'running')), \
                     EXISTS (SELECT 1 FROM step_runs WHERE run_id = $1 AND status = 'waiting'), \
                     EXISTS (SELECT 1 FROM step_runs WHERE run_id = $1 AND list = 'main' \
                             AND status IN ('pending', 'ready', 'running', 'waiting')) \
                     FROM runs r WHERE r.id = $1",
                )
                .bind(run_id)
                .fetch_one(&mut *conn)
                .await?;
            Ok($crate::store::model::Census {
                status: status.parse()?,
                active,
                waiting,
                main_open,
            })
        }

        /// Keeps the run's `running`/`waiting` status true to its steps: `waiting` when
        /// nothing is ready or running and something waits (for a person, a timer, a child
        /// run), `running` again when something is. The caller holds the run's lock.
        async fn run_settle(
            conn: &mut Conn,
            run_id: &str,
            events: &mut Vec<NewEvent>,
            known: Option<$crate::store::model::Census>,
        ) -> Result<()> {
            let c = match known {
                Some(c) => c,
                None => census(conn, run_id).await?,
            };
            let (from, to) = match (c.status, c.active, c.waiting) {
                (RunStatus::Running, false, true) => ("running", "waiting"),
                (RunStatus::Waiting, true, _) => ("waiting", "running"),
                // Already true to its steps (or ended): no write, no round trip.
                _ => return Ok(()),
            };
            let moved = sqlx::query("UPDATE runs SET status = $3 WHERE id = $1 AND status = $2")
                .bind(run_id)
                .bind(from)
                .bind(to)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if moved > 0 {
                events.push(NewEvent::run(format!("run.{to}"), json!({ "from": from })));
            }
            Ok(())
        }

        /// Lets the engine decide what follows from the run's rows now, in one transaction
        /// (after a restart, or when a lock hands the run over).
        pub(in crate::store) async fn run_advance(
            pool: &Pool,
            run_id: &str,
            decide: &dyn Decide,
        ) -> Result<Run> {
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
            let (mut events, mut wakes) = (Vec::new(), Vec::new());
            advance(
                &mut tx, &locked.run, "(advance)", None, decide, now, &mut events, &mut wakes,
                None, None,
            )
            .await?;
            run_settle(&mut tx, run_id, &mut events, None).await?;
            push_jobs(&mut tx, &wakes).await?;
            append_at(&mut tx, run_id, &mut locked.head, &events, now).await?;
            let run = fetch_run(&mut tx, run_id).await?;
            tx.commit().await?;
            Ok(run)
        }

        /// An operator's cancel: a queued run ends at once; a running or waiting one has its
        /// open main steps cancelled (running ones lose their lease) and `decide` runs its
        /// compensations, or ends it. Refused with [`Error::RunNotIn`] for an ended run.
        pub(in crate::store) async fn run_cancel(
            pool: &Pool,
            run_id: &str,
            by: &str,
            reason: &str,
            decide: &dyn Decide,
        ) -> Result<Run> {
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
            let status = locked.run.status;
            let (mut events, mut wakes) = (Vec::new(), Vec::new());
            events.push(NewEvent::run(
                "run.cancel_requested",
                json!({ "by": by, "reason": reason }),
            ));
            match status {
                RunStatus::Queued => {
                    run_move(
                        &mut tx, run_id, status, RunStatus::Cancelled, Some(reason), now,
                        &mut events, &mut wakes,
                    )
                    .await?;
                }
                RunStatus::Running | RunStatus::Waiting => {
                    let cancelled: Vec<(String, i32)> = sqlx::query_as(
                        "UPDATE step_runs SET status = 'cancelled', lease_owner = NULL, \
                         lease_expires_at = NULL, ready_at = NULL, finished_at = $2 \
                         WHERE run_id = $1 AND list = 'main' \
                         AND status IN ('pending', 'ready', 'running', 'waiting') \
                         RETURNING step_id, attempt",
                    )
                    .bind(run_id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                    for (step_id, attempt) in cancelled {
                        events.push(NewEvent::step(
                            "step.cancelled",
                            &step_id,
                            attempt,
                            json!({ "reason": "run cancelled", "by": by }),
                        ));
                    }
                    advance(
                        &mut tx, &locked.run, "(cancel)", None, decide, now, &mut events,
                        &mut wakes, None, None,
                    )
                    .await?;
                    run_settle(&mut tx, run_id, &mut events, None).await?;
                }
                actual => {
                    return Err(Error::RunNotIn {
                        run_id: run_id.to_owned(),
                        expected: RunStatus::Running,
                        actual,
                    });
                }
            }
            push_jobs(&mut tx, &wakes).await?;
            append_at(&mut tx, run_id, &mut locked.head, &events, now).await?;
            let run = fetch_run(&mut tx, run_id).await?;
            tx.commit().await?;
            Ok(run)
        }

        /// Parks a running `invoke` step and creates its child run, in one transaction: the
        /// child exists exactly when the parent waits for it, so the child's end always
        /// finds the parent waiting (and wakes it). A child that already exists for this
        /// step (a worker died after this commit) is returned instead of a second one.
        pub(in crate::store) async fn step_park_with_child(
            pool: &Pool,
            lease: &Lease,
            until: Option<DateTime<Utc>>,
            child: &NewRun,
        ) -> Result<Run> {
            check_new_run(child)?;
            let guard = Guard::Lease(lease.clone());
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, &lease.run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(lease.run_id.clone()))?;
            let (_, events) =
                park_in(&mut tx, &guard, until.map(millis), Some(child.id.as_str())).await?;
            let run = run_insert(&mut tx, child, now).await?;
            append_at(&mut tx, &lease.run_id, &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok(run)
        }

        /// The most recent child run started by `parent_step_id` of `parent_run_id`.
        pub(in crate::store) async fn run_child(
            pool: &Pool,
            parent_run_id: &str,
            parent_step_id: &str,
        ) -> Result<Option<Run>> {
            sqlx::query_as::<_, RunRow>(
                "SELECT * FROM runs WHERE parent_run_id = $1 AND parent_step_id = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(parent_run_id)
            .bind(parent_step_id)
            .fetch_optional(pool)
            .await?
            .map(Run::try_from)
            .transpose()
        }

        /// Records a person's decision at a waiting step and, when `judge` says the
        /// decisions so far end it, finishes the step and what follows (`decide`), all in
        /// one transaction. Refused, changing nothing: a run that ended (`RunNotIn`), a
        /// step not waiting (`StepNotIn`: decided already, timed out, cancelled), a second
        /// decision by the same person or for the same item (`AlreadyDecided`).
        pub(in crate::store) async fn step_decide(
            pool: &Pool,
            run_id: &str,
            step_id: &str,
            new: &NewStepDecision,
            judge: &dyn Judge,
            decide: &dyn Decide,
        ) -> Result<(StepRun, Vec<StepDecision>)> {
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
            let run_status = locked.run.status;
            if !matches!(run_status, RunStatus::Running | RunStatus::Waiting) {
                return Err(Error::RunNotIn {
                    run_id: run_id.to_owned(),
                    expected: RunStatus::Waiting,
                    actual: run_status,
                });
            }
            let (status, _) = step_status(&mut tx, run_id, step_id).await?;
            if status != StepStatus::Waiting {
                return Err(Error::StepNotIn {
                    run_id: run_id.to_owned(),
                    step_id: step_id.to_owned(),
                    expected: StepStatus::Waiting,
                    actual: status,
                });
            }
            let inserted = sqlx::query(
                "INSERT INTO step_decisions (run_id, step_id, attempt, item, operator, verdict, \
                 comment, plan_hash, at) \
                 SELECT run_id, step_id, attempt, $3, $4, $5, $6, $7, $8 FROM step_runs \
                 WHERE run_id = $1 AND step_id = $2 \
                 ON CONFLICT DO NOTHING",
            )
            .bind(run_id)
            .bind(step_id)
            .bind(&new.item)
            .bind(&new.operator)
            .bind(new.verdict.as_str())
            .bind(new.comment.as_deref())
            .bind(&new.plan_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(Error::AlreadyDecided {
                    run_id: run_id.to_owned(),
                    step_id: step_id.to_owned(),
                    operator: new.operator.clone(),
                    what: if new.item.is_empty() {
                        "this approval".to_owned()
                    } else {
                        format!("item `{}`", new.item)
                    },
                });
            }
            let rows = sqlx::query_as::<_, DecisionRow>(
                "SELECT d.* FROM step_decisions d JOIN step_runs s \
                 ON s.run_id = d.run_id AND s.step_id = d.step_id AND s.attempt = d.attempt \
                 WHERE d.run_id = $1 AND d.step_id = $2 ORDER BY d.at, d.item, d.operator",
            )
            .bind(run_id)
            .bind(step_id)
            .fetch_all(&mut *tx)
            .await?;
            let decisions: Vec<StepDecision> = convert(rows)?;
            let mut events = vec![NewEvent::step(
                "step.decision",
                step_id,
                decisions.last().map_or(0, |d| d.attempt),
                json!({
                    "item": new.item, "operator": new.operator, "verdict": new.verdict.as_str(),
                    "comment": new.comment, "plan_hash": new.plan_hash,
                }),
            )];
            let mut wakes = Vec::new();
            let step = match judge.judge(&decisions) {
                Some(finish) => {
                    let guard = Guard::Waiting {
                        run_id: run_id.to_owned(),
                        step_id: step_id.to_owned(),
                    };
                    finish_in(
                        &mut tx, &locked.run, &guard, &finish, decide, now, &mut events,
                        &mut wakes, None,
                    )
                    .await?
                }
                None => sqlx::query_as::<_, StepRow>(
                    "SELECT * FROM step_runs WHERE run_id = $1 AND step_id = $2",
                )
                .bind(run_id)
                .bind(step_id)
                .fetch_one(&mut *tx)
                .await?
                .try_into()?,
            };
            push_jobs(&mut tx, &wakes).await?;
            append_at(&mut tx, run_id, &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok((step, decisions))
        }

        /// Every decision recorded for the run, in the order they were made.
        pub(in crate::store) async fn decisions_of_run(
            pool: &Pool,
            run_id: &str,
        ) -> Result<Vec<StepDecision>> {
            let rows = sqlx::query_as::<_, DecisionRow>(
                "SELECT * FROM step_decisions WHERE run_id = $1 ORDER BY at, step_id, item",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            convert(rows)
        }

        pub(in crate::store) async fn step_retry_later(
            pool: &Pool,
            lease: &Lease,
            retry: &Retry,
        ) -> Result<StepRun> {
            let guard = Guard::Lease(lease.clone());
            let (g_status, g_worker, g_attempt) = guard_binds(&guard);
            let now = now_ms();
            let ready_at = millis(retry.ready_at).max(now);
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, &lease.run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(lease.run_id.clone()))?;
            let row = sqlx::query_as::<_, StepRow>(guarded!(
                "status = 'ready', ready_at = $6, error = $7, \
                 checkpoint = COALESCE($8, checkpoint), lease_owner = NULL, \
                 lease_expires_at = NULL"
            ))
            .bind(&lease.run_id)
            .bind(&lease.step_id)
            .bind(g_status)
            .bind(g_worker)
            .bind(g_attempt)
            .bind(ready_at)
            .bind(retry.error.as_deref())
            .bind(retry.checkpoint.as_deref())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(guard_error(&mut tx, &guard).await);
            };
            let step: StepRun = row.try_into()?;
            let wake = Wake::new(&lease.run_id, &lease.step_id, lease.attempt + 1, Some(ready_at));
            push_jobs(&mut tx, &[wake]).await?;
            let event = NewEvent::step(
                "step.retry",
                &lease.step_id,
                lease.attempt,
                json!({ "worker": lease.worker, "error": retry.error, "ready_at": ready_at }),
            );
            append_at(&mut tx, &lease.run_id, &mut locked.head, &[event], now).await?;
            tx.commit().await?;
            Ok(step)
        }

        pub(in crate::store) async fn step_park(
            pool: &Pool,
            guard: &Guard,
            until: Option<DateTime<Utc>>,
        ) -> Result<StepRun> {
            check_step(guard.status(), StepStatus::Waiting)?;
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, guard.run_id())
                .await?
                .ok_or_else(|| Error::RunNotFound(guard.run_id().to_owned()))?;
            let (step, events) = park_in(&mut tx, guard, until.map(millis), None).await?;
            append_at(&mut tx, guard.run_id(), &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok(step)
        }

        /// The body of `step_park` on the caller's transaction, which holds the run's
        /// lock: the guarded move to waiting, the timer's job, and the events to append.
        async fn park_in(
            tx: &mut Conn,
            guard: &Guard,
            until: Option<i64>,
            child_run_id: Option<&str>,
        ) -> Result<(StepRun, Vec<NewEvent>)> {
            let (run_id, step_id) = (guard.run_id(), guard.step_id());
            let (g_status, g_worker, g_attempt) = guard_binds(guard);
            let row = sqlx::query_as::<_, StepRow>(guarded!(
                "status = 'waiting', ready_at = $6, lease_owner = NULL, lease_expires_at = NULL"
            ))
            .bind(run_id)
            .bind(step_id)
            .bind(g_status)
            .bind(g_worker)
            .bind(g_attempt)
            .bind(until)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(guard_error(&mut *tx, guard).await);
            };
            let step: StepRun = row.try_into()?;
            if let Some(at) = until {
                // The timer: its job finds the step waiting and due (see `step_claim`).
                push_jobs(&mut *tx, &[Wake::new(run_id, step_id, step.attempt, Some(at))]).await?;
            }
            let mut data = json!({ "worker": g_worker, "until": until });
            if let Some(child) = child_run_id {
                data["child_run_id"] = json!(child);
            }
            let mut events = vec![NewEvent::step("step.waiting", step_id, step.attempt, data)];
            run_settle(&mut *tx, run_id, &mut events, None).await?;
            Ok((step, events))
        }

        pub(in crate::store) async fn steps_reap_expired(
            pool: &Pool,
            now: DateTime<Utc>,
        ) -> Result<Vec<Lease>> {
            let now = millis(now);
            let expired: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT run_id, step_id, lease_owner FROM step_runs \
                 WHERE status = 'running' AND lease_expires_at < $1 \
                 ORDER BY lease_expires_at LIMIT $2",
            )
            .bind(now)
            .bind(REAP_BATCH)
            .fetch_all(pool)
            .await?;
            let mut reaped = Vec::new();
            for (run_id, step_id, owner) in expired {
                // One transaction per step, taking the run lock first like every other
                // transition. A run locked by someone else (a worker finishing a step, another
                // reaper) is skipped, not waited for: the next tick sees it again.
                let mut tx = begin(pool).await?;
                let Some(mut locked) = try_lock_run(&mut tx, &run_id).await? else {
                    continue;
                };
                // Due since its lease expired, not from the reaper's `now`, which may run ahead
                // of the clock a claimant checks `ready_at` against.
                let attempt: Option<i32> = sqlx::query_scalar(
                    "UPDATE step_runs SET status = 'ready', ready_at = lease_expires_at, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE run_id = $1 AND step_id = $2 AND status = 'running' \
                     AND lease_expires_at < $3 \
                     RETURNING attempt",
                )
                .bind(&run_id)
                .bind(&step_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(attempt) = attempt else { continue };
                push_jobs(&mut tx, &[Wake::new(&run_id, &step_id, attempt + 1, None)]).await?;
                let event = NewEvent::step(
                    "step.lease_expired",
                    &step_id,
                    attempt,
                    json!({ "worker": owner }),
                );
                append_at(&mut tx, &run_id, &mut locked.head, &[event], now).await?;
                tx.commit().await?;
                reaped.push(Lease {
                    run_id,
                    step_id,
                    worker: owner.unwrap_or_default(),
                    attempt,
                });
            }
            Ok(reaped)
        }

        /// Running → waiting with no timer, after an approval's escalation: `step.escalated`
        /// (with `data`: what was sent, whether it was delivered) then `step.waiting`, in
        /// one transaction. The step waits for people only from now on.
        pub(in crate::store) async fn step_escalate(
            pool: &Pool,
            lease: &Lease,
            data: serde_json::Value,
        ) -> Result<StepRun> {
            let guard = Guard::Lease(lease.clone());
            let now = now_ms();
            let mut tx = begin(pool).await?;
            let mut locked = lock_run(&mut tx, &lease.run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound(lease.run_id.clone()))?;
            let (step, mut events) = park_in(&mut tx, &guard, None, None).await?;
            events.insert(
                0,
                NewEvent::step("step.escalated", &lease.step_id, lease.attempt, data),
            );
            append_at(&mut tx, &lease.run_id, &mut locked.head, &events, now).await?;
            tx.commit().await?;
            Ok(step)
        }
    };
}

pub(super) use {finish_set, guarded, transitions};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_s_jobs_fall_in_priority_so_the_queue_serves_runs_in_turn() {
        let wakes = [
            Wake::new("r1", "a", 1, None),
            Wake::new("r1", "b", 1, None),
            Wake::new("r2", "a", 1, None),
            Wake::new("r1", "c", 1, None),
        ];
        let priorities: Vec<Option<usize>> =
            tasks(&wakes).iter().map(|t| t.ctx().priority()).collect();
        assert_eq!(priorities, [Some(64), Some(63), Some(64), Some(62)]);
        let many: Vec<Wake> = (0..100)
            .map(|i| Wake::new("r", &format!("s{i}"), 1, None))
            .collect();
        let lowest = tasks(&many).last().and_then(|t| t.ctx().priority());
        assert_eq!(
            lowest,
            Some(1),
            "a wide push bottoms out at the lowest level"
        );
    }
}
