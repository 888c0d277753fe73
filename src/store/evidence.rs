//! Reading a run's evidence: everything a report or `runway verify` needs, read in one
//! snapshot so the rows, the events and the chain head agree with each other.
//!
//! `evidence_reads!()` expands, like `ops::transitions!()`, inside `store::postgres` and
//! `store::sqlite`; each backend provides `begin_read(pool)`, a read-only transaction that
//! sees one consistent state (`REPEATABLE READ` on Postgres; on SQLite in WAL mode a read
//! transaction is a snapshot from its first read).

use super::model::{Event, Run, StepRun};

/// The head of a run's chain as the database recorded it (`run_heads`, moved forward by a
/// trigger on every event inserted): what the chain must end at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    /// The head of a chain with no event: the first event links to [`GENESIS`].
    ///
    /// [`GENESIS`]: super::chain::GENESIS
    pub fn genesis() -> Head {
        Head {
            seq: 0,
            hash: super::chain::GENESIS.to_owned(),
        }
    }
}

/// A run's evidence as stored, read in one transaction.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub run: Run,
    /// In `position` order.
    pub steps: Vec<StepRun>,
    /// In `seq` order.
    pub events: Vec<Event>,
    /// `None` only for a run with no events, which the store never writes.
    pub head: Option<Head>,
    /// The run that started this one (`invoke`, a follow-up), if any.
    pub parent: Option<Run>,
    /// Runs started by this one (`invoke` children, follow-ups), oldest first.
    pub children: Vec<Run>,
}

macro_rules! evidence_reads {
    () => {
        pub(in crate::store) async fn evidence_of_run(
            pool: &Pool,
            run_id: &str,
        ) -> Result<$crate::store::evidence::Evidence> {
            let mut tx = begin_read(pool).await?;
            let run: Run = sqlx::query_as::<_, RunRow>("SELECT * FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?
                .try_into()?;
            let steps = convert(
                sqlx::query_as::<_, StepRow>(
                    "SELECT * FROM step_runs WHERE run_id = $1 ORDER BY position",
                )
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?,
            )?;
            let events = convert(
                sqlx::query_as::<_, EventRow>(
                    "SELECT * FROM events WHERE run_id = $1 ORDER BY seq",
                )
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?,
            )?;
            let head: Option<(i64, String)> =
                sqlx::query_as("SELECT seq, hash FROM run_heads WHERE run_id = $1")
                    .bind(run_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let parent = match &run.parent_run_id {
                Some(parent) => sqlx::query_as::<_, RunRow>("SELECT * FROM runs WHERE id = $1")
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(Run::try_from)
                    .transpose()?,
                None => None,
            };
            let children = convert(
                sqlx::query_as::<_, RunRow>(
                    "SELECT * FROM runs WHERE parent_run_id = $1 ORDER BY created_at, id",
                )
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?,
            )?;
            tx.commit().await?;
            Ok($crate::store::evidence::Evidence {
                run,
                steps,
                events,
                head: head.map(|(seq, hash)| $crate::store::evidence::Head { seq, hash }),
                parent,
                children,
            })
        }
    };
}

pub(super) use evidence_reads;
