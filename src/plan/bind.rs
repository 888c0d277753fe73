//! Binding `-p key=value` pairs to a playbook's declared params.

use serde_json::{Map, Value};

use crate::playbook::Params;

/// One problem with the given params; all of them are collected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BindError {
    pub message: String,
    pub hint: Option<String>,
}

/// Checks every given value against its declaration, fills defaults, and reports unknown,
/// missing and invalid params all at once. The result maps every declared param that has a
/// value to its canonical JSON value.
pub fn bind_params(
    declared: &Params,
    given: &[(String, String)],
) -> Result<Map<String, Value>, Vec<BindError>> {
    let mut errors = Vec::new();
    let mut values = Map::new();
    for (i, (name, text)) in given.iter().enumerate() {
        if given[..i].iter().any(|(n, _)| n == name) {
            errors.push(BindError {
                message: format!("param `{name}` is given twice"),
                hint: None,
            });
            continue;
        }
        match declared.get(name) {
            None => errors.push(BindError {
                message: format!("unknown param `{name}`"),
                hint: Some(declared.unknown_hint(name)),
            }),
            Some(p) => match p.parse_cli(text) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                }
                Err(message) => errors.push(BindError {
                    message: format!("param `{name}`: {message}"),
                    hint: None,
                }),
            },
        }
    }
    for p in &declared.0 {
        if values.contains_key(p.name.as_str()) || given.iter().any(|(n, _)| n == p.name.as_str()) {
            continue;
        }
        match (&p.default, p.required) {
            (Some(d), _) => {
                values.insert(p.name.value.clone(), d.clone());
            }
            (None, true) => errors.push(BindError {
                message: format!("missing required param `{}`", p.name.value),
                hint: Some(format!(
                    "add `-p {}=...`{}",
                    p.name.value,
                    p.description
                        .as_ref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
            }),
            // Present as null, so templates render it empty and conditions can test it.
            (None, false) => {
                values.insert(p.name.value.clone(), Value::Null);
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}
