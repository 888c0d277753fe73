//! The evidence hash chain: how an event's `hash` is computed, and how a chain is checked.
//!
//! Pure functions over [`Event`]s, so `runway verify` can check a JSON export with exactly
//! the code the store uses to seal events.
//!
//! An event's hash is the lower-case hex SHA-256 of the compact JSON array
//! `[run_id, seq, at_ms, kind, step_id, attempt, data, prev_hash]`, where `at_ms` is unix
//! milliseconds, absent `step_id`/`attempt` are `null`, and `data` is written canonically:
//! object keys sorted by their UTF-8 bytes, at every depth. Sorting matters because the
//! backends disagree on key order (Postgres `jsonb` reorders keys, SQLite text keeps them as
//! written) and the hash must not depend on where the event was stored.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::Event;

/// `prev_hash` of the first event of every run.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an event's hash covers: every column but the hash itself.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub run_id: &'a str,
    pub seq: i64,
    pub at_ms: i64,
    pub kind: &'a str,
    pub step_id: Option<&'a str>,
    pub attempt: Option<i32>,
    pub data: &'a Value,
    pub prev_hash: &'a str,
}

/// The hash of an event with these fields (see the module docs for the exact form).
pub fn hash(f: &Fields<'_>) -> String {
    let canonical = Value::Array(vec![
        Value::from(f.run_id),
        Value::from(f.seq),
        Value::from(f.at_ms),
        Value::from(f.kind),
        f.step_id.map_or(Value::Null, Value::from),
        f.attempt.map_or(Value::Null, Value::from),
        sorted(f.data),
        Value::from(f.prev_hash),
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// `data` in the canonical form its event's hash covers: compact JSON, object keys sorted
/// at every depth. Postgres' `runway_event_hash` hashes the text given here.
pub fn canonical(data: &Value) -> String {
    sorted(data).to_string()
}

/// The hash `event` should have, recomputed from its other fields.
pub fn expected_hash(event: &Event) -> String {
    hash(&Fields {
        run_id: &event.run_id,
        seq: event.seq,
        at_ms: event.at.timestamp_millis(),
        kind: &event.kind,
        step_id: event.step_id.as_deref(),
        attempt: event.attempt,
        data: &event.data,
        prev_hash: &event.prev_hash,
    })
}

/// The `seq` of the first event that breaks the chain, or `None` when every event links
/// to the one before and its hash matches its content. `events` must be one run's events
/// in `seq` order; a missing, repeated or reordered event breaks the chain where it occurs.
pub fn verify(events: &[Event]) -> Option<i64> {
    let mut prev = GENESIS;
    for (i, event) in events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if event.seq != expected_seq
            || event.prev_hash != prev
            || event.hash != expected_hash(event)
        {
            return Some(event.seq);
        }
        prev = &event.hash;
    }
    None
}

/// `value` with the keys of every object in sorted order. serde_json is built with
/// `preserve_order` in this crate, so a map keeps insertion order and inserting sorted keys
/// into a fresh one is what sorts it.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(map.len());
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;

    fn chain(datas: &[Value]) -> Vec<Event> {
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for (i, data) in datas.iter().enumerate() {
            let seq = i as i64 + 1;
            let at = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000 + seq).unwrap();
            let h = hash(&Fields {
                run_id: "r1",
                seq,
                at_ms: at.timestamp_millis(),
                kind: "k",
                step_id: Some("s"),
                attempt: Some(1),
                data,
                prev_hash: &prev,
            });
            out.push(Event {
                run_id: "r1".into(),
                seq,
                at,
                kind: "k".into(),
                step_id: Some("s".into()),
                attempt: Some(1),
                data: data.clone(),
                prev_hash: prev,
                hash: h.clone(),
            });
            prev = h;
        }
        out
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[{"q":1,"p":2}],"x":2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":2,"y":[{"p":2,"q":1}]},"b":1}"#).unwrap();
        let f = |data| Fields {
            run_id: "r",
            seq: 1,
            at_ms: 5,
            kind: "k",
            step_id: None,
            attempt: None,
            data,
            prev_hash: GENESIS,
        };
        assert_eq!(hash(&f(&a)), hash(&f(&b)));
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let (one, two, other_prev) = (json!({"a": 1}), json!({"a": 2}), "1".repeat(64));
        let base = Fields {
            run_id: "r",
            seq: 1,
            at_ms: 5,
            kind: "k",
            step_id: Some("s"),
            attempt: Some(1),
            data: &one,
            prev_hash: GENESIS,
        };
        let variants = [
            Fields {
                run_id: "R",
                ..base
            },
            Fields { seq: 2, ..base },
            Fields { at_ms: 6, ..base },
            Fields { kind: "K", ..base },
            Fields {
                step_id: None,
                ..base
            },
            Fields {
                attempt: None,
                ..base
            },
            Fields { data: &two, ..base },
            Fields {
                prev_hash: &other_prev,
                ..base
            },
        ];
        let base_hash = hash(&base);
        for v in variants {
            assert_ne!(hash(&v), base_hash, "{v:?}");
        }
        assert_eq!(base_hash.len(), 64);
        assert!(
            base_hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(&[json!({}), json!({"n": 1}), json!([1, 2])]);
        assert_eq!(verify(&events), None);
        assert_eq!(verify(&[]), None);
    }

    #[test]
    fn verify_names_the_first_event_that_does_not_match() {
        let mut edited = chain(&[json!({}), json!({"n": 1}), json!({"n": 2})]);
        edited[1].data = json!({"n": 100});
        assert_eq!(verify(&edited), Some(2));

        let mut dropped = chain(&[json!({}), json!({"n": 1}), json!({"n": 2})]);
        dropped.remove(1);
        assert_eq!(verify(&dropped), Some(3));

        // Re-sealing an edited event does not help: the next one still links to the old hash.
        let mut resealed = chain(&[json!({}), json!({"n": 1}), json!({"n": 2})]);
        resealed[0].kind = "forged".into();
        resealed[0].hash = expected_hash(&resealed[0]);
        assert_eq!(verify(&resealed), Some(2));
    }
}
