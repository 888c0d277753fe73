//! The time a scheduler decides ticks by: the system clock, or a simulated one that runs
//! faster, for the benchmark and tests that drive thousands of ticks through real
//! scheduler processes (`runway scheduler --simulated-clock`).

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    System,
    /// `start + (system now - epoch) * rate`. Every process given the same three values
    /// agrees on the time, whenever it was started (or restarted after a kill).
    Simulated {
        start: DateTime<Utc>,
        epoch: DateTime<Utc>,
        rate: f64,
    },
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match *self {
            Clock::System => Utc::now(),
            Clock::Simulated { start, epoch, rate } => {
                let real = (Utc::now() - epoch).num_microseconds().unwrap_or(i64::MAX);
                start + chrono::Duration::microseconds((real as f64 * rate) as i64)
            }
        }
    }

    /// Parses `START,RATE,EPOCH` (two RFC 3339 times and a positive number): simulated time
    /// starts at START when the system clock reads EPOCH and runs RATE times as fast.
    pub fn parse_simulated(text: &str) -> Result<Clock, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let [start, rate, epoch] = parts.as_slice() else {
            return Err(format!(
                "`{text}` is not START,RATE,EPOCH (e.g. `2026-03-01T00:00:00Z,600,2026-11-20T10:00:00Z`)"
            ));
        };
        let time = |what: &str, t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{what} `{t}` is not an RFC 3339 time: {e}"))
        };
        let rate: f64 = rate
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("RATE `{rate}` is not a positive number"))?;
        Ok(Clock::Simulated {
            start: time("START", start)?,
            epoch: time("EPOCH", epoch)?,
            rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_runs_rate_times_as_fast_from_its_epoch() {
        let epoch = Utc::now() - chrono::Duration::seconds(10);
        let clock =
            Clock::parse_simulated(&format!("2026-03-01T00:00:00Z,60,{}", epoch.to_rfc3339()))
                .unwrap();
        let start = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let elapsed = clock.now() - start.with_timezone(&Utc);
        // Ten real seconds (and a little more while this test runs) at 60x.
        assert!(elapsed >= chrono::Duration::seconds(600), "{elapsed}");
        assert!(elapsed < chrono::Duration::seconds(3600), "{elapsed}");
    }

    #[test]
    fn bad_simulated_clocks_say_what_is_wrong() {
        assert!(
            Clock::parse_simulated("2026-03-01T00:00:00Z,60")
                .unwrap_err()
                .contains("START,RATE,EPOCH")
        );
        assert!(
            Clock::parse_simulated("2026-03-01T00:00:00Z,0,2026-03-01T00:00:00Z")
                .unwrap_err()
                .contains("RATE")
        );
        assert!(
            Clock::parse_simulated("yesterday,2,2026-03-01T00:00:00Z")
                .unwrap_err()
                .contains("START")
        );
    }
}
