//! The durable store: runs, step runs, evidence and run locks, in PostgreSQL or SQLite,
//! and the apalis jobs that wake workers, written in the same transactions.
//!
//! All of Runway's SQL lives here. The database rows are the truth; a job is only a
//! wake-up carrying a [`StepJob`] (run, step, attempt hint). Every operation is named by
//! the transition it makes (`step_claim`, `step_finish`, ...) and is one guarded statement
//! or one transaction: the statement names the state it leaves (`WHERE status = 'ready'`,
//! `... AND lease_owner = $worker AND attempt = $attempt`), and a guard that matches no
//! row becomes a typed refusal ([`Error::NotClaimable`], [`Error::LeaseLost`],
//! [`Error::RunNotIn`], ...) that changed nothing. State changes also append to the run's
//! hash-chained evidence ([`chain`]) in the same transaction.
//!
//! ```no_run
//! # async fn demo() -> Result<(), runway::store::Error> {
//! use std::time::Duration;
//! use runway::store::{Finish, Guard, Store};
//! use runway::state::StepStatus;
//!
//! let store = Store::connect("sqlite://.runway/runway.db").await?;
//! // A worker woken by a job for (run, step):
//! let step = store.step_claim("RUN", "build", "host-1:4242", Duration::from_secs(30)).await?;
//! let lease = step.lease().expect("a claimed step is leased");
//! // ... run the attempt, renewing the lease ...
//! store.step_finish(&Guard::Lease(lease), &Finish::new(StepStatus::Succeeded)).await?;
//! # Ok(()) }
//! ```
//!
//! Backends: [`Store::Postgres`] for many workers on many hosts, [`Store::Sqlite`] for one
//! machine. `ops.rs` holds the operations once for both; `postgres.rs` and `sqlite.rs`
//! hold the few statements that differ. Do not call apalis-sqlite's `SqliteStorage::setup`
//! (or build storage with `TryNewBackend`, which calls it): it turns `synchronous` off on
//! the connection it runs on. [`Store::connect`] already runs apalis' migrations.
//!
//! Time: timestamps are UTC unix milliseconds in both schemas, read from the clock of the
//! host making the call (as apalis does for `run_at`). Leases therefore assume the hosts'
//! clocks agree to well within a lease (NTP); the reaper takes `now` as an argument.

mod ahead;
pub mod chain;
mod error;
pub mod evidence;
mod model;
mod ops;
mod postgres;
mod schedule_model;
mod schedule_ops;
mod schedules;
mod sqlite;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use ahead::{Claimed, Known};
pub use error::{Error, Result};
pub use evidence::{Evidence, Head};
pub use model::{
    Advance, ClaimNext, Decide, Decision, Ended, Event, Finish, Guard, Judge, Lease, NewEvent,
    NewRun, NewStep, NewStepDecision, NoDecide, Retry, Run, StepDecision, StepJob, StepList,
    StepRun, Verdict, new_id,
};
pub use ops::QUEUE;
pub use schedule_model::{
    Added, Fire, FireOutcome, FirePlan, Fired, NewSchedule, Notice, NoticeState, OpenFire,
    PlanFire, Schedule, ScheduleEvent, ScheduleKind, ScheduleStatus, Settled, TickRecord,
};

use crate::state::{RunStatus, StepStatus};

/// How long a SQLite connection waits for the write lock before failing with SQLITE_BUSY.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Our migrations keep their own ledger table. apalis-sqlite records its migrations in
/// `_sqlx_migrations` (apalis-postgres in `apalis._sqlx_migrations`), and two migrators
/// sharing one ledger each see the other's rows as "previously applied but missing".
/// Separate ledgers keep both checks strict (a missing or edited migration of either is
/// still an error), which `set_ignore_missing(true)` on both would give up.
const LEDGER: &str = "_runway_migrations";

/// Connections a store opens to Postgres at most, unless told ([`Store::connect_with`]).
pub const DEFAULT_CONNECTIONS: u32 = 4;

/// The most connections a worker opens by default, whatever its slots.
const MOST_CONNECTIONS_BY_DEFAULT: u32 = 8;

/// `runway worker --connections`' default for a worker of `slots` slots: one a slot (a slot
/// has at most one transition under way; more connections than slots only add backends),
/// at most 8 (about what a database of two to four cores serves best; docs/PERFORMANCE.md).
pub fn default_connections(slots: usize) -> u32 {
    u32::try_from(slots)
        .unwrap_or(u32::MAX)
        .clamp(1, MOST_CONNECTIONS_BY_DEFAULT)
}

/// How long taking a Postgres connection from a pool may wait (sqlx's default: 30 s).
/// While the database is down, sqlx keeps trying to connect inside that wait, with a
/// back-off that doubles up to a fifth of it: at 30 s a worker found the database back up
/// to 6 s late (4.1-4.2 s measured after a 12 s outage, docs/RELIABILITY.md). At 5 s the
/// back-off stays under 1 s; a wait that times out is a transient error, which the engine
/// retries and a command reports.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of the queue's pool ([`Store::for_queue`]): a fetch, an acknowledgement and
/// the notification listener at a time.
const QUEUE_CONNECTIONS: u32 = 4;

/// The database behind the store. Cloning is cheap (the pools are shared handles).
#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs one operation on whichever backend this store is.
macro_rules! dispatch {
    ($store:expr, $op:ident($($arg:expr),*)) => {
        match $store {
            Store::Postgres(pool) => postgres::$op(pool, $($arg),*).await,
            Store::Sqlite(pool) => sqlite::$op(pool, $($arg),*).await,
        }
    };
}
use dispatch;

impl Store {
    /// Opens the store named by `url` (`postgres://...`, `postgresql://...` or
    /// `sqlite://PATH`) and applies every pending migration, ours and apalis'.
    ///
    /// No pool tests a connection before handing it out (`test_before_acquire(false)`):
    /// sqlx's test is a round trip of its own on every acquire (a Sync answered by
    /// ReadyForQuery on Postgres, a hop to SQLite's connection thread), one more for every
    /// transaction and every read. A connection the server dropped (a restart, a killed
    /// backend) fails its next statement instead and is closed by sqlx; the engine retries
    /// what must survive a database fault (`engine::worker`'s `until_answered`).
    ///
    /// SQLite is opened for durability: WAL journal, `synchronous = FULL` (a committed step
    /// result survives power loss), a busy timeout (for other processes on the same file),
    /// foreign keys on, one connection per process; the file's directory is created if
    /// missing.
    ///
    /// Postgres: at most [`DEFAULT_CONNECTIONS`] connections; see [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, DEFAULT_CONNECTIONS).await
    }

    /// [`Store::connect`], with at most `connections` connections to Postgres (at least
    /// one; SQLite always has one). Transitions are short, so a pool smaller than a
    /// worker's slots does not make steps wait for one another; what a pool too large
    /// costs is the database's: every connection in use is a backend competing for its
    /// cores, and a few connections a core serve more commits a second than many (see
    /// docs/PERFORMANCE.md: four workers with 2 connections each ran 10,000 steps in a
    /// third less time than with 10 each, on a database of two cores).
    pub async fn connect_with(url: &str, connections: u32) -> Result<Store> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(
                PgPoolOptions::new()
                    .test_before_acquire(false)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .max_connections(connections.max(1))
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("sqlite://") && !url.contains(":memory:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            create_parent_dir(options.get_filename())?;
            // One connection: SQLite has one writer anyway, and writers of one process
            // queueing for the pool's connection (first come, first served) cost nothing,
            // where several connections contend for the file lock and sleep in SQLite's
            // busy handler (1 ms, 2 ms, 5 ms, ... 100 ms) each time they lose.
            Store::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?,
            )
        } else {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations: apalis' queue tables, then ours. Safe to run again and
    /// from several processes (sqlx takes a migration lock on Postgres).
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Postgres(pool) => {
                // apalis-postgres' migrator keeps its ledger in its own schema (its
                // sqlx.toml), so it needs no renaming.
                apalis_postgres::PostgresStorage::<()>::migrations()
                    .run(pool)
                    .await?;
                ours(sqlx::migrate!("migrations/postgres"))
                    .run(pool)
                    .await?;
            }
            Store::Sqlite(pool) => {
                // Not `SqliteStorage::setup`: besides migrating, it sets `synchronous = OFF`.
                apalis_sqlite::SqliteStorage::<()>::migrations()
                    .run(pool)
                    .await?;
                ours(sqlx::migrate!("migrations/sqlite")).run(pool).await?;
            }
        }
        Ok(())
    }

    /// The store for the job queue's own bookkeeping (apalis' fetch, acknowledgement and
    /// heartbeats). On Postgres: a second, small pool on the same database whose sessions
    /// commit without waiting for the WAL flush (`synchronous_commit = off`). That is safe
    /// because a job row only says "look at this step": the step row, written by the
    /// store's own transactions on the main pool (which wait for the flush, and which also
    /// push the jobs), is the truth. An acknowledgement lost in a crash makes the job run
    /// again, and a second claim of a step that is no longer ready is refused; a fetch lost
    /// in a crash is fetched again. It halves the WAL flushes a step waits for. SQLite:
    /// the same store (one connection per process, and the queue's writes must not wait
    /// behind a second connection's file lock).
    pub async fn for_queue(&self) -> Result<Store> {
        match self {
            Store::Postgres(pool) => {
                let queue = PgPoolOptions::new()
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .max_connections(QUEUE_CONNECTIONS)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("SET synchronous_commit = off")
                                .execute(conn)
                                .await
                                .map(|_| ())
                        })
                    })
                    .connect_with(pool.connect_options().as_ref().clone())
                    .await?;
                Ok(Store::Postgres(queue))
            }
            Store::Sqlite(_) => Ok(self.clone()),
        }
    }

    /// `"postgres"` or `"sqlite"`, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Closes every pooled connection (SQLite checkpoints its WAL on the last one).
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }

    /// Creates the run with all its step rows, takes its lock (or queues it behind the
    /// holder), pushes one job per ready step and appends `run.created`, in one transaction.
    pub async fn run_create(&self, new: &NewRun) -> Result<Run> {
        dispatch!(self, run_create(new))
    }

    pub async fn run_get(&self, run_id: &str) -> Result<Run> {
        dispatch!(self, run_get(run_id))
    }

    /// A step's status as last committed, read without locking anything: a hint (a worker
    /// skips a job whose step is already taken or ended), never the basis of a transition.
    pub async fn step_status_of(&self, run_id: &str, step_id: &str) -> Result<StepStatus> {
        dispatch!(self, step_status_of(run_id, step_id))
    }

    /// The most recent runs first, optionally only those in `status`.
    pub async fn runs_list(&self, status: Option<RunStatus>, limit: u32) -> Result<Vec<Run>> {
        dispatch!(self, runs_list(status, limit))
    }

    /// Moves the run from `from` to `to`, refused with [`Error::RunNotIn`] if it is not in
    /// `from`. Ending the run cancels its open steps, releases its lock and starts the next
    /// run queued on that lock, in the same transaction.
    pub async fn run_set_status_if(
        &self,
        run_id: &str,
        from: RunStatus,
        to: RunStatus,
        error: Option<&str>,
    ) -> Result<Run> {
        dispatch!(self, run_set_status_if(run_id, from, to, error))
    }

    /// The run's steps in the order they were created (`position`).
    pub async fn steps_of_run(&self, run_id: &str) -> Result<Vec<StepRun>> {
        dispatch!(self, steps_of_run(run_id))
    }

    /// The rows of the named steps of a run, in no particular order; an id with no row is
    /// left out.
    pub async fn steps_named(&self, run_id: &str, ids: &[String]) -> Result<Vec<StepRun>> {
        dispatch!(self, steps_named(run_id, ids))
    }

    /// Ready and due → running: attempt + 1, lease to `worker` for `lease_for`. Refused
    /// with [`Error::NotClaimable`] (and the actual status) when the step is anything else,
    /// or its run is not running or waiting: the job was stale or duplicated.
    pub async fn step_claim(
        &self,
        run_id: &str,
        step_id: &str,
        worker: &str,
        lease_for: Duration,
    ) -> Result<StepRun> {
        dispatch!(self, step_claim(run_id, step_id, worker, lease_for))
    }

    /// The claim of a worker woken by a job for (`run_id`, `step_id`): the step claimed
    /// as [`Store::step_claim`] does, or `None` when it is not claimable (the job was stale:
    /// its step taken by a hand-over, ended, or its run over). Where the backend can
    /// (Postgres), one statement that also returns the rows `reads` names (the step's
    /// [`Decide::reads_for`]) as [`Claimed::rows`], and that looks at a step that is not
    /// ready without taking its run's lock; elsewhere a lockless look at the step, then the
    /// claim's transaction.
    pub async fn step_claim_woken(
        &self,
        run_id: &str,
        step_id: &str,
        worker: &str,
        lease_for: Duration,
        reads: &[String],
    ) -> Result<Option<Claimed>> {
        match self {
            Store::Postgres(pool) => {
                let now = ops::now_ms();
                let expires = ops::plus(now, lease_for);
                match postgres::step_claim_woken(pool, run_id, step_id, worker, expires, now, reads)
                    .await?
                {
                    postgres::Woken::Claimed(claimed) => return Ok(Some(*claimed)),
                    postgres::Woken::Stale => return Ok(None),
                    postgres::Woken::Refused => {}
                }
            }
            Store::Sqlite(_) => match self.step_status_of(run_id, step_id).await {
                Ok(StepStatus::Ready | StepStatus::Waiting) => {}
                Ok(_) | Err(Error::StepNotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            },
        }
        match self.step_claim(run_id, step_id, worker, lease_for).await {
            Ok(row) => Ok(Some(Claimed { row, rows: None })),
            Err(
                Error::NotClaimable { .. } | Error::StepNotFound { .. } | Error::RunNotFound(_),
            ) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Extends the lease to now + `lease_for` (and stores `checkpoint` if given). Refused
    /// with [`Error::LeaseLost`] unless `lease` still holds the running step.
    pub async fn step_renew_lease(
        &self,
        lease: &Lease,
        lease_for: Duration,
        checkpoint: Option<&[u8]>,
    ) -> Result<DateTime<Utc>> {
        dispatch!(self, step_renew_lease(lease, lease_for, checkpoint))
    }

    /// Records a result and everything that follows from it (decided steps, their jobs,
    /// events, the run's status) in one transaction. `guard` is a [`Guard::Lease`] for a
    /// running step (a worker that lost its lease gets [`Error::LeaseLost`] and changes
    /// nothing) or [`Guard::Waiting`] for a parked one (a decision, a due timer).
    pub async fn step_finish(&self, guard: &Guard, finish: &Finish) -> Result<StepRun> {
        Ok(dispatch!(self, step_finish(guard, finish, &NoDecide, None))?.0)
    }

    /// [`Store::step_finish`], then `decide` over the run's rows in the same transaction
    /// (see [`Advance`]): successors, skips, verdicts, compensations, the run's end.
    pub async fn step_finish_with(
        &self,
        guard: &Guard,
        finish: &Finish,
        decide: &dyn Decide,
    ) -> Result<StepRun> {
        Ok(dispatch!(self, step_finish(guard, finish, decide, None))?.0)
    }

    /// [`Store::step_finish_with`], and a step claimed for `claim.worker` in the same
    /// transaction (the hand-over; no job is pushed for it): the first one the result makes
    /// ready; else a ready step of this run if no other step of it is running; else
    /// (Postgres) a ready step of another run with no step running and nobody
    /// transitioning it; else one of this run's. The worker runs it next. `None` when there
    /// was none (or the result ended the run).
    ///
    /// `known` are rows of the run the worker read earlier: where the backend can apply a
    /// transition decided ahead in one statement (Postgres: [`Store::decides_ahead`]), the
    /// decision is taken from them and checked under the run's lock (see `store::ahead`),
    /// and the claimed step comes with the rows it reads ([`Claimed::rows`]). Whatever
    /// that check refuses, and every other case, is decided under the lock as without them.
    pub async fn step_finish_claiming(
        &self,
        guard: &Guard,
        finish: &Finish,
        decide: &dyn Decide,
        claim: &ClaimNext,
        known: Option<Known<'_>>,
    ) -> Result<(StepRun, Option<Claimed>)> {
        if let (Store::Postgres(pool), Some(known)) = (self, known)
            && let Some(ahead) = ahead::plan(guard, finish, decide, claim, known, ops::now_ms())
            && let Some(done) = postgres::step_finish_ahead(pool, &ahead).await?
        {
            return Ok(done);
        }
        let (step, next) = dispatch!(self, step_finish(guard, finish, decide, Some(claim)))?;
        Ok((step, next.map(|row| Claimed { row, rows: None })))
    }

    /// Whether [`Store::step_finish_claiming`] can apply a transition decided ahead from
    /// rows read earlier (Postgres), so that a worker reading a step's rows before its
    /// attempt should read those its decision needs too ([`Decide::reads_for`]).
    pub fn decides_ahead(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// `decide` over the run's rows as they are, in one transaction.
    pub async fn run_advance(&self, run_id: &str, decide: &dyn Decide) -> Result<Run> {
        dispatch!(self, run_advance(run_id, decide))
    }

    /// An operator's cancel (see the ops docs): open main steps cancelled, then `decide`
    /// runs the compensations or ends the run.
    pub async fn run_cancel(
        &self,
        run_id: &str,
        by: &str,
        reason: &str,
        decide: &dyn Decide,
    ) -> Result<Run> {
        dispatch!(self, run_cancel(run_id, by, reason, decide))
    }

    /// Parks a running `invoke` step and creates its child run in one transaction.
    pub async fn step_park_with_child(
        &self,
        lease: &Lease,
        until: Option<DateTime<Utc>>,
        child: &NewRun,
    ) -> Result<Run> {
        dispatch!(self, step_park_with_child(lease, until, child))
    }

    /// Records a person's decision at a waiting approval or checklist step; finishes the
    /// step (and decides what follows) when `judge` says so, in the same transaction.
    pub async fn step_decide(
        &self,
        run_id: &str,
        step_id: &str,
        new: &NewStepDecision,
        judge: &dyn Judge,
        decide: &dyn Decide,
    ) -> Result<(StepRun, Vec<StepDecision>)> {
        dispatch!(self, step_decide(run_id, step_id, new, judge, decide))
    }

    /// Every approval, rejection and checklist answer of the run.
    pub async fn decisions_of_run(&self, run_id: &str) -> Result<Vec<StepDecision>> {
        dispatch!(self, decisions_of_run(run_id))
    }

    /// The latest child run of a parent's step.
    pub async fn run_child(
        &self,
        parent_run_id: &str,
        parent_step_id: &str,
    ) -> Result<Option<Run>> {
        dispatch!(self, run_child(parent_run_id, parent_step_id))
    }

    /// Running → ready at `retry.ready_at`, with a delayed job for that time.
    pub async fn step_retry_later(&self, lease: &Lease, retry: &Retry) -> Result<StepRun> {
        dispatch!(self, step_retry_later(lease, retry))
    }

    /// Running (by `Guard::Lease`) or ready (by `Guard::Ready`) → waiting, holding no
    /// worker. With `until`, a job is pushed for that time (a `wait` timer, an approval
    /// timeout) and finds the step waiting and due.
    pub async fn step_park(&self, guard: &Guard, until: Option<DateTime<Utc>>) -> Result<StepRun> {
        dispatch!(self, step_park(guard, until))
    }

    /// Running → waiting with no timer after an approval's escalation, appending
    /// `step.escalated` with `data`; refused with [`Error::LeaseLost`] like a finish.
    pub async fn step_escalate(&self, lease: &Lease, data: serde_json::Value) -> Result<StepRun> {
        dispatch!(self, step_escalate(lease, data))
    }

    /// Running steps whose lease expired before `now` → ready, each with a new job and a
    /// `step.lease_expired` event. Returns the leases reaped (at most 100 per call), so the
    /// caller can end what their attempts left running. Safe to run from every worker at
    /// once: each lease is reaped by one of them.
    pub async fn steps_reap_expired(&self, now: DateTime<Utc>) -> Result<Vec<Lease>> {
        dispatch!(self, steps_reap_expired(now))
    }

    /// Takes `key` for `run_id`; [`Error::LockHeld`] names the holder if another run has it.
    pub async fn lock_acquire(&self, key: &str, run_id: &str) -> Result<()> {
        dispatch!(self, lock_acquire(key, run_id))
    }

    /// Releases `key` held by `run_id` and starts the oldest run queued on it.
    pub async fn lock_release(&self, key: &str, run_id: &str) -> Result<()> {
        dispatch!(self, lock_release(key, run_id))
    }

    /// Appends events to the run's chain (seq and hashes computed under the run's lock).
    pub async fn events_append(&self, run_id: &str, events: &[NewEvent]) -> Result<Vec<Event>> {
        dispatch!(self, events_append(run_id, events))
    }

    pub async fn events_of_run(&self, run_id: &str) -> Result<Vec<Event>> {
        dispatch!(self, events_of_run(run_id))
    }

    /// Recomputes the run's chain: the `seq` of the first event that does not match, or
    /// `None` if the evidence is intact.
    pub async fn events_verify(&self, run_id: &str) -> Result<Option<i64>> {
        dispatch!(self, events_verify(run_id))
    }

    /// The run's rows, its events, its chain head, its parent and its children, read in one
    /// snapshot (for reports and `runway verify`).
    pub async fn evidence_of_run(&self, run_id: &str) -> Result<Evidence> {
        dispatch!(self, evidence_of_run(run_id))
    }

    /// Deletes finished queue jobs older than `older_than` (apalis never does); returns
    /// how many.
    pub async fn jobs_delete_finished(&self, older_than: DateTime<Utc>) -> Result<u64> {
        dispatch!(self, jobs_delete_finished(older_than))
    }
}

fn ours(mut migrator: Migrator) -> Migrator {
    migrator.dangerous_set_table_name(LEDGER);
    migrator
}

fn create_parent_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: file.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::default_connections;

    #[test]
    fn a_worker_gets_a_connection_a_slot_by_default_at_most_eight() {
        let got: Vec<u32> = [0, 1, 4, 8, 16, 1000, usize::MAX]
            .into_iter()
            .map(default_connections)
            .collect();
        assert_eq!(got, [1, 1, 4, 8, 8, 8, 8]);
    }
}
