//! A step: its id, its ordering and failure policy, and exactly one kind.

use serde::Serialize;

use crate::condition::Condition;
use crate::diagnostic::{Diagnostics, Location, did_you_mean};
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::duration::Duration;
use crate::playbook::kinds::{KIND_NAMES, StepKind};
use crate::playbook::template::Template;
use crate::yaml::{Node, Value};

/// One step: its id, ordering, failure policy, and exactly one kind.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Step {
    /// kebab-case, unique in the playbook.
    pub id: Spanned<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steps that must finish first. Absent: every step above. `[]`: start at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<Spanned<String>>>,
    /// Run only when true; otherwise the step is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Box<Spanned<Condition>>>,
    /// Checked after the step; false fails it. `outputs` is this step's outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Box<Spanned<Condition>>>,
    /// `false`: a failure is a warning and the run goes on.
    #[serde(default = "yes")]
    pub critical: bool,
    /// Per attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<Duration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// A step under `compensations:` that reverses this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<Spanned<String>>,
    /// Says on purpose that a mutating step has no undo.
    #[serde(default)]
    pub irreversible: bool,
    /// Whether the step changes the world (default: per kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutates: Option<bool>,
    #[serde(flatten)]
    pub kind: StepKind,
    #[serde(skip)]
    #[schemars(skip)]
    pub location: Location,
}

fn yes() -> bool {
    true
}

/// How often to try a step, and how long to wait in between (doubling, with jitter).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// The delay before the second attempt (default 1s).
    #[serde(default = "Retry::default_backoff")]
    pub backoff: Duration,
    /// The longest delay between attempts (default 5m).
    #[serde(default = "Retry::default_max_backoff")]
    pub max_backoff: Duration,
}

impl Retry {
    fn default_backoff() -> Duration {
        Duration::from_secs(1)
    }
    fn default_max_backoff() -> Duration {
        Duration::from_secs(300)
    }

    pub const ONCE: Retry = Retry {
        attempts: 1,
        backoff: Duration(std::time::Duration::from_secs(1)),
        max_backoff: Duration(std::time::Duration::from_secs(300)),
    };

    /// The delay before attempt `n + 1` (n >= 1), without jitter: `backoff * 2^(n-1)`,
    /// capped at `max_backoff`.
    pub fn delay_after(&self, n: u32) -> std::time::Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.backoff
            .as_std()
            .saturating_mul(factor)
            .min(self.max_backoff.as_std())
    }

    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Retry> {
        if let Value::Scalar { .. } = node.value {
            let attempts = decode::integer(node, 1, 100, diags)?;
            return Some(Retry {
                attempts: attempts.value as u32,
                ..Retry::ONCE
            });
        }
        let mut f = Fields::of(node, "`retry`", diags)?;
        let attempts = f
            .require("attempts", diags)
            .and_then(|n| decode::integer(n, 1, 100, diags));
        let backoff = f.take("backoff").map(|n| decode::duration(n, diags));
        let max_backoff = f.take("max_backoff").map(|n| decode::duration(n, diags));
        f.finish(diags);
        let retry = Retry {
            attempts: attempts?.value as u32,
            backoff: match backoff {
                Some(b) => b?.value,
                None => Retry::default_backoff(),
            },
            max_backoff: match max_backoff {
                Some(b) => b?.value,
                None => Retry::default_max_backoff(),
            },
        };
        if retry.max_backoff < retry.backoff {
            diags.error(node.location, "`max_backoff` is shorter than `backoff`");
            return None;
        }
        Some(retry)
    }
}

impl schemars::JsonSchema for Spanned<Condition> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Condition".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "boolean"],
            "description": "A condition such as `steps.health.status == \"failed\"`."
        })
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.source())
    }
}

impl Step {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Step> {
        let mut f = Fields::of(node, "a step", diags)?;
        let id = f
            .require("id", diags)
            .and_then(|n| decode::string(n, diags));
        let title = f.take("title").and_then(|n| decode::template(n, diags));
        let description = f
            .take("description")
            .and_then(|n| decode::string(n, diags))
            .map(|s| s.value);
        let needs = f.take("needs").map(|n| {
            if n.is_null() {
                Some(Vec::new())
            } else {
                decode::string_list(n, diags)
            }
        });
        let when = f.take("when").map(|n| condition(n, diags).map(Box::new));
        let expect = f.take("expect").map(|n| condition(n, diags).map(Box::new));
        let critical = f.take("critical").map(|n| decode::boolean(n, diags));
        let timeout = f.take("timeout").map(|n| decode::duration(n, diags));
        let retry = f.take("retry").map(|n| Retry::decode(n, diags));
        let undo = f.take("undo").map(|n| decode::string(n, diags));
        let irreversible = f.take("irreversible").map(|n| decode::boolean(n, diags));
        let mutates = f.take("mutates").map(|n| decode::boolean(n, diags));

        let mut present: Vec<(&str, &Node)> = KIND_NAMES
            .iter()
            .filter_map(|name| f.take(name).map(|n| (*name, n)))
            .collect();
        // In file order, so the message names the kinds as the user wrote them.
        present.sort_by_key(|(_, n)| (n.location.line, n.location.column));
        let step_location = f.location;
        let unknown: Vec<String> = f
            .remaining()
            .filter_map(|(k, _)| k.scalar_text().map(str::to_owned))
            .collect();
        f.finish(diags);

        let kind = match present.as_slice() {
            [(name, n)] => StepKind::decode(name, n, diags),
            [] => {
                // An unknown field that looks like a kind already got its own "did you
                // mean" error; do not pile a second one on.
                if !unknown
                    .iter()
                    .any(|u| did_you_mean(u, KIND_NAMES).is_some())
                {
                    diags
                        .error(step_location, "a step needs a kind")
                        .hint(format!("add exactly one of: {}", KIND_NAMES.join(", ")));
                }
                None
            }
            [_, (second, n), ..] => {
                let names: Vec<&str> = present.iter().map(|(k, _)| *k).collect();
                diags
                    .error(
                        n.location,
                        format!(
                            "a step has exactly one kind, this one has {}",
                            names.join(" and ")
                        ),
                    )
                    .hint(format!("split it into two steps, or remove `{second}`"));
                None
            }
        };
        // A field that failed to decode was reported; the step is kept without it (and a
        // kind that failed becomes a no-op) so later checks do not cascade into errors
        // such as "unknown step" for a step that is merely malformed.
        Some(Step {
            id: id?,
            title,
            description,
            needs: needs.flatten(),
            when: when.flatten(),
            expect: expect.flatten(),
            critical: critical.flatten().unwrap_or(true),
            timeout: timeout.flatten(),
            retry: retry.flatten(),
            undo: undo.flatten(),
            irreversible: irreversible.flatten().unwrap_or(false),
            mutates: mutates.flatten(),
            kind: kind.unwrap_or(StepKind::Noop(crate::playbook::kinds::Noop {})),
            location: step_location,
        })
    }

    /// The title, or the id when there is none.
    pub fn display_title(&self) -> &str {
        self.title
            .as_ref()
            .map_or(self.id.as_str(), |t| t.text.as_str())
    }

    pub fn mutates(&self) -> bool {
        self.mutates
            .unwrap_or_else(|| self.kind.mutates_by_default())
    }
}

/// Parses a condition, mapping its error offset to a column when the scalar sits on one line.
fn condition(node: &Node, diags: &mut Diagnostics) -> Option<Spanned<Condition>> {
    // `when: true` / `when: false` are conditions too.
    let text = decode::string(node, diags)?;
    match Condition::parse(&text) {
        Ok(c) => Some(Spanned::new(c, node.location)),
        Err(e) => {
            let location = crate::yaml::scalar_offset(
                node.location,
                &text,
                e.span.start,
                e.span.end.saturating_sub(e.span.start),
            );
            let d = diags.error(location, format!("invalid condition: {}", e.message));
            if let Some(h) = e.hint {
                d.hint(h);
            }
            None
        }
    }
}
