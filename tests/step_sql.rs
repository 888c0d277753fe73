//! Black-box tests of the `sql` executor against a real PostgreSQL: the server at
//! `RUNWAY_TEST_POSTGRES_URL` (set by `scripts/test`; default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test gets a database of its own,
//! created from that server's URL and dropped afterwards whether the test passed or not. An
//! unreachable server fails the test: a suite that skipped would prove nothing.

use std::future::Future;
use std::time::Duration;

use runway::exec::sql::{self, SqlError, SqlOutcome, SqlQuery};
use serde_json::{Value, json};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use tokio_util::sync::CancellationToken;

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Longer than any query here should take; reaching it means the executor hung.
const HANG: Duration = Duration::from_secs(60);
/// A step timeout short enough to wait out in a test.
const SHORT: Duration = Duration::from_millis(300);
const PASSWORD: &str = "hunter2-pa55word";

fn server() -> String {
    std::env::var("RUNWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// `url` (a postgres:// URL) with its database replaced by `name`, its query kept.
fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("RUNWAY_TEST_POSTGRES_URL is a URL");
    url.set_path(name);
    url.to_string()
}

/// `url` with `password` put in its userinfo.
fn with_password(url: &str, password: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

async fn admin() -> PgConnection {
    let url = server();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {url}: {e}. Run `scripts/test`, which provisions one, \
             or set RUNWAY_TEST_POSTGRES_URL to a server URL."
        )
    })
}

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs `test` with the URL of a fresh database, then drops the database.
async fn with_db<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!(
        "runway_sql_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let mut admin = admin().await;
    exec(&mut admin, &format!("create database {name}")).await;
    let outcome = tokio::spawn(test(with_database(&server(), &name))).await;
    exec(
        &mut admin,
        &format!("drop database if exists {name} with (force)"),
    )
    .await;
    admin.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .expect("the executor did not return")
}

async fn run(q: SqlQuery) -> Result<SqlOutcome, SqlError> {
    bounded(sql::query(q, CancellationToken::new())).await
}

fn q(url: &str, query: &str, args: &[&str]) -> SqlQuery {
    let mut q = SqlQuery::new(url, query);
    q.args = args.iter().map(|a| (*a).to_owned()).collect();
    q
}

async fn rows(url: &str, query: &str, args: &[&str]) -> Value {
    let outcome = run(q(url, query, args))
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    outcome.outputs["rows"].clone()
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap()
}

/// Whether a statement containing `marker` is running, other than the one asking.
async fn running(conn: &mut PgConnection, marker: &str) -> bool {
    sqlx::query_scalar::<_, i64>(
        "select count(*) from pg_stat_activity \
         where state = 'active' and pid <> pg_backend_pid() and strpos(query, $1) > 0",
    )
    .bind(marker)
    .fetch_one(conn)
    .await
    .unwrap()
        > 0
}

/// Polls until `running(marker)` is `want`, failing the test after a generous bound.
async fn wait_running(conn: &mut PgConnection, marker: &str, want: bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while running(conn, marker).await != want {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the statement marked {marker} is {}running",
        if want { "not " } else { "still " }
    );
}

#[tokio::test]
async fn args_are_bound_as_data_never_as_sql() {
    with_db(|url| async move {
        let mut c = connect(&url).await;
        exec(
            &mut c,
            "create table x (id int); create table names (name text)",
        )
        .await;
        let hostile = ["'; drop table x; --", r#"O'Brien "the" \ $1 $$"#];
        for value in hostile {
            let out = run(q(
                &url,
                "insert into names (name) values ($1) returning name",
                &[value],
            ))
            .await
            .unwrap();
            assert_eq!(out.outputs["rows"], json!([{"name": value}]));
            assert_eq!(out.outputs["row_count"], 1);
        }
        // The table the first value names is still there, and the values are stored as given.
        assert_eq!(
            rows(&url, "select count(*)::int as n from x", &[]).await,
            json!([{"n": 0}])
        );
        assert_eq!(
            rows(
                &url,
                "select name from names where name = $1 or name = $2 order by name",
                &hostile
            )
            .await,
            json!([{"name": hostile[0]}, {"name": hostile[1]}])
        );
    })
    .await;
}

#[tokio::test]
async fn args_compare_with_text_and_name_columns_and_cast_to_other_types() {
    with_db(|url| async move {
        let mut c = connect(&url).await;
        exec(&mut c, "create schema greenwood_high").await;
        // The shipped go-live playbook's query, as it is written there.
        assert_eq!(
            rows(
                &url,
                "select count(*)::int as n from information_schema.schemata where schema_name = $1",
                &["greenwood_high"]
            )
            .await,
            json!([{"n": 1}])
        );
        assert_eq!(
            rows(&url, "select $1::int + 1 as n, $2::text as t", &["41", "x"]).await,
            json!([{"n": 42, "t": "x"}])
        );
    })
    .await;
}

#[tokio::test]
async fn column_types_map_to_json() {
    with_db(|url| async move {
        let mut c = connect(&url).await;
        exec(
            &mut c,
            "create type mood as enum ('ok', 'meh'); create domain slug as text",
        )
        .await;
        let got = rows(
            &url,
            "select 7::int2 as small, 42::int4 as int, 9007199254740993::int8 as big, \
             12.50::numeric as num, 1.5::float8 as float, true as yes, 'text'::text as txt, \
             'var'::varchar as var, '{\"a\": [1, null]}'::jsonb as doc, '[1]'::json as js, \
             '2024-01-02 03:04:05.123456+02'::timestamptz as at, null::text as nothing, \
             '{1,2,null}'::int[] as list, '{{a,b},{c,d}}'::text[] as grid, \
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as id, '2024-02-29'::date as day, \
             '2024-01-02 03:04:05'::timestamp as local, 'meh'::mood as feeling, \
             'greenwood'::slug as slug, '\\xdead'::bytea as raw, \
             'NaN'::float8 as nan, -0.001::numeric as tiny",
            &[],
        )
        .await;
        assert_eq!(
            got,
            json!([{
                "small": 7,
                "int": 42,
                "big": 9007199254740993i64,
                "num": 12.5,
                "float": 1.5,
                "yes": true,
                "txt": "text",
                "var": "var",
                "doc": {"a": [1, null]},
                "js": [1],
                "at": "2024-01-02T01:04:05.123456Z",
                "nothing": null,
                "list": [1, 2, null],
                "grid": [["a", "b"], ["c", "d"]],
                "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "day": "2024-02-29",
                "local": "2024-01-02T03:04:05",
                "feeling": "meh",
                "slug": "greenwood",
                "raw": "\\xdead",
                "nan": "NaN",
                "tiny": -0.001,
            }])
        );
    })
    .await;
}

#[tokio::test]
async fn a_type_without_a_json_form_names_the_column_and_the_cast() {
    with_db(|url| async move {
        let err = run(q(&url, "select '10.0.0.1'::inet as addr", &[]))
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::UnsupportedType { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "column `addr` has type `INET`, which has no JSON form here; cast it in the query, e.g. `addr::text`"
        );
        assert_eq!(
            rows(&url, "select '10.0.0.1'::inet::text as addr", &[]).await,
            json!([{"addr": "10.0.0.1/32"}])
        );
    })
    .await;
}

#[tokio::test]
async fn rows_past_the_row_limit_are_dropped_and_marked() {
    with_db(|url| async move {
        let mut query = q(&url, "select g as n from generate_series(1, 50) g", &[]);
        query.row_limit = 10;
        let out = run(query).await.unwrap().outputs;
        assert_eq!(out["rows"].as_array().unwrap().len(), 10);
        assert_eq!(out["rows"][9], json!({"n": 10}));
        assert_eq!(out["row_count"], 50);
        assert_eq!(out["truncated"], true);

        let mut query = q(&url, "select g as n from generate_series(1, 10) g", &[]);
        query.row_limit = 10;
        let out = run(query).await.unwrap().outputs;
        assert_eq!(out["truncated"], false);
        assert_eq!(out["row_count"], 10);
    })
    .await;
}

#[tokio::test]
async fn rows_past_the_bytes_limit_are_dropped_and_marked() {
    with_db(|url| async move {
        let mut query = q(
            &url,
            "select repeat('x', 1000) as s from generate_series(1, 100)",
            &[],
        );
        query.bytes_limit = 5000;
        let out = run(query).await.unwrap().outputs;
        let kept = out["rows"].as_array().unwrap();
        assert_eq!(kept.len(), 4, "each row is about 1 kB of JSON");
        assert!(serde_json::to_vec(&out["rows"]).unwrap().len() <= 5000);
        assert_eq!(out["row_count"], 100);
        assert_eq!(out["truncated"], true);
    })
    .await;
}

#[tokio::test]
async fn a_mutation_completes_even_when_its_returned_rows_are_truncated() {
    with_db(|url| async move {
        let mut c = connect(&url).await;
        exec(&mut c, "create table items (id int)").await;
        let mut query = q(
            &url,
            "insert into items select g from generate_series(1, 20000) g returning id",
            &[],
        );
        query.row_limit = 5;
        let out = run(query).await.unwrap().outputs;
        assert_eq!(out["truncated"], true);
        assert_eq!(out["row_count"], 20000);
        assert_eq!(
            rows(&url, "select count(*)::int as n from items", &[]).await,
            json!([{"n": 20000}])
        );
        // A statement that returns no rows reports what it affected.
        let out = run(q(&url, "delete from items where id <= $1::int", &["100"]))
            .await
            .unwrap()
            .outputs;
        assert_eq!(
            out,
            json!({"rows": [], "row_count": 100, "truncated": false})
        );
    })
    .await;
}

#[tokio::test]
async fn a_value_without_a_json_form_fails_only_after_the_mutation_completed() {
    with_db(|url| async move {
        let mut c = connect(&url).await;
        exec(&mut c, "create table items (id int)").await;
        let err = run(q(
            &url,
            "insert into items select g from generate_series(1, 20000) g \
             returning id, '10.0.0.1'::inet as addr",
            &[],
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, SqlError::UnsupportedType { .. }), "{err:?}");
        assert_eq!(
            rows(&url, "select count(*)::int as n from items", &[]).await,
            json!([{"n": 20000}])
        );
    })
    .await;
}

#[tokio::test]
async fn a_postgres_error_is_reported_with_its_message_and_code() {
    with_db(|url| async move {
        let err = run(q(&url, "select * from no_such_table", &[]))
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::Query { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(r#"relation "no_such_table" does not exist (SQLSTATE 42P01)"#),
            "{message}"
        );
        assert!(message.contains("at character 15"), "{message}");

        let err = run(q(&url, "select 1; select 2", &[])).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot insert multiple commands into a prepared statement"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_bad_or_unreachable_url_is_reported_without_the_password() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://runway:{PASSWORD}@127.0.0.1:{port}/tenants");
    let err = run(q(&url, "select 1", &[])).await.unwrap_err();
    assert!(matches!(err, SqlError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "could not connect to PostgreSQL at 127.0.0.1:{port}/tenants: "
        )),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD));

    // A real server, a database that does not exist.
    let url = with_password(&with_database(&server(), "runway_no_such_db"), PASSWORD);
    let err = run(q(&url, "select 1", &[])).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SqlError::Connect { .. }), "{err:?}");
    assert!(
        message.contains(r#"database "runway_no_such_db" does not exist"#),
        "{message}"
    );
    assert!(!message.contains(PASSWORD), "{message}");

    // sqlx is built without TLS: a URL that requires it is refused, and says why.
    let url = with_password(&format!("{}?sslmode=require", server()), PASSWORD);
    let err = run(q(&url, "select 1", &[])).await.unwrap_err();
    assert!(matches!(err, SqlError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("without TLS support"), "{err}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");

    let err = run(q("not a url", "select 1", &[])).await.unwrap_err();
    assert!(matches!(err, SqlError::BadUrl { .. }), "{err:?}");
    let err = run(q(
        &format!("mysql://root:{PASSWORD}@127.0.0.1/db"),
        "select 1",
        &[],
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`url` uses the scheme `mysql`; a sql step needs a `postgres://` URL"
    );
    let err = run(q(
        &format!("postgres://runway:{PASSWORD}@127.0.0.1:99999/db"),
        "select 1",
        &[],
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, SqlError::BadUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
}

#[tokio::test]
async fn a_query_past_its_timeout_is_stopped_on_the_server_too() {
    with_db(|url| async move {
        let marker = format!("timeout-{}", ulid::Ulid::generate());
        let mut query = q(&url, &format!("select pg_sleep(30) -- {marker}"), &[]);
        query.timeout = SHORT;
        let err = run(query).await.unwrap_err();
        assert!(matches!(err, SqlError::Timeout { .. }), "{err:?}");
        assert!(err.is_timeout());
        assert!(
            err.to_string().ends_with("did not finish within 300ms"),
            "{err}"
        );
        wait_running(&mut connect(&url).await, &marker, false).await;
    })
    .await;
}

#[tokio::test]
async fn cancelling_stops_the_statement_on_the_server() {
    with_db(|url| async move {
        let marker = format!("cancel-{}", ulid::Ulid::generate());
        let cancel = CancellationToken::new();
        let attempt = tokio::spawn(sql::query(
            q(&url, &format!("select pg_sleep(30) -- {marker}"), &[]),
            cancel.clone(),
        ));
        let mut watcher = connect(&url).await;
        wait_running(&mut watcher, &marker, true).await;
        cancel.cancel();
        let err = bounded(attempt).await.unwrap().unwrap_err();
        assert!(matches!(err, SqlError::Cancelled), "{err:?}");
        // pg_sleep(30) would hold on for half a minute had the server not been told.
        wait_running(&mut watcher, &marker, false).await;
    })
    .await;
}

#[tokio::test]
async fn a_statement_without_rows_has_empty_rows() {
    with_db(|url| async move {
        let out = run(q(&url, "create table t (id int)", &[]))
            .await
            .unwrap()
            .outputs;
        assert_eq!(out, json!({"rows": [], "row_count": 0, "truncated": false}));
    })
    .await;
}
