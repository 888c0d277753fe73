//! One attempt of a `sql` step: one statement against a PostgreSQL target, its rows as JSON.
//!
//! Each attempt opens its own connection (no pool: steps are rare, targets many, and a
//! connection must not outlive the attempt that used its credentials) and closes it at the
//! end. The statement runs as one prepared statement in its own implicit transaction, so a
//! query holding two statements (`select 1; select 2`) is refused by PostgreSQL.
//!
//! # Arguments
//!
//! Every arg is bound as a `text` parameter (`$1`, `$2`...): a value is only ever data, never
//! SQL, whatever quotes it holds. Where a column of another type is compared or assigned,
//! PostgreSQL needs a cast (`where id = $1::int`, `values ($1::my_enum)`); comparisons with
//! `text`, `varchar` and `name` columns need none.
//!
//! # Results
//!
//! The outputs are `{"rows": [...], "row_count": n, "truncated": bool}`. Each row is an object
//! keyed by column name (a name used twice keeps the last value). `rows` stops growing at
//! the row limit or when its JSON would pass the bytes limit (`truncated` is then true), but
//! the statement always runs to its end: stopping early would roll back a mutation whose
//! `RETURNING` rows were too many. `row_count` is PostgreSQL's own count for the statement
//! (rows returned by a `SELECT`, rows inserted, updated or deleted), all of them, even when
//! `rows` was truncated.
//!
//! Values map by type: `int2`/`int4`/`int8`/`oid` and `numeric` to numbers (`numeric` exact
//! up to 64-bit integers, else the nearest double), `float4`/`float8` to numbers (NaN and the
//! infinities to strings), `bool`, `text`/`varchar`/`char`/`name`/`citext`/enums to strings,
//! `json`/`jsonb` to their value, `timestamptz` to RFC 3339 in UTC, `timestamp`/`date`/`time`
//! to ISO 8601 text, `uuid` to its text, `bytea` to `\x...` hex, arrays of these to arrays,
//! domains as their base type, NULL to null. Any other type is an error naming the column and
//! suggesting a cast to `text` in the query; it fails the attempt once the statement has run
//! to its end, like a truncation, so a mutation is never cut short by how its rows look.
//!
//! # Ending an attempt
//!
//! The connection sets `statement_timeout` to the step's timeout, and the whole attempt
//! (connect included) is bounded by the same timeout on the client. When the client gives up
//! (timeout or cancel) while the statement runs, it asks the server to cancel that statement
//! (`pg_cancel_backend`, over a second connection, at most [`CANCEL_WAIT`]) before closing
//! its own; `statement_timeout` stops it anyway if that fails. A statement that was ended may
//! still have committed if it finished in the meantime: the engine should treat the effect of
//! a timed-out or cancelled mutating step as unknown.
//!
//! # Credentials
//!
//! Error messages name the target as `host:port/database`, never the password or the query
//! parameters of the URL (PostgreSQL's own messages may name the user). The password comes
//! from the URL only: the worker's `PGPASSWORD` and `~/.pgpass` are not used, as they were
//! meant for the worker's own database, not for whatever host a playbook names.
//!
//! sqlx is built without TLS support (the store shares the build), so connections are
//! plain: `sslmode=prefer` (the default) connects without TLS and `sslmode=require` is an
//! error that says so.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgErrorPosition, PgRow};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Either, Executor, Row, ValueRef};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::{human, percent_decoded};
use super::pg_json::{self, Undecodable};
use crate::secrets::Secrets;

/// A `sql` step's timeout per attempt when neither the step nor the playbook sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Rows kept in the outputs when the caller does not say otherwise.
pub const DEFAULT_ROW_LIMIT: usize = 1000;
/// Bytes of JSON kept in `rows` when the caller does not say otherwise.
pub const DEFAULT_BYTES_LIMIT: usize = 1024 * 1024;
/// How long the client waits for the server to cancel a statement it gave up on.
pub const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// One statement, with its URL and args already rendered.
#[derive(Debug, Clone)]
pub struct SqlQuery {
    /// `postgres://user:password@host:port/database?sslmode=...`
    pub url: String,
    /// One statement with `$1`, `$2`... placeholders.
    pub query: String,
    /// Bound as `text` to `$1`, `$2`...
    pub args: Vec<String>,
    /// From the start of the attempt (connecting included) to the end of the statement.
    pub timeout: Duration,
    pub row_limit: usize,
    /// Bytes of JSON (the rows serialized) kept in `rows`.
    pub bytes_limit: usize,
}

impl SqlQuery {
    /// A query without args, with [`DEFAULT_TIMEOUT`], [`DEFAULT_ROW_LIMIT`] and
    /// [`DEFAULT_BYTES_LIMIT`].
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> SqlQuery {
        SqlQuery {
            url: url.into(),
            query: query.into(),
            args: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            row_limit: DEFAULT_ROW_LIMIT,
            bytes_limit: DEFAULT_BYTES_LIMIT,
        }
    }
}

/// The statement ran to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlOutcome {
    /// `{"rows": [{column: value}], "row_count": n, "truncated": bool}`; see the module docs.
    pub outputs: Value,
}

/// Why the statement did not run to its end. Messages never contain the URL's user,
/// password or query parameters.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(
        "`url` is not a valid PostgreSQL URL ({reason}); write `postgres://user:password@host:port/database`"
    )]
    BadUrl { reason: String },
    #[error("`url` uses the scheme `{scheme}`; a sql step needs a `postgres://` URL")]
    UnsupportedScheme { scheme: String },
    #[error("could not connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("could not connect to PostgreSQL at {target} within {}", human(*.after))]
    ConnectTimeout { target: String, after: Duration },
    #[error("PostgreSQL at {target} refused the query: {message}")]
    Query { target: String, message: String },
    #[error("the query on {target} did not finish within {}", human(*.after))]
    Timeout { target: String, after: Duration },
    #[error(
        "column `{column}` has type `{type_name}`, which has no JSON form here; cast it in the query, e.g. `{column}::text`"
    )]
    UnsupportedType { column: String, type_name: String },
    #[error("column `{column}` of type `{type_name}` holds a value that could not be decoded")]
    Malformed { column: String, type_name: String },
    #[error("lost the connection to PostgreSQL at {target}: {reason}")]
    Transport { target: String, reason: String },
    #[error("cancelled")]
    Cancelled,
}

impl SqlError {
    /// Whether the attempt ran out of time (connecting, or running the statement).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SqlError::Timeout { .. } | SqlError::ConnectTimeout { .. }
        )
    }
}

/// Runs one statement to its end, giving up at `q.timeout` or when `cancel` fires.
pub async fn query(q: SqlQuery, cancel: CancellationToken) -> Result<SqlOutcome, SqlError> {
    let (options, secrets) = connect_options(&q.url)?;
    let target = target(&options);
    if cancel.is_cancelled() {
        return Err(SqlError::Cancelled);
    }
    let deadline = Instant::now() + q.timeout;

    let connecting = tokio::time::timeout_at(deadline, PgConnection::connect_with(&options));
    let mut conn = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(SqlError::Cancelled),
        r = connecting => match r {
            Err(_) => return Err(SqlError::ConnectTimeout { target, after: q.timeout }),
            Ok(Err(e)) => return Err(SqlError::Connect { target, reason: reason(&e, &secrets) }),
            Ok(Ok(c)) => c,
        },
    };

    // Set by `setup`, read after `work` is dropped: the statement to cancel on the server.
    let mut pid: Option<i32> = None;
    let work = async {
        pid = Some(setup(&mut conn, q.timeout).await?);
        run(&mut conn, &q).await
    };
    let ended = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Stop::Cancelled),
        r = tokio::time::timeout_at(deadline, work) => match r {
            Err(_) => Err(Stop::TimedOut),
            Ok(Err(e)) => Err(Stop::Failed(e)),
            Ok(Ok(rows)) => Ok(rows),
        },
    };

    match ended {
        Ok(collected) => {
            // The statement is over and committed; a failure to say goodbye changes nothing.
            let _ = tokio::time::timeout(CANCEL_WAIT, conn.close()).await;
            Ok(SqlOutcome {
                outputs: collected.into_outputs(),
            })
        }
        Err(Stop::Failed(e)) => {
            let _ = tokio::time::timeout(CANCEL_WAIT, conn.close()).await;
            Err(describe(e, &target, &secrets))
        }
        Err(stop) => {
            // Our connection is still open here, so its backend pid cannot have been reused
            // by another session.
            if let Some(pid) = pid {
                cancel_statement(&options, pid).await;
            }
            drop(conn);
            Err(match stop {
                Stop::Cancelled => SqlError::Cancelled,
                _ => SqlError::Timeout {
                    target,
                    after: q.timeout,
                },
            })
        }
    }
}

enum Stop {
    Cancelled,
    TimedOut,
    Failed(Failure),
}

/// What went wrong inside the attempt, before it is described for the user.
enum Failure {
    Sql(sqlx::Error),
    Value {
        column: String,
        type_name: String,
        why: Undecodable,
    },
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Failure {
        Failure::Sql(e)
    }
}

fn connect_options(url_text: &str) -> Result<(PgConnectOptions, Secrets), SqlError> {
    // The parser's messages never quote the input, which holds a password.
    let url = url::Url::parse(url_text.trim()).map_err(|e| SqlError::BadUrl {
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "postgres" | "postgresql" => {}
        other => {
            return Err(SqlError::UnsupportedScheme {
                scheme: other.to_owned(),
            });
        }
    }
    let mut secret_values: Vec<String> = url.password().map(str::to_owned).into_iter().collect();
    let mut url_password = url.password().is_some();
    for (key, value) in url.query_pairs() {
        if key == "password" {
            secret_values.push(value.into_owned());
            url_password = true;
        }
    }
    if let Some(p) = url.password() {
        secret_values.extend(percent_decoded(p));
    }
    let secrets = Secrets::from_values(secret_values);
    let mut options =
        PgConnectOptions::from_str(url_text.trim()).map_err(|e| SqlError::BadUrl {
            reason: secrets.mask(&e.to_string()),
        })?;
    if !url_password {
        // Not the worker's PGPASSWORD or ~/.pgpass: see the module docs.
        options = options.password("");
    }
    if options.get_application_name().is_none() {
        options = options.application_name("runway");
    }
    Ok((options.disable_statement_logging(), secrets))
}

/// `host:port/database`, or `socket-dir/database`.
fn target(options: &PgConnectOptions) -> String {
    let database = options
        .get_database()
        .unwrap_or_else(|| options.get_username());
    match options.get_socket() {
        Some(dir) => format!("{}/{database}", dir.display()),
        None => format!("{}:{}/{database}", options.get_host(), options.get_port()),
    }
}

/// Sets the server-side timeout and learns the backend's pid, in one round trip.
async fn setup(conn: &mut PgConnection, timeout: Duration) -> Result<i32, Failure> {
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
    let (pid, _): (i32, String) =
        sqlx::query_as("select pg_backend_pid(), set_config('statement_timeout', $1, false)")
            .bind(millis)
            .fetch_one(&mut *conn)
            .await?;
    Ok(pid)
}

/// Rows kept so far, within the limits.
struct Collected {
    rows: Vec<Value>,
    /// Bytes of `rows` as JSON: each row, and a comma between rows.
    bytes: usize,
    truncated: bool,
    row_count: u64,
}

impl Collected {
    fn into_outputs(self) -> Value {
        let mut out = Map::new();
        out.insert("rows".into(), Value::Array(self.rows));
        out.insert("row_count".into(), self.row_count.into());
        out.insert("truncated".into(), Value::Bool(self.truncated));
        Value::Object(out)
    }
}

async fn run(conn: &mut PgConnection, q: &SqlQuery) -> Result<Collected, Failure> {
    use futures_util::TryStreamExt;

    // The query is the playbook's own text, which the compiler keeps free of templates;
    // every value reaches it only as a bound parameter below. The statement is a named one
    // (sqlx's default): with an unnamed one, the catalog lookups sqlx makes for a column of
    // an enum or domain type replace it before it runs ("unnamed prepared statement does not
    // exist"). The connection is closed afterwards, so the name is never reused.
    let mut statement = sqlx::query(AssertSqlSafe(q.query.clone()));
    for arg in &q.args {
        statement = statement.bind(arg.clone());
    }
    let mut collected = Collected {
        rows: Vec::new(),
        bytes: 2,
        truncated: false,
        row_count: 0,
    };
    let mut undecodable = None;
    let mut stream = conn.fetch_many(statement);
    // Read to the end even past the limits or a value that has no JSON form: see "Results"
    // in the module docs.
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(done) => collected.row_count += done.rows_affected(),
            Either::Right(row) if !collected.truncated && undecodable.is_none() => {
                undecodable = keep(&mut collected, &row, q).err();
            }
            Either::Right(_) => {}
        }
    }
    match undecodable {
        Some(failure) => Err(failure),
        None => Ok(collected),
    }
}

/// Adds `row` to the kept rows, or marks them truncated if it does not fit.
fn keep(collected: &mut Collected, row: &PgRow, q: &SqlQuery) -> Result<(), Failure> {
    if collected.rows.len() >= q.row_limit {
        collected.truncated = true;
        return Ok(());
    }
    let room = q.bytes_limit.saturating_sub(collected.bytes);
    // The raw values bound the work: a 100 MB cell is not decoded to find it is too big.
    let mut raw = 0usize;
    for i in 0..row.columns().len() {
        let value = row.try_get_raw(i)?;
        if !value.is_null() {
            raw += value.as_bytes().map_or(0, <[u8]>::len);
        }
    }
    if raw > room {
        collected.truncated = true;
        return Ok(());
    }
    let object = row_json(row)?;
    let size = serde_json::to_vec(&object).map_or(usize::MAX, |v| v.len())
        + usize::from(!collected.rows.is_empty());
    if size > room {
        collected.truncated = true;
        return Ok(());
    }
    collected.bytes += size;
    collected.rows.push(object);
    Ok(())
}

fn row_json(row: &PgRow) -> Result<Value, Failure> {
    let mut object = Map::new();
    for column in row.columns() {
        let value = row.try_get_raw(column.ordinal())?;
        let json = if value.is_null() {
            Value::Null
        } else {
            let bytes = value.as_bytes().map_err(|_| Failure::Value {
                column: column.name().to_owned(),
                type_name: column.type_info().to_string(),
                why: Undecodable::Malformed,
            })?;
            pg_json::decode(column.type_info(), bytes).map_err(|why| Failure::Value {
                column: column.name().to_owned(),
                type_name: column.type_info().to_string(),
                why,
            })?
        };
        object.insert(column.name().to_owned(), json);
    }
    Ok(Value::Object(object))
}

fn describe(failure: Failure, target: &str, secrets: &Secrets) -> SqlError {
    match failure {
        Failure::Value {
            column,
            type_name,
            why: Undecodable::Type,
        } => SqlError::UnsupportedType { column, type_name },
        Failure::Value {
            column, type_name, ..
        } => SqlError::Malformed { column, type_name },
        Failure::Sql(e) => match e.as_database_error() {
            Some(db) => SqlError::Query {
                target: target.to_owned(),
                message: secrets.mask(&match db.try_downcast_ref::<PgDatabaseError>() {
                    Some(pg) => postgres_message(pg),
                    None => db.message().to_owned(),
                }),
            },
            None => SqlError::Transport {
                target: target.to_owned(),
                reason: reason(&e, secrets),
            },
        },
    }
}

/// PostgreSQL's message, with its SQLSTATE, position, detail and hint when it gave them.
fn postgres_message(pg: &PgDatabaseError) -> String {
    let mut message = format!("{} (SQLSTATE {})", pg.message(), pg.code());
    if let Some(PgErrorPosition::Original(at)) = pg.position() {
        message.push_str(&format!(" at character {at} of the query"));
    }
    if let Some(detail) = pg.detail() {
        message.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = pg.hint() {
        message.push_str(&format!("; hint: {hint}"));
    }
    message
}

/// What a driver error says happened, without the driver's framing.
fn reason(e: &sqlx::Error, secrets: &Secrets) -> String {
    let text = match e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) => postgres_message(pg),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    };
    secrets.mask(&text)
}

/// Asks the server to cancel what backend `pid` is running, over a second connection.
/// Best effort: `statement_timeout` ends the statement anyway if this fails.
async fn cancel_statement(options: &PgConnectOptions, pid: i32) {
    let cancelling = async {
        let mut conn = PgConnection::connect_with(options).await?;
        sqlx::query("select pg_cancel_backend($1)")
            .bind(pid)
            .execute(&mut conn)
            .await?;
        conn.close().await
    };
    match tokio::time::timeout(CANCEL_WAIT, cancelling).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "could not cancel the statement on the server"),
        Err(_) => tracing::debug!("cancelling the statement on the server timed out"),
    }
}
