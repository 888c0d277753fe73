//! The tenant data of the simulated platform, in a real PostgreSQL: provisioning a school's
//! schema (35 tables, the RBAC roles, a bootstrap admin), the 8 preflight checks of seed 000
//! Phase A step 1 and the first admin of step 3 (the CSV import of step 2 is `import.rs`).
//!
//! The preflight queries ask what the go-live playbook's `sql` steps ask (schemata, base
//! tables, `<schema>.roles(name)`, `<schema>.users(role, password_hash, is_active)`), so the
//! script and the playbook agree by construction.
//!
//! Passwords are stored as `sim-sha256$SALT$HEX` (salted SHA-256, labelled as the sim's):
//! the seed's platform uses bcrypt, which the preflight does not look at.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Row as _};

use super::Error;

/// The seed's `migrations_applied` threshold.
pub const MIN_TABLES: i64 = 30;

/// Every table of a tenant schema. The first ones have the columns the preflight, the import
/// and the admin onboarding use; the rest stand for the platform's other modules.
const TABLES: &[(&str, &str)] = &[
    (
        "roles",
        "id bigserial primary key, name text not null unique, created_at timestamptz not null default now()",
    ),
    (
        "users",
        "id bigserial primary key, email text not null unique, role text not null, password_hash text, \
         is_active boolean not null default true, must_change_password boolean not null default false, \
         created_at timestamptz not null default now()",
    ),
    (
        "audit_log",
        "id bigserial primary key, event text not null, actor text, detail jsonb not null default '{}', \
         at timestamptz not null default now()",
    ),
    (
        "students",
        "id bigserial primary key, student_id text not null unique, first_name text not null, \
         last_name text not null, email text unique, class_code text, updated_at timestamptz not null default now()",
    ),
    (
        "teachers",
        "id bigserial primary key, teacher_id text not null unique, first_name text not null, \
         last_name text not null, email text unique, subject_code text, updated_at timestamptz not null default now()",
    ),
    (
        "classes",
        "id bigserial primary key, class_code text not null unique, name text not null, grade integer, \
         updated_at timestamptz not null default now()",
    ),
    (
        "subjects",
        "id bigserial primary key, subject_code text not null unique, name text not null, \
         updated_at timestamptz not null default now()",
    ),
    (
        "import_batches",
        "id bigserial primary key, entity text not null, file text not null, rows integer not null, \
         inserted integer not null, updated integer not null, at timestamptz not null default now()",
    ),
    ("permissions", ""),
    ("role_permissions", ""),
    ("sessions", ""),
    ("login_attempts", ""),
    ("two_factor_secrets", ""),
    ("academic_years", ""),
    ("terms", ""),
    ("class_subjects", ""),
    ("guardians", ""),
    ("student_guardians", ""),
    ("teacher_subjects", ""),
    ("enrollments", ""),
    ("timetable_slots", ""),
    ("attendance_sessions", ""),
    ("attendance_records", ""),
    ("assignments", ""),
    ("assignment_submissions", ""),
    ("exams", ""),
    ("exam_questions", ""),
    ("exam_submissions", ""),
    ("grades", ""),
    ("report_cards", ""),
    ("report_exports", ""),
    ("announcements", ""),
    ("messages", ""),
    ("notifications", ""),
    ("settings", ""),
];

/// Columns of the tables that stand for other modules.
const GENERIC_COLUMNS: &str = "id bigserial primary key, data jsonb not null default '{}', created_at timestamptz not null default now()";

/// The seed's roles, as `rbac_seeded` wants them.
pub const ROLES: [&str; 3] = ["Admin", "Teacher", "Student"];

/// The schema of a school: its slug with `-` as `_` (`greenwood-high` -> `greenwood_high`),
/// after the slug pattern of the playbooks.
pub fn schema_of(slug: &str) -> Result<String, Error> {
    let valid = (3..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(Error::Invalid(format!(
            "`{slug}` is not a school slug (3-40 of a-z, 0-9 and -)"
        )));
    }
    let schema = slug.replace('-', "_");
    Ok(if schema.starts_with(|c: char| c.is_ascii_digit()) {
        format!("t_{schema}")
    } else {
        schema
    })
}

/// The bootstrap admin provisioning seeds (`.invalid`: never a real mailbox).
pub fn bootstrap_admin(slug: &str) -> String {
    format!("bootstrap-admin@{slug}.invalid")
}

/// `"schema"."table"`. Schemas come from [`schema_of`] or a playbook param pattern, so they
/// hold no quote; doubling any is still the right quoting.
pub(super) fn ident(schema: &str, table: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        table.replace('"', "\"\"")
    )
}

/// One connection for one command: the sim makes a handful of statements per invocation.
pub async fn connect(url: &str) -> Result<PgConnection, Error> {
    let options = PgConnectOptions::from_str(url)?;
    Ok(
        tokio::time::timeout(Duration::from_secs(10), options.connect())
            .await
            .map_err(|_| Error::Invalid("PostgreSQL did not answer within 10s".into()))??,
    )
}

/// Makes sure the database of `url` exists (creating it through the server's `postgres`
/// database); with `fresh`, drops and recreates it first.
pub async fn ensure_database(url: &str, fresh: bool) -> Result<(), Error> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::Invalid(format!("the database URL does not parse: {e}")))?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::Invalid(format!(
            "the database URL must name its database (letters, digits, _), not `{name}`"
        )));
    }
    if fresh && matches!(name.as_str(), "postgres" | "template0" | "template1") {
        return Err(Error::Invalid(format!(
            "refusing to drop the `{name}` database; name a database of the sim's own"
        )));
    }
    let mut maintenance = parsed.clone();
    maintenance.set_path("/postgres");
    let mut admin = connect(maintenance.as_str()).await?;
    if fresh {
        sqlx::query(AssertSqlSafe(format!(
            "drop database if exists \"{name}\" with (force)"
        )))
        .execute(&mut admin)
        .await?;
    }
    let exists: Option<i32> = sqlx::query_scalar("select 1 from pg_database where datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        sqlx::query(AssertSqlSafe(format!("create database \"{name}\"")))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await?;
    connect(url).await?.close().await?;
    Ok(())
}

/// What provisioning did.
#[derive(Debug)]
pub struct Provisioned {
    pub tables: i64,
    pub roles_seeded: bool,
    pub admin_ready: bool,
}

/// Creates the schema, its tables, the roles and a bootstrap admin, in one transaction and
/// idempotently (a retried provision changes nothing). With `complete` false (the
/// `failing-preflight` fault) it stops half-way: no roles, an inactive admin without a
/// password hash.
pub async fn provision(
    conn: &mut PgConnection,
    slug: &str,
    schema: &str,
    complete: bool,
) -> Result<Provisioned, Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(AssertSqlSafe(format!(
        "create schema if not exists \"{}\"",
        schema.replace('"', "\"\"")
    )))
    .execute(&mut *tx)
    .await?;
    for (table, columns) in TABLES {
        let columns = if columns.is_empty() {
            GENERIC_COLUMNS
        } else {
            columns
        };
        sqlx::query(AssertSqlSafe(format!(
            "create table if not exists {} ({columns})",
            ident(schema, table)
        )))
        .execute(&mut *tx)
        .await?;
    }
    if complete {
        for role in ROLES {
            sqlx::query(AssertSqlSafe(format!(
                "insert into {} (name) values ($1) on conflict (name) do nothing",
                ident(schema, "roles")
            )))
            .bind(role)
            .execute(&mut *tx)
            .await?;
        }
    }
    let hash = complete.then(|| hash_password(&random_password()));
    sqlx::query(AssertSqlSafe(format!(
        "insert into {} (email, role, password_hash, is_active) values ($1, 'admin', $2, $3) \
         on conflict (email) do nothing",
        ident(schema, "users")
    )))
    .bind(bootstrap_admin(slug))
    .bind(hash)
    .bind(complete)
    .execute(&mut *tx)
    .await?;
    audit(
        &mut tx,
        schema,
        "tenant.provisioned",
        "provision:tenant",
        json!({ "slug": slug }),
    )
    .await?;
    tx.commit().await?;
    Ok(Provisioned {
        tables: count_tables(conn, schema).await?,
        roles_seeded: complete,
        admin_ready: complete,
    })
}

pub(super) async fn audit(
    conn: &mut PgConnection,
    schema: &str,
    event: &str,
    actor: &str,
    detail: Value,
) -> Result<(), Error> {
    sqlx::query(AssertSqlSafe(format!(
        "insert into {} (event, actor, detail) values ($1, $2, $3)",
        ident(schema, "audit_log")
    )))
    .bind(event)
    .bind(actor)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

async fn count_tables(conn: &mut PgConnection, schema: &str) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_schema = $1 and table_type = 'BASE TABLE'",
    )
    .bind(schema)
    .fetch_one(conn)
    .await?)
}

pub(super) async fn table_exists(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(ident(schema, table))
        .fetch_one(conn)
        .await?)
}

/// One of the 8 preflight checks.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub what: &'static str,
    pub critical: bool,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn json(&self) -> Value {
        json!({
            "check": self.name,
            "critical": self.critical,
            "ok": self.ok,
            "detail": self.detail,
        })
    }
}

/// Whether activation is allowed: every critical check passed.
pub fn allowed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok || !c.critical)
}

/// What the preflight learns outside the database.
#[derive(Debug, Clone)]
pub struct Probes {
    /// `Ok(what answered)` when the dashboard answered, else why not.
    pub telemetry: Result<String, String>,
    pub redis_ok: bool,
    pub pilot_mode: bool,
}

/// The seed's 8 checks, in its order. `conn` is `None` when the sim has no database: the
/// database checks then fail, saying so.
pub async fn preflight(
    conn: Option<&mut PgConnection>,
    schema: &str,
    probes: &Probes,
) -> Result<Vec<Check>, Error> {
    let mut checks = Vec::with_capacity(8);
    let check = |name, what, critical, ok: bool, detail: String| Check {
        name,
        what,
        critical,
        ok,
        detail,
    };
    match conn {
        None => {
            for (name, what) in [
                ("schema_exists", "PostgreSQL schema created"),
                ("migrations_applied", ">=30 tables present"),
                ("rbac_seeded", "Admin/Teacher/Student roles exist"),
                ("admin_exists", "At least one admin user"),
                ("admin_login_ready", "Admin has password hash, is active"),
            ] {
                checks.push(check(
                    name,
                    what,
                    true,
                    false,
                    "no database configured".into(),
                ));
            }
        }
        Some(conn) => {
            let schemas: i64 = sqlx::query_scalar(
                "select count(*) from information_schema.schemata where schema_name = $1",
            )
            .bind(schema)
            .fetch_one(&mut *conn)
            .await?;
            checks.push(check(
                "schema_exists",
                "PostgreSQL schema created",
                true,
                schemas == 1,
                if schemas == 1 {
                    format!("schema {schema}")
                } else {
                    format!("no schema {schema}")
                },
            ));
            let tables = count_tables(conn, schema).await?;
            checks.push(check(
                "migrations_applied",
                ">=30 tables present",
                true,
                tables >= MIN_TABLES,
                format!("{tables} tables"),
            ));
            let roles: i64 = if table_exists(conn, schema, "roles").await? {
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "select count(distinct lower(name)) from {} where lower(name) in ('admin', 'teacher', 'student')",
                    ident(schema, "roles")
                )))
                .fetch_one(&mut *conn)
                .await?
            } else {
                0
            };
            checks.push(check(
                "rbac_seeded",
                "Admin/Teacher/Student roles exist",
                true,
                roles == 3,
                format!("{roles} of 3 roles"),
            ));
            let (admins, ready): (i64, i64) = if table_exists(conn, schema, "users").await? {
                let row = sqlx::query(AssertSqlSafe(format!(
                    "select count(*) filter (where lower(role) = 'admin') as admins, \
                     count(*) filter (where lower(role) = 'admin' and password_hash is not null and is_active) as ready \
                     from {}",
                    ident(schema, "users")
                )))
                .fetch_one(&mut *conn)
                .await?;
                (row.try_get("admins")?, row.try_get("ready")?)
            } else {
                (0, 0)
            };
            checks.push(check(
                "admin_exists",
                "At least one admin user",
                true,
                admins >= 1,
                format!("{admins} admin user(s)"),
            ));
            checks.push(check(
                "admin_login_ready",
                "Admin has password hash, is active",
                true,
                ready >= 1,
                format!("{ready} admin(s) with a password hash and active"),
            ));
        }
    }
    checks.push(match &probes.telemetry {
        Ok(answer) => check(
            "telemetry_flowing",
            "Structured logger operational",
            true,
            true,
            answer.clone(),
        ),
        Err(why) => check(
            "telemetry_flowing",
            "Structured logger operational",
            true,
            false,
            why.clone(),
        ),
    });
    checks.push(check(
        "redis_connected",
        "Redis reachable (non-critical)",
        false,
        probes.redis_ok,
        if probes.redis_ok {
            "PONG".into()
        } else {
            "Redis unreachable".into()
        },
    ));
    checks.push(check(
        "pilot_mode",
        "PILOT_MODE env var set (non-critical)",
        false,
        probes.pilot_mode,
        if probes.pilot_mode {
            "PILOT_MODE=true".into()
        } else {
            "PILOT_MODE is not true in .env".into()
        },
    ));
    Ok(checks)
}

/// The first admin of a school (seed Phase A step 3, step 1 of its flow): a temporary
/// password, hashed at once, and `must_change_password`. `Ok(None)` when the admin exists.
pub async fn create_admin(
    conn: &mut PgConnection,
    schema: &str,
    email: &str,
) -> Result<Option<String>, Error> {
    let password = random_password();
    let mut tx = conn.begin().await?;
    let created: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "insert into {} (email, role, password_hash, is_active, must_change_password) \
         values ($1, 'admin', $2, true, true) on conflict (email) do nothing returning id",
        ident(schema, "users")
    )))
    .bind(email)
    .bind(hash_password(&password))
    .fetch_optional(&mut *tx)
    .await?;
    if created.is_some() {
        audit(
            &mut tx,
            schema,
            "admin.created",
            "super-admin",
            json!({ "email": email, "must_change_password": true }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created.map(|_| password))
}

/// Whether the platform's database answers.
pub async fn ping(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("select 1").execute(conn).await?;
    Ok(())
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS has randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_password() -> String {
    random_hex(12)
}

fn hash_password(password: &str) -> String {
    let salt = random_hex(8);
    let digest = Sha256::digest(format!("{salt}{password}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sim-sha256${salt}${hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slug_maps_to_its_schema() {
        assert_eq!(schema_of("greenwood-high").unwrap(), "greenwood_high");
        assert_eq!(schema_of("42-academy").unwrap(), "t_42_academy");
        assert!(schema_of("Greenwood").is_err());
        assert!(schema_of("ab").is_err());
    }

    #[test]
    fn there_are_enough_tables_for_migrations_applied() {
        assert!(TABLES.len() as i64 >= MIN_TABLES);
        let names: std::collections::HashSet<&str> = TABLES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), TABLES.len(), "table names are unique");
    }

    #[test]
    fn password_hashes_are_salted_and_labelled() {
        let (a, b) = (hash_password("pw"), hash_password("pw"));
        assert_ne!(a, b);
        assert!(a.starts_with("sim-sha256$"));
    }
}
