//! Durations as written in playbooks: `500ms`, `30s`, `10m`, `4h`, `2d`, `1h30m`.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Serialize, Serializer};

/// A positive span of time, printed back in the form a user writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

/// The longest duration accepted anywhere (a year); beyond it a value is surely a typo.
const MAX: StdDuration = StdDuration::from_secs(366 * 24 * 3600);

impl Duration {
    pub fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    pub fn as_std(self) -> StdDuration {
        self.0
    }

    /// Parses `1h30m`-style text. The error says what was wrong in a sentence.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = StdDuration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "`{t}` is not a duration: expected a number at `{rest}`"
                ));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{t}` is not a duration: the number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => StdDuration::from_millis(number),
                "s" => StdDuration::from_secs(number),
                "m" => StdDuration::from_secs(number.saturating_mul(60)),
                "h" => StdDuration::from_secs(number.saturating_mul(3600)),
                "d" => StdDuration::from_secs(number.saturating_mul(86_400)),
                "" => {
                    return Err(format!(
                        "`{t}` has no unit; write e.g. `{number}s` or `{number}m`"
                    ));
                }
                other => {
                    let unit = match other.trim().to_ascii_lowercase().as_str() {
                        "sec" | "secs" | "second" | "seconds" => Some("s"),
                        "min" | "mins" | "minute" | "minutes" => Some("m"),
                        "hr" | "hrs" | "hour" | "hours" => Some("h"),
                        "day" | "days" => Some("d"),
                        _ => None,
                    };
                    return Err(match unit {
                        Some(u) => format!("`{t}` is not a duration; write `{number}{u}`"),
                        None => format!(
                            "`{t}` is not a duration: `{}` is not a unit; use ms, s, m, h or d, e.g. `1h30m`",
                            other.trim()
                        ),
                    });
                }
            };
            total = total.saturating_add(part);
        }
        if total > MAX {
            return Err(format!("`{t}` is longer than a year"));
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = ms;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as `30s`, `10m`, `4h` or `1h30m`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_compound_durations() {
        assert_eq!(Duration::parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(Duration::parse("1h30m").unwrap().to_string(), "1h30m");
        assert_eq!(Duration::parse("500ms").unwrap().to_string(), "500ms");
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
    }

    #[test]
    fn explains_bad_durations() {
        assert_eq!(
            Duration::parse("10").unwrap_err(),
            "`10` has no unit; write e.g. `10s` or `10m`"
        );
        assert_eq!(
            Duration::parse("5 min").unwrap_err(),
            "`5 min` is not a duration; write `5m`"
        );
        assert_eq!(
            Duration::parse("5x").unwrap_err(),
            "`5x` is not a duration: `x` is not a unit; use ms, s, m, h or d, e.g. `1h30m`"
        );
        assert!(Duration::parse("99999999999999999999s").is_err());
        assert!(
            Duration::parse("400d")
                .unwrap_err()
                .contains("longer than a year")
        );
    }
}
