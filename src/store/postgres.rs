//! The Postgres backend: many workers on many hosts sharing one database.
//!
//! The operations are `ops::transitions!()`; this file holds what only Postgres does:
//! row locks as the per-run append lock, apalis-postgres' queue, and job cleanup.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::ahead::{Ahead, Claimed};
use super::chain;
use super::error::Result;
use super::model::{ClaimNext, Locked, LockedRow, StepRow, StepRun, convert};
use super::ops::{QUEUE, Wake, running_event_data};
use super::schedule_model::Held;

type Pool = PgPool;
type Db = Postgres;
type Conn = PgConnection;

async fn begin(pool: &Pool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool.begin().await?)
}

/// A read-only transaction that sees one snapshot for all its statements.
async fn begin_read(pool: &Pool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?)
}

/// The run's append lock. `FOR NO KEY UPDATE` rather than `FOR UPDATE`: it excludes every
/// other transition of this run but not the foreign-key checks of inserts that reference
/// the run row (`FOR KEY SHARE`).
///
/// The run row and its chain head (`run_heads`) are read in the same statement, and both
/// rows are locked: a statement that waited for a lock returns the newest version of every
/// row it locks (read committed's recheck), whereas a row it only read would be the one in
/// the snapshot taken before the wait, and the head of a chain the previous holder had
/// just extended would be stale. Only run-lock holders move a head, so locking it too
/// never waits on anything the run lock did not. A run with no event yet has no head row
/// (an inner join is required for the lock): the second statement takes the lock then.
async fn lock_run(conn: &mut Conn, run_id: &str) -> Result<Option<Locked>> {
    let row = sqlx::query_as::<_, LockedRow>(concat!(
        "SELECT ",
        run_to_decide!(),
        ", h.seq AS head_seq, h.hash AS head_hash \
         FROM runs r JOIN run_heads h ON h.run_id = r.id WHERE r.id = $1 \
         FOR NO KEY UPDATE OF r, h"
    ))
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?;
    let row = match row {
        Some(row) => Some(row),
        None => {
            sqlx::query_as::<_, LockedRow>(concat!(
                "SELECT ",
                run_to_decide!(),
                ", NULL::bigint AS head_seq, NULL AS head_hash \
                 FROM runs r WHERE r.id = $1 FOR NO KEY UPDATE OF r"
            ))
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    row.map(Locked::try_from).transpose()
}

/// `lock_run` for the reaper: `SKIP LOCKED`, so concurrent reapers (and a reaper racing a
/// worker that is finishing a step of the same run) never wait on each other. `None` when
/// the run is busy (or has no event yet, which only its creating transaction sees).
async fn try_lock_run(conn: &mut Conn, run_id: &str) -> Result<Option<Locked>> {
    sqlx::query_as::<_, LockedRow>(concat!(
        "SELECT ",
        run_to_decide!(),
        ", h.seq AS head_seq, h.hash AS head_hash \
         FROM runs r JOIN run_heads h ON h.run_id = r.id WHERE r.id = $1 \
         FOR NO KEY UPDATE OF r, h SKIP LOCKED"
    ))
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(Locked::try_from)
    .transpose()
}

/// The columns of a run as a decision reads it, from `runs r`: all but the definition,
/// which deciding never needs (the decider holds the compiled plan) and which, for a large
/// playbook, would cost more to read on every transition than the rest of the row.
macro_rules! run_to_decide {
    () => {
        "r.id, r.playbook, r.content_hash, '' AS definition, r.params, r.starter, r.trigger, \
         r.status, r.lock_key, r.parent_run_id, r.parent_step_id, r.created_at, r.started_at, \
         r.finished_at, r.error"
    };
}
use run_to_decide;

/// The hand-over to another running run, not `run_id`, with a step ready and due whose
/// lock nobody holds (the `runway_hand_over_other` function: `SKIP LOCKED`, so this never
/// waits): its first ready step claimed for `claim.worker` and its `step.running` event
/// appended to that run's chain, in the caller's transaction. Lets a finishing worker take
/// its next step from a run nobody is transitioning, instead of queueing on the lock of
/// its own run behind the other workers' transitions of it.
async fn hand_over_other(
    conn: &mut Conn,
    run_id: &str,
    claim: &ClaimNext,
    expires: i64,
    now: i64,
) -> Result<Option<StepRun>> {
    let running = chain::canonical(&running_event_data(&claim.worker, expires));
    sqlx::query_as::<_, StepRow>(
        "SELECT * FROM runway_hand_over_other($1, $2, $3, $4, $5) WHERE run_id IS NOT NULL",
    )
    .bind(run_id)
    .bind(&claim.worker)
    .bind(expires)
    .bind(now)
    .bind(running)
    .fetch_optional(&mut *conn)
    .await?
    .map(StepRun::try_from)
    .transpose()
}

/// A transition decided ahead (see `store::ahead`), applied by the `runway_step_finish`
/// function in one statement that commits on its own: one round trip where the general
/// path's transaction takes six to eight. `None` when the function refused it (SQLSTATE
/// `RW001`: a row the decision read has changed, the lease is gone, the run may end or
/// wait...), having changed nothing: the caller takes the general path, which decides
/// under the run's lock and says exactly why a refusal is one.
pub(super) async fn step_finish_ahead(
    pool: &Pool,
    ahead: &Ahead,
) -> Result<Option<(StepRun, Option<Claimed>)>> {
    let lease = &ahead.lease;
    let rows = sqlx::query_as::<_, StepRow>(
        "SELECT * FROM runway_step_finish($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17)",
    )
    .bind(&lease.run_id)
    .bind(&lease.step_id)
    .bind(&lease.worker)
    .bind(lease.attempt)
    .bind(ahead.status.as_str())
    .bind(ahead.outputs.as_ref().map(Json))
    .bind(ahead.checkpoint.as_deref())
    .bind(ahead.error.as_deref())
    .bind(ahead.now)
    .bind(&ahead.finish_data)
    .bind(Json(&ahead.expect))
    .bind(ahead.ready.as_ref().map(|(id, _)| id.as_str()))
    .bind(ahead.ready.as_ref().map(|(_, data)| data.as_str()))
    .bind(&ahead.claim_worker)
    .bind(ahead.claim_expires)
    .bind(&ahead.running_data)
    .bind(Json(&ahead.next_reads))
    .fetch_all(pool)
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(REFUSED) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    // The finished row, then the claimed one, then the rows read for the claimed step.
    let mut rows = convert::<StepRow, StepRun>(rows)?.into_iter();
    let Some(step) = rows.next() else {
        return Ok(None);
    };
    let next = rows.next().map(|row| Claimed {
        row,
        rows: ahead.ready.is_some().then(|| rows.collect()),
    });
    Ok(Some((step, next)))
}

/// What `runway_step_claim` made of a job's wake-up.
pub(super) enum Woken {
    Claimed(Box<Claimed>),
    /// The step is not ready or waiting (or does not exist): the job was stale.
    Stale,
    /// Refused, having changed nothing: the general path decides (see the function).
    Refused,
}

/// The claim of a step woken by its job in one statement (the `runway_step_claim`
/// function), with the rows `reads` names as it leaves them.
pub(super) async fn step_claim_woken(
    pool: &Pool,
    run_id: &str,
    step_id: &str,
    worker: &str,
    expires: i64,
    now: i64,
    reads: &[String],
) -> Result<Woken> {
    let running = chain::canonical(&running_event_data(worker, expires));
    let rows =
        sqlx::query_as::<_, StepRow>("SELECT * FROM runway_step_claim($1, $2, $3, $4, $5, $6, $7)")
            .bind(run_id)
            .bind(step_id)
            .bind(worker)
            .bind(expires)
            .bind(now)
            .bind(running)
            .bind(Json(reads))
            .fetch_all(pool)
            .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(REFUSED) => {
            return Ok(Woken::Refused);
        }
        Err(e) => return Err(e.into()),
    };
    let mut rows = convert::<StepRow, StepRun>(rows)?.into_iter();
    Ok(match rows.next() {
        Some(row) => Woken::Claimed(Box::new(Claimed {
            row,
            rows: Some(rows.collect()),
        })),
        None => Woken::Stale,
    })
}

/// The SQLSTATE with which `runway_step_finish` and `runway_step_claim` refuse.
const REFUSED: &str = "RW001";

/// A finishing UPDATE (`$1` to `$10`, see `ops::finish_set`) that also returns the rows of
/// the run's steps named by `$11` (a JSON array) as the update leaves them: the finished
/// row from the UPDATE itself, the others from the statement's snapshot, which is what a
/// second statement would read, since the caller holds the run's lock and changes nothing
/// in between. No row at all when the guard refused the update.
const FINISH_READING: Option<&str> = Some(concat!(
    "WITH f AS (",
    super::ops::guarded!(super::ops::finish_set!()),
    ") SELECT * FROM f UNION ALL \
     SELECT s.* FROM step_runs s WHERE s.run_id = $1 AND s.step_id <> $2 \
     AND s.step_id IN (SELECT jsonb_array_elements_text($11::jsonb)) \
     AND EXISTS (SELECT 1 FROM f)"
));

/// `ops::claim_any_ready`: the `runway_claim_ready` function, which also retires the
/// claimed step's job (see [`retire_job`]) in the same statement.
const CLAIM_ANY_READY: &str =
    "SELECT * FROM runway_claim_ready($1, $2, $3, $4) WHERE run_id IS NOT NULL";
const CLAIM_RETIRES_JOB: bool = true;

/// The rows of the named steps of one run (as a JSON array parameter, so the statement
/// text is the same whatever the number of ids).
async fn steps_by_ids(conn: &mut Conn, run_id: &str, ids: &[String]) -> Result<Vec<StepRun>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query_as::<_, StepRow>(
        "SELECT * FROM step_runs WHERE run_id = $1 \
         AND step_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
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
    apalis_postgres::queries::push_tasks(conn, QUEUE, tasks).await?;
    // One statement per run (nearly always one): with the run fixed the rows are found
    // through the primary key's prefix, where a join on both columns was planned as a
    // scan of every step row.
    let mut runs: Vec<&str> = wakes.iter().map(|w| w.job.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    for run_id in runs {
        let of_run: Vec<Wake> = wakes
            .iter()
            .filter(|w| w.job.run_id == run_id)
            .cloned()
            .collect();
        sqlx::query(
            "UPDATE step_runs s SET job_id = w.job \
             FROM jsonb_to_recordset($2::jsonb) AS w(step_id text, job text) \
             WHERE s.run_id = $1 AND s.step_id = w.step_id",
        )
        .bind(run_id)
        .bind(Json(super::ops::wake_ids(&of_run)))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes a step's job before any worker fetched it: the step was claimed in a
/// hand-over, so the job would only be fetched, found stale and acknowledged. A job some
/// worker already fetched is left to it (it is no longer `Pending`). A delete rather than
/// marking it done: an UPDATE of `status` adds an entry to each of the table's six
/// indexes, a delete to none. By id alone: with the queue's name too, the planner takes
/// apalis' fetch index (queue, priority, due time) and filters every pending job of the
/// queue for the id (measured: throughput halved with 10,000 jobs queued). On Postgres
/// the claim's own statement does this (`CLAIM_ANY_READY`, `CLAIM_RETIRES_JOB`); this
/// form is what the shared code calls on a backend whose claim cannot.
async fn retire_job(conn: &mut Conn, job_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM apalis.jobs WHERE id = $1 AND status = 'Pending'")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// apalis-postgres never deletes job rows; finished ones (done, killed, or failed with no
/// attempts left) older than `older_than` go here.
pub(super) async fn jobs_delete_finished(pool: &Pool, older_than: DateTime<Utc>) -> Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM apalis.jobs WHERE job_type = $1 \
         AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
         AND done_at < to_timestamp($2::double precision / 1000)",
    )
    .bind(QUEUE)
    .bind(older_than.timestamp_millis())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}

/// A schedule's row lock (see `schedule_ops`). A scheduler's transaction may be killed
/// from under it without harm (it rolls back), and a scheduler stopped mid-transaction
/// (SIGSTOP, a frozen VM) must not hold a schedule for long: the server ends a schedule
/// transaction that sits idle for `SCHEDULE_TX_IDLE`, which releases the lock for the others.
async fn lock_schedule(conn: &mut Conn, id: &str, skip: bool) -> Result<Held> {
    sqlx::query(SCHEDULE_TX_IDLE).execute(&mut *conn).await?;
    let sql = if skip {
        "SELECT id FROM schedules WHERE id = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT id FROM schedules WHERE id = $1 FOR UPDATE"
    };
    let locked: Option<String> = sqlx::query_scalar(sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if locked.is_some() {
        return Ok(Held::Taken);
    }
    if !skip {
        return Ok(Held::Missing);
    }
    // Nothing came back: the row is locked by another scheduler, or it does not exist.
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM schedules WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(if exists.is_some() {
        Held::Busy
    } else {
        Held::Missing
    })
}

/// How long a schedule transaction may wait on its client (it does milliseconds of work).
const SCHEDULE_TX_IDLE: &str = "SET LOCAL idle_in_transaction_session_timeout = '5s'";

super::ops::transitions!();
super::evidence::evidence_reads!();
super::schedule_ops::schedule_transitions!();
