//! Turning the bytes of a file into text the compiler will read, or a located refusal.
//!
//! This is the first gate for hostile input: size, binary content and encoding are checked
//! here, before the YAML parser sees a byte.

use crate::diagnostic::{Diagnostic, Location, Severity};

/// Playbooks are hand-written; the largest shipped one is a few kilobytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// A playbook file: its display name (a path, usually) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    /// Checks that `bytes` can be a playbook: not too large, not binary, valid UTF-8, not
    /// empty. The error points at the offending byte where there is one.
    pub fn from_bytes(name: impl Into<String>, bytes: &[u8]) -> Result<Source, Diagnostic> {
        let refuse = |location: Location, message: String, hint: &str| Diagnostic {
            severity: Severity::Error,
            location,
            message,
            hint: Some(hint.to_owned()),
        };
        if bytes.len() > MAX_FILE_BYTES {
            return Err(refuse(
                Location::new(1, 1, 1),
                format!(
                    "file is {:.1} MiB; a playbook may be at most {} MiB",
                    bytes.len() as f64 / (1024.0 * 1024.0),
                    MAX_FILE_BYTES / (1024 * 1024)
                ),
                "split the procedure into several playbooks and `invoke` them",
            ));
        }
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            return Err(refuse(
                position_of(bytes, at),
                "this is a binary file (it contains a NUL byte), not a YAML playbook".into(),
                "check the path: playbooks are UTF-8 YAML text",
            ));
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                return Err(refuse(
                    position_of(bytes, e.valid_up_to()),
                    "file is not valid UTF-8".into(),
                    "save the playbook as UTF-8",
                ));
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Err(refuse(
                Location::new(1, 1, 1),
                "file is empty".into(),
                "a playbook starts with `runway: 1`, a `name:` and a list of `steps:`",
            ));
        }
        Ok(Source {
            name: name.into(),
            text: text.to_owned(),
        })
    }
}

/// Line and column of byte `at`, counting only what precedes it (which is valid UTF-8 up
/// to the first bad byte, and lossily decoded otherwise).
fn position_of(bytes: &[u8], at: usize) -> Location {
    let before = String::from_utf8_lossy(&bytes[..at.min(bytes.len())]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Location::new(line, column, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_located() {
        let err = Source::from_bytes("f", b"runway: 1\nname: \xff\n").unwrap_err();
        assert_eq!(err.message, "file is not valid UTF-8");
        assert_eq!(err.location, Location::new(2, 7, 1));
    }

    #[test]
    fn empty_and_binary_files_are_refused() {
        assert_eq!(
            Source::from_bytes("f", b"  \n").unwrap_err().message,
            "file is empty"
        );
        assert!(
            Source::from_bytes("f", b"\x7fELF\x00\x01")
                .unwrap_err()
                .message
                .contains("binary")
        );
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        assert_eq!(
            Source::from_bytes("f", "\u{feff}a: 1".as_bytes())
                .unwrap()
                .text,
            "a: 1"
        );
    }
}
