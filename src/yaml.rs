//! A YAML document as a tree of located nodes, built under hard limits.
//!
//! The playbook decoder needs the line and column of every value (to point at a bad step id
//! long after parsing), and it must survive hostile input: alias bombs, 10,000-deep nesting,
//! huge files. `saphyr-parser` gives an event stream with positions and keeps its own state on
//! a heap stack; this module folds the events into [`Node`]s iteratively (no recursion), and
//! counts nodes as aliases expand so a billion-laughs document stops at [`MAX_NODES`].
//!
//! Children are owned inline (no `Rc` per node): a 10,000-step playbook is about 150,000
//! nodes, and a per-node allocation doubled the tree's memory. An alias is a copy of its
//! anchor, which the node budget keeps bounded.

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diagnostic::Location;

/// Deeper nesting than this is refused; no playbook needs more than about 8 levels.
pub const MAX_DEPTH: usize = 64;
/// Nodes in the document, counting every node an alias expands to.
pub const MAX_NODES: usize = 1_000_000;

/// A located YAML value.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub location: Location,
    /// Number of nodes in this subtree, itself included (what an alias to it costs).
    pub size: u32,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar as written. Its type (string, number, boolean, null) is decided by the
    /// decoder from what the field expects: `plain` is false for quoted and block scalars,
    /// which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain scalar that YAML's core schema reads as null (`~`, `null`, or nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of value this is, for messages ("expected a list, found a string").
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar { .. } if self.is_null() => "nothing (null)",
            Value::Scalar { text, plain: true } => match core_scalar(text) {
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                _ => "a string",
            },
            Value::Scalar { .. } => "a string",
        }
    }

    /// The value as JSON under YAML 1.2's core schema (plain `true` is a boolean, quoted
    /// `'true'` a string). Used where a field accepts any value (http `json`, param defaults).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar { text, plain: true } => core_scalar(text),
            Value::Scalar { text, plain: false } => serde_json::Value::String(text.clone()),
            Value::Seq(items) => items.iter().map(|n| n.to_json()).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.scalar_text().unwrap_or_default().to_owned(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub fn core_scalar(text: &str) -> serde_json::Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return serde_json::Value::Null,
        "true" | "True" | "TRUE" => return true.into(),
        "false" | "False" | "FALSE" => return false.into(),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return i.into();
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_numeric
        && let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    {
        return n.into();
    }
    serde_json::Value::String(text.to_owned())
}

/// Why a document could not be read as a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub location: Location,
    pub message: String,
    pub hint: Option<String>,
}

impl Error {
    fn new(location: Location, message: impl Into<String>) -> Self {
        Error {
            location,
            message: message.into(),
            hint: None,
        }
    }
}

enum Open {
    Seq {
        items: Vec<Node>,
        location: Location,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        location: Location,
        anchor: usize,
    },
}

fn location_of(span: &saphyr_parser::Span) -> Location {
    let start = span.start;
    let len = if span.end.line() == start.line() {
        span.end.col().saturating_sub(start.col())
    } else {
        1
    };
    Location::new(start.line(), start.col() + 1, len)
}

/// Parses one YAML document. `Ok(None)` means the stream holds no document at all.
pub fn parse(text: &str) -> Result<Option<Node>, Error> {
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: Vec<Option<Node>> = Vec::new();
    let mut root: Option<Node> = None;
    let mut total_nodes = 0usize;
    let mut documents = 0usize;

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            let at = Location::new(m.line(), m.col() + 1, 1);
            // The scanner stops flow collections at 255 levels on its own, before our
            // depth check sees them: the same refusal, in the same words.
            if e.info() == "recursion limit exceeded" {
                Error::new(at, format!("nesting is deeper than {MAX_DEPTH} levels"))
            } else {
                Error::new(at, format!("invalid YAML: {}", e.info()))
            }
        })?;
        let location = location_of(&span);
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    let mut err = Error::new(
                        location,
                        "a playbook file holds one YAML document, this is a second one",
                    );
                    err.hint = Some("put each playbook in its own file".into());
                    return Err(err);
                }
                continue;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::new(
                        location,
                        format!("nesting is deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq {
                        items: Vec::new(),
                        location,
                        anchor,
                    }
                } else {
                    Open::Map {
                        entries: Vec::new(),
                        pending_key: None,
                        location,
                        anchor,
                    }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, location, anchor) = match stack.pop() {
                    // Trimmed to size: growth slack was a fifth of a large tree's memory.
                    Some(Open::Seq {
                        mut items,
                        location,
                        anchor,
                    }) => {
                        items.shrink_to_fit();
                        (Value::Seq(items), location, anchor)
                    }
                    Some(Open::Map {
                        mut entries,
                        location,
                        anchor,
                        ..
                    }) => {
                        entries.shrink_to_fit();
                        (Value::Map(entries), location, anchor)
                    }
                    None => {
                        return Err(Error::new(location, "invalid YAML: unbalanced collection"));
                    }
                };
                // Sizes are bounded by MAX_NODES, which the count below enforces.
                let size = 1 + match &value {
                    Value::Seq(items) => items.iter().map(|n| n.size).sum::<u32>(),
                    Value::Map(entries) => entries.iter().map(|(k, v)| k.size + v.size).sum(),
                    Value::Scalar { .. } => 0,
                };
                total_nodes += 1;
                let node = Node {
                    value,
                    location,
                    size,
                };
                remember(&mut anchors, anchor, &node);
                node
            }
            Event::Scalar(text, style, anchor, _tag) => {
                total_nodes += 1;
                let node = Node {
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    location,
                    size: 1,
                };
                remember(&mut anchors, anchor, &node);
                node
            }
            Event::Alias(anchor) => match anchors.get(anchor).and_then(Option::as_ref) {
                // Counted before copying, so a bomb is refused before it is built.
                Some(target) if total_nodes + target.size as usize > MAX_NODES => {
                    let mut err = Error::new(
                        location,
                        format!("the document expands to more than {MAX_NODES} YAML nodes"),
                    );
                    err.hint =
                        Some("this is what an alias bomb looks like; expand fewer aliases".into());
                    return Err(err);
                }
                Some(target) => {
                    total_nodes += target.size as usize;
                    target.clone()
                }
                None => return Err(Error::new(location, "alias to an unknown anchor")),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
        };
        if total_nodes > MAX_NODES {
            let mut err = Error::new(
                location,
                format!("the document expands to more than {MAX_NODES} YAML nodes"),
            );
            err.hint = Some("this is what an alias bomb looks like; expand fewer aliases".into());
            return Err(err);
        }
        attach(&mut stack, &mut root, node)?;
    }
    Ok(root)
}

fn remember(anchors: &mut Vec<Option<Node>>, anchor: usize, node: &Node) {
    // saphyr numbers anchors from 1; 0 means "no anchor".
    if anchor == 0 {
        return;
    }
    if anchors.len() <= anchor {
        anchors.resize(anchor + 1, None);
    }
    anchors[anchor] = Some(node.clone());
}

fn attach(stack: &mut [Open], root: &mut Option<Node>, node: Node) -> Result<(), Error> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Open::Seq { items, .. }) => items.push(node),
        Some(Open::Map {
            entries,
            pending_key,
            ..
        }) => match pending_key.take() {
            None => {
                if !matches!(node.value, Value::Scalar { .. }) {
                    return Err(Error::new(
                        node.location,
                        "a mapping key must be a plain word, not a list or a mapping",
                    ));
                }
                *pending_key = Some(node);
            }
            Some(key) => {
                let name = key.scalar_text().unwrap_or_default();
                if name == "<<" {
                    let mut err = Error::new(key.location, "merge keys (`<<`) are not supported");
                    err.hint = Some("repeat the fields, or anchor and alias whole values".into());
                    return Err(err);
                }
                if let Some((first, _)) =
                    entries.iter().find(|(k, _)| k.scalar_text() == Some(name))
                {
                    let mut err = Error::new(key.location, format!("duplicate key `{name}`"));
                    err.hint = Some(format!(
                        "`{name}` is already set at line {}; keep one",
                        first.location.line
                    ));
                    return Err(err);
                }
                entries.push((key, node));
            }
        },
    }
    Ok(())
}

/// The file location of the byte range `offset..offset + len` inside a scalar whose text is
/// `text` and which starts at `start`. Exact when the scalar sits on one line as written
/// (plain, or quoted without escapes: its width tells which); the scalar's start otherwise.
pub fn scalar_offset(start: Location, text: &str, offset: usize, len: usize) -> Location {
    let chars = text.chars().count();
    let lead = match (text.contains('\n'), start.len as usize) {
        (false, width) if width == chars => 0,
        (false, width) if width == chars + 2 => 1,
        _ => return start,
    };
    let before = text.get(..offset).map_or(0, |s| s.chars().count());
    let width = text
        .get(offset..offset + len)
        .map_or(1, |s| s.chars().count());
    start.shifted(lead + before, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_locations_of_nested_values() {
        let root = parse("a:\n  b: [x, 'y']\n").unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        let Value::Map(inner) = &entries[0].1.value else {
            panic!()
        };
        let Value::Seq(items) = &inner[0].1.value else {
            panic!()
        };
        assert_eq!(items[1].location, Location::new(2, 10, 3));
        assert!(matches!(
            &items[1].value,
            Value::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn alias_bomb_stops_at_the_node_limit() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&doc).unwrap_err();
        assert!(
            err.message.contains("more than 1000000 YAML nodes"),
            "{err:?}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let doc = "[".repeat(10_000) + &"]".repeat(10_000);
        let err = parse(&doc).unwrap_err();
        assert_eq!(err.message, "nesting is deeper than 64 levels");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.location.line, 3);
    }

    #[test]
    fn core_schema_types_plain_scalars_only() {
        assert_eq!(core_scalar("true"), serde_json::json!(true));
        assert_eq!(core_scalar("12"), serde_json::json!(12));
        assert_eq!(core_scalar("1.5"), serde_json::json!(1.5));
        assert_eq!(core_scalar("no"), serde_json::json!("no"));
        assert_eq!(core_scalar("1e"), serde_json::json!("1e"));
    }
}
