//! The SQLite backend: the embedded default, one machine, one database file.
//!
//! The operations are `ops::transitions!()`; this file holds what only SQLite does. SQLite
//! has one writer at a time: every write transaction starts with `BEGIN IMMEDIATE`, which
//! takes the write lock up front (waiting up to `busy_timeout`), so the read-then-write
//! transactions below never fail halfway with SQLITE_BUSY, and that lock is also the
//! per-run append lock.

use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::error::Result;
use super::model::{ClaimNext, Locked, LockedRow, StepRow, StepRun};
use super::ops::{QUEUE, Wake};
use super::schedule_model::Held;

type Pool = SqlitePool;
type Db = Sqlite;
type Conn = SqliteConnection;

async fn begin(pool: &Pool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// A read transaction: in WAL mode it sees one snapshot from its first read on, and it
/// takes no write lock.
async fn begin_read(pool: &Pool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN DEFERRED").await?)
}

/// Postgres' `hand_over_other`: SQLite has one writer, so no other run's transitions can
/// be waiting on this one's; a worker stays with its run.
async fn hand_over_other(
    _: &mut Conn,
    _: &str,
    _: &ClaimNext,
    _: i64,
    _: i64,
) -> Result<Option<StepRun>> {
    Ok(None)
}

/// The run as a decision sees it (no definition) and its chain head; the write
/// transaction already excludes every other writer.
async fn lock_run(conn: &mut Conn, run_id: &str) -> Result<Option<Locked>> {
    sqlx::query_as::<_, LockedRow>(
        "SELECT r.id, r.playbook, r.content_hash, '' AS definition, r.params, r.starter, \
         r.trigger, r.status, r.lock_key, r.parent_run_id, r.parent_step_id, r.created_at, \
         r.started_at, r.finished_at, r.error, h.seq AS head_seq, h.hash AS head_hash \
         FROM runs r LEFT JOIN run_heads h ON h.run_id = r.id WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(Locked::try_from)
    .transpose()
}

async fn try_lock_run(conn: &mut Conn, run_id: &str) -> Result<Option<Locked>> {
    lock_run(conn, run_id).await
}

/// Postgres' finishing UPDATE that returns the rows a decision reads: SQLite has no
/// UPDATE inside a `WITH`, so the rows are read by a second statement (`steps_by_ids`).
const FINISH_READING: Option<&str> = None;

/// `ops::claim_any_ready`'s UPDATE: the first ready, due step of run `$1` claimed for
/// worker `$2` until `$3`, at `$4` (Postgres' twin is the `runway_claim_ready` function).
/// The claimed step's job is retired by a second statement ([`retire_job`]), since SQLite
/// has no UPDATE inside a `WITH`.
const CLAIM_ANY_READY: &str = "UPDATE step_runs SET status = 'running', attempt = attempt + 1, \
     lease_owner = $2, lease_expires_at = $3, ready_at = NULL, \
     started_at = COALESCE(started_at, $4) \
     WHERE run_id = $1 AND step_id = (SELECT step_id FROM step_runs \
       WHERE run_id = $1 AND status = 'ready' AND ready_at <= $4 \
       ORDER BY ready_at, step_id LIMIT 1) \
     AND status = 'ready' \
     RETURNING *";
const CLAIM_RETIRES_JOB: bool = false;

/// The rows of the named steps of one run (as a JSON array parameter, so the statement
/// text is the same whatever the number of ids).
async fn steps_by_ids(conn: &mut Conn, run_id: &str, ids: &[String]) -> Result<Vec<StepRun>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query_as::<_, StepRow>(
        "SELECT * FROM step_runs WHERE run_id = $1 \
         AND step_id IN (SELECT value FROM json_each($2))",
    )
    .bind(run_id)
    .bind(sqlx::types::Json(ids))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(StepRun::try_from).collect()
}

/// Pushes the jobs on the caller's transaction: they commit or roll back with it.
async fn push_jobs(conn: &mut Conn, wakes: &[Wake]) -> Result<()> {
    if wakes.is_empty() {
        return Ok(());
    }
    let tasks = super::ops::tasks(wakes);
    apalis_sqlite::queries::push_tasks(conn, QUEUE, &tasks).await?;
    sqlx::query(
        "UPDATE step_runs SET job_id = w.job \
         FROM (SELECT value ->> 'run_id' AS run_id, value ->> 'step_id' AS step_id, \
                      value ->> 'job' AS job FROM json_each($1)) AS w \
         WHERE step_runs.run_id = w.run_id AND step_runs.step_id = w.step_id",
    )
    .bind(sqlx::types::Json(super::ops::wake_ids(wakes)))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Postgres' `retire_job`, on apalis-sqlite's table: the job, still pending, is deleted.
async fn retire_job(conn: &mut Conn, job_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM Jobs WHERE id = $1 AND status = 'Pending'")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes finished jobs (done, killed, or failed with no attempts left) older than
/// `older_than`, as on Postgres.
pub(super) async fn jobs_delete_finished(pool: &Pool, older_than: DateTime<Utc>) -> Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM Jobs WHERE job_type = $1 \
         AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
         AND done_at < $2",
    )
    .bind(QUEUE)
    .bind(older_than.timestamp())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}

/// Whether the schedule exists; the write transaction is its lock.
async fn lock_schedule(conn: &mut Conn, id: &str, _skip: bool) -> Result<Held> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM schedules WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(if found.is_some() {
        Held::Taken
    } else {
        Held::Missing
    })
}

super::ops::transitions!();
super::evidence::evidence_reads!();
super::schedule_ops::schedule_transitions!();
