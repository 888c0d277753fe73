//! The playbook language: what a YAML playbook may say, decoded into typed syntax.
//!
//! This module turns a located YAML tree into a [`Playbook`], reporting every structural
//! mistake (unknown fields, wrong types, bad durations, templates and conditions that do
//! not parse). Cross-references (needs, undo, template names, invoke targets) are checked
//! by `compiler`, which sees the whole playbook and its neighbours.
//!
//! The types double as the JSON Schema of the format (`runway schema`): their serde shape is
//! the YAML shape.

pub mod decode;
pub mod duration;
pub mod kinds;
pub mod param;
pub mod schedule;
pub mod step;
pub mod template;

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::diagnostic::{Diagnostics, Location};
use crate::yaml::{Node, Value};
use decode::{Fields, Spanned};
use duration::Duration;
use param::Param;
use schedule::Schedule;
use step::{Retry, Step};
use template::Template;

/// The only format version so far.
pub const FORMAT_VERSION: i64 = 1;

/// Steps in `steps`, `compensations` and `on_failure` together.
pub const MAX_STEPS: usize = 20_000;

/// A decoded playbook. Unknown fields are errors, so the schema is closed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Runway playbook")]
pub struct Playbook {
    /// Format version: 1.
    pub runway: i64,
    /// kebab-case id of the playbook.
    pub name: Spanned<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    /// Names of secrets, resolved from the environment at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Spanned<String>>,
    /// At most one active run per rendered key (params only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<Template>,
    #[serde(default, skip_serializing_if = "Defaults::is_empty")]
    pub defaults: Defaults,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    pub steps: Vec<Step>,
    /// Steps that only run as the `undo` of a main step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compensations: Vec<Step>,
    /// Steps run in order after a failed run's undo steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Step>,
}

/// `defaults:` for every step that does not set its own.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl Defaults {
    pub fn is_empty(&self) -> bool {
        self.timeout.is_none() && self.retry.is_none()
    }
}

/// `params:`, in the order written.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<Param>);

impl Params {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name.value == name)
    }

    /// What to tell someone who gave the unknown param `name`.
    pub fn unknown_hint(&self, name: &str) -> String {
        let names = || self.0.iter().map(|p| p.name.as_str());
        match crate::diagnostic::did_you_mean(name, names()) {
            Some(close) => format!("did you mean `{close}`?"),
            None if self.is_empty() => "this playbook takes no params".into(),
            None => format!("its params are: {}", names().collect::<Vec<_>>().join(", ")),
        }
    }
}

impl Serialize for Params {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for p in &self.0 {
            map.serialize_entry(&p.name.value, p)?;
        }
        map.end()
    }
}

impl schemars::JsonSchema for Params {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Params".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let param = generator.subschema_for::<Param>();
        schemars::json_schema!({
            "type": "object",
            "propertyNames": { "pattern": "^[a-z][a-z0-9_]*$" },
            "additionalProperties": param
        })
    }
}

fn pattern(cell: &'static OnceLock<Regex>, re: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(re).expect("a constant pattern"))
}

/// Ids of playbooks, steps, checklist items and schedules: kebab-case.
pub fn id_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    pattern(&CELL, "^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
}

fn param_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    pattern(&CELL, "^[a-z][a-z0-9_]*$")
}

fn secret_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    pattern(&CELL, "^[A-Z][A-Z0-9_]*$")
}

impl Playbook {
    /// Decodes the root node. Returns `None` only when nothing useful could be read (the
    /// root is not a mapping); otherwise a playbook with whatever decoded, and `diags`
    /// says what did not.
    pub fn decode(root: &Node, diags: &mut Diagnostics) -> Option<Playbook> {
        let mut f = Fields::of(root, "the playbook", diags)?;
        let version = f
            .require("runway", diags)
            .and_then(|n| decode::integer(n, 0, i64::MAX, diags));
        if let Some(v) = &version
            && v.value != FORMAT_VERSION
        {
            diags
                .error(v.location, format!("unknown format version {}", v.value))
                .hint("this Runway reads `runway: 1`");
        }
        let name = f
            .require("name", diags)
            .and_then(|n| decode::string(n, diags));
        if let Some(n) = &name {
            decode::identifier(
                n,
                id_pattern(),
                "playbook name",
                "first-school-go-live",
                diags,
            );
        }
        let title = f
            .take("title")
            .and_then(|n| decode::string(n, diags))
            .map(|s| s.value);
        let description = f
            .take("description")
            .and_then(|n| decode::string(n, diags))
            .map(|s| s.value);
        let params = f
            .take("params")
            .map(|n| decode_params(n, diags))
            .unwrap_or_default();
        let secrets = f
            .take("secrets")
            .and_then(|n| decode::string_list(n, diags))
            .unwrap_or_default();
        let mut seen_secrets: Vec<&Spanned<String>> = Vec::new();
        for s in &secrets {
            decode::identifier(
                s,
                secret_pattern(),
                "secret name",
                "TENANT_DATABASE_URL",
                diags,
            );
            if seen_secrets.iter().any(|o| o.value == s.value) {
                diags.error(
                    s.location,
                    format!("secret `{}` is declared twice", s.value),
                );
            }
            seen_secrets.push(s);
        }
        let lock = f.take("lock").and_then(|n| decode::template(n, diags));
        let defaults = f
            .take("defaults")
            .and_then(|n| decode_defaults(n, diags))
            .unwrap_or_default();
        let schedules = f
            .take("schedules")
            .and_then(|n| decode::list(n, diags))
            .map(|items| {
                items
                    .iter()
                    .filter_map(|n| Schedule::decode(n, diags))
                    .collect()
            })
            .unwrap_or_default();
        let steps_node = f.require("steps", diags);
        let compensations_node = f.take("compensations");
        let on_failure_node = f.take("on_failure");
        f.finish(diags);

        let total: usize = [steps_node, compensations_node, on_failure_node]
            .iter()
            .flatten()
            .map(|n| match &n.value {
                Value::Seq(items) => items.len(),
                _ => 0,
            })
            .sum();
        if total > MAX_STEPS {
            diags
                .error(
                    steps_node.map_or(root.location, |n| n.location),
                    format!("the playbook has {total} steps; the limit is {MAX_STEPS}"),
                )
                .hint("split the procedure into several playbooks and `invoke` them");
            return None;
        }
        let steps = steps_node.map(|n| step_list(n, diags)).unwrap_or_default();
        if let Some(n) = steps_node
            && steps.is_empty()
            && matches!(&n.value, Value::Seq(items) if items.is_empty())
        {
            diags
                .error(n.location, "`steps` is empty")
                .hint("a playbook needs at least one step");
        }
        Some(Playbook {
            runway: version.map_or(FORMAT_VERSION, |v| v.value),
            name: name.unwrap_or_else(|| Spanned::new(String::new(), root.location)),
            title,
            description,
            params,
            secrets,
            lock,
            defaults,
            schedules,
            steps,
            compensations: compensations_node
                .map(|n| step_list(n, diags))
                .unwrap_or_default(),
            on_failure: on_failure_node
                .map(|n| step_list(n, diags))
                .unwrap_or_default(),
        })
    }

    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name.value)
    }

    /// Every step of the playbook, main steps first.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .chain(&self.compensations)
            .chain(&self.on_failure)
    }
}

fn step_list(node: &Node, diags: &mut Diagnostics) -> Vec<Step> {
    decode::list(node, diags)
        .map(|items| {
            items
                .iter()
                .filter_map(|n| Step::decode(n, diags))
                .collect()
        })
        .unwrap_or_default()
}

fn decode_params(node: &Node, diags: &mut Diagnostics) -> Params {
    let Value::Map(entries) = &node.value else {
        if !node.is_null() {
            diags
                .error(
                    node.location,
                    format!(
                        "expected `params` to be a mapping of names to declarations, found {}",
                        node.describe()
                    ),
                )
                .hint("e.g. `params: { school_slug: { type: string, required: true } }`");
        }
        return Params::default();
    };
    let mut params = Vec::new();
    for (k, v) in entries {
        let Some(name) = decode::string(k, diags) else {
            continue;
        };
        if !decode::identifier(&name, param_pattern(), "param name", "school_slug", diags) {
            continue;
        }
        if let Some(p) = Param::decode(name, v, diags) {
            params.push(p);
        }
    }
    Params(params)
}

fn decode_defaults(node: &Node, diags: &mut Diagnostics) -> Option<Defaults> {
    let mut f = Fields::of(node, "`defaults`", diags)?;
    let timeout = f
        .take("timeout")
        .and_then(|n| decode::duration(n, diags))
        .map(|d| d.value);
    let retry = f.take("retry").and_then(|n| Retry::decode(n, diags));
    f.finish(diags);
    Some(Defaults { timeout, retry })
}

/// Where a step id is written, for messages about the step.
pub fn step_location(step: &Step) -> Location {
    step.id.location
}
