//! `runway sim init DIR`: a new sim directory with everything the shipped playbooks' steps
//! expect, and the environment and params a run against it needs.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::state::{State, VERSION};
use super::{Error, Fault, Sim, git, samples, service, tenant};

/// The programs the playbooks run that the sim stands in for. `pg_dump` and `pg_restore` are
/// not among them: the sim's database is a real PostgreSQL, so the real tools work on it.
pub const SHIMS: [&str; 4] = ["pnpm", "redis-cli", "systemctl", "git"];

/// The school the printed params suggest (the README's example).
pub const EXAMPLE_SLUG: &str = "greenwood-high";

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// 0 picks a free port now.
    pub port: u16,
    pub database_url: Option<String>,
    /// Drop and recreate the database first (never `postgres` or a template).
    pub fresh_database: bool,
    pub faults: Vec<Fault>,
    pub slow_delay: Duration,
    pub alert_ttl: Duration,
    /// Replace an existing sim directory (stopping its server).
    pub force: bool,
}

/// What `init` made, for the CLI to print.
#[derive(Debug)]
pub struct Initialized {
    pub sim: Sim,
    pub environment: Environment,
    /// Things that will not work and why (no database, no pg_dump).
    pub warnings: Vec<String>,
}

/// A fresh state: no tenants, the initial git history, a fresh token.
pub fn new_state(
    port: u16,
    database_url: Option<String>,
    token: String,
    faults: BTreeSet<Fault>,
) -> State {
    let releases = git::initial_releases();
    State {
        version: VERSION,
        port,
        database_url,
        super_admin_token: token,
        redis_url: "redis://runway-sim.invalid:6379/0".into(),
        faults,
        slow_delay_ms: 3000,
        alert_ttl_secs: 300,
        service_unit: "school-server".into(),
        server_pid: None,
        tenants: Default::default(),
        head: releases.last().map(|r| r.sha.clone()).unwrap_or_default(),
        releases,
        cache_flushes: 0,
    }
}

pub async fn init(options: InitOptions) -> Result<Initialized, Error> {
    let dir = absolute(&options.dir)?;
    prepare(&dir, options.force)?;
    let mut warnings = Vec::new();
    if let Some(url) = &options.database_url {
        tenant::ensure_database(url, options.fresh_database).await?;
    } else {
        warnings.push(
            "no --database-url: the playbooks' sql steps, pnpm provision:tenant, tenant:preflight, \
             tenant:import and the admin-create API need a PostgreSQL database; \
             recreate with `runway sim init DIR --force --database-url postgres://...`"
                .into(),
        );
    }
    let port = match options.port {
        0 => free_port().map_err(Error::io("127.0.0.1:0"))?,
        p => p,
    };
    for sub in [
        "bin",
        "server/import",
        "server/logs",
        "server/docs",
        "backups",
    ] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
    }
    let mut state = new_state(
        port,
        options.database_url.clone(),
        tenant::random_hex(24),
        options.faults.iter().copied().collect(),
    );
    state.slow_delay_ms = options.slow_delay.as_millis() as u64;
    state.alert_ttl_secs = options.alert_ttl.as_secs();
    state.write(&dir.join("sim.json"))?;
    let sim = Sim::open(&dir)?;

    let exe = std::env::current_exe().map_err(Error::io("the runway binary"))?;
    for program in SHIMS {
        write_file(
            &sim.bin_dir().join(program),
            &shim(&exe, sim.dir(), program),
            0o755,
        )?;
    }
    let server = sim.server_dir();
    write_file(
        &server.join(".env"),
        "NODE_ENV=production\nLOG_FORMAT=json\n",
        0o644,
    )?;
    write_file(&server.join("package.json"), samples::PACKAGE_JSON, 0o644)?;
    write_file(
        &server.join("docs/FIRST_SCHOOL_INCIDENT_RUNBOOK.md"),
        samples::INCIDENT_RUNBOOK,
        0o644,
    )?;
    for (name, text) in [
        ("students", samples::students_csv()),
        ("teachers", samples::teachers_csv()),
        ("classes", samples::classes_csv()),
        ("subjects", samples::subjects_csv()),
    ] {
        write_file(&server.join(format!("import/{name}.csv")), &text, 0o644)?;
    }
    write_file(&sim.webhook_log(), "", 0o644)?;
    write_file(&sim.mail_log(), "", 0o600)?;
    if let Some(url) = &options.database_url
        && let Err(why) = nightly_backup(&sim, url)
    {
        warnings.push(format!(
            "no nightly backup in {}: {why}; the go-live check `check-backup-schedule` will fail",
            sim.backup_dir().display()
        ));
    }
    let environment = Environment::of(&sim, &sim.load()?);
    Ok(Initialized {
        sim,
        environment,
        warnings,
    })
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    if dir.is_absolute() {
        Ok(dir.to_owned())
    } else {
        let cwd = std::env::current_dir().map_err(Error::io("."))?;
        Ok(cwd.join(dir))
    }
}

/// Refuses to overwrite anything that is not a sim; with `force`, stops a sim's server and
/// removes the directory.
fn prepare(dir: &Path, force: bool) -> Result<(), Error> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !dir.join("sim.json").is_file() {
        return Err(Error::Invalid(format!(
            "{} exists and is not a sim directory; choose an empty or new directory",
            dir.display()
        )));
    }
    if !force {
        return Err(Error::Invalid(format!(
            "{} is a sim already; add --force to replace it",
            dir.display()
        )));
    }
    // A sim whose state no longer reads (an older version) can still be replaced; its
    // server, if any, is then left to the operator.
    if let Ok(sim) = Sim::open(dir) {
        let _ = service::stop(&sim);
    }
    std::fs::remove_dir_all(dir).map_err(Error::io(dir))
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(path))?;
    file.write_all(text.as_bytes()).map_err(Error::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(Error::io(path))
}

/// A single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A shim: runs `runway sim exec --dir DIR PROGRAM ARGS...` with this very binary.
fn shim(exe: &Path, dir: &Path, program: &str) -> String {
    format!(
        "#!/bin/sh\n# runway sim: the simulated `{program}` of the school platform.\nexec {} sim exec --dir {} {program} \"$@\"\n",
        shell_quote(&exe.to_string_lossy()),
        shell_quote(&dir.to_string_lossy()),
    )
}

/// Last night's backup, made by the real `pg_dump` in its custom format (what rollback level
/// 3 restores with `pg_restore`).
fn nightly_backup(sim: &Sim, url: &str) -> Result<PathBuf, String> {
    let file = sim.backup_dir().join(format!(
        "nightly-{}.dump",
        chrono::Utc::now().format("%Y%m%d")
    ));
    let output = std::process::Command::new("pg_dump")
        .arg(format!("--dbname={url}"))
        .arg("--format=custom")
        .arg(format!("--file={}", file.display()))
        .output()
        .map_err(|e| format!("cannot run pg_dump ({e}); install the PostgreSQL client tools"))?;
    if output.status.success() {
        Ok(file)
    } else {
        Err(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The environment and params of a run against a sim.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The directory to put first on `PATH`.
    pub bin_dir: PathBuf,
    /// The secrets the playbooks declare, with the sim's values.
    pub secrets: Vec<(String, String)>,
    /// `-p` values for the go-live playbook (the rollback playbooks take a subset).
    pub params: Vec<(String, String)>,
}

impl Environment {
    pub fn of(sim: &Sim, state: &State) -> Environment {
        let base = format!("http://127.0.0.1:{}", state.port);
        let mut secrets = Vec::new();
        if let Some(url) = &state.database_url {
            secrets.push(("DATABASE_URL".to_owned(), url.clone()));
        }
        secrets.extend([
            ("REDIS_URL".to_owned(), state.redis_url.clone()),
            (
                "SUPER_ADMIN_TOKEN".to_owned(),
                state.super_admin_token.clone(),
            ),
            ("ONCALL_WEBHOOK".to_owned(), format!("{base}/webhook")),
        ]);
        let schema = tenant::schema_of(EXAMPLE_SLUG).unwrap_or_default();
        let params = vec![
            ("school_slug".to_owned(), EXAMPLE_SLUG.to_owned()),
            ("tenant_schema".to_owned(), schema),
            (
                "admin_email".to_owned(),
                "admin@greenwood.example".to_owned(),
            ),
            ("base_url".to_owned(), base),
            (
                "server_dir".to_owned(),
                sim.server_dir().display().to_string(),
            ),
            (
                "backup_dir".to_owned(),
                sim.backup_dir().display().to_string(),
            ),
        ];
        Environment {
            bin_dir: sim.bin_dir(),
            secrets,
            params,
        }
    }

    /// `export K='V'` lines for `eval`.
    pub fn shell(&self) -> String {
        let mut out = format!(
            "export PATH={}:\"$PATH\"\n",
            shell_quote(&self.bin_dir.to_string_lossy())
        );
        for (k, v) in &self.secrets {
            out.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        out
    }

    /// `key=value` lines, one `-p` each.
    pub fn params_lines(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }
}
