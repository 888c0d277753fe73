//! `BASE_URL=... SCHOOL_SLUG=... pnpm golive:check`: seed 000 Phase G, 13 checks in 5
//! categories. Exit 0: go-live approved; exit 1: blocked by a critical failure. Failed
//! non-critical checks are warnings.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::dotenv::{DotEnv, PILOT_FLAGS};
use super::load::{self, Hit};
use super::{Error, Fault, Sim, State, code, tenant};

/// Requests of the quick burst, how many at once, and its p95 limit.
const BURST: usize = 50;
const BURST_CONCURRENCY: usize = 10;
const BURST_P95_MS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

struct Check {
    category: &'static str,
    name: &'static str,
    critical: bool,
    outcome: Outcome,
    detail: String,
}

struct Fetched {
    status: u16,
    pilot_header: bool,
    json: Option<Value>,
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Fetched, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let pilot_header = response
        .headers()
        .get("x-pilot-mode")
        .is_some_and(|v| v.as_bytes() == b"true");
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(Fetched {
        status,
        pilot_header,
        json: serde_json::from_slice(&bytes).ok(),
    })
}

fn newest_backup_age(dir: &std::path::Path) -> Option<Duration> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .filter_map(|t| SystemTime::now().duration_since(t).ok())
        .min()
}

fn check_of(
    category: &'static str,
    name: &'static str,
    critical: bool,
    result: Result<String, String>,
) -> Check {
    let (outcome, detail) = match result {
        Ok(d) => (Outcome::Pass, d),
        Err(d) => (Outcome::Fail, d),
    };
    Check {
        category,
        name,
        critical,
        outcome,
        detail,
    }
}

async fn database(state: &State) -> Result<String, String> {
    let url = state
        .database_url
        .as_deref()
        .ok_or("no database configured")?;
    let mut conn = tenant::connect(url).await.map_err(|e| e.to_string())?;
    tenant::ping(&mut conn).await.map_err(|e| e.to_string())?;
    Ok("select 1 answered".into())
}

pub async fn check(sim: &Sim) -> Result<u8, Error> {
    let state = sim.load()?;
    let base = std::env::var("BASE_URL")
        .unwrap_or_else(|_| format!("http://127.0.0.1:{}", state.port))
        .trim_end_matches('/')
        .to_owned();
    let slug = std::env::var("SCHOOL_SLUG").ok().filter(|s| !s.is_empty());
    let client = load::client(Duration::from_secs(10));
    let env = DotEnv::read(&sim.env_file());
    let mut checks = Vec::with_capacity(13);

    let health = fetch(&client, &format!("{base}/health")).await;
    checks.push(check_of(
        "Infrastructure",
        "Server",
        true,
        match &health {
            Ok(f) if (200..300).contains(&f.status) => Ok(format!("/health {}", f.status)),
            Ok(f) => Err(format!("/health {}", f.status)),
            Err(e) => Err(e.clone()),
        },
    ));
    checks.push(check_of(
        "Infrastructure",
        "Database",
        true,
        database(&state).await,
    ));
    checks.push(check_of(
        "Infrastructure",
        "Redis",
        true,
        if state.has(Fault::RedisDown) {
            Err("Redis unreachable".into())
        } else {
            Ok("PONG".into())
        },
    ));
    let alerts = fetch(&client, &format!("{base}/health/golive/alerts")).await;
    let raised: Vec<(String, String)> = alerts
        .as_ref()
        .ok()
        .and_then(|f| f.json.as_ref())
        .and_then(|j| j["alerts"].as_array())
        .map(|list| {
            list.iter()
                .map(|a| {
                    (
                        a["flag"].as_str().unwrap_or("").to_owned(),
                        a["severity"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let queue_flags: Vec<&str> = raised
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| matches!(*f, "QUEUE_LAG" | "DLQ_SPIKE"))
        .collect();
    checks.push(check_of(
        "Infrastructure",
        "Queues",
        false,
        if queue_flags.is_empty() {
            Ok("no QUEUE_LAG, no DLQ_SPIKE".into())
        } else {
            Err(format!("raised: {}", queue_flags.join(", ")))
        },
    ));
    let dashboard = fetch(&client, &format!("{base}/health/golive")).await;
    checks.push(check_of(
        "Infrastructure",
        "Monitoring",
        true,
        match dashboard
            .as_ref()
            .map(|f| f.json.as_ref().and_then(|j| j["overall"].as_str()))
        {
            Ok(Some(overall)) => Ok(format!("dashboard live, overall {overall}")),
            Ok(None) => Err("the dashboard did not answer with an overall".into()),
            Err(e) => Err(e.clone()),
        },
    ));
    checks.push(check_of(
        "Infrastructure",
        "Alerts",
        true,
        match &alerts {
            Ok(f) if f.json.is_some() => {
                let p0: Vec<&str> = raised
                    .iter()
                    .filter(|(_, s)| s == "P0")
                    .map(|(f, _)| f.as_str())
                    .collect();
                if p0.is_empty() {
                    Ok(format!("alerting live, {} alert(s), no P0", raised.len()))
                } else {
                    Err(format!("P0 red flag(s): {}", p0.join(", ")))
                }
            }
            Ok(f) => Err(format!("/health/golive/alerts {} without JSON", f.status)),
            Err(e) => Err(e.clone()),
        },
    ));

    let pilot = fetch(&client, &format!("{base}/health/golive/pilot")).await;
    checks.push(check_of(
        "Pilot Mode",
        "PILOT_MODE flag",
        true,
        match &pilot {
            Ok(f) if f.pilot_header => Ok("X-Pilot-Mode: true".into()),
            Ok(_) => Err("no X-Pilot-Mode: true header".into()),
            Err(e) => Err(e.clone()),
        },
    ));
    let missing: Vec<&str> = PILOT_FLAGS
        .iter()
        .copied()
        .filter(|f| env.get(f).is_none())
        .collect();
    checks.push(check_of(
        "Pilot Mode",
        "Env vars",
        false,
        if missing.is_empty() {
            Ok(PILOT_FLAGS.join(", "))
        } else {
            Err(format!("missing in .env: {}", missing.join(", ")))
        },
    ));

    match &slug {
        Some(slug) => {
            let schema = state
                .tenants
                .get(slug)
                .map(|t| t.schema.clone())
                .or_else(|| tenant::schema_of(slug).ok())
                .unwrap_or_default();
            let url = format!("{base}/health/golive/tenant/{schema}");
            checks.push(check_of(
                "Tenant Readiness",
                "Preflight",
                true,
                match fetch(&client, &url).await {
                    Ok(f) if f.status == 200 => Ok(format!("{schema} ready")),
                    Ok(f) => Err(format!(
                        "{schema} {}",
                        f.json
                            .as_ref()
                            .and_then(|j| j["status"].as_str())
                            .unwrap_or("not ready")
                    )),
                    Err(e) => Err(e),
                },
            ));
        }
        None => checks.push(Check {
            category: "Tenant Readiness",
            name: "Preflight",
            critical: true,
            outcome: Outcome::Skip,
            detail: "no SCHOOL_SLUG given".into(),
        }),
    }

    let hits = vec![
        Hit {
            method: "GET",
            path: "/health",
        };
        BURST
    ];
    let burst = load::run(&client, &base, hits, BURST_CONCURRENCY).await;
    checks.push(check_of(
        "Load & Resilience",
        "Quick burst",
        true,
        if burst.p95_ms <= BURST_P95_MS && burst.error_pct() < 5.0 {
            Ok(format!(
                "{} requests, p95 {}ms, {:.1}% errors",
                burst.requests,
                burst.p95_ms,
                burst.error_pct()
            ))
        } else {
            Err(format!(
                "{} requests, p95 {}ms (limit {BURST_P95_MS}ms), {:.1}% errors",
                burst.requests,
                burst.p95_ms,
                burst.error_pct()
            ))
        },
    ));

    checks.push(check_of(
        "Operational",
        "Backup schedule",
        false,
        match newest_backup_age(&sim.backup_dir()) {
            Some(age) if age < Duration::from_secs(24 * 3600) => {
                Ok(format!("newest backup {} minutes old", age.as_secs() / 60))
            }
            Some(age) => Err(format!("newest backup {} hours old", age.as_secs() / 3600)),
            None => Err(format!("no *.dump in {}", sim.backup_dir().display())),
        },
    ));
    checks.push(check_of(
        "Operational",
        "On-call",
        false,
        match fetch(&client, &format!("http://127.0.0.1:{}/webhook", state.port)).await {
            Ok(f) if (200..300).contains(&f.status) => Ok("on-call webhook answers".into()),
            Ok(f) => Err(format!("on-call webhook answered {}", f.status)),
            Err(e) => Err(e),
        },
    ));
    let runbook = sim
        .server_dir()
        .join("docs/FIRST_SCHOOL_INCIDENT_RUNBOOK.md");
    checks.push(check_of(
        "Operational",
        "SLA",
        false,
        match std::fs::read_to_string(&runbook) {
            Ok(text) if text.contains("P0") && text.contains("P3") => {
                Ok("P0-P3 targets in the incident runbook".into())
            }
            _ => Err(format!("no SLA table in {}", runbook.display())),
        },
    ));

    println!(
        "Go-live checklist: BASE_URL={base}{}",
        slug.as_deref()
            .map(|s| format!(" SCHOOL_SLUG={s}"))
            .unwrap_or_default()
    );
    let mut category = "";
    for c in &checks {
        if c.category != category {
            category = c.category;
            println!("{category}");
        }
        let mark = match (c.outcome, c.critical) {
            (Outcome::Pass, _) => "PASS",
            (Outcome::Fail, true) => "FAIL",
            (Outcome::Fail, false) => "WARN",
            (Outcome::Skip, _) => "SKIP",
        };
        println!("  [{mark}] {:<16} {}", c.name, c.detail);
    }
    let blocking: Vec<&str> = checks
        .iter()
        .filter(|c| c.critical && c.outcome == Outcome::Fail)
        .map(|c| c.name)
        .collect();
    let passed = checks.iter().filter(|c| c.outcome == Outcome::Pass).count();
    let warned = checks
        .iter()
        .filter(|c| !c.critical && c.outcome == Outcome::Fail)
        .count();
    println!(
        "{} checks: {passed} passed, {} failed, {warned} warning(s)",
        checks.len(),
        blocking.len()
    );
    if blocking.is_empty() {
        println!("GO-LIVE APPROVED");
        Ok(code::OK)
    } else {
        println!("GO-LIVE BLOCKED: {}", blocking.join(", "));
        Ok(code::FAILED)
    }
}
