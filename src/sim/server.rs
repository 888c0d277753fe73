//! The HTTP side of the simulated platform: the go-live dashboard of seed 000 Phase C
//! (`/health/golive`, `/alerts`, `/pilot`, `/tenant/:schema`), the admin-create API of Phase A
//! step 3, the pilot guardrails of Phase B, the traffic endpoints the usage simulation
//! drives, and `/webhook`, where the playbooks' notifications land (`DIR/webhook.log`).
//!
//! Each request reads `sim.json` and `server/.env` afresh: a fault switched on mid-run, or a
//! pilot flag written by the go-live playbook's step 1, applies to the next request. (The
//! real server reads `.env` once at start; the sim behaves like a dev server under a file
//! watcher, which restarts on every change.) Red flags are the exception: like the real
//! dashboard, the server remembers them for their TTL, and a restart forgets them.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::postgres::PgConnection;
use tokio::net::TcpListener;

use super::dotenv::DotEnv;
use super::health::{self, Alerts, DbProbe, Metrics};
use super::http::{self, Handler, Request, Response};
use super::state::TenantStatus;
use super::tenant::{self, Probes};
use super::{Error, Fault, Sim, State, code};

/// The routes the usage simulation drives: they answer at once (plus any injected delay).
pub const TRAFFIC: [(&str, &str); 7] = [
    ("GET", "/api/v1/attendance"),
    ("POST", "/api/v1/attendance"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/exams/submit"),
    ("GET", "/api/v1/teachers"),
    ("POST", "/api/v1/teachers"),
    ("GET", "/api/v1/reports/export"),
];

/// Serves the platform on 127.0.0.1 (`port`, else the one in `sim.json`) until SIGINT or
/// SIGTERM. Records its pid in `sim.json` while it runs, for `systemctl` and `runway sim stop`.
pub async fn serve(sim: Sim, port: Option<u16>) -> Result<u8, Error> {
    let state = sim.load()?;
    let port = port.unwrap_or(state.port);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!("Error: listen EADDRINUSE: address already in use {addr}");
            if let Some(pid) = state.server_pid {
                eprintln!("  the sim's server may already be running (pid {pid})");
            }
            return Ok(code::FAILED);
        }
        Err(e) => {
            return Err(Error::Io {
                path: addr.to_string().into(),
                source: e,
            });
        }
    };
    let me = std::process::id();
    sim.update(|s| s.server_pid = Some(me))?;
    log(json!({
        "level": "info",
        "msg": "school platform (runway sim) listening",
        "url": format!("http://{addr}"),
        "pid": me,
    }));
    let stop = crate::shutdown::on_signal();
    let platform = Arc::new(Platform {
        sim: sim.clone(),
        alerts: std::sync::Mutex::new(Alerts::default()),
        db: tokio::sync::Mutex::new(None),
        started: Instant::now(),
    });
    http::serve(listener, platform, stop).await;
    sim.update(|s| {
        if s.server_pid == Some(me) {
            s.server_pid = None;
        }
    })?;
    log(json!({ "level": "info", "msg": "stopped" }));
    Ok(code::OK)
}

/// One structured log line on stdout (the server's output is its log, as with `pnpm dev`).
fn log(line: Value) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

struct Platform {
    sim: Sim,
    alerts: std::sync::Mutex<Alerts>,
    /// One connection for the live ping and the tenant endpoints; re-opened when it breaks.
    db: tokio::sync::Mutex<Option<PgConnection>>,
    started: Instant,
}

impl Handler for Platform {
    async fn handle(&self, request: Request) -> Response {
        let started = Instant::now();
        let response = match self.sim.load() {
            Ok(state) => {
                let env = DotEnv::read(&self.sim.env_file());
                if request.path != "/webhook" && state.has(Fault::SlowEndpoint) {
                    tokio::time::sleep(Duration::from_millis(state.slow_delay_ms)).await;
                }
                let response = self.route(&request, &state, &env).await;
                if env.pilot_mode() {
                    response.header("X-Pilot-Mode", "true")
                } else {
                    response
                }
            }
            Err(e) => Response::json(500, &json!({ "error": e.to_string() })),
        };
        log(json!({
            "level": "info",
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "ms": started.elapsed().as_millis() as u64,
        }));
        response
    }
}

impl Platform {
    async fn route(&self, req: &Request, state: &State, env: &DotEnv) -> Response {
        let method = req.method.as_str();
        let get = matches!(method, "GET" | "HEAD");
        match req.path.as_str() {
            "/health" if get => Response::json(
                200,
                &json!({ "status": "ok", "uptime_s": self.started.elapsed().as_secs() }),
            ),
            "/health/golive" if get => self.dashboard(state, env).await,
            "/health/golive/alerts" if get => self.alerts(state).await,
            "/health/golive/pilot" if get => pilot(state, env),
            path if get && path.starts_with("/health/golive/tenant/") => {
                let schema = &path["/health/golive/tenant/".len()..];
                self.tenant(state, env, schema).await
            }
            "/webhook" if method == "POST" => self.webhook(req),
            "/webhook" if get => {
                let received = std::fs::read_to_string(self.sim.webhook_log())
                    .map(|t| t.lines().count())
                    .unwrap_or(0);
                Response::json(200, &json!({ "received": received }))
            }
            path if path.starts_with("/api/") && env.maintenance_mode() => Response::json(
                503,
                &json!({ "error": "maintenance", "message": "The platform is in maintenance mode." }),
            ),
            "/api/v1/tenant/admin/create" if method == "POST" => {
                self.create_admin(req, state).await
            }
            path if method == "DELETE" && path.starts_with("/api/v1/") && env.pilot_mode() => {
                Response::json(
                    403,
                    &json!({ "error": "bulk deletion is blocked in pilot mode (blockBulkDeletion)" }),
                )
            }
            path if TRAFFIC.iter().any(|(m, p)| *p == path && *m == method) => {
                Response::json(200, &json!({ "ok": true }))
            }
            path if TRAFFIC.iter().any(|(_, p)| *p == path)
                || matches!(
                    path,
                    "/health"
                        | "/health/golive"
                        | "/health/golive/alerts"
                        | "/health/golive/pilot"
                        | "/webhook"
                        | "/api/v1/tenant/admin/create"
                ) =>
            {
                Response::json(
                    405,
                    &json!({ "error": format!("{method} is not allowed here") }),
                )
            }
            path => Response::json(404, &json!({ "error": format!("no route for {path}") })),
        }
    }

    /// The database ping behind the `db` metric. Keeps one connection; a failed ping drops it.
    async fn probe_db(&self, state: &State) -> DbProbe {
        let Some(url) = &state.database_url else {
            return DbProbe::NotConfigured;
        };
        let mut conn = self.db.lock().await;
        let started = Instant::now();
        if conn.is_none() {
            match tokio::time::timeout(Duration::from_secs(3), tenant::connect(url)).await {
                Ok(Ok(c)) => *conn = Some(c),
                Ok(Err(e)) => {
                    return DbProbe::Down {
                        error: e.to_string(),
                    };
                }
                Err(_) => {
                    return DbProbe::Down {
                        error: "connect timed out".into(),
                    };
                }
            }
        }
        let ping = match conn.as_mut() {
            Some(c) => tokio::time::timeout(Duration::from_secs(2), tenant::ping(c)).await,
            None => {
                return DbProbe::Down {
                    error: "no connection".into(),
                };
            }
        };
        match ping {
            Ok(Ok(())) => DbProbe::Up {
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            },
            Ok(Err(e)) => {
                *conn = None;
                DbProbe::Down {
                    error: e.to_string(),
                }
            }
            Err(_) => {
                *conn = None;
                DbProbe::Down {
                    error: "ping timed out".into(),
                }
            }
        }
    }

    async fn observe(&self, state: &State) -> (Metrics, Vec<health::Alert>) {
        let metrics = Metrics::of(state, self.probe_db(state).await);
        let ttl = Duration::from_secs(state.alert_ttl_secs);
        let alerts = self
            .alerts
            .lock()
            .map(|mut a| a.observe(&metrics, ttl))
            .unwrap_or_default();
        (metrics, alerts)
    }

    async fn dashboard(&self, state: &State, env: &DotEnv) -> Response {
        let (metrics, alerts) = self.observe(state).await;
        let body = health::dashboard_json(
            &metrics,
            &alerts,
            env.pilot_mode(),
            env.maintenance_mode(),
            state.head_release().and_then(|r| r.tag.as_deref()),
        );
        let status = if health::overall(&alerts) == "RED" {
            503
        } else {
            200
        };
        Response::json(status, &body)
    }

    async fn alerts(&self, state: &State) -> Response {
        let (_, alerts) = self.observe(state).await;
        let ttl = Duration::from_secs(state.alert_ttl_secs);
        Response::json(
            200,
            &json!({
                "count": alerts.len(),
                "alerts": alerts.iter().map(|a| health::alert_json(a, ttl)).collect::<Vec<_>>(),
            }),
        )
    }

    async fn tenant(&self, state: &State, env: &DotEnv, schema: &str) -> Response {
        let Some((slug, tenant)) = state.tenant_by_schema(schema) else {
            return Response::json(
                404,
                &json!({ "schema": schema, "status": "unknown", "error": format!("no tenant has schema {schema}") }),
            );
        };
        if tenant.status == TenantStatus::Isolated {
            return Response::json(
                503,
                &json!({ "schema": schema, "school": slug, "status": "isolated" }),
            );
        }
        let probes = Probes {
            telemetry: Ok("the platform's server answers".into()),
            redis_ok: !state.has(Fault::RedisDown),
            pilot_mode: env.pilot_mode(),
        };
        if self.probe_db(state).await == DbProbe::NotConfigured {
            let checks = tenant::preflight(None, schema, &probes)
                .await
                .unwrap_or_default();
            return tenant_response(schema, slug, &checks);
        }
        let mut conn = self.db.lock().await;
        let Some(c) = conn.as_mut() else {
            return Response::json(
                503,
                &json!({ "schema": schema, "school": slug, "status": "blocked", "error": "database unreachable" }),
            );
        };
        match tenant::preflight(Some(c), schema, &probes).await {
            Ok(checks) => tenant_response(schema, slug, &checks),
            Err(e) => {
                *conn = None;
                Response::json(
                    503,
                    &json!({ "schema": schema, "school": slug, "status": "blocked", "error": e.to_string() }),
                )
            }
        }
    }

    async fn create_admin(&self, req: &Request, state: &State) -> Response {
        let authorized = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| token.trim() == state.super_admin_token);
        if !authorized {
            return Response::json(
                401,
                &json!({ "error": "a super-admin bearer token is required" }),
            );
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let (Some(slug), Some(email)) = (
            body.get("schoolSlug").and_then(Value::as_str),
            body.get("email").and_then(Value::as_str),
        ) else {
            return Response::json(
                400,
                &json!({ "error": "the body must be JSON with schoolSlug and email" }),
            );
        };
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Response::json(
                400,
                &json!({ "error": format!("`{email}` is not an e-mail") }),
            );
        }
        let Some(tenant) = state.tenants.get(slug) else {
            return Response::json(
                404,
                &json!({ "error": format!("school {slug} is not provisioned (pnpm provision:tenant {slug})") }),
            );
        };
        if tenant.status == TenantStatus::Isolated {
            return Response::json(
                409,
                &json!({ "error": format!("school {slug} is isolated") }),
            );
        }
        let Some(url) = &state.database_url else {
            return Response::json(503, &json!({ "error": "the platform has no database" }));
        };
        let created = async {
            let mut conn = tenant::connect(url).await?;
            tenant::create_admin(&mut conn, &tenant.schema, email).await
        }
        .await;
        match created {
            Ok(Some(password)) => {
                self.append(
                    &self.sim.mail_log(),
                    &json!({
                        "at": Utc::now().to_rfc3339(),
                        "to": email,
                        "subject": format!("Your {slug} admin account"),
                        "temporary_password": password,
                        "note": "change it at first login",
                    }),
                );
                Response::json(
                    201,
                    &json!({
                        "created": true,
                        "schoolSlug": slug,
                        "email": email,
                        "role": "admin",
                        "mustChangePassword": true,
                        "temporaryPassword": "sent out of band",
                    }),
                )
            }
            Ok(None) => Response::json(
                200,
                &json!({ "created": false, "schoolSlug": slug, "email": email, "message": "the admin exists already" }),
            ),
            Err(e) => Response::json(500, &json!({ "error": e.to_string() })),
        }
    }

    fn webhook(&self, req: &Request) -> Response {
        let body = serde_json::from_slice::<Value>(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
        self.append(
            &self.sim.webhook_log(),
            &json!({ "at": Utc::now().to_rfc3339(), "body": body }),
        );
        Response::json(200, &json!({ "ok": true }))
    }

    fn append(&self, path: &std::path::Path, line: &Value) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot append");
        }
    }
}

fn tenant_response(schema: &str, slug: &str, checks: &[tenant::Check]) -> Response {
    let ready = tenant::allowed(checks);
    Response::json(
        if ready { 200 } else { 503 },
        &json!({
            "schema": schema,
            "school": slug,
            "status": if ready { "ready" } else { "blocked" },
            "checks": checks.iter().map(tenant::Check::json).collect::<Vec<_>>(),
        }),
    )
}

fn pilot(state: &State, env: &DotEnv) -> Response {
    if !env.pilot_mode() {
        return Response::json(200, &json!({ "pilot_mode": false, "restrictions": {} }));
    }
    let max_rows = env.max_import_rows();
    let max_schools = env.max_schools();
    Response::json(
        200,
        &json!({
            "pilot_mode": true,
            "max_schools": max_schools,
            "schools": state.tenants.len(),
            "max_import_rows": max_rows,
            "queue_rate_limit": env.get("QUEUE_RATE_LIMIT"),
            "rbac_strict_log": env.flag("RBAC_STRICT_LOG"),
            "restrictions": {
                "pilotModeHeaders": "X-Pilot-Mode: true on all responses",
                "blockBulkDeletion": "bulk DELETE endpoints return 403",
                "enforceImportLimits": format!("imports over {max_rows} rows return 413"),
                "rbacStrictLogger": "every RBAC decision (allow and deny) is logged",
                "schoolCountGuard": format!("no new tenant beyond MAX_SCHOOLS={max_schools}"),
            },
        }),
    )
}
