//! Verifying an exported JSON report (`runway verify FILE.json`), offline and against the
//! store.
//!
//! Offline, a file is checked for what its own content can prove: its events form one
//! intact chain of one run, its definition hashes to the content hash sealed in the first
//! event, and its summary is exactly what its events say (derived again with
//! [`super::build::summarize`]). What no file can prove on its own: that its chain is the
//! run's real one. Whoever can edit the file can rewrite every event and recompute every
//! hash into a new, self-consistent chain. Only a head recorded elsewhere tells the two
//! apart: the store's ([`against_store`]), or one an auditor wrote down when the run ended.

use serde_json::Value;

use super::build::summarize;
use super::model::{FORMAT, StoreFacts};
use crate::store::{Event, Evidence, chain};

/// Why a file is not an export that can be checked at all (as opposed to one that fails
/// its checks).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a Runway evidence export: {0}")]
    Shape(String),
}

/// What checking a file found.
#[derive(Debug, Clone, PartialEq)]
pub struct FileVerdict {
    pub run_id: String,
    pub events: usize,
    /// The last event's seq and hash, as the file has them.
    pub head: Option<(i64, String)>,
    /// Each failed check as a sentence; empty when the file is intact.
    pub problems: Vec<String>,
}

/// A parsed export: the parts verification reads.
#[derive(Debug, Clone)]
pub struct Export {
    pub summary: Value,
    pub store: StoreFacts,
    pub definition: String,
    pub events: Vec<Event>,
}

/// Reads an export's text. Unknown fields are kept in `summary` (and fail its check).
pub fn parse(text: &str) -> Result<Export, ExportError> {
    let mut root: Value = serde_json::from_str(text)?;
    let shape = |m: String| ExportError::Shape(m);
    let Some(map) = root.as_object_mut() else {
        return Err(shape("the top level is not an object".into()));
    };
    match map.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(shape(format!(
                "format `{other}` is not `{FORMAT}` (made by another version of runway?)"
            )));
        }
        None => return Err(shape("it has no `format` field".into())),
    }
    let mut take = |key: &str| {
        map.remove(key)
            .ok_or_else(|| shape(format!("it has no `{key}` field")))
    };
    let summary = take("summary")?;
    let store =
        serde_json::from_value(take("store")?).map_err(|e| shape(format!("`store`: {e}")))?;
    let definition = match take("definition")? {
        Value::String(s) => s,
        _ => return Err(shape("`definition` is not a string".into())),
    };
    let events =
        serde_json::from_value(take("events")?).map_err(|e| shape(format!("`events`: {e}")))?;
    Ok(Export {
        summary,
        store,
        definition,
        events,
    })
}

/// Checks an export for what its own content can prove (see the module docs).
pub fn offline(export: &Export) -> FileVerdict {
    let events = &export.events;
    let run_id = events
        .first()
        .map_or_else(String::new, |e| e.run_id.clone());
    let mut problems = Vec::new();
    if events.is_empty() {
        problems.push("the file holds no events".to_owned());
    }
    if let Some(e) = events.iter().find(|e| e.run_id != run_id) {
        problems.push(format!(
            "event {} belongs to run {}, not {run_id}",
            e.seq, e.run_id
        ));
    }
    if let Some(seq) = chain::verify(events) {
        problems.push(broken(events, seq));
    }
    let created = events.iter().find(|e| e.kind == "run.created");
    let sealed_hash = created.and_then(|e| e.data.get("content_hash")?.as_str());
    let actual_hash = crate::plan::content_hash(&export.definition);
    if sealed_hash != Some(actual_hash.as_str()) {
        problems.push(format!(
            "the definition hashes to {actual_hash}, not to the content hash sealed in run.created ({})",
            sealed_hash.unwrap_or("none")
        ));
    }
    let derived = serde_json::to_value(summarize(&export.definition, events, &export.store))
        .expect("a summary serializes");
    if let Some(at) = first_difference(&derived, &export.summary, "/summary") {
        problems.push(format!(
            "the summary does not say what the events say: it differs at {at}"
        ));
    }
    FileVerdict {
        run_id,
        events: events.len(),
        head: events.last().map(|e| (e.seq, e.hash.clone())),
        problems,
    }
}

/// How the file's chain relates to the one in the store: one sentence, and whether they
/// agree (the file's chain is the stored one, or a prefix of it: an export taken while the
/// run went on).
pub fn against_store(export: &Export, stored: &Evidence) -> (bool, String) {
    let (file, store) = (&export.events, &stored.events);
    if let Some(seq) = chain::verify(store) {
        return (
            false,
            format!("the store's own chain is broken: {}", broken(store, seq)),
        );
    }
    for (i, (f, s)) in file.iter().zip(store).enumerate() {
        if f.hash != s.hash {
            return (
                false,
                format!(
                    "the file differs from the store at event {} (file {}, store {})",
                    i + 1,
                    f.hash,
                    s.hash
                ),
            );
        }
    }
    let stored_head = stored.head.as_ref().map_or(0, |h| h.seq);
    match file.len().cmp(&store.len()) {
        std::cmp::Ordering::Greater => (
            false,
            format!(
                "the file has {} event(s) after the store's last ({}): the store never recorded them",
                file.len() - store.len(),
                store.len()
            ),
        ),
        std::cmp::Ordering::Less => (
            true,
            format!(
                "the file's chain is the store's up to event {} of {} (the run went on after the export; recorded head {stored_head})",
                file.len(),
                store.len()
            ),
        ),
        std::cmp::Ordering::Equal => (
            true,
            format!("the file's chain is the store's, head event {stored_head} included"),
        ),
    }
}

/// "event 7 (step.succeeded) does not match ...": the sentence for a broken chain.
pub fn broken(events: &[Event], seq: i64) -> String {
    let kind = events
        .iter()
        .find(|e| e.seq == seq)
        .map_or("?", |e| e.kind.as_str());
    format!(
        "event {seq} ({kind}) does not match its content or does not link to the event before it"
    )
}

/// The JSON pointer of the first place where `a` and `b` differ, `None` when equal.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(here),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}/{k}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(v, w, &format!("{at}/{i}")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{at}/{}", x.len().min(y.len())))
        }
        _ => (a != b).then(|| at.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn first_difference_names_the_path() {
        let a = json!({"a": [1, {"b": 2}], "c": 3});
        assert_eq!(first_difference(&a, &a, ""), None);
        assert_eq!(
            first_difference(&a, &json!({"a": [1, {"b": 5}], "c": 3}), ""),
            Some("/a/1/b".into())
        );
        assert_eq!(
            first_difference(&a, &json!({"a": [1], "c": 3}), ""),
            Some("/a/1".into())
        );
        assert_eq!(
            first_difference(&a, &json!({"a": [1, {"b": 2}], "c": 3, "d": 0}), ""),
            Some("/d".into())
        );
    }

    #[test]
    fn a_file_that_is_not_an_export_is_refused_with_the_reason() {
        assert!(matches!(parse("{"), Err(ExportError::Json(_))));
        let e = parse(r#"{"format": "other/9"}"#).unwrap_err().to_string();
        assert!(e.contains("format `other/9`"), "{e}");
        let e = parse(&format!(r#"{{"format": "{FORMAT}"}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `summary` field"), "{e}");
    }
}
