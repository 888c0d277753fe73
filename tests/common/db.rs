//! Fresh databases for the store's conformance suite: every test body runs once against a
//! SQLite file in a temporary directory and once against a Postgres database of its own.
//!
//! Postgres: the server is `RUNWAY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates `runway_t_<ulid>` and
//! drops it afterwards, whether the body passed or panicked. An unreachable server fails
//! the test with a message pointing at `scripts/test`: a store suite that silently skipped
//! its production backend would prove nothing.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;

use runway::store::{QUEUE, StepJob, Store};
use sqlx::{AssertSqlSafe, PgPool};

pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated store on a fresh database, and the URL it was opened with.
#[derive(Debug, Clone)]
pub struct Db {
    pub store: Store,
    pub url: String,
}

/// Runs `test` against a fresh database of `backend`, then removes the database.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temp dir");
            // A directory that does not exist yet: connect creates it.
            let url = format!("sqlite://{}", dir.path().join("state/runway.db").display());
            let store = Store::connect(&url).await.expect("SQLite store opens");
            let outcome = tokio::spawn(test(Db {
                store: store.clone(),
                url,
            }))
            .await;
            store.close().await;
            finish(outcome);
        }
        Backend::Postgres => {
            let server = postgres_server();
            let admin = PgPool::connect(&server).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is unreachable at {server}: {e}. Run `scripts/test`, which \
                     provisions one, or set RUNWAY_TEST_POSTGRES_URL to a server URL."
                )
            });
            let name = format!(
                "runway_t_{}",
                ulid::Ulid::generate().to_string().to_lowercase()
            );
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("CREATE DATABASE");
            let url = with_database(&server, &name);
            let outcome = match Store::connect(&url).await {
                Ok(store) => {
                    let outcome = tokio::spawn(test(Db {
                        store: store.clone(),
                        url,
                    }))
                    .await;
                    store.close().await;
                    Ok(outcome)
                }
                Err(e) => Err(e),
            };
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .expect("DROP DATABASE");
            admin.close().await;
            finish(outcome.expect("Postgres store opens"));
        }
    }
}

fn finish(outcome: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:?}"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("test task failed: {e}"),
    }
}

pub fn postgres_server() -> String {
    std::env::var("RUNWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// `server` (a postgres:// URL) with its database replaced by `name`, query kept.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// One row of apalis' job table, in our queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub job: StepJob,
    /// Unix seconds.
    pub run_at: i64,
    pub max_attempts: i32,
    pub status: String,
}

/// Every job in our queue (apalis' `apalis.jobs` on Postgres, `Jobs` on SQLite), by
/// `run_at` then id.
pub async fn jobs(store: &Store) -> Vec<QueuedJob> {
    let rows: Vec<(Vec<u8>, i64, i32, String)> = match store {
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT job, extract(epoch FROM run_at)::bigint, max_attempts, status \
             FROM apalis.jobs WHERE job_type = $1 ORDER BY run_at, id",
        )
        .bind(QUEUE)
        .fetch_all(pool)
        .await
        .expect("apalis.jobs"),
        Store::Sqlite(pool) => sqlx::query_as(
            "SELECT job, run_at, max_attempts, status FROM Jobs WHERE job_type = $1 \
             ORDER BY run_at, id",
        )
        .bind(QUEUE)
        .fetch_all(pool)
        .await
        .expect("Jobs"),
    };
    rows.into_iter()
        .map(|(job, run_at, max_attempts, status)| QueuedJob {
            job: serde_json::from_slice(&job).expect("a StepJob payload"),
            run_at,
            max_attempts,
            status,
        })
        .collect()
}

/// The (run, step) of every pending job. A set: jobs pushed in the same second have no
/// order that a test could rely on.
pub async fn pending(store: &Store) -> BTreeSet<(String, String)> {
    jobs(store)
        .await
        .into_iter()
        .filter(|j| j.status == "Pending")
        .map(|j| (j.job.run_id, j.job.step_id))
        .collect()
}

/// Runs one statement directly on the database (for what the store must refuse, or what
/// only an outsider would do); returns the database's error text if it refused.
pub async fn exec(store: &Store, sql: &str) -> Result<u64, String> {
    let result = match store {
        Store::Postgres(pool) => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Store::Sqlite(pool) => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    };
    result.map_err(|e| e.to_string())
}

/// Declares each listed `async fn NAME(db: Db) -> anyhow::Result<()>` as two tests,
/// `NAME::sqlite` and `NAME::postgres`, with the same body.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::db::run($crate::db::Backend::Sqlite, super::$name).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::db::run($crate::db::Backend::Postgres, super::$name).await
                }
            }
        )*
    };
}
