//! Measured load: real requests against the simulated server, their p95 and error rate.
//! Used by `pnpm simulate:usage` and the quick burst of `pnpm golive:check`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// One request of a load: method and path.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub method: &'static str,
    pub path: &'static str,
}

/// What a load measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub requests: usize,
    pub errors: usize,
    pub p95_ms: u64,
}

impl Stats {
    pub fn error_pct(&self) -> f64 {
        if self.requests == 0 {
            100.0
        } else {
            100.0 * self.errors as f64 / self.requests as f64
        }
    }
}

/// A client for the sim's loads: no proxy, a per-request timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("a plain HTTP client builds")
}

/// Sends every hit of `plan` to `base`, `concurrency` at a time; a non-2xx answer or a
/// transport error is an error. p95 is nearest-rank over every request, as the go-live
/// playbook's burst computes it.
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    plan: Vec<Hit>,
    concurrency: usize,
) -> Stats {
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(plan.len())));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1).min(plan.len().max(1)) {
        let (plan, next, samples, client) =
            (plan.clone(), next.clone(), samples.clone(), client.clone());
        let base = base.trim_end_matches('/').to_owned();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(hit) = plan.get(i) else { break };
                let url = format!("{base}{}", hit.path);
                let started = Instant::now();
                let request = match hit.method {
                    "POST" => client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"sim": true}"#),
                    _ => client.get(&url),
                };
                let ok = match request.send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                samples.lock().await.push((ok, started.elapsed()));
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let samples = std::mem::take(&mut *samples.lock().await);
    summarize(&samples)
}

fn summarize(samples: &[(bool, Duration)]) -> Stats {
    let mut ms: Vec<u64> = samples.iter().map(|(_, d)| d.as_millis() as u64).collect();
    ms.sort_unstable();
    let p95 = if ms.is_empty() {
        0
    } else {
        let rank = (ms.len() * 95).div_ceil(100).max(1);
        ms[rank - 1]
    };
    Stats {
        requests: samples.len(),
        errors: samples.iter().filter(|(ok, _)| !ok).count(),
        p95_ms: p95,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_nearest_rank() {
        let samples: Vec<(bool, Duration)> = (1..=20)
            .map(|i| (i != 7, Duration::from_millis(i * 10)))
            .collect();
        let s = summarize(&samples);
        assert_eq!(s.p95_ms, 190);
        assert_eq!(s.errors, 1);
        assert!((s.error_pct() - 5.0).abs() < 1e-9);
        assert_eq!(summarize(&[]).p95_ms, 0);
    }
}
