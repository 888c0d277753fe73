//! The go-live dashboard of seed 000 Phase C: the metrics it tracks, the red-flag table with
//! its thresholds, and the overall GREEN / YELLOW / RED.
//!
//! Flags are not switched on directly: a fault changes a metric (login failures per minute,
//! queue lag, Redis reachability) and the seed's thresholds raise the flag. The database
//! metric is real: the server pings the sim's PostgreSQL, so a database that goes away
//! raises DB_DOWN.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Fault, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    P0,
    P1,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
        }
    }
}

/// The seed's red-flag table: name, trigger as the seed writes it, severity.
pub const FLAGS: [(&str, &str, Severity); 8] = [
    ("LOGIN_FAILURE_SPIKE", ">20 failures/min", Severity::P0),
    ("DB_HIGH_LATENCY", "DB latency >1000ms", Severity::P0),
    ("DB_DOWN", "DB connection failed", Severity::P0),
    ("REDIS_DISCONNECT", "Redis unreachable", Severity::P0),
    ("RBAC_DENY_SPIKE", ">50 denies/min", Severity::P1),
    ("DLQ_SPIKE", ">10 failed jobs", Severity::P1),
    ("QUEUE_LAG", "Queue lag >30s", Severity::P1),
    ("REDIS_HIGH_LATENCY", "Redis >200ms", Severity::P1),
];

/// What the server's live ping of the database found.
#[derive(Debug, Clone, PartialEq)]
pub enum DbProbe {
    /// The sim was made without a database.
    NotConfigured,
    Up {
        latency_ms: f64,
    },
    Down {
        error: String,
    },
}

/// The platform's metrics at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub login_success_rate: f64,
    pub login_failures_per_min: u64,
    pub rbac_deny_rate: f64,
    pub rbac_denies_per_min: u64,
    pub db: DbProbe,
    pub db_p95_ms: f64,
    pub redis_up: bool,
    pub redis_latency_ms: f64,
    pub redis_disconnects: u64,
    pub queue_lag_s: f64,
    pub dlq_count: u64,
    pub api_error_rate: f64,
    pub api_p95_ms: f64,
}

impl Metrics {
    /// A calm pilot school, changed by the faults switched on.
    pub fn of(state: &State, db: DbProbe) -> Metrics {
        let red = state.has(Fault::RedFlag);
        let redis_down = state.has(Fault::RedisDown);
        let slow = if state.has(Fault::SlowEndpoint) {
            state.slow_delay_ms as f64
        } else {
            0.0
        };
        Metrics {
            login_success_rate: if red { 0.71 } else { 0.992 },
            login_failures_per_min: if red { 37 } else { 1 },
            rbac_deny_rate: 0.004,
            rbac_denies_per_min: 2,
            db_p95_ms: match &db {
                DbProbe::Up { latency_ms } => (latency_ms * 3.0).max(4.0),
                _ => 0.0,
            },
            db,
            redis_up: !redis_down,
            redis_latency_ms: 0.8,
            redis_disconnects: if redis_down { 3 } else { 0 },
            queue_lag_s: if state.has(Fault::YellowFlag) {
                45.0
            } else {
                0.3
            },
            dlq_count: 0,
            api_error_rate: 0.001,
            api_p95_ms: 85.0 + slow,
        }
    }

    /// The flags whose trigger holds now, with what was measured.
    pub fn triggered(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.login_failures_per_min > 20 {
            out.push((
                "LOGIN_FAILURE_SPIKE",
                format!("{} login failures/min", self.login_failures_per_min),
            ));
        }
        match &self.db {
            DbProbe::Up { latency_ms } if *latency_ms > 1000.0 => {
                out.push(("DB_HIGH_LATENCY", format!("DB latency {latency_ms:.0}ms")));
            }
            DbProbe::Down { error } => out.push(("DB_DOWN", format!("DB ping failed: {error}"))),
            _ => {}
        }
        if !self.redis_up {
            out.push(("REDIS_DISCONNECT", "Redis unreachable".to_owned()));
        }
        if self.rbac_denies_per_min > 50 {
            out.push((
                "RBAC_DENY_SPIKE",
                format!("{} RBAC denies/min", self.rbac_denies_per_min),
            ));
        }
        if self.dlq_count > 10 {
            out.push(("DLQ_SPIKE", format!("{} failed jobs", self.dlq_count)));
        }
        if self.queue_lag_s > 30.0 {
            out.push(("QUEUE_LAG", format!("queue lag {:.0}s", self.queue_lag_s)));
        }
        if self.redis_up && self.redis_latency_ms > 200.0 {
            out.push((
                "REDIS_HIGH_LATENCY",
                format!("Redis latency {:.0}ms", self.redis_latency_ms),
            ));
        }
        out
    }
}

/// A raised flag.
#[derive(Debug, Clone)]
pub struct Alert {
    pub flag: &'static str,
    pub severity: Severity,
    pub trigger: &'static str,
    pub message: String,
    pub raised_at: DateTime<Utc>,
    /// When the trigger was last seen holding.
    last_seen: Instant,
    last_seen_at: DateTime<Utc>,
}

/// The server's memory of raised flags: a flag stays raised for the TTL after its trigger
/// was last seen (the seed: "immediate alert, 5-min TTL"). A restart forgets them.
#[derive(Debug, Default)]
pub struct Alerts {
    raised: BTreeMap<&'static str, Alert>,
}

impl Alerts {
    /// Records what holds now and returns the alerts still raised, P0 first.
    pub fn observe(&mut self, metrics: &Metrics, ttl: Duration) -> Vec<Alert> {
        let now = Instant::now();
        let wall = Utc::now();
        for (flag, message) in metrics.triggered() {
            let (_, trigger, severity) = FLAGS
                .iter()
                .copied()
                .find(|(name, _, _)| *name == flag)
                .expect("every triggered flag is in the table");
            let alert = self.raised.entry(flag).or_insert_with(|| Alert {
                flag,
                severity,
                trigger,
                message: message.clone(),
                raised_at: wall,
                last_seen: now,
                last_seen_at: wall,
            });
            alert.message = message;
            alert.last_seen = now;
            alert.last_seen_at = wall;
        }
        self.raised
            .retain(|_, a| now.duration_since(a.last_seen) <= ttl);
        let mut out: Vec<Alert> = self.raised.values().cloned().collect();
        out.sort_by_key(|a| (a.severity, a.flag));
        out
    }
}

/// GREEN without flags, YELLOW with P1 flags only, RED with any P0 flag.
pub fn overall(alerts: &[Alert]) -> &'static str {
    if alerts.iter().any(|a| a.severity == Severity::P0) {
        "RED"
    } else if alerts.is_empty() {
        "GREEN"
    } else {
        "YELLOW"
    }
}

pub fn alert_json(a: &Alert, ttl: Duration) -> Value {
    let expires = a.last_seen_at + chrono::Duration::from_std(ttl).unwrap_or_default();
    json!({
        "flag": a.flag,
        "severity": a.severity.as_str(),
        "trigger": a.trigger,
        "message": a.message,
        "raised_at": a.raised_at.to_rfc3339(),
        "expires_at": expires.to_rfc3339(),
    })
}

/// The `/health/golive` snapshot.
pub fn dashboard_json(
    metrics: &Metrics,
    alerts: &[Alert],
    pilot_mode: bool,
    maintenance_mode: bool,
    version: Option<&str>,
) -> Value {
    let db = match &metrics.db {
        DbProbe::NotConfigured => json!({ "status": "not_configured" }),
        DbProbe::Up { latency_ms } => json!({
            "status": "up",
            "latency_ms": round(*latency_ms),
            "p95_ms": round(metrics.db_p95_ms),
        }),
        DbProbe::Down { .. } => json!({ "status": "down" }),
    };
    json!({
        "overall": overall(alerts),
        "timestamp": Utc::now().to_rfc3339(),
        "version": version,
        "pilot_mode": pilot_mode,
        "maintenance_mode": maintenance_mode,
        "login": {
            "success_rate": metrics.login_success_rate,
            "failures_per_min": metrics.login_failures_per_min,
        },
        "rbac": {
            "deny_rate": metrics.rbac_deny_rate,
            "denies_per_min": metrics.rbac_denies_per_min,
        },
        "db": db,
        "redis": if metrics.redis_up {
            json!({
                "status": "up",
                "latency_ms": metrics.redis_latency_ms,
                "disconnects": metrics.redis_disconnects,
            })
        } else {
            json!({ "status": "down", "disconnects": metrics.redis_disconnects })
        },
        "queue": { "lag_seconds": metrics.queue_lag_s, "dlq_count": metrics.dlq_count },
        "api": { "error_rate": metrics.api_error_rate, "p95_ms": metrics.api_p95_ms },
        "red_flags": alerts
            .iter()
            .map(|a| json!({ "flag": a.flag, "severity": a.severity.as_str() }))
            .collect::<Vec<_>>(),
    })
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::init::new_state;

    fn healthy() -> State {
        new_state(3000, None, "t".into(), Default::default())
    }

    #[test]
    fn a_healthy_platform_is_green_without_alerts() {
        let m = Metrics::of(&healthy(), DbProbe::Up { latency_ms: 2.0 });
        assert!(m.triggered().is_empty());
        let alerts = Alerts::default().observe(&m, Duration::from_secs(300));
        assert_eq!(overall(&alerts), "GREEN");
    }

    #[test]
    fn each_fault_raises_its_flag_by_the_seed_threshold() {
        for (fault, flag, expected) in [
            (Fault::RedFlag, "LOGIN_FAILURE_SPIKE", "RED"),
            (Fault::YellowFlag, "QUEUE_LAG", "YELLOW"),
            (Fault::RedisDown, "REDIS_DISCONNECT", "RED"),
        ] {
            let mut state = healthy();
            state.faults.insert(fault);
            let m = Metrics::of(&state, DbProbe::Up { latency_ms: 2.0 });
            let alerts = Alerts::default().observe(&m, Duration::from_secs(300));
            assert_eq!(alerts.len(), 1, "{fault}");
            assert_eq!(alerts[0].flag, flag);
            assert_eq!(overall(&alerts), expected);
        }
    }

    #[test]
    fn the_database_probe_raises_db_flags() {
        let state = healthy();
        let slow = Metrics::of(&state, DbProbe::Up { latency_ms: 1500.0 });
        assert_eq!(slow.triggered()[0].0, "DB_HIGH_LATENCY");
        let down = Metrics::of(&state, DbProbe::Down { error: "x".into() });
        assert_eq!(down.triggered()[0].0, "DB_DOWN");
        assert!(
            Metrics::of(&state, DbProbe::NotConfigured)
                .triggered()
                .is_empty()
        );
    }

    #[test]
    fn a_flag_outlives_its_trigger_by_the_ttl_only() {
        let mut state = healthy();
        state.faults.insert(Fault::RedFlag);
        let mut alerts = Alerts::default();
        let ttl = Duration::from_millis(50);
        let red = Metrics::of(&state, DbProbe::NotConfigured);
        assert_eq!(alerts.observe(&red, ttl).len(), 1);
        state.faults.clear();
        let calm = Metrics::of(&state, DbProbe::NotConfigured);
        assert_eq!(alerts.observe(&calm, ttl).len(), 1, "still within the TTL");
        std::thread::sleep(Duration::from_millis(80));
        assert!(alerts.observe(&calm, ttl).is_empty());
    }
}
