//! Reading typed values out of located YAML nodes, reporting every problem and going on.
//!
//! Each reader returns `None` after reporting why a value is unusable, so the caller can
//! keep decoding the rest of the file and the user sees every mistake at once. Mappings are
//! read through [`Fields`], which remembers the keys it was asked for and reports any other
//! key as unknown, with the closest known key as a hint.

use serde::{Serialize, Serializer};

use crate::diagnostic::{Diagnostics, Location, did_you_mean};
use crate::playbook::duration::Duration;
use crate::yaml::{Node, Value};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub location: Location,
}

impl<T> Spanned<T> {
    pub fn new(value: T, location: Location) -> Self {
        Spanned { value, location }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// The entries of one YAML mapping, read field by field.
pub struct Fields<'n> {
    what: &'static str,
    pub location: Location,
    entries: Vec<(&'n Node, &'n Node, bool)>,
    asked: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    /// `what` names the mapping in messages: "a step", "`shell`", "the playbook".
    pub fn of(node: &'n Node, what: &'static str, diags: &mut Diagnostics) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(Fields {
                what,
                location: node.location,
                entries: entries.iter().map(|(k, v)| (k, v, false)).collect(),
                asked: Vec::new(),
            }),
            _ if node.is_null() => Some(Fields {
                what,
                location: node.location,
                entries: Vec::new(),
                asked: Vec::new(),
            }),
            _ => {
                diags.error(
                    node.location,
                    format!(
                        "expected {what} (a mapping of fields), found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// The value of `key`, if present. Every key a decoder knows must be asked for, even
    /// when it is not used, so that [`Fields::finish`] can tell unknown keys apart.
    pub fn take(&mut self, key: &'static str) -> Option<&'n Node> {
        self.asked.push(key);
        self.entries
            .iter_mut()
            .find(|(k, _, _)| k.scalar_text() == Some(key))
            .map(|entry| {
                entry.2 = true;
                entry.1
            })
    }

    /// Like [`Fields::take`], and reports the field as missing when it is absent.
    pub fn require(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<&'n Node> {
        let node = self.take(key);
        if node.is_none() {
            diags.error(
                self.location,
                format!("{} is missing the field `{key}`", self.what),
            );
        }
        node
    }

    /// Whether the mapping has `key`, without taking it.
    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, _, _)| k.scalar_text() == Some(key))
    }

    /// The keys not taken yet, with their nodes.
    pub fn remaining(&self) -> impl Iterator<Item = (&'n Node, &'n Node)> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.2)
            .map(|(k, v, _)| (*k, *v))
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, diags: &mut Diagnostics) {
        for (key, _, used) in &self.entries {
            if *used {
                continue;
            }
            let name = key.scalar_text().unwrap_or_default();
            let d = diags.error(
                key.location,
                format!("unknown field `{name}` in {}", self.what),
            );
            match did_you_mean(name, self.asked.iter().copied()) {
                Some(close) => d.hint(format!("did you mean `{close}`?")),
                None => d.hint(format!("known fields: {}", self.asked.join(", "))),
            };
        }
    }
}

fn expected(node: &Node, what: &str, diags: &mut Diagnostics) {
    diags.error(
        node.location,
        format!("expected {what}, found {}", node.describe()),
    );
}

/// A scalar as text. Plain numbers and booleans are accepted as their text (`argv: [sleep,
/// 5]` means the string "5"); null, lists and mappings are not.
pub fn string(node: &Node, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => {
            Some(Spanned::new(text.clone(), node.location))
        }
        _ => {
            expected(node, "a string", diags);
            None
        }
    }
}

pub fn boolean(node: &Node, diags: &mut Diagnostics) -> Option<bool> {
    match &node.value {
        Value::Scalar { text, plain: true } if text == "true" => Some(true),
        Value::Scalar { text, plain: true } if text == "false" => Some(false),
        _ => {
            let d = diags.error(
                node.location,
                format!("expected true or false, found {}", node.describe()),
            );
            if matches!(
                node.scalar_text(),
                Some("yes" | "no" | "on" | "off" | "True" | "False")
            ) {
                d.hint("write `true` or `false`");
            }
            None
        }
    }
}

/// An integer within `min..=max`.
pub fn integer(node: &Node, min: i64, max: i64, diags: &mut Diagnostics) -> Option<Spanned<i64>> {
    match &node.value {
        Value::Scalar { text, plain: true } => match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(Spanned::new(n, node.location)),
            Ok(n) => {
                diags.error(
                    node.location,
                    format!("{n} is out of range; expected {min} to {max}"),
                );
                None
            }
            Err(_) => {
                expected(node, "a whole number", diags);
                None
            }
        },
        _ => {
            expected(node, "a whole number", diags);
            None
        }
    }
}

pub fn duration(node: &Node, diags: &mut Diagnostics) -> Option<Spanned<Duration>> {
    let text = string(node, diags)?;
    match Duration::parse(&text) {
        Ok(d) if d.0.is_zero() => {
            diags
                .error(node.location, "a duration of zero is not allowed here")
                .hint("use at least `1s`");
            None
        }
        Ok(d) => Some(Spanned::new(d, node.location)),
        Err(message) => {
            diags.error(node.location, message);
            None
        }
    }
}

/// The items of a list. A single scalar is not silently turned into a list.
pub fn list<'n>(node: &'n Node, diags: &mut Diagnostics) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => {
            expected(node, "a list", diags);
            None
        }
    }
}

pub fn string_list(node: &Node, diags: &mut Diagnostics) -> Option<Vec<Spanned<String>>> {
    let items = list(node, diags)?;
    Some(
        items
            .iter()
            .filter_map(|item| string(item, diags))
            .collect(),
    )
}

/// A mapping of names to strings, in the order written (env, headers, params of invoke).
pub fn string_map(
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Vec<(Spanned<String>, Spanned<String>)>> {
    match &node.value {
        Value::Map(entries) => Some(
            entries
                .iter()
                .filter_map(|(k, v)| Some((string(k, diags)?, string(v, diags)?)))
                .collect(),
        ),
        _ if node.is_null() => Some(Vec::new()),
        _ => {
            expected(node, "a mapping of names to strings", diags);
            None
        }
    }
}

/// Checks an identifier against a pattern, reporting `what` it is and how to write it.
pub fn identifier(
    value: &Spanned<String>,
    pattern: &regex::Regex,
    what: &str,
    example: &str,
    diags: &mut Diagnostics,
) -> bool {
    if pattern.is_match(value) && value.len() <= 63 {
        return true;
    }
    diags
        .error(
            value.location,
            format!("`{}` is not a valid {what}", value.value),
        )
        .hint(format!(
            "write it like `{example}` ({} characters at most)",
            63
        ));
    false
}

/// A scalar parsed as a template; syntax errors are reported at their column.
pub fn template(
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<crate::playbook::template::Template> {
    let text = string(node, diags)?;
    match crate::playbook::template::Template::from_node(node, &text) {
        Ok(t) => Some(t),
        Err(e) => {
            let d = diags.error(e.location, e.message);
            if let Some(h) = e.hint {
                d.hint(h);
            }
            None
        }
    }
}

pub fn template_list(
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Vec<crate::playbook::template::Template>> {
    let items = list(node, diags)?;
    Some(
        items
            .iter()
            .filter_map(|item| template(item, diags))
            .collect(),
    )
}
