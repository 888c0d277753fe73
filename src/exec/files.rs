//! The files a step leaves behind: reading `RUNWAY_OUTPUT` and `RUNWAY_CHECKPOINT` back
//! without trusting them (bounded, regular files only), and parsing the outputs.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::{Map, Value};

/// Which of the step's files a [`StepFileError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepFile {
    Output,
    Checkpoint,
}

impl fmt::Display for StepFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepFile::Output => "RUNWAY_OUTPUT",
            StepFile::Checkpoint => "RUNWAY_CHECKPOINT",
        })
    }
}

/// Something wrong with a file the step left. The attempt ran; this fails the step.
#[derive(Debug, thiserror::Error)]
pub enum StepFileError {
    #[error("{file} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        file: StepFile,
        size: u64,
        limit: u64,
    },
    #[error("{file} was replaced by something that is not a regular file")]
    NotRegular { file: StepFile },
    #[error("{file} could not be read: {source}")]
    Unreadable {
        file: StepFile,
        #[source]
        source: io::Error,
    },
    #[error("RUNWAY_OUTPUT line {line} is not valid UTF-8")]
    OutputNotUtf8 { line: usize },
    #[error("RUNWAY_OUTPUT starts with `{{` but is not a JSON object: {message}")]
    OutputJson { message: String },
    #[error("RUNWAY_OUTPUT line {line}: {problem}: `{text}`")]
    OutputLine {
        line: usize,
        problem: &'static str,
        text: String,
    },
}

/// Reads a step file of at most `limit` bytes. A missing file reads as empty: the step may
/// delete its files, which means it has nothing to say.
pub(crate) fn read_bounded(
    path: &Path,
    limit: u64,
    file: StepFile,
) -> Result<Vec<u8>, StepFileError> {
    let unreadable = |source| StepFileError::Unreadable { file, source };
    // The step owns the directory and may swap the file for a symlink or a FIFO: never follow
    // a link, and never block on opening a FIFO that has no writer.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let handle = match opened {
        Ok(handle) => handle,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(StepFileError::NotRegular { file });
        }
        Err(e) => return Err(unreadable(e)),
    };
    let meta = handle.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(StepFileError::NotRegular { file });
    }
    if meta.len() > limit {
        return Err(StepFileError::TooLarge {
            file,
            size: meta.len(),
            limit,
        });
    }
    // A process that escaped the kill could still be writing: read one byte past the limit
    // to notice growth instead of trusting the size seen above.
    let mut bytes = Vec::new();
    Read::take(&handle, limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(StepFileError::TooLarge {
            file,
            size: read.max(file_len(&handle)),
            limit,
        });
    }
    Ok(bytes)
}

fn file_len(handle: &File) -> u64 {
    handle.metadata().map_or(0, |m| m.len())
}

/// Parses `RUNWAY_OUTPUT`: one JSON object, or `key=value` lines.
pub(crate) fn parse_outputs(bytes: &[u8]) -> Result<Map<String, Value>, StepFileError> {
    let text = std::str::from_utf8(bytes).map_err(|e| StepFileError::OutputNotUtf8 {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
    })?;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<Map<String, Value>>(text).map_err(|e| {
            StepFileError::OutputJson {
                message: e.to_string(),
            }
        });
    }
    let mut outputs = Map::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = |problem| StepFileError::OutputLine {
            line: index + 1,
            problem,
            text: snippet(line),
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("expected `key=value`, a `#` comment or a blank line"));
        };
        if !valid_key(key) {
            return Err(bad("keys are `[A-Za-z_][A-Za-z0-9_.-]*`"));
        }
        outputs.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Ok(outputs)
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A bad line as quoted in an error: bounded, so a 1 MiB line does not become a 1 MiB message.
fn snippet(line: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut chars = line.chars();
    let head: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_lines_become_string_outputs() {
        let out =
            parse_outputs(b"# made by deploy.sh\n\nname=alpha\nurl=http://x/?a=b\r\nempty=\n")
                .unwrap();
        assert_eq!(out["name"], "alpha");
        assert_eq!(out["url"], "http://x/?a=b");
        assert_eq!(out["empty"], "");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_later_line_replaces_an_earlier_key() {
        let out = parse_outputs(b"n=1\nn=2\n").unwrap();
        assert_eq!(out["n"], "2");
    }

    #[test]
    fn keys_may_hold_dots_and_dashes_after_the_first_character() {
        let out = parse_outputs(b"_a.b-c=1\n").unwrap();
        assert_eq!(out["_a.b-c"], "1");
    }

    #[test]
    fn a_json_object_keeps_its_types() {
        let out = parse_outputs(br#"  {"rows": 12, "ok": true, "tags": ["a"]}"#).unwrap();
        assert_eq!(out["rows"], 12);
        assert_eq!(out["ok"], true);
        assert_eq!(out["tags"][0], "a");
    }

    #[test]
    fn an_empty_file_has_no_outputs() {
        assert!(parse_outputs(b"").unwrap().is_empty());
    }

    #[test]
    fn a_line_without_equals_is_named() {
        let err = parse_outputs(b"a=1\n# ok\nthis is not ok\nnor=this one\n").unwrap_err();
        assert!(
            matches!(err, StepFileError::OutputLine { line: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("`this is not ok`"), "{err}");
    }

    #[test]
    fn an_invalid_key_is_named() {
        let err = parse_outputs(b"9lives=1\n").unwrap_err();
        assert!(
            matches!(err, StepFileError::OutputLine { line: 1, .. }),
            "{err:?}"
        );
        let err = parse_outputs(b"a b=1\n").unwrap_err();
        assert!(
            matches!(err, StepFileError::OutputLine { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn broken_json_is_an_error() {
        let err = parse_outputs(b"{\"a\": 1,}").unwrap_err();
        assert!(matches!(err, StepFileError::OutputJson { .. }), "{err:?}");
        let err = parse_outputs(b"{\"a\": 1} trailing").unwrap_err();
        assert!(matches!(err, StepFileError::OutputJson { .. }), "{err:?}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let err = parse_outputs(b"a=1\nb=\xff\n").unwrap_err();
        assert!(
            matches!(err, StepFileError::OutputNotUtf8 { line: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn a_long_bad_line_is_quoted_briefly() {
        let line = "x".repeat(10_000);
        let err = parse_outputs(line.as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn reading_a_missing_file_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = read_bounded(&dir.path().join("gone"), 10, StepFile::Output).unwrap();
        assert!(bytes.is_empty());
    }

    #[test]
    fn reading_a_file_over_the_limit_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, [b'a'; 11]).unwrap();
        let err = read_bounded(&path, 10, StepFile::Checkpoint).unwrap_err();
        assert!(
            matches!(
                err,
                StepFileError::TooLarge {
                    file: StepFile::Checkpoint,
                    size: 11,
                    limit: 10
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            read_bounded(&path, 11, StepFile::Checkpoint).unwrap().len(),
            11
        );
    }

    #[test]
    fn a_symlink_or_fifo_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let err = read_bounded(&link, 1024, StepFile::Output).unwrap_err();
        assert!(matches!(err, StepFileError::NotRegular { .. }), "{err:?}");

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_bounded(&fifo, 1024, StepFile::Output).unwrap_err();
        assert!(matches!(err, StepFileError::NotRegular { .. }), "{err:?}");
    }
}
