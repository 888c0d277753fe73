//! The server's `.env` (`server_dir/.env`): the pilot-mode flags of seed 000 Phase B and
//! `MAINTENANCE_MODE` of rollback level 4, written by the playbooks' shell steps.

use std::collections::BTreeMap;
use std::path::Path;

/// The flags the go-live playbook's step 1 sets, in its order.
pub const PILOT_FLAGS: [&str; 5] = [
    "PILOT_MODE",
    "MAX_SCHOOLS",
    "QUEUE_RATE_LIMIT",
    "RBAC_STRICT_LOG",
    "PILOT_MAX_IMPORT_ROWS",
];

/// `KEY=VALUE` lines; blank lines and `#` comments ignored, one pair of surrounding quotes
/// stripped. A later line wins, as with dotenv.
#[derive(Debug, Clone, Default)]
pub struct DotEnv {
    vars: BTreeMap<String, String>,
}

impl DotEnv {
    /// Reads the file; a missing or unreadable file is an empty environment (the server
    /// starts without pilot mode, like the real one would).
    pub fn read(path: &Path) -> DotEnv {
        std::fs::read_to_string(path)
            .map(|text| DotEnv::parse(&text))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> DotEnv {
        let mut vars = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(value);
                vars.insert(key.trim().to_owned(), value.to_owned());
            }
        }
        DotEnv { vars }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// Whether `key` is exactly `true`: the seed's guardrails are no-ops otherwise.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    pub fn pilot_mode(&self) -> bool {
        self.flag("PILOT_MODE")
    }

    pub fn maintenance_mode(&self) -> bool {
        self.flag("MAINTENANCE_MODE")
    }

    /// `MAX_SCHOOLS`, 2 when unset (the seed's pilot capacity).
    pub fn max_schools(&self) -> u64 {
        self.number("MAX_SCHOOLS").unwrap_or(2)
    }

    /// `PILOT_MAX_IMPORT_ROWS`, 500 when unset (the seed's default).
    pub fn max_import_rows(&self) -> u64 {
        self.number("PILOT_MAX_IMPORT_ROWS").unwrap_or(500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lines_win_and_quotes_and_comments_are_handled() {
        let env = DotEnv::parse(
            "# pilot\nPILOT_MODE=false\nPILOT_MODE=true\nMAX_SCHOOLS=\"3\"\n\nX='a b'\n",
        );
        assert!(env.pilot_mode());
        assert_eq!(env.max_schools(), 3);
        assert_eq!(env.get("X"), Some("a b"));
        assert_eq!(env.max_import_rows(), 500);
    }

    #[test]
    fn only_exactly_true_turns_a_flag_on() {
        assert!(!DotEnv::parse("PILOT_MODE=TRUE\n").pilot_mode());
        assert!(!DotEnv::parse("PILOT_MODE=1\n").pilot_mode());
    }
}
