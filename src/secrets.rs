//! Secret values: read from the worker's environment when a step needs them, and masked
//! out of everything the engine stores and every error an executor reports.
//!
//! A playbook declares secret *names*; their values are never stored. A worker reads a
//! secret from the environment variable of the same name (`DATABASE_URL`), so each host
//! holds its own credentials and a run's database rows hold none. Before anything a step
//! produced is stored (outputs, errors, output tails), every secret value is replaced by
//! `***`, together with its base64 and URL-encoded forms.

use std::collections::BTreeMap;

use serde_json::Value;

/// The mask that replaces a secret value.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking `a` or `1` everywhere would destroy
/// every output while protecting nothing.
const MIN_MASKED_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    /// Every form of every value, longest first, so a longer form is masked before a value
    /// it contains.
    forms: Vec<String>,
}

impl Secrets {
    /// The declared `names` that are set in this process' environment.
    pub fn from_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Secrets {
        Secrets::from_pairs(
            names
                .into_iter()
                .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_owned(), v))),
        )
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Secrets {
        let values: BTreeMap<String, String> = pairs.into_iter().collect();
        let forms = forms(values.values().cloned());
        Secrets { values, forms }
    }

    /// Values to mask that have no name (a URL's password, a header value): they are
    /// masked like secrets but are not template data.
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Secrets {
        Secrets {
            values: BTreeMap::new(),
            forms: forms(values),
        }
    }

    /// The `secrets` object of template data.
    pub fn as_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// `text` with every secret form replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MASK);
            }
        }
        out
    }

    /// Masks every string (and object key) in a JSON value.
    pub fn mask_json(&self, value: &Value) -> Value {
        if self.forms.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.mask(k), self.mask_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Every form of every value long enough to mask, longest first.
fn forms(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut forms: Vec<String> = values
        .into_iter()
        .filter(|v| v.len() >= MIN_MASKED_LEN)
        .flat_map(|v| {
            let (b64, url) = (base64(v.as_bytes()), url_encode(&v));
            [v, b64, url]
        })
        .collect();
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets::from_pairs([("TOKEN".to_owned(), "s3cr3t/p@ss".to_owned())])
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn masks_plain_base64_and_url_encoded_forms() {
        let s = secrets();
        assert_eq!(s.mask("token=s3cr3t/p@ss;"), "token=***;");
        assert_eq!(
            s.mask(&format!("b64 {}", base64(b"s3cr3t/p@ss"))),
            "b64 ***"
        );
        assert_eq!(s.mask("q=s3cr3t%2Fp%40ss"), "q=***");
        assert_eq!(s.mask("nothing here"), "nothing here");
    }

    #[test]
    fn masks_inside_json_keys_and_values() {
        let s = secrets();
        let v = serde_json::json!({"a": ["x s3cr3t/p@ss"], "s3cr3t/p@ss": 1});
        assert_eq!(
            s.mask_json(&v),
            serde_json::json!({"a": ["x ***"], "***": 1})
        );
    }

    #[test]
    fn very_short_values_are_not_masked() {
        let s = Secrets::from_pairs([("X".to_owned(), "ab".to_owned())]);
        assert_eq!(s.mask("abc"), "abc");
    }
}
