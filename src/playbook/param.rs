//! Typed playbook inputs: their declaration, and checking a value against it.
//!
//! The same checks serve a param's `default` at compile time and `-p key=value` at
//! `runway plan`/`runway run`, so a default can never be a value a user could not give.

use std::fmt;

use regex::Regex;
use serde::Serialize;

use crate::diagnostic::{Diagnostics, Location};
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::duration::Duration;
use crate::yaml::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Url,
    Duration,
    Enum,
    List,
}

const TYPES: [(&str, ParamType); 8] = [
    ("string", ParamType::String),
    ("integer", ParamType::Integer),
    ("number", ParamType::Number),
    ("boolean", ParamType::Boolean),
    ("url", ParamType::Url),
    ("duration", ParamType::Duration),
    ("enum", ParamType::Enum),
    ("list", ParamType::List),
];

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = TYPES
            .iter()
            .find(|(_, t)| t == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// A declared param, as written under `params:`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(skip)]
    #[schemars(skip)]
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// For `list`: the type of each item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ParamType>,
    #[serde(default)]
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For `string`: a regular expression the whole value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Inclusive lower bound: the value (integer, number, duration), the length (string), the item count (list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    /// Inclusive upper bound, as for `min`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    /// For `enum`: the allowed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<serde_json::Value>,
    #[serde(skip)]
    #[schemars(skip)]
    regex: Option<Regex>,
    #[serde(skip)]
    #[schemars(skip)]
    bounds: (Option<f64>, Option<f64>),
}

/// Regexes in playbooks are small; the cap stops a pathological pattern from costing
/// seconds or megabytes to compile.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Param {
    pub fn decode(name: Spanned<String>, node: &Node, diags: &mut Diagnostics) -> Option<Param> {
        let mut f = Fields::of(node, "a param", diags)?;
        let ty_node = f.take("type");
        let ty = match ty_node.map(|n| (n, decode::string(n, diags))) {
            None => Some(ParamType::String),
            Some((_, None)) => None,
            Some((n, Some(text))) => parse_type(&text, n.location, diags),
        };
        let items_node = f.take("items");
        let required = f
            .take("required")
            .and_then(|n| decode::boolean(n, diags))
            .unwrap_or(false);
        let default_node = f.take("default");
        let description = f
            .take("description")
            .and_then(|n| decode::string(n, diags))
            .map(|s| s.value);
        let pattern_node = f.take("pattern");
        let min_node = f.take("min");
        let max_node = f.take("max");
        let values_node = f.take("values");
        f.finish(diags);
        let ty = ty?;

        let mut param = Param {
            name,
            ty,
            items: None,
            required,
            default: None,
            description,
            pattern: None,
            min: None,
            max: None,
            values: Vec::new(),
            regex: None,
            bounds: (None, None),
        };
        let mut ok = true;
        match (ty, items_node) {
            (ParamType::List, None) => param.items = Some(ParamType::String),
            (ParamType::List, Some(n)) => {
                param.items =
                    decode::string(n, diags).and_then(|text| parse_type(&text, n.location, diags));
                if let Some(t @ (ParamType::Enum | ParamType::List)) = param.items {
                    diags.error(n.location, format!("list items cannot be of type {t}"));
                    param.items = None;
                }
                ok &= param.items.is_some();
            }
            (_, Some(n)) => {
                diags.error(
                    n.location,
                    format!("`items` applies only to `type: list`, not {ty}"),
                );
                ok = false;
            }
            (_, None) => {}
        }
        if let Some(n) = pattern_node
            && let Some(p) = decode::string(n, diags)
        {
            if ty != ParamType::String {
                diags.error(
                    n.location,
                    format!("`pattern` applies only to strings, not {ty}"),
                );
                ok = false;
            } else {
                match regex::RegexBuilder::new(&format!("^(?:{})$", p.value))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(re) => {
                        param.regex = Some(re);
                        param.pattern = Some(p.value);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        let first = message
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_owned();
                        diags.error(n.location, format!("invalid regular expression: {first}"));
                        ok = false;
                    }
                }
            }
        }
        for (slot, which, n) in [(0, "min", min_node), (1, "max", max_node)] {
            let Some(n) = n else { continue };
            let bound = match ty {
                ParamType::Integer | ParamType::Number => match n.to_json().as_f64() {
                    Some(x) => Some(x),
                    None => {
                        diags.error(
                            n.location,
                            format!("`{which}` of a {ty} param must be a number"),
                        );
                        None
                    }
                },
                ParamType::String | ParamType::List => {
                    match n.to_json().as_u64() {
                        Some(x) => Some(x as f64),
                        None => {
                            diags.error(n.location, format!("`{which}` of a {ty} param is a count: a whole number, 0 or more"));
                            None
                        }
                    }
                }
                ParamType::Duration => decode::duration(n, diags).map(|d| d.as_std().as_secs_f64()),
                _ => {
                    diags.error(
                        n.location,
                        format!("`{which}` does not apply to {ty} params"),
                    );
                    None
                }
            };
            match bound {
                Some(b) if slot == 0 => {
                    param.bounds.0 = Some(b);
                    param.min = Some(n.to_json());
                }
                Some(b) => {
                    param.bounds.1 = Some(b);
                    param.max = Some(n.to_json());
                }
                None => ok = false,
            }
        }
        if let (Some(lo), Some(hi), Some(n)) = (param.bounds.0, param.bounds.1, max_node)
            && lo > hi
        {
            diags.error(n.location, "`max` is smaller than `min`");
            ok = false;
        }
        match (ty, values_node) {
            (ParamType::Enum, None) => {
                diags
                    .error(
                        node.location,
                        format!("enum param `{}` has no `values`", param.name.value),
                    )
                    .hint("list the allowed values: `values: [a, b]`");
                ok = false;
            }
            (ParamType::Enum, Some(n)) => {
                if let Some(items) = decode::list(n, diags) {
                    for item in items {
                        match item.to_json() {
                            v @ (serde_json::Value::String(_) | serde_json::Value::Number(_)) => {
                                param.values.push(v)
                            }
                            _ => {
                                diags.error(item.location, "enum values are strings or numbers");
                                ok = false;
                            }
                        }
                    }
                    if param.values.is_empty() {
                        diags.error(n.location, "`values` is empty");
                        ok = false;
                    }
                }
            }
            (_, Some(n)) => {
                diags.error(
                    n.location,
                    format!("`values` applies only to `type: enum`, not {ty}"),
                );
                ok = false;
            }
            (_, None) => {}
        }
        if let Some(n) = default_node {
            if required {
                diags
                    .error(
                        n.location,
                        format!(
                            "param `{}` is required, so its default would never be used",
                            param.name.value
                        ),
                    )
                    .hint("remove `default`, or remove `required: true`");
                ok = false;
            } else if ok {
                match param.check(&n.to_json()) {
                    Ok(v) => param.default = Some(v),
                    Err(message) => {
                        diags.error(
                            n.location,
                            format!("default of `{}`: {message}", param.name.value),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(param)
    }

    /// Checks a value against the declaration and returns it in canonical form.
    pub fn check(&self, value: &serde_json::Value) -> Result<serde_json::Value, String> {
        if self.ty == ParamType::List {
            let items = value
                .as_array()
                .ok_or_else(|| format!("expected a list, got {value}"))?;
            let n = items.len() as f64;
            self.check_bounds(n, "items")?;
            let item_ty = self.items.unwrap_or(ParamType::String);
            return items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    check_scalar(item_ty, item).map_err(|e| format!("item {}: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(serde_json::Value::Array);
        }
        let v = check_scalar(self.ty, value)?;
        match self.ty {
            ParamType::String => {
                let s = v.as_str().unwrap_or_default();
                self.check_bounds(s.chars().count() as f64, "characters")?;
                if let Some(re) = &self.regex
                    && !re.is_match(s)
                {
                    return Err(format!(
                        "`{s}` does not match the pattern `{}`",
                        self.pattern.as_deref().unwrap_or_default()
                    ));
                }
            }
            ParamType::Integer | ParamType::Number => {
                self.check_bounds(v.as_f64().unwrap_or_default(), "")?;
            }
            ParamType::Duration => {
                let d = Duration::parse(v.as_str().unwrap_or_default())?;
                self.check_bounds(d.as_std().as_secs_f64(), "seconds")?;
            }
            ParamType::Enum => {
                let text = scalar_text(&v);
                if !self
                    .values
                    .iter()
                    .any(|allowed| scalar_text(allowed) == text)
                {
                    let allowed: Vec<String> = self.values.iter().map(scalar_text).collect();
                    return Err(format!("`{text}` is not one of: {}", allowed.join(", ")));
                }
                return Ok(serde_json::Value::String(text));
            }
            _ => {}
        }
        Ok(v)
    }

    /// Reads a value given as text on the command line (`-p key=value`).
    pub fn parse_cli(&self, text: &str) -> Result<serde_json::Value, String> {
        let value = match self.ty {
            ParamType::List if text.trim_start().starts_with('[') => {
                serde_json::from_str(text).map_err(|e| format!("not a JSON list: {e}"))?
            }
            ParamType::List => {
                let item_ty = self.items.unwrap_or(ParamType::String);
                let items = if text.is_empty() {
                    Vec::new()
                } else {
                    text.split(',').map(str::trim).collect()
                };
                items
                    .into_iter()
                    .map(|item| cli_scalar(item_ty, item))
                    .collect()
            }
            ty => cli_scalar(ty, text),
        };
        self.check(&value)
    }

    fn check_bounds(&self, x: f64, unit: &str) -> Result<(), String> {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        if let Some(lo) = self.bounds.0.filter(|lo| x < *lo) {
            return Err(format!("{x}{unit} is below the minimum {lo}{unit}"));
        }
        if let Some(hi) = self.bounds.1.filter(|hi| x > *hi) {
            return Err(format!("{x}{unit} is above the maximum {hi}{unit}"));
        }
        Ok(())
    }
}

fn parse_type(
    text: &Spanned<String>,
    location: Location,
    diags: &mut Diagnostics,
) -> Option<ParamType> {
    if let Some((_, t)) = TYPES.iter().find(|(n, _)| *n == text.as_str()) {
        return Some(*t);
    }
    let names = TYPES.iter().map(|(n, _)| *n);
    let d = diags.error(location, format!("`{}` is not a param type", text.value));
    match crate::diagnostic::did_you_mean(text, names.clone()) {
        Some(close) => d.hint(format!("did you mean `{close}`?")),
        None => d.hint(format!(
            "use one of: {}",
            names.collect::<Vec<_>>().join(", ")
        )),
    };
    None
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A command-line word as a JSON value of the type, before checking.
fn cli_scalar(ty: ParamType, text: &str) -> serde_json::Value {
    match ty {
        ParamType::Integer | ParamType::Number | ParamType::Boolean => serde_json::from_str(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
        _ => serde_json::Value::String(text.to_owned()),
    }
}

fn check_scalar(ty: ParamType, value: &serde_json::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    match (ty, value) {
        (ParamType::String | ParamType::Enum, J::String(_)) => Ok(value.clone()),
        (ParamType::Enum, J::Number(_)) => Ok(value.clone()),
        (ParamType::Integer, J::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
        (ParamType::Number, J::Number(_)) => Ok(value.clone()),
        (ParamType::Boolean, J::Bool(_)) => Ok(value.clone()),
        (ParamType::Url, J::String(s)) => {
            check_url(s)?;
            Ok(value.clone())
        }
        (ParamType::Duration, J::String(s)) => Duration::parse(s).map(|d| J::String(d.to_string())),
        (ParamType::Integer, _) => Err(format!("expected a whole number, got {value}")),
        (ParamType::Number, _) => Err(format!("expected a number, got {value}")),
        (ParamType::Boolean, _) => Err(format!("expected true or false, got {value}")),
        (ParamType::Duration, _) => Err(format!("expected a duration such as `10m`, got {value}")),
        (ParamType::Url, _) => Err(format!("expected a URL, got {value}")),
        (_, _) => Err(format!("expected a string, got {value}")),
    }
}

/// An absolute URL: a scheme, `://`, a host, and no spaces. The engine's HTTP client does
/// the full parse; this catches the mistakes people make in params.
fn check_url(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "`{s}` is not an absolute URL; write e.g. `https://example.com`"
        ));
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !scheme_ok || host.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{s}` is not an absolute URL; write e.g. `https://example.com`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn param(spec: &str) -> (Option<Param>, Diagnostics) {
        let root = yaml::parse(spec).unwrap().unwrap();
        let mut diags = Diagnostics::default();
        let p = Param::decode(
            Spanned::new("p".into(), Location::new(1, 1, 1)),
            &root,
            &mut diags,
        );
        (p, diags)
    }

    #[test]
    fn checks_cli_values_by_type() {
        let (p, _) = param("{ type: integer, min: 1, max: 500 }");
        let p = p.unwrap();
        assert_eq!(p.parse_cli("20").unwrap(), serde_json::json!(20));
        assert_eq!(p.parse_cli("0").unwrap_err(), "0 is below the minimum 1");
        assert_eq!(
            p.parse_cli("x").unwrap_err(),
            "expected a whole number, got \"x\""
        );
        let (list, _) = param("{ type: list, items: integer }");
        assert_eq!(
            list.unwrap().parse_cli("1,2").unwrap(),
            serde_json::json!([1, 2])
        );
    }

    #[test]
    fn pattern_must_match_the_whole_value() {
        let (p, _) = param("{ pattern: '[a-z]+' }");
        let p = p.unwrap();
        assert!(p.parse_cli("abc").is_ok());
        assert_eq!(
            p.parse_cli("abc1").unwrap_err(),
            "`abc1` does not match the pattern `[a-z]+`"
        );
    }

    #[test]
    fn bad_defaults_are_reported() {
        let (p, diags) = param("{ type: url, default: 'not a url' }");
        assert!(p.is_none());
        assert!(
            diags.into_sorted()[0]
                .message
                .contains("is not an absolute URL")
        );
        let (p, diags) = param("{ type: enum, values: [1, 2], default: 3 }");
        assert!(p.is_none());
        assert_eq!(
            diags.into_sorted()[0].message,
            "default of `p`: `3` is not one of: 1, 2"
        );
    }
}
