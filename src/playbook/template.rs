//! Strings with `{{path}}` substitutions, parsed with handlebars at compile time.
//!
//! Playbook templates are deliberately plain: only paths such as `{{params.school_slug}}` or
//! `{{steps.import.outputs.rows}}`, no helpers, blocks or partials, so every name a template
//! uses is known at compile time and can be checked against the playbook (strict mode at
//! run time is then a second line of defence, not the first). Rendering never HTML-escapes:
//! the values go into argv elements, URLs and headers, not into HTML.

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Path, PathSeg};
use serde::{Serialize, Serializer};

use crate::diagnostic::Location;
use crate::yaml::{Node, scalar_offset};

/// One `{{path}}` inside a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRef {
    /// The dotted path as written, without spaces: `params.school_slug`.
    pub path: String,
    /// Where the path is written in the file (or the start of the string, for block
    /// scalars whose columns cannot be mapped back).
    pub location: Location,
}

impl TemplateRef {
    pub fn dotted(&self) -> &str {
        &self.path
    }

    /// The path's segments: `["params", "school_slug"]`.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('.').collect()
    }

    /// The first segment: `params`, `secrets`, `run`, `steps`...
    pub fn root(&self) -> &str {
        self.path.split('.').next().unwrap_or_default()
    }
}

/// A string that may contain substitutions.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub text: String,
    pub location: Location,
    pub refs: Vec<TemplateRef>,
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl schemars::JsonSchema for Template {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "number", "boolean"],
            "description": "Text with optional `{{params.NAME}}`-style substitutions."
        })
    }
}

/// Why a string is not a valid template.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub location: Location,
    pub message: String,
    pub hint: Option<String>,
}

impl Template {
    /// A template with no substitutions (for values built by the compiler itself).
    pub fn literal(text: impl Into<String>, location: Location) -> Self {
        Template {
            text: text.into(),
            location,
            refs: Vec::new(),
        }
    }

    pub fn is_literal(&self) -> bool {
        self.refs.is_empty()
    }

    /// Parses the scalar `node` as a template.
    pub fn from_node(node: &Node, text: &str) -> Result<Template, Error> {
        Template::parse(text, node.location)
    }

    /// Parses `text`, a scalar written at `location`.
    pub fn parse(text: &str, location: Location) -> Result<Template, Error> {
        if !text.contains("{{") {
            return Ok(Template::literal(text, location));
        }
        if let Some(refs) = simple_refs(text, location) {
            return Ok(Template {
                text: text.to_owned(),
                location,
                refs,
            });
        }
        let compiled = handlebars::Template::compile(text).map_err(|e| {
            let at = match e.pos() {
                Some((1, col)) => {
                    let byte = text
                        .char_indices()
                        .nth(col.saturating_sub(1))
                        .map_or(text.len(), |(b, _)| b);
                    scalar_offset(location, text, byte, 1)
                }
                _ => location,
            };
            Error {
                location: at,
                message: format!("invalid template: {}", e.reason()),
                hint: Some("a substitution is written `{{params.NAME}}`".into()),
            }
        })?;
        let mut refs = Vec::new();
        let mut search_from = 0;
        for element in &compiled.elements {
            let helper = match element {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => continue,
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => h,
                _ => {
                    return Err(Error {
                        location,
                        message: "only `{{path}}` substitutions are allowed in playbook templates".into(),
                        hint: Some("blocks, partials and decorators are not supported; use `when:` to make a step conditional".into()),
                    });
                }
            };
            let raw = match (
                &helper.name,
                helper.params.is_empty() && helper.hash.is_empty(),
            ) {
                (Parameter::Path(Path::Relative((segs, raw))), true)
                    if segs.iter().all(|s| matches!(s, PathSeg::Named(_))) =>
                {
                    raw.clone()
                }
                (Parameter::Name(name), true) => name.clone(),
                _ => {
                    return Err(Error {
                        location,
                        message: "only `{{path}}` substitutions are allowed in playbook templates".into(),
                        hint: Some("helpers such as `{{upper x}}` are not supported; compute the value in a step and use its output".into()),
                    });
                }
            };
            let offset = text[search_from..]
                .find(raw.as_str())
                .map_or(0, |i| search_from + i);
            search_from = offset + raw.len();
            let path: String = raw
                .split('.')
                .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
                .collect::<Vec<_>>()
                .join(".");
            refs.push(TemplateRef {
                path,
                location: scalar_offset(location, text, offset, raw.len()),
            });
        }
        Ok(Template {
            text: text.to_owned(),
            location,
            refs,
        })
    }

    /// Renders with `data` (an object with `params`, `secrets`, `run`, `steps`). Strict: a
    /// missing value is an error naming it.
    pub fn render(
        &self,
        renderer: &Handlebars<'_>,
        data: &serde_json::Value,
    ) -> Result<String, String> {
        if self.is_literal() {
            return Ok(self.text.clone());
        }
        renderer
            .render_template(&self.text, data)
            .map_err(|e| match e.reason() {
                handlebars::RenderErrorReason::MissingVariable(Some(name)) => {
                    format!("`{name}` has no value")
                }
                other => other.to_string(),
            })
    }
}

/// The paths of a template whose every `{{` opens a plain `{{ a.b.c }}` (or `{{{ a.b.c }}}`)
/// substitution; `None` when anything else appears, so handlebars itself parses (and
/// explains) the rest. Handlebars is exact but slow (about 6 µs a template); nearly every
/// playbook template is this simple form.
fn simple_refs(text: &str, location: Location) -> Option<Vec<TemplateRef>> {
    let bytes = text.as_bytes();
    let mut refs = Vec::new();
    let mut i = 0;
    while let Some(found) = text[i..].find("{{") {
        let open = i + found;
        if open > 0 && bytes[open - 1] == b'\\' {
            return None;
        }
        let triple = bytes.get(open + 2) == Some(&b'{');
        let start = open + if triple { 3 } else { 2 };
        let close_token = if triple { "}}}" } else { "}}" };
        let close = start + text[start..].find(close_token)?;
        let inner = &text[start..close];
        let path = inner.trim();
        let simple = !path.is_empty()
            && path.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !simple || path.starts_with('-') {
            return None;
        }
        let offset = start + (inner.len() - inner.trim_start().len());
        refs.push(TemplateRef {
            path: path.to_owned(),
            location: scalar_offset(location, text, offset, path.len()),
        });
        i = close + close_token.len();
    }
    Some(refs)
}

/// The renderer every template goes through: strict, and without HTML escaping.
pub fn renderer() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn template(yaml_value: &str) -> Result<Template, Error> {
        let root = yaml::parse(&format!("k: {yaml_value}\n")).unwrap().unwrap();
        let yaml::Value::Map(entries) = &root.value else {
            panic!()
        };
        let node = &entries[0].1;
        Template::from_node(node, node.scalar_text().unwrap())
    }

    #[test]
    fn finds_paths_with_their_columns() {
        let t = template("'{{params.a}}/x/{{ steps.b.outputs.c }}'").unwrap();
        let paths: Vec<_> = t
            .refs
            .iter()
            .map(|r| (r.dotted().to_owned(), r.location.column))
            .collect();
        assert_eq!(
            paths,
            [
                ("params.a".to_owned(), 7),
                ("steps.b.outputs.c".to_owned(), 23)
            ]
        );
    }

    #[test]
    fn fast_path_and_handlebars_agree() {
        for text in [
            "a {{params.a}} b {{ steps.x-y.outputs.z }}",
            "{{{run.id}}}",
            "x {{params.a_b}}",
        ] {
            let location = Location::new(1, 1, text.chars().count());
            let fast = simple_refs(text, location).expect("simple");
            let compiled = handlebars::Template::compile(text).expect("valid handlebars");
            assert_eq!(
                fast.len(),
                compiled
                    .elements
                    .iter()
                    .filter(|e| !matches!(e, TemplateElement::RawString(_)))
                    .count()
            );
        }
        assert!(simple_refs("{{#if x}}y{{/if}}", Location::new(1, 1, 1)).is_none());
        assert!(simple_refs("\\{{x}}", Location::new(1, 1, 1)).is_none());
    }

    #[test]
    fn renders_kebab_case_step_ids() {
        let t = template("'{{steps.preflight-schema.outputs.n}}'").unwrap();
        let data = serde_json::json!({"steps": {"preflight-schema": {"outputs": {"n": 1}}}});
        assert_eq!(t.render(&renderer(), &data).unwrap(), "1");
    }

    #[test]
    fn refuses_helpers_and_blocks() {
        assert!(
            template("'{{upper params.a}}'")
                .unwrap_err()
                .message
                .contains("only `{{path}}`")
        );
        assert!(
            template("'{{#if params.a}}x{{/if}}'")
                .unwrap_err()
                .message
                .contains("only `{{path}}`")
        );
        assert!(
            template("'{{params.a'")
                .unwrap_err()
                .message
                .starts_with("invalid template")
        );
    }

    #[test]
    fn renders_strictly_without_escaping() {
        let t = template("'<{{params.a}}>'").unwrap();
        let hb = renderer();
        let data = serde_json::json!({"params": {"a": "x&y"}});
        assert_eq!(t.render(&hb, &data).unwrap(), "<x&y>");
        let missing = template("'{{params.b}}'").unwrap();
        assert_eq!(
            missing.render(&hb, &data).unwrap_err(),
            "`params.b` has no value"
        );
    }
}
