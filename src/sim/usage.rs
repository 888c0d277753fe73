//! `pnpm simulate:usage`: seed 000 Phase F, four real-school scenarios sent as real requests
//! to the platform (`BASE_URL`), each judged on its p95 target and a 5% error rate, plus the
//! server's memory growth and the queue. Verdict PASS / WARN / FAIL; FAIL prints
//! "DO NOT ONBOARD" and exits 1.
//!
//! By default it sends a tenth of the seed's request counts (`USAGE_SCALE=1` sends all of
//! them): the point is the latency under concurrency, which a tenth shows as well.

use std::time::Duration;

use serde_json::Value;

use super::load::{self, Hit};
use super::{Error, Sim, code};

struct Scenario {
    name: &'static str,
    load: &'static str,
    target_ms: u64,
    mix: &'static [(Hit, usize)],
}

const fn hit(method: &'static str, path: &'static str) -> Hit {
    Hit { method, path }
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "Monday attendance spike",
        load: "50 teachers x 30 students = 1550 requests",
        target_ms: 500,
        mix: &[
            (hit("POST", "/api/v1/attendance"), 1500),
            (hit("GET", "/api/v1/attendance"), 50),
        ],
    },
    Scenario {
        name: "Exam day load",
        load: "500 student logins + 200 exam submissions",
        target_ms: 800,
        mix: &[
            (hit("POST", "/api/v1/auth/login"), 500),
            (hit("POST", "/api/v1/exams/submit"), 200),
        ],
    },
    Scenario {
        name: "Teacher bulk upload",
        load: "100 teacher records + 200 concurrent reads",
        target_ms: 1000,
        mix: &[
            (hit("POST", "/api/v1/teachers"), 100),
            (hit("GET", "/api/v1/teachers"), 200),
        ],
    },
    Scenario {
        name: "Admin report export",
        load: "20 concurrent exports + 300 background requests",
        target_ms: 2000,
        mix: &[
            (hit("GET", "/api/v1/reports/export"), 20),
            (hit("GET", "/api/v1/attendance"), 300),
        ],
    },
];

/// Requests in flight at once, per scenario.
const CONCURRENCY: usize = 50;
/// The seed's memory limit across all scenarios.
const MEMORY_LIMIT_KB: u64 = 100 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// Judges one scenario: FAIL over the target or at 5% errors, WARN above 80% of the target
/// or at 1% errors.
fn judge(p95_ms: u64, target_ms: u64, error_pct: f64) -> Verdict {
    if p95_ms > target_ms || error_pct >= 5.0 {
        Verdict::Fail
    } else if p95_ms * 5 > target_ms * 4 || error_pct >= 1.0 {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

fn scaled(count: usize, scale: f64) -> usize {
    ((count as f64 * scale).ceil() as usize).max(1)
}

/// Interleaves the mix so each kind of request is spread over the whole scenario.
fn plan(scenario: &Scenario, scale: f64) -> Vec<Hit> {
    let mut left: Vec<(Hit, usize)> = scenario
        .mix
        .iter()
        .map(|(h, n)| (*h, scaled(*n, scale)))
        .collect();
    let total: usize = left.iter().map(|(_, n)| n).sum();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for (h, n) in &mut left {
            if *n > 0 {
                out.push(*h);
                *n -= 1;
            }
        }
    }
    out
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub async fn simulate(sim: &Sim) -> Result<u8, Error> {
    let state = sim.load()?;
    let base =
        std::env::var("BASE_URL").unwrap_or_else(|_| format!("http://127.0.0.1:{}", state.port));
    let scale = std::env::var("USAGE_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s <= 1.0)
        .unwrap_or(0.1);
    let client = load::client(Duration::from_secs(30));
    println!(
        "Usage simulation against {base} ({:.0}% of the seed's request counts, {CONCURRENCY} concurrent)",
        scale * 100.0
    );
    let rss_before = rss_kb(state.server_pid);
    let mut worst = Verdict::Pass;
    for scenario in &SCENARIOS {
        let stats = load::run(&client, &base, plan(scenario, scale), CONCURRENCY).await;
        let verdict = judge(stats.p95_ms, scenario.target_ms, stats.error_pct());
        worst = worst.max(verdict);
        println!(
            "  {:<24} {:>4} req  p95 {:>5}ms (target {:>4}ms)  errors {:>5.1}%  {}   [{}]",
            scenario.name,
            stats.requests,
            stats.p95_ms,
            scenario.target_ms,
            stats.error_pct(),
            verdict.as_str(),
            scenario.load
        );
    }
    let memory = match (rss_before, rss_kb(sim.load()?.server_pid)) {
        (Some(before), Some(after)) => {
            let growth = after.saturating_sub(before);
            let verdict = if growth >= MEMORY_LIMIT_KB {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            println!(
                "  Memory: +{:.1}MB RSS across all scenarios (limit 100MB)  {}",
                growth as f64 / 1024.0,
                verdict.as_str()
            );
            verdict
        }
        _ => {
            println!("  Memory: not measured (the server's pid is not known to the sim)  WARN");
            Verdict::Warn
        }
    };
    worst = worst.max(memory);
    let queue = match client.get(format!("{base}/health/golive")).send().await {
        Ok(r) => r
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        Err(_) => None,
    };
    let queue_verdict = match queue.as_ref().map(|d| &d["queue"]) {
        Some(q) if q["dlq_count"].as_u64().is_some_and(|n| n > 10) => {
            println!("  Queue: overflow, {} failed jobs  FAIL", q["dlq_count"]);
            Verdict::Fail
        }
        Some(q) if q["lag_seconds"].as_f64().is_some_and(|s| s > 30.0) => {
            println!("  Queue: no overflow, but lag {}s  WARN", q["lag_seconds"]);
            Verdict::Warn
        }
        Some(q) if q.is_object() => {
            println!(
                "  Queue: no overflow (lag {}s, {} failed jobs)  PASS",
                q["lag_seconds"], q["dlq_count"]
            );
            Verdict::Pass
        }
        _ => {
            println!("  Queue: the dashboard did not answer  FAIL");
            Verdict::Fail
        }
    };
    worst = worst.max(queue_verdict);
    println!("Verdict: {}", worst.as_str());
    if worst == Verdict::Fail {
        println!("\u{26d4} DO NOT ONBOARD");
        Ok(code::FAILED)
    } else {
        Ok(code::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_targets_and_error_rate() {
        assert_eq!(judge(100, 500, 0.0), Verdict::Pass);
        assert_eq!(judge(450, 500, 0.0), Verdict::Warn);
        assert_eq!(judge(501, 500, 0.0), Verdict::Fail);
        assert_eq!(judge(10, 500, 1.5), Verdict::Warn);
        assert_eq!(judge(10, 500, 5.0), Verdict::Fail);
    }

    #[test]
    fn a_tenth_of_the_seed_keeps_every_kind_of_request() {
        let p = plan(&SCENARIOS[3], 0.1);
        assert_eq!(p.len(), 2 + 30);
        assert_eq!(p[0].path, "/api/v1/reports/export");
        assert_eq!(p[1].path, "/api/v1/attendance");
        assert_eq!(plan(&SCENARIOS[0], 1.0).len(), 1550);
    }
}
