//! `store::Error`: every way a store operation can refuse or fail.
//!
//! The refusals of guarded transitions (`NotClaimable`, `LeaseLost`, `StepNotIn`,
//! `RunNotIn`, `LockHeld`) are normal outcomes the engine matches on: a stale job, a worker
//! that lost its lease, an operator racing another. They leave the database unchanged.

use super::schedule_model::ScheduleStatus;
use crate::state::{RunStatus, StepStatus, UnknownStatus};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported database URL `{0}`: expected postgres://, postgresql:// or sqlite://PATH")]
    UnsupportedUrl(String),

    #[error("cannot create the directory for the SQLite database `{path}`: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },

    #[error("run `{0}` not found")]
    RunNotFound(String),

    #[error("step `{step_id}` of run `{run_id}` not found")]
    StepNotFound { run_id: String, step_id: String },

    /// A guarded run transition found the run in another status.
    #[error("run `{run_id}` is {actual}, not {expected}")]
    RunNotIn {
        run_id: String,
        expected: RunStatus,
        actual: RunStatus,
    },

    /// A guarded step transition found the step in another status.
    #[error("step `{step_id}` of run `{run_id}` is {actual}, not {expected}")]
    StepNotIn {
        run_id: String,
        step_id: String,
        expected: StepStatus,
        actual: StepStatus,
    },

    /// The job that asked for this step is stale: the step is not ready and due, or its
    /// run is not active. The handler drops the job.
    #[error("step `{step_id}` of run `{run_id}` is not claimable: it is {status}")]
    NotClaimable {
        run_id: String,
        step_id: String,
        status: StepStatus,
    },

    /// The caller no longer holds the step's lease for this attempt (it expired and was
    /// reaped, another worker claimed it, or the run ended): its result is discarded.
    #[error("lease on step `{step_id}` of run `{run_id}`, attempt {attempt}, is lost")]
    LeaseLost {
        run_id: String,
        step_id: String,
        attempt: i32,
    },

    #[error("invalid transition: {what} {from} -> {to}")]
    InvalidTransition {
        what: &'static str,
        from: &'static str,
        to: &'static str,
    },

    #[error("{operator} already answered {what} at step `{step_id}` of run `{run_id}`")]
    AlreadyDecided {
        run_id: String,
        step_id: String,
        operator: String,
        what: String,
    },

    #[error("schedule `{0}` not found")]
    ScheduleNotFound(String),

    /// `schedule_add` of an id that exists with another configuration, without `replace`.
    #[error("schedule `{id}` already exists with a different {differences}")]
    ScheduleExists { id: String, differences: String },

    /// A guarded schedule transition found the schedule in another status.
    #[error("schedule `{id}` is {actual}, not {expected}")]
    ScheduleNotIn {
        id: String,
        expected: &'static str,
        actual: ScheduleStatus,
    },

    /// A scheduler's plan named a tick that is not the schedule's next one (or that another
    /// scheduler recorded first): nothing was recorded.
    #[error("tick {tick} of schedule `{id}` is not the next one to record")]
    TickNotNext { id: String, tick: String },

    #[error("lock `{key}` is held by run `{holder}`")]
    LockHeld { key: String, holder: String },

    #[error("lock `{key}` is not held by run `{run_id}`")]
    LockNotHeld { key: String, run_id: String },

    /// A row that the schema should have made impossible (an unknown status text).
    #[error("corrupt row: {0}")]
    Corrupt(#[from] UnknownStatus),

    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("cannot queue a job (postgres): {0}")]
    QueuePostgres(#[from] apalis_postgres::Error),

    #[error("cannot queue a job (sqlite): {0}")]
    QueueSqlite(#[from] apalis_sqlite::Error),

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the same call may well succeed if made again: the database was unreachable,
    /// the connection was cut or the server is shutting down or starting, a pool had no
    /// connection to give, or the server broke a deadlock or a serialization conflict by
    /// aborting this transaction (which rolled back whole). Never a refusal that names a
    /// state: those say what is, and asking again gets the same answer.
    pub fn is_transient(&self) -> bool {
        let Error::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // Postgres SQLSTATE: 08 connection exception, 57P01-57P03 shutdown or
                // start-up, 40001 serialization failure, 40P01 deadlock. SQLite: 5 BUSY,
                // 6 LOCKED (extended codes keep the primary code in the low byte).
                code.starts_with("08")
                    || matches!(
                        code.as_ref(),
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01"
                    )
                    || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            }),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn faults_of_the_connection_are_transient_and_refusals_are_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::Database(sqlx::Error::Io(io)).is_transient());
        assert!(Error::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!Error::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(!Error::Database(sqlx::Error::PoolClosed).is_transient());
        assert!(!Error::RunNotFound("r".into()).is_transient());
    }
}
