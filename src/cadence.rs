//! When a schedule fires: a cron expression (5 fields, or 6 with seconds first) read in an
//! IANA time zone, with croner 4 and chrono-tz. Pure: no clock, no I/O; callers pass the
//! instants they ask about, so the compiler can check an expression and tests can walk ten
//! years of ticks in milliseconds.
//!
//! # Daylight-saving rule
//!
//! A cron expression names wall-clock times, and a time zone's clock skips an hour in spring
//! (a *gap*) and repeats one in autumn (a *fold*). The rule, which is croner's and close to
//! Vixie cron's:
//!
//! - A **fixed-time** expression (exactly one value in each of the second, minute and hour
//!   fields, such as `30 2 * * *`) fires once on every day it names. A time inside a gap
//!   fires at the first instant after the gap (02:30 Europe/Berlin on the spring-forward day
//!   fires at 03:00 CEST); a time inside a fold fires once, at its first occurrence (02:30
//!   CEST on the fall-back day, not again at 02:30 CET).
//! - Any other expression (a wildcard, step, range or list in those fields, such as
//!   `*/5 * * * *` or `0 * * * *`) is an **interval**: it fires at every instant whose wall
//!   clock matches. Times inside a gap do not exist and do not fire; times inside a fold
//!   fire at both instants, so the schedule keeps its rhythm in real time.
//!
//! Ticks are whole seconds; an instant with milliseconds is treated as the second it is in.

use std::fmt;

use chrono::{DateTime, TimeZone as _, Timelike as _, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, Direction, JobType};

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    zone: Tz,
    expression: String,
}

/// Why a cron expression or a time zone is unusable; the messages are sentences a user can
/// act on, and [`CadenceError::hint`] says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CadenceError {
    #[error("invalid cron expression `{expression}`: {reason}")]
    Cron { expression: String, reason: String },
    #[error("cron expression `{0}` never fires")]
    Never(String),
    #[error("`{zone}` is not an IANA time zone")]
    Zone {
        zone: String,
        /// The zone with the same name in another case, if there is one.
        close: Option<&'static str>,
    },
}

impl CadenceError {
    pub fn hint(&self) -> String {
        match self {
            CadenceError::Cron { .. } => {
                "5 fields: minute hour day-of-month month day-of-week, e.g. `*/5 * * * *`; \
                 6 fields put seconds first"
                    .to_owned()
            }
            CadenceError::Never(_) => {
                "it names a date that does not exist (such as 31 February); fix the day or month"
                    .to_owned()
            }
            CadenceError::Zone {
                close: Some(exact), ..
            } => format!("did you mean `{exact}`?"),
            CadenceError::Zone { close: None, .. } => {
                "write e.g. `Europe/Berlin`, `America/New_York` or `UTC`".to_owned()
            }
        }
    }
}

/// The one cron dialect Runway accepts: 5 fields, or 6 with seconds first; no year field.
pub fn parse_cron(expression: &str) -> Result<Cron, CadenceError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| CadenceError::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })
}

/// An IANA time zone by its exact name.
pub fn parse_zone(zone: &str) -> Result<Tz, CadenceError> {
    zone.parse::<Tz>().map_err(|_| CadenceError::Zone {
        zone: zone.to_owned(),
        close: chrono_tz::TZ_VARIANTS
            .iter()
            .map(|z| z.name())
            .find(|n| n.eq_ignore_ascii_case(zone)),
    })
}

impl Cadence {
    /// Parses both and checks that the expression fires at least once: croner searches
    /// forward from 2000-01-01 (every real date recurs within 8 years, 29 February included).
    pub fn parse(expression: &str, zone: &str) -> Result<Cadence, CadenceError> {
        let cadence = Cadence {
            cron: parse_cron(expression)?,
            zone: parse_zone(zone)?,
            expression: expression.to_owned(),
        };
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        if cadence
            .first_at_or_after(reference)
            .is_none_or(|t| t > reference + chrono::Duration::days(8 * 366))
        {
            return Err(CadenceError::Never(expression.to_owned()));
        }
        Ok(cadence)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether the DST rule treats this as a fixed-time expression (module docs).
    pub fn is_fixed_time(&self) -> bool {
        self.cron.determine_job_type() == JobType::FixedTime
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.search(floor(t), false, Direction::Forward)
    }

    /// The first tick at or after `t`.
    pub fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = floor(t);
        // A `t` inside a second starts the search at the next whole one.
        let start = if start < t {
            start + chrono::Duration::seconds(1)
        } else {
            start
        };
        self.search(start, true, Direction::Forward)
    }

    /// The last tick strictly before `t`.
    pub fn last_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = floor(t);
        // Inside a second, the second itself is before `t`.
        self.search(start, start < t, Direction::Backward)
    }

    /// The last tick at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.search(floor(t), true, Direction::Backward)
    }

    fn search(
        &self,
        start: DateTime<Utc>,
        inclusive: bool,
        direction: Direction,
    ) -> Option<DateTime<Utc>> {
        let local = start.with_timezone(&self.zone);
        let found = match direction {
            Direction::Forward => self.cron.find_next_occurrence(&local, inclusive),
            Direction::Backward => self.cron.find_previous_occurrence(&local, inclusive),
        };
        found.ok().map(|t| t.with_timezone(&Utc))
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({})", self.expression, self.zone.name())
    }
}

/// `t` on the wall clock of `zone`, for people: `2026-03-29 03:00:00 CEST` (RFC 3339 UTC
/// for a zone that does not parse).
pub fn local(zone: &str, t: DateTime<Utc>) -> String {
    match parse_zone(zone) {
        Ok(zone) => t
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => t.to_rfc3339(),
    }
}

fn floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields_parse_and_seven_do_not() {
        assert!(Cadence::parse("*/5 * * * *", "UTC").is_ok());
        assert!(Cadence::parse("30 */5 * * * *", "UTC").is_ok());
        let seven = Cadence::parse("0 0 0 1 1 * 2027", "UTC").unwrap_err();
        assert!(matches!(seven, CadenceError::Cron { .. }), "{seven}");
        assert!(matches!(
            Cadence::parse("61 * * * *", "UTC"),
            Err(CadenceError::Cron { .. })
        ));
    }

    #[test]
    fn an_expression_that_never_fires_is_refused() {
        assert_eq!(
            Cadence::parse("0 0 31 2 *", "UTC").unwrap_err(),
            CadenceError::Never("0 0 31 2 *".into())
        );
        // 29 February recurs within the search.
        assert!(Cadence::parse("0 0 29 2 *", "UTC").is_ok());
    }

    #[test]
    fn a_zone_in_the_wrong_case_gets_the_exact_name() {
        let e = Cadence::parse("* * * * *", "europe/berlin").unwrap_err();
        assert_eq!(e.hint(), "did you mean `Europe/Berlin`?");
        let e = Cadence::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(e.hint().contains("Europe/Berlin"), "{}", e.hint());
    }

    #[test]
    fn neighbours_of_an_instant_are_strict_or_inclusive_as_named() {
        let c = Cadence::parse("*/5 * * * *", "UTC").unwrap();
        let tick = utc("2026-06-01T12:05:00Z");
        assert_eq!(c.first_at_or_after(tick), Some(tick));
        assert_eq!(c.next_after(tick), Some(utc("2026-06-01T12:10:00Z")));
        assert_eq!(c.last_before(tick), Some(utc("2026-06-01T12:00:00Z")));
        assert_eq!(c.last_at_or_before(tick), Some(tick));
        let inside = tick + chrono::Duration::milliseconds(400);
        assert_eq!(
            c.first_at_or_after(inside),
            Some(utc("2026-06-01T12:10:00Z"))
        );
        assert_eq!(c.last_before(inside), Some(tick));
    }

    #[test]
    fn daily_0230_berlin_fires_once_on_both_transition_days() {
        let c = Cadence::parse("30 2 * * *", "Europe/Berlin").unwrap();
        assert!(c.is_fixed_time());
        // Spring forward, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let spring = c.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            spring,
            utc("2026-03-29T01:00:00Z"),
            "{}",
            local("Europe/Berlin", spring)
        );
        assert_eq!(c.next_after(spring), Some(utc("2026-03-30T00:30:00Z")));
        // Fall back, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let autumn = c.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(
            autumn,
            utc("2026-10-25T00:30:00Z"),
            "{}",
            local("Europe/Berlin", autumn)
        );
        assert_eq!(c.next_after(autumn), Some(utc("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn an_interval_keeps_real_time_across_the_fold() {
        let c = Cadence::parse("0 * * * *", "Europe/Berlin").unwrap();
        assert!(!c.is_fixed_time());
        let mut t = utc("2026-10-24T22:30:00Z");
        let mut ticks = Vec::new();
        for _ in 0..4 {
            t = c.next_after(t).unwrap();
            ticks.push(t);
        }
        // 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET: one an hour, in real time.
        assert_eq!(
            ticks,
            [
                utc("2026-10-24T23:00:00Z"),
                utc("2026-10-25T00:00:00Z"),
                utc("2026-10-25T01:00:00Z"),
                utc("2026-10-25T02:00:00Z"),
            ]
        );
    }
}
