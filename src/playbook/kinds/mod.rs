//! The closed set of step kinds: one file each, one enum, one `match` per question.

mod approval;
mod checklist;
mod followup;
mod gate;
mod http;
mod invoke;
mod noop;
mod notify;
mod shell;
mod sql;
mod wait;

pub use approval::{Approval, Escalation, OnTimeout};
pub use checklist::{Checklist, ChecklistItem};
pub use followup::Followup;
pub use gate::Gate;
pub use http::{Http, Method};
pub use invoke::Invoke;
pub use noop::Noop;
pub use notify::Notify;
pub use shell::Shell;
pub use sql::Sql;
pub use wait::Wait;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Spanned};
use crate::playbook::duration::Duration;
use crate::playbook::template::Template;
use crate::yaml::{Node, Value};

/// What a step does. Exactly one per step.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Shell(Shell),
    Http(Http),
    Sql(Sql),
    Wait(Wait),
    Approval(Approval),
    Checklist(Checklist),
    Gate(Gate),
    Invoke(Invoke),
    Followup(Followup),
    Notify(Notify),
    Noop(Noop),
}

/// The field names of the kinds, in the order the docs list them.
pub const KIND_NAMES: [&str; 11] = [
    "shell",
    "http",
    "sql",
    "wait",
    "approval",
    "checklist",
    "gate",
    "invoke",
    "followup",
    "notify",
    "noop",
];

/// A template and the rules for the field it fills.
pub struct TemplateUse<'a> {
    pub template: &'a Template,
    /// The field, for messages: "argv", "env `DATABASE_URL`".
    pub field: String,
    /// Whether a secret may appear here (it stays out of process listings and records).
    pub secrets: bool,
}

impl<'a> TemplateUse<'a> {
    fn new(template: &'a Template, field: impl Into<String>, secrets: bool) -> Self {
        TemplateUse {
            template,
            field: field.into(),
            secrets,
        }
    }
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Shell(_) => "shell",
            StepKind::Http(_) => "http",
            StepKind::Sql(_) => "sql",
            StepKind::Wait(_) => "wait",
            StepKind::Approval(_) => "approval",
            StepKind::Checklist(_) => "checklist",
            StepKind::Gate(_) => "gate",
            StepKind::Invoke(_) => "invoke",
            StepKind::Followup(_) => "followup",
            StepKind::Notify(_) => "notify",
            StepKind::Noop(_) => "noop",
        }
    }

    /// Decodes the value under the kind's key (`name` is one of [`KIND_NAMES`]).
    pub fn decode(name: &str, node: &Node, diags: &mut Diagnostics) -> Option<StepKind> {
        Some(match name {
            "shell" => StepKind::Shell(Shell::decode(node, diags)?),
            "http" => StepKind::Http(Http::decode(node, diags)?),
            "sql" => StepKind::Sql(Sql::decode(node, diags)?),
            "wait" => StepKind::Wait(Wait::decode(node, diags)?),
            "approval" => StepKind::Approval(Approval::decode(node, diags)?),
            "checklist" => StepKind::Checklist(Checklist::decode(node, diags)?),
            "gate" => StepKind::Gate(Gate::decode(node, diags)?),
            "invoke" => StepKind::Invoke(Invoke::decode(node, diags)?),
            "followup" => StepKind::Followup(Followup::decode(node, diags)?),
            "notify" => StepKind::Notify(Notify::decode(node, diags)?),
            "noop" => StepKind::Noop(Noop::decode(node, diags)?),
            _ => return None,
        })
    }

    /// Every template the kind holds, with where secrets may go.
    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        match self {
            StepKind::Shell(k) => k.templates(),
            StepKind::Http(k) => k.templates(),
            StepKind::Sql(k) => k.templates(),
            StepKind::Wait(k) => k.templates(),
            StepKind::Approval(k) => k.templates(),
            StepKind::Checklist(k) => k.templates(),
            StepKind::Invoke(k) => k.templates(),
            StepKind::Followup(k) => k.templates(),
            StepKind::Notify(k) => k.templates(),
            StepKind::Gate(_) | StepKind::Noop(_) => Vec::new(),
        }
    }

    /// Whether the kind changes the world unless the step says otherwise.
    pub fn mutates_by_default(&self) -> bool {
        match self {
            StepKind::Shell(_) | StepKind::Sql(_) => true,
            StepKind::Http(h) => !matches!(h.method, Method::Get | Method::Head),
            _ => false,
        }
    }

    /// The per-attempt timeout when neither the step nor `defaults` sets one. `None`: the
    /// step takes as long as it takes (a human, or the wait itself).
    pub fn builtin_timeout(&self) -> Option<Duration> {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        match self {
            StepKind::Shell(_) => minutes(30),
            StepKind::Sql(_) => minutes(5),
            StepKind::Http(_) | StepKind::Notify(_) => Some(Duration::from_secs(30)),
            StepKind::Invoke(_) => minutes(24 * 60),
            StepKind::Gate(_)
            | StepKind::Noop(_)
            | StepKind::Followup(_)
            | StepKind::Wait(_)
            | StepKind::Approval(_)
            | StepKind::Checklist(_) => None,
        }
    }

    /// Whether the step runs something that can fail and be tried again (so `retry` and
    /// `defaults` apply). Gates and no-ops decide at once; waits, approvals and checklists
    /// wait for time or people, where a retry means nothing.
    pub fn executes(&self) -> bool {
        matches!(
            self,
            StepKind::Shell(_)
                | StepKind::Http(_)
                | StepKind::Sql(_)
                | StepKind::Notify(_)
                | StepKind::Invoke(_)
        )
    }

    /// Whether `timeout` means something for the kind: all but gates, no-ops, waits and
    /// follow-ups (which only register a run for later).
    pub fn takes_timeout(&self) -> bool {
        !matches!(
            self,
            StepKind::Gate(_) | StepKind::Noop(_) | StepKind::Wait(_) | StepKind::Followup(_)
        )
    }

    /// Whether a human must act for the step to finish.
    pub fn needs_human(&self) -> bool {
        matches!(self, StepKind::Approval(_) | StepKind::Checklist(_))
    }
}

/// An ordered mapping of names to templates (env, headers, invoke params).
#[derive(Debug, Clone, Default)]
pub struct TemplateMap(pub Vec<(Spanned<String>, Template)>);

impl TemplateMap {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<TemplateMap> {
        match &node.value {
            Value::Map(entries) => Some(TemplateMap(
                entries
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((decode::string(k, diags)?, decode::template(v, diags)?))
                    })
                    .collect(),
            )),
            _ if node.is_null() => Some(TemplateMap::default()),
            _ => {
                diags.error(
                    node.location,
                    format!(
                        "expected a mapping of names to strings, found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn uses<'a>(
        &'a self,
        field: &str,
        secrets: bool,
    ) -> impl Iterator<Item = TemplateUse<'a>> + 'a {
        let field = field.to_owned();
        self.0
            .iter()
            .map(move |(k, t)| TemplateUse::new(t, format!("{field} `{}`", k.value), secrets))
    }
}

impl Serialize for TemplateMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(&k.value, v)?;
        }
        map.end()
    }
}

impl schemars::JsonSchema for TemplateMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplateMap".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<Template>();
        schemars::json_schema!({ "type": "object", "additionalProperties": value })
    }
}
