//! Black-box tests of `runway sim`, the bundled simulated school platform, against the
//! shipped playbooks themselves.
//!
//! The heart of this file is a small step runner: it decodes a shipped playbook with the
//! real compiler, binds params the way `-p` does, renders every template with the real
//! renderer, runs each shell, http, sql and notify step against the sim the way the engine
//! would (same argv or `bash -euo pipefail` script, same clean environment, same outputs), and
//! evaluates the step's `expect:` with the real condition language. So "the sim satisfies
//! step X" means exactly what a run would check. What it does not do is the engine's job:
//! durability, the DAG, gates, retries with real backoff (they are compressed here), and
//! human steps (approvals and checklists count as answered yes).
//!
//! The database tests need PostgreSQL at `RUNWAY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `scripts/test` provides one); each creates
//! a database of its own and drops it.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use runway::playbook::Playbook;
use runway::playbook::kinds::StepKind;
use runway::playbook::step::Step;
use runway::playbook::template::renderer;
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, Column as _, Connection as _, Row as _, TypeInfo as _};

use common::{repo, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_runway");
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `runway ARGS...` with a clean playbook environment.
fn runway(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUNWAY_WORKFLOWS")
        .env_remove("RUNWAY_LOG")
        .output()
        .expect("the runway binary runs")
}

// ------------------------------------------------------------------------------ databases

/// A database of the test's own on the test server, dropped at the end.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    fn fresh() -> Database {
        let server = std::env::var("RUNWAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let name = format!(
            "runway_sim_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        rt().block_on(async {
            let mut admin = sqlx::PgConnection::connect(&server)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is unreachable at {server}: {e}. Run `scripts/test`, which \
                     provisions one, or set RUNWAY_TEST_POSTGRES_URL to a server URL."
                    )
                });
            sqlx::query(AssertSqlSafe(format!("create database {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
        });
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        Database {
            server,
            name,
            url: url.to_string(),
        }
    }

    fn scalar(&self, query: &str) -> i64 {
        rt().block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(query.to_owned()))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        rt().block_on(async move {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                let _ = sqlx::query(AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await;
            }
        });
    }
}

// ------------------------------------------------------------------------------ the sim

/// A sim directory made by the real binary, its server, and its database.
struct Sim {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: Option<Child>,
    db: Option<Database>,
}

impl Sim {
    /// `runway sim init DIR --port 0 [--database-url URL] EXTRA...`
    fn init(with_db: bool, extra: &[&str]) -> Sim {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sim");
        let db = with_db.then(Database::fresh);
        let mut args = vec!["sim", "init", dir.to_str().unwrap(), "--port", "0"];
        if let Some(db) = &db {
            args.extend(["--database-url", db.url.as_str()]);
        }
        args.extend(extra);
        let out = runway(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        Sim {
            _tmp: tmp,
            dir,
            server: None,
            db,
        }
    }

    fn db(&self) -> &Database {
        self.db.as_ref().expect("a sim with a database")
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("sim.json")).unwrap()).unwrap()
    }

    fn port(&self) -> u16 {
        self.state()["port"].as_u64().unwrap() as u16
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    fn server_dir(&self) -> PathBuf {
        self.dir.join("server")
    }

    /// `runway sim ARGS... --dir DIR`
    fn sim(&self, args: &[&str]) -> Output {
        let mut all = vec!["sim"];
        all.extend(args);
        all.extend(["--dir", self.dir.to_str().unwrap()]);
        runway(&all)
    }

    fn fault(&self, fault: &str, on: bool) {
        let out = self.sim(&["fault", fault, if on { "on" } else { "off" }]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }

    /// The secrets of `runway sim env --format shell` (`export K='V'` lines).
    fn secrets(&self) -> Map<String, Value> {
        let out = self.sim(&["env", "--format", "shell"]);
        let mut secrets = Map::new();
        for line in stdout(&out).lines() {
            let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) else {
                continue;
            };
            if k != "PATH" {
                secrets.insert(k.to_owned(), v.trim_matches('\'').into());
            }
        }
        secrets
    }

    /// The go-live params of `runway sim env --format params`.
    fn params(&self) -> Vec<(String, String)> {
        let out = self.sim(&["env", "--format", "params"]);
        stdout(&out)
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    /// `PATH` with the shims first, as `runway sim env` says.
    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Starts `runway sim serve` and waits until it accepts connections.
    fn serve(&mut self) {
        let log = std::fs::File::create(self.dir.join("serve.log")).unwrap();
        let child = Command::new(BIN)
            .args(["sim", "serve", "--dir", self.dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = ("127.0.0.1", self.port());
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the sim's server did not come up"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A simulated program through its shim in DIR/bin, with PATH as a run has it.
    fn shim(&self, program: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", self.path_var())
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base());
        rt().block_on(async {
            let r = reqwest::Client::new().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap();
            (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
        })
    }

    fn webhook_messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("webhook.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["body"]["message"].as_str().unwrap_or("").to_owned()
            })
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Whoever started it (this test, `pnpm dev`, `systemctl restart`).
        let _ = self.sim(&["stop"]);
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ------------------------------------------------------------------------------ the runner

/// What one step did.
#[derive(Debug, Clone)]
struct Ran {
    status: &'static str,
    outputs: Value,
    error: Option<String>,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status == "succeeded"
    }
}

/// Runs the steps of one shipped playbook against a sim, as the engine would.
struct Runner<'a> {
    sim: &'a Sim,
    playbook: Playbook,
    params: Map<String, Value>,
    secrets: Map<String, Value>,
    run_id: String,
    results: BTreeMap<String, Ran>,
    rt: tokio::runtime::Runtime,
}

impl<'a> Runner<'a> {
    /// `workflows/FILE` with `-p` values: the sim's params that FILE declares, then `given`.
    fn new(sim: &'a Sim, file: &str, given: &[(&str, &str)]) -> Runner<'a> {
        let path = repo().join("workflows").join(file);
        let source =
            runway::source::Source::from_bytes(file, &std::fs::read(&path).unwrap()).unwrap();
        let mut diags = runway::diagnostic::Diagnostics::default();
        let playbook = runway::compiler::decode(&source, &mut diags).expect("a shipped playbook");
        let mut pairs: Vec<(String, String)> = sim
            .params()
            .into_iter()
            .filter(|(k, _)| playbook.params.get(k).is_some())
            .filter(|(k, _)| !given.iter().any(|(g, _)| g == k))
            .collect();
        pairs.extend(given.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let params = runway::plan::bind_params(&playbook.params, &pairs)
            .unwrap_or_else(|e| panic!("params of {file}: {e:?}"));
        Runner {
            sim,
            playbook,
            params,
            secrets: sim.secrets(),
            run_id: format!("SIMTEST{}", ulid::Ulid::generate()),
            results: BTreeMap::new(),
            rt: rt(),
        }
    }

    fn step(&self, id: &str) -> Step {
        self.playbook
            .steps
            .iter()
            .chain(&self.playbook.compensations)
            .chain(&self.playbook.on_failure)
            .find(|s| s.id.value == id)
            .unwrap_or_else(|| panic!("{} has no step `{id}`", self.playbook.name.value))
            .clone()
    }

    fn context(&self) -> Value {
        let steps: Map<String, Value> = self
            .results
            .iter()
            .map(|(id, r)| {
                (
                    id.clone(),
                    json!({ "status": r.status, "outputs": r.outputs }),
                )
            })
            .collect();
        json!({
            "params": self.params,
            "run": {
                "id": self.run_id,
                "starter": "test",
                "started_at": "2026-01-01T00:00:00Z",
                "trigger": "manual",
                "playbook": self.playbook.name.value,
            },
            "steps": steps,
        })
    }

    fn data(&self) -> Value {
        let mut data = self.context();
        data["secrets"] = Value::Object(self.secrets.clone());
        data
    }

    fn render(&self, t: &runway::playbook::template::Template) -> String {
        t.render(&renderer(), &self.data())
            .unwrap_or_else(|e| panic!("template `{}`: {e}", t.text))
    }

    /// Runs step `id` (retries compressed to short pauses) and records the result.
    fn run(&mut self, id: &str) -> Ran {
        let step = self.step(id);
        if let Some(when) = &step.when
            && !when.value.eval(&self.context()).unwrap()
        {
            return self.record(id, "skipped", Value::Null, None);
        }
        let attempts = step.retry.as_ref().map_or(1, |r| r.attempts.max(1));
        let mut last = None;
        for attempt in 1..=attempts {
            let (outputs, mut error) = self.attempt(&step);
            if error.is_none()
                && let Some(expect) = &step.expect
            {
                let mut ctx = self.context();
                ctx["outputs"] = outputs.clone();
                if !expect.value.eval(&ctx).unwrap_or(false) {
                    error = Some(format!("expect `{}` is false", expect.value.source()));
                }
            }
            let failed = error.is_some();
            last = Some((outputs, error));
            if !failed {
                break;
            }
            if attempt < attempts {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let (outputs, error) = last.unwrap();
        let status = if error.is_none() {
            "succeeded"
        } else {
            "failed"
        };
        self.record(id, status, outputs, error)
    }

    fn record(
        &mut self,
        id: &str,
        status: &'static str,
        outputs: Value,
        error: Option<String>,
    ) -> Ran {
        let ran = Ran {
            status,
            outputs,
            error,
        };
        self.results.insert(id.to_owned(), ran.clone());
        ran
    }

    /// Runs `ids` in order; returns the ones that did not succeed, with why.
    fn failures(&mut self, ids: &[&str]) -> Vec<String> {
        ids.iter()
            .filter_map(|id| {
                let r = self.run(id);
                (!r.ok()).then(|| format!("{id}: {}", r.error.unwrap_or_default()))
            })
            .collect()
    }

    fn attempt(&self, step: &Step) -> (Value, Option<String>) {
        match &step.kind {
            StepKind::Shell(shell) => {
                let ws = tempfile::tempdir().unwrap();
                let output_file = ws.path().join("output");
                std::fs::write(&output_file, "").unwrap();
                let mut command = match (&shell.argv, &shell.script) {
                    (Some(argv), _) => {
                        let argv: Vec<String> = argv.iter().map(|t| self.render(t)).collect();
                        let mut c = Command::new(&argv[0]);
                        c.args(&argv[1..]);
                        c
                    }
                    (None, Some(script)) => {
                        let file = ws.path().join("script.sh");
                        std::fs::write(&file, &script.value).unwrap();
                        let mut c = Command::new("bash");
                        c.args(["-euo", "pipefail"]).arg(file);
                        c
                    }
                    _ => unreachable!("a shell step has argv or script"),
                };
                command.env_clear().env("PATH", self.sim.path_var());
                if let Ok(home) = std::env::var("HOME") {
                    command.env("HOME", home);
                }
                for (name, value) in &shell.env.0 {
                    command.env(&name.value, self.render(value));
                }
                command
                    .env("RUNWAY_RUN_ID", &self.run_id)
                    .env("RUNWAY_STEP_ID", &step.id.value)
                    .env("RUNWAY_ATTEMPT", "1")
                    .env("RUNWAY_OUTPUT", &output_file)
                    .env("RUNWAY_CHECKPOINT", ws.path().join("checkpoint"))
                    .stdin(Stdio::null());
                let cwd = match &shell.cwd {
                    Some(t) => repo().join(self.render(t)),
                    None => repo().to_owned(),
                };
                command.current_dir(cwd);
                let out = command.output().unwrap();
                let text = std::fs::read_to_string(&output_file).unwrap();
                let mut outputs = if text.trim_start().starts_with('{') {
                    serde_json::from_str::<Map<String, Value>>(&text).unwrap()
                } else {
                    text.lines()
                        .filter_map(|l| l.split_once('='))
                        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                        .collect()
                };
                outputs.insert("stdout".into(), stdout(&out).into());
                outputs.insert("stderr".into(), stderr(&out).into());
                let code = out.status.code().unwrap_or(-1);
                outputs.insert("exit_code".into(), code.into());
                let error =
                    (code != 0).then(|| format!("exited with status {code}: {}", stderr(&out)));
                (Value::Object(outputs), error)
            }
            StepKind::Http(http) => {
                let url = self.render(&http.url);
                let headers: Vec<(String, String)> = http
                    .headers
                    .0
                    .iter()
                    .map(|(k, v)| (k.value.clone(), self.render(v)))
                    .collect();
                let body = http.json.as_ref().map(|j| self.render_json(j).to_string());
                let method = http.method.as_str();
                let sent = self.rt.block_on(async {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    let mut req = client.request(method.parse().unwrap(), &url);
                    for (k, v) in &headers {
                        req = req.header(k, v);
                    }
                    if let Some(body) = body {
                        req = req.header("content-type", "application/json").body(body);
                    }
                    let r = req.send().await?;
                    let status = r.status().as_u16();
                    let headers: Map<String, Value> = r
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().into()))
                        .collect();
                    Ok::<_, reqwest::Error>((status, headers, r.bytes().await?))
                });
                let (status, headers, bytes) = match sent {
                    Ok(sent) => sent,
                    Err(e) => return (Value::Null, Some(format!("{url}: {e}"))),
                };
                let mut outputs = json!({
                    "status": status,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&bytes),
                });
                if let Ok(j) = serde_json::from_slice::<Value>(&bytes) {
                    outputs["json"] = j;
                }
                let accepted = if http.expect_status.is_empty() {
                    (200..300).contains(&status)
                } else {
                    http.expect_status.contains(&status)
                };
                let error = (!accepted).then(|| format!("status {status}"));
                (outputs, error)
            }
            StepKind::Sql(sql) => {
                let url = self.render(&sql.url);
                let args: Vec<String> = sql.args.iter().map(|t| self.render(t)).collect();
                let query = sql.query.value.clone();
                let rows = self.rt.block_on(async move {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    let mut q = sqlx::query(AssertSqlSafe(query));
                    for a in &args {
                        q = q.bind(a.clone());
                    }
                    let rows = q.fetch_all(&mut conn).await?;
                    Ok::<_, sqlx::Error>(rows.iter().map(row_json).collect::<Vec<_>>())
                });
                match rows {
                    Ok(rows) => (json!({ "rows": rows, "row_count": rows.len() }), None),
                    Err(e) => (Value::Null, Some(e.to_string())),
                }
            }
            StepKind::Notify(notify) => {
                let url = self.render(&notify.url);
                let body = json!({
                    "run": self.run_id,
                    "step": step.id.value,
                    "message": self.render(&notify.message),
                })
                .to_string();
                let status = self.rt.block_on(async {
                    let r = reqwest::Client::new()
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    r.status().as_u16()
                });
                let error = (!(200..300).contains(&status)).then(|| format!("status {status}"));
                (json!({ "status": status }), error)
            }
            // A person answered yes; structure has nothing to run.
            StepKind::Approval(_) | StepKind::Checklist(_) | StepKind::Noop(_) => {
                (Value::Null, None)
            }
            other => panic!("the runner does not run `{}` steps", other.name()),
        }
    }

    fn render_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => renderer().render_template(s, &self.data()).unwrap().into(),
            Value::Array(items) => items.iter().map(|v| self.render_json(v)).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), self.render_json(v)))
                .collect::<Map<_, _>>()
                .into(),
            other => other.clone(),
        }
    }

    /// Every step of the main list that the sim is meant to answer: everything but gates,
    /// waits and invokes (the engine's business).
    fn automated_steps(&self) -> Vec<String> {
        self.playbook
            .steps
            .iter()
            .filter(|s| {
                !matches!(
                    s.kind,
                    StepKind::Gate(_)
                        | StepKind::Wait(_)
                        | StepKind::Invoke(_)
                        | StepKind::Followup(_)
                )
            })
            .map(|s| s.id.value.clone())
            .collect()
    }
}

fn row_json(row: &sqlx::postgres::PgRow) -> Value {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = match column.type_info().name() {
            "INT4" => row.try_get::<Option<i32>, _>(i).unwrap().into(),
            "INT8" => row.try_get::<Option<i64>, _>(i).unwrap().into(),
            "BOOL" => row.try_get::<Option<bool>, _>(i).unwrap().into(),
            _ => row.try_get::<Option<String>, _>(i).unwrap().into(),
        };
        out.insert(column.name().to_owned(), value);
    }
    Value::Object(out)
}

/// Checks that `condition` is a real expect of the playbook: the runner only uses the
/// playbook's own conditions, this just guards against a rename.
fn expect_of(runner: &Runner, id: &str) -> String {
    runner
        .step(id)
        .expect
        .map(|e| e.value.source().to_owned())
        .unwrap_or_default()
}

const DASHBOARD_STEPS: [&str; 10] = [
    "dashboard-not-red",
    "no-p0-alerts",
    "flag-login-failure-spike",
    "flag-db-high-latency",
    "flag-db-down",
    "flag-redis-disconnect",
    "flag-rbac-deny-spike",
    "flag-dlq-spike",
    "flag-queue-lag",
    "flag-redis-high-latency",
];

// ------------------------------------------------------------------------------ tests

#[test]
fn init_lays_out_what_the_playbooks_expect() {
    let sim = Sim::init(false, &[]);
    for program in ["pnpm", "redis-cli", "systemctl", "git"] {
        let shim = std::fs::read_to_string(sim.dir.join("bin").join(program)).unwrap();
        assert!(shim.starts_with("#!/bin/sh\n"), "{shim}");
        assert!(shim.contains(&format!("'{BIN}' sim exec --dir ")), "{shim}");
        assert!(
            shim.trim_end().ends_with(&format!("{program} \"$@\"")),
            "{shim}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(sim.dir.join("bin").join(program))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o111, 0o111, "{program} is executable");
    }
    for file in [
        "server/.env",
        "server/package.json",
        "sim.json",
        "webhook.log",
    ] {
        assert!(sim.dir.join(file).is_file(), "{file}");
    }
    assert!(sim.dir.join("server/logs").is_dir());
    assert!(sim.dir.join("backups").is_dir());
    // The import files are there and within the pilot limit.
    for entity in ["students", "teachers", "classes", "subjects"] {
        let csv =
            std::fs::read_to_string(sim.dir.join(format!("server/import/{entity}.csv"))).unwrap();
        let rows = csv.lines().count() - 1;
        assert!((1..=500).contains(&rows), "{entity}: {rows}");
    }
    // Without a database, init says what is missing.
    let again = tempfile::tempdir().unwrap();
    let out = runway(&[
        "sim",
        "init",
        again.path().join("s").to_str().unwrap(),
        "--port",
        "0",
    ]);
    assert!(
        stderr(&out).contains("need a PostgreSQL database"),
        "{}",
        stderr(&out)
    );
    // The params are go-live's, pointing into the sim.
    let params: BTreeMap<String, String> = sim.params().into_iter().collect();
    assert_eq!(params["base_url"], sim.base());
    assert_eq!(params["server_dir"], sim.server_dir().display().to_string());
    assert_eq!(
        params["backup_dir"],
        sim.dir.join("backups").display().to_string()
    );
    assert_eq!(params["tenant_schema"], "greenwood_high");
}

#[test]
fn env_output_can_be_evaluated_by_a_shell() {
    let sim = Sim::init(false, &[]);
    let dir = sim.dir.to_str().unwrap().to_owned();
    let script = format!(
        "eval \"$('{BIN}' sim env --dir '{dir}' --format shell)\"; \
         echo \"$ONCALL_WEBHOOK\"; echo \"$SUPER_ADMIN_TOKEN\"; command -v pnpm"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], format!("{}/webhook", sim.base()));
    assert_eq!(lines[1], sim.state()["super_admin_token"].as_str().unwrap());
    assert_eq!(lines[2], sim.dir.join("bin/pnpm").display().to_string());
    // `init --env` prints the same lines.
    let fresh = tempfile::tempdir().unwrap();
    let out = runway(&[
        "sim",
        "init",
        fresh.path().join("s").to_str().unwrap(),
        "--port",
        "0",
        "--env",
    ]);
    assert!(
        stdout(&out).lines().all(|l| l.starts_with("export ")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn init_never_overwrites_what_is_not_a_sim() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let out = runway(&["sim", "init", tmp.path().to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a sim directory"),
        "{}",
        stderr(&out)
    );
    assert!(tmp.path().join("precious.txt").is_file());

    let sim = Sim::init(false, &[]);
    let out = runway(&["sim", "init", sim.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("add --force"), "{}", stderr(&out));
    let out = runway(&[
        "sim",
        "init",
        sim.dir.to_str().unwrap(),
        "--force",
        "--port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_red_flag_fails_the_dashboard_steps_when_flipped_mid_run_and_clears_after_its_ttl() {
    let mut sim = Sim::init(false, &["--alert-ttl", "3s"]);
    sim.serve();
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    let mut all = DASHBOARD_STEPS.to_vec();
    all.extend([
        "preflight-telemetry-flowing",
        "check-monitoring",
        "check-alerts",
        "check-queues",
        "post-go-live-health",
        "post-go-live-alerts",
    ]);
    assert_eq!(go_live.failures(&all), Vec::<String>::new());

    sim.fault("red-flag", true);
    for id in [
        "dashboard-not-red",
        "no-p0-alerts",
        "flag-login-failure-spike",
        "post-go-live-health",
        "post-go-live-alerts",
    ] {
        assert!(!go_live.run(id).ok(), "{id} must fail under red-flag");
    }
    assert_eq!(go_live.results["dashboard-not-red"].outputs["status"], 503);
    // Only the flag that is raised fails; the dashboard is still live.
    for id in [
        "flag-db-down",
        "flag-queue-lag",
        "preflight-telemetry-flowing",
        "check-monitoring",
        "check-alerts",
    ] {
        assert!(
            go_live.run(id).ok(),
            "{id}: {:?}",
            go_live.results[id].error
        );
    }
    let mut health = Runner::new(&sim, "golive-health-check.yaml", &[]);
    assert!(!health.run("dashboard-not-red").ok());
    assert!(!health.run("no-p0-alerts").ok());
    assert!(health.run("no-p1-alerts").ok());

    // Off: the flag stays raised for its TTL (the seed's 5 minutes, 3 s here), then clears.
    sim.fault("red-flag", false);
    assert!(
        !go_live.run("no-p0-alerts").ok(),
        "a red flag outlives its trigger"
    );
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(go_live.failures(&DASHBOARD_STEPS), Vec::<String>::new());
}

#[test]
fn the_yellow_flag_fails_only_the_p1_checks() {
    let mut sim = Sim::init(false, &["--fault", "yellow-flag"]);
    sim.serve();
    let (status, dashboard) = sim.get("/health/golive");
    assert_eq!(
        (status, dashboard["overall"].as_str()),
        (200, Some("YELLOW"))
    );
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    assert!(go_live.run("dashboard-not-red").ok());
    assert!(go_live.run("no-p0-alerts").ok());
    assert!(!go_live.run("flag-queue-lag").ok());
    assert!(!go_live.run("check-queues").ok());
    let mut health = Runner::new(&sim, "golive-health-check.yaml", &[]);
    assert!(!health.run("no-p1-alerts").ok());
    assert!(health.run("no-p0-alerts").ok());
}

#[test]
fn redis_down_fails_the_redis_checks_and_the_cache_flush() {
    let mut sim = Sim::init(false, &[]);
    sim.serve();
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    let checks = [
        "preflight-redis-connected",
        "check-redis",
        "flag-redis-disconnect",
    ];
    assert_eq!(go_live.failures(&checks), Vec::<String>::new());
    let mut level1 = Runner::new(&sim, "rollback-level-1.yaml", &[]);
    assert!(level1.run("flush-cache").ok());

    sim.fault("redis-down", true);
    for id in checks {
        assert!(!go_live.run(id).ok(), "{id} must fail with Redis down");
    }
    assert!(
        go_live.results["check-redis"].outputs["stderr"]
            .as_str()
            .unwrap()
            .contains("Could not connect to Redis"),
        "{:?}",
        go_live.results["check-redis"]
    );
    assert!(
        !go_live.run("no-p0-alerts").ok(),
        "REDIS_DISCONNECT is a P0"
    );
    assert!(!level1.run("flush-cache").ok());
}

#[test]
fn a_slow_endpoint_fails_the_load_burst_and_the_usage_simulation() {
    let mut sim = Sim::init(false, &[]);
    sim.serve();
    let given = [("burst_requests", "20")];
    let mut go_live = Runner::new(&sim, "go-live.yaml", &given);
    assert_eq!(
        go_live.failures(&["check-load-burst", "simulate-usage"]),
        Vec::<String>::new()
    );
    assert!(
        go_live.results["check-load-burst"].outputs["p95_ms"]
            .as_u64()
            .unwrap()
            < 500
    );

    let out = sim.sim(&["fault", "slow-endpoint", "on", "--delay", "700ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("(delay 700ms)"), "{}", stdout(&out));
    let burst = go_live.run("check-load-burst");
    assert!(!burst.ok());
    assert!(
        burst.outputs["p95_ms"].as_u64().unwrap() >= 700,
        "{:?}",
        burst.outputs
    );
    assert_eq!(
        expect_of(&go_live, "check-load-burst"),
        "outputs.p95_ms <= params.burst_p95_ms && outputs.error_pct < 5"
    );
    let usage = go_live.run("simulate-usage");
    assert!(!usage.ok());
    assert!(
        usage.outputs["stdout"]
            .as_str()
            .unwrap()
            .contains("DO NOT ONBOARD")
    );
    // Slow, but within the step timeouts: the server still answers.
    assert!(go_live.run("server-up").ok());
}

#[test]
fn the_automated_go_live_steps_all_pass_against_a_healthy_sim() {
    // No server is started here: go-live's own start-server step starts it (`pnpm dev`).
    let sim = Sim::init(true, &[]);
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    let steps = go_live.automated_steps();
    assert!(steps.len() > 50, "{steps:?}");
    let failures: Vec<String> = steps
        .iter()
        .filter_map(|id| {
            let r = go_live.run(id);
            (!r.ok()).then(|| format!("{id}: {} {:?}", r.status, r.error))
        })
        .collect();
    assert_eq!(failures, Vec::<String>::new());

    // What the steps did to the platform.
    let db = sim.db();
    assert_eq!(
        db.scalar("select count(*) from greenwood_high.students"),
        40
    );
    assert_eq!(
        db.scalar("select count(*) from greenwood_high.users where email = 'admin@greenwood.example' and must_change_password"),
        1
    );
    assert!(
        std::fs::read_to_string(sim.dir.join("mail.log"))
            .unwrap()
            .contains("admin@greenwood.example"),
        "the temporary password went out of band"
    );
    let create = &go_live.results["create-admin"].outputs;
    assert_eq!(create["status"], 201);
    assert!(
        !create["body"]
            .as_str()
            .unwrap()
            .contains(sim.state()["super_admin_token"].as_str().unwrap())
    );
    let snapshot = go_live.results["import-snapshot"].outputs["snapshot_file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Path::new(&snapshot).is_file(), "{snapshot}");
    assert!(
        sim.webhook_messages()
            .iter()
            .any(|m| m.starts_with("greenwood-high is live")),
        "{:?}",
        sim.webhook_messages()
    );
    // The server is the one `pnpm dev` started, and it kept running.
    let log = std::fs::read_to_string(sim.server_dir().join("logs/golive-dev.log")).unwrap();
    assert!(log.contains("listening"), "{log}");

    // Re-running the go-live is safe: provisioning, import and admin creation are idempotent.
    let mut again = Runner::new(&sim, "go-live.yaml", &[("start_server", "false")]);
    let failures = again.failures(&[
        "provision-tenant",
        "preflight-rbac-seeded",
        "tenant-preflight",
        "import-data",
        "create-admin",
    ]);
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(again.results["create-admin"].outputs["status"], 200);

    // The compensation restores the pre-import snapshot with the real pg_restore.
    assert!(
        go_live.run("restore-import-snapshot").ok(),
        "{:?}",
        go_live.results["restore-import-snapshot"]
    );
    assert_eq!(db.scalar("select count(*) from greenwood_high.students"), 0);
    // The whole schema goes back to the snapshot: the admin created after it is gone too.
    assert_eq!(
        db.scalar(
            "select count(*) from greenwood_high.users where email = 'admin@greenwood.example'"
        ),
        0
    );
}

#[test]
fn failing_preflight_blocks_activation_in_the_sql_checks_and_the_script() {
    let mut sim = Sim::init(true, &["--fault", "failing-preflight"]);
    sim.serve();
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    let failures = go_live.failures(&[
        "set-pilot-env",
        "provision-tenant",
        "preflight-schema-exists",
        "preflight-migrations-applied",
        "preflight-rbac-seeded",
        "preflight-admin-exists",
        "preflight-admin-login-ready",
        "tenant-preflight",
        "check-tenant-readiness",
        "golive-check",
    ]);
    let failed: Vec<&str> = failures
        .iter()
        .map(|f| f.split(':').next().unwrap())
        .collect();
    assert_eq!(
        failed,
        [
            "preflight-rbac-seeded",
            "preflight-admin-login-ready",
            "tenant-preflight",
            "check-tenant-readiness",
            "golive-check"
        ],
        "{failures:#?}"
    );
    let out = go_live.results["tenant-preflight"].outputs["stdout"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        out.contains("Activation BLOCKED: rbac_seeded, admin_login_ready failed"),
        "{out}"
    );
    let (status, body) = sim.get("/health/golive/tenant/greenwood_high");
    assert_eq!((status, body["status"].as_str()), (503, Some("blocked")));
}

#[test]
fn imports_are_validated_first_limited_in_pilot_mode_and_idempotent() {
    let mut sim = Sim::init(true, &[]);
    sim.serve();
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    assert_eq!(
        go_live.failures(&["set-pilot-env", "provision-tenant"]),
        Vec::<String>::new()
    );
    let server = sim.server_dir();
    let import = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["tenant:import", "greenwood-high"];
        all.extend(args);
        sim.shim("pnpm", &all, &server, env)
    };

    // Over the pilot limit: refused with 413 before any write, and import-row-limit fails.
    let mut big = String::from("subject_code,name\n");
    for i in 0..600 {
        big.push_str(&format!("S{i},Subject {i}\n"));
    }
    std::fs::write(server.join("import/subjects.csv"), &big).unwrap();
    assert!(!go_live.run("import-row-limit").ok());
    assert_eq!(
        go_live.results["import-row-limit"].outputs["largest_file_rows"],
        600
    );
    let out = import(&["subjects", "import/subjects.csv"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("413: 600 rows exceed PILOT_MAX_IMPORT_ROWS=500"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sim.db()
            .scalar("select count(*) from greenwood_high.subjects"),
        0
    );
    // The step's env raises the limit as the playbook's max_import_rows param does.
    let out = import(
        &["subjects", "import/subjects.csv"],
        &[("PILOT_MAX_IMPORT_ROWS", "1000")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // Duplicates within the file: the validation report says no, nothing is written.
    std::fs::write(
        server.join("import/classes.csv"),
        "class_code,name,grade\n7A,Year 7 A,7\n7A,Again,7\n",
    )
    .unwrap();
    let out = import(&["classes", "import/classes.csv", "--validate-only"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["validationReport"]["canProceed"], false);
    assert_eq!(report["validationReport"]["duplicatesInCsv"], 1);
    assert!(!go_live.run("import-validate").ok());

    // Upserts: a second import of the same file updates, it does not duplicate.
    let first = import(&["students", "import/students.csv"], &[]);
    let second = import(&["students", "import/students.csv"], &[]);
    let second: Value = serde_json::from_str(stdout(&second).trim()).unwrap();
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(
        (second["inserted"].as_u64(), second["updated"].as_u64()),
        (Some(0), Some(40))
    );
    assert_eq!(
        sim.db()
            .scalar("select count(*) from greenwood_high.students"),
        40
    );
}

#[test]
fn admin_creation_needs_the_token_a_provisioned_school_and_is_idempotent() {
    let mut sim = Sim::init(true, &[]);
    sim.serve();
    let token = sim.state()["super_admin_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |auth: &str, body: &str| {
        let url = format!("{}/api/v1/tenant/admin/create", sim.base());
        rt().block_on(async {
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    let body = r#"{"schoolSlug":"greenwood-high","email":"admin@greenwood.example"}"#;
    assert_eq!(post("Bearer wrong", body), 401);
    assert_eq!(
        post(&format!("Bearer {token}"), body),
        404,
        "not provisioned yet"
    );
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    assert!(go_live.run("provision-tenant").ok());
    assert_eq!(post(&format!("Bearer {token}"), "{}"), 400);
    assert_eq!(post(&format!("Bearer {token}"), body), 201);
    assert_eq!(post(&format!("Bearer {token}"), body), 200);
}

#[test]
fn rollback_levels_1_and_2_run_against_the_sim() {
    let mut sim = Sim::init(true, &[]);
    sim.serve();
    let mut go_live = Runner::new(&sim, "go-live.yaml", &[]);
    assert_eq!(
        go_live.failures(&["set-pilot-env", "provision-tenant"]),
        Vec::<String>::new()
    );

    // Level 1: systemctl restarts the server (a new process), the cache is flushed.
    let before = sim.state()["server_pid"].as_u64();
    let mut level1 = Runner::new(&sim, "rollback-level-1.yaml", &[]);
    let steps = level1.automated_steps();
    let failures = level1.failures(&steps.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(failures, Vec::<String>::new());
    let after = sim.state()["server_pid"].as_u64();
    assert!(
        after.is_some() && after != before,
        "{before:?} -> {after:?}"
    );
    assert_eq!(sim.state()["cache_flushes"], 1);
    assert!(
        sim.webhook_messages()
            .iter()
            .any(|m| m.contains("Level 1 recovery"))
    );

    // Level 2: the school goes offline, then comes back.
    let mut level2 = Runner::new(
        &sim,
        "rollback-level-2.yaml",
        &[("school_slug", "greenwood-high")],
    );
    assert_eq!(
        level2.failures(&[
            "announce",
            "isolate-tenant",
            "platform-not-red",
            "platform-no-p0"
        ]),
        Vec::<String>::new()
    );
    assert_eq!(sim.get("/health/golive/tenant/greenwood_high").0, 503);
    assert!(!go_live.run("check-tenant-readiness").ok());
    let rest = [
        "reactivate-tenant",
        "healthy-after-return",
        "no-p0-after-return",
        "back-online",
    ];
    assert_eq!(level2.failures(&rest), Vec::<String>::new());
    assert!(go_live.run("check-tenant-readiness").ok());
}

#[test]
fn rollback_levels_3_and_4_run_against_the_sim() {
    let mut sim = Sim::init(true, &[]);
    sim.serve();
    let mut level3 = Runner::new(&sim, "rollback-level-3.yaml", &[("rollback_ref", "v1.4.2")]);
    let steps = level3.automated_steps();
    let failures = level3.failures(&steps.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(failures, Vec::<String>::new());
    assert!(
        level3.results["recent-releases"].outputs["stdout"]
            .as_str()
            .unwrap()
            .contains("(tag: v1.5.0)")
    );
    let backup = level3.results["find-latest-backup"].outputs["backup_file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(backup.ends_with(".dump"), "{backup}");
    assert!(level3.results["forensic-snapshot"].ok());
    let (_, dashboard) = sim.get("/health/golive");
    assert_eq!(
        dashboard["version"], "v1.4.2",
        "the server runs the rolled-back release"
    );
    // A ref that does not exist stops the rollback before anything changes.
    let mut bad = Runner::new(&sim, "rollback-level-3.yaml", &[("rollback_ref", "v9.9.9")]);
    assert!(!bad.run("target-exists").ok());

    let mut level4 = Runner::new(&sim, "rollback-level-4.yaml", &[]);
    assert_eq!(
        level4.failures(&[
            "set-maintenance-flag",
            "restart-in-maintenance",
            "forensic-snapshot"
        ]),
        Vec::<String>::new()
    );
    assert_eq!(
        sim.get("/api/v1/attendance").0,
        503,
        "maintenance mode stops traffic"
    );
    assert_eq!(
        level4.failures(&[
            "clear-maintenance-flag",
            "restart-normal",
            "healthy-again",
            "no-p0-alerts",
            "all-clear"
        ]),
        Vec::<String>::new()
    );
    assert_eq!(sim.get("/api/v1/attendance").0, 200);
}

#[test]
fn the_health_check_playbook_runs_end_to_end_with_the_engine() {
    let mut sim = Sim::init(false, &["--alert-ttl", "0s"]);
    sim.serve();
    let store = tempfile::tempdir().unwrap();
    let run = || {
        let mut command = Command::new(BIN);
        command
            .args(["run", "golive-health-check", "-p"])
            .arg(format!("base_url={}", sim.base()))
            .current_dir(repo())
            .env_remove("RUNWAY_LOG")
            .env("RUNWAY_WORKFLOWS", repo().join("workflows"))
            .env(
                "RUNWAY_DATABASE_URL",
                format!("sqlite://{}", store.path().join("runway.db").display()),
            );
        for (k, v) in sim.secrets() {
            command.env(k, v.as_str().unwrap());
        }
        command.output().unwrap()
    };
    std::fs::write(sim.server_dir().join(".env"), "PILOT_MODE=true\n").unwrap();
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    sim.fault("red-flag", true);
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("NO-GO"), "{}", stdout(&out));
    assert!(
        sim.webhook_messages()
            .iter()
            .any(|m| m.starts_with("Go-live health check")),
        "on-call was paged through the sim's webhook"
    );
}

#[test]
fn the_server_speaks_http_1_1_with_lengths_and_keep_alive() {
    let mut sim = Sim::init(false, &[]);
    sim.serve();
    let mut stream = TcpStream::connect(("127.0.0.1", sim.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Two pipelined requests on one kept-alive connection, then one that closes it.
    stream
        .write_all(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n{\"message\":\"hi\"}\n\
              GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    let responses: Vec<&str> = all.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 3, "{all}");
    for (response, status) in responses.iter().zip(["200 OK", "200 OK", "404 Not Found"]) {
        assert!(response.starts_with(status), "{response}");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{response}");
    }
    assert!(responses[1].contains("Connection: keep-alive"));
    assert!(responses[2].contains("Connection: close"));
    assert_eq!(sim.webhook_messages(), ["hi"]);

    // HTTP/1.0 closes unless asked; garbage is refused with 400 and a close.
    for (request, expected) in [
        (&b"GET /health HTTP/1.0\r\n\r\n"[..], "HTTP/1.1 200 OK"),
        (&b"NONSENSE\r\n\r\n"[..], "HTTP/1.1 400 Bad Request"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", sim.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains("Connection: close"), "{text}");
    }
}

#[test]
fn mistakes_are_explained() {
    let sim = Sim::init(false, &[]);
    let out = sim.sim(&["fault", "meltdown", "on"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("red-flag"), "{}", stderr(&out));
    let out = runway(&["sim", "exec", "--dir", "/nonexistent/sim", "pnpm", "dev"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a sim directory"),
        "{}",
        stderr(&out)
    );
    let out = sim.shim(
        "pnpm",
        &["provision:tenant", "greenwood-high"],
        &sim.server_dir(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--database-url"), "{}", stderr(&out));
    let out = sim.shim("pnpm", &["deploy:everything"], &sim.server_dir(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Missing script: deploy:everything"),
        "{}",
        stderr(&out)
    );
    let out = sim.shim(
        "systemctl",
        &["restart", "postgresql"],
        &sim.server_dir(),
        &[],
    );
    assert_eq!(out.status.code(), Some(5));
}
