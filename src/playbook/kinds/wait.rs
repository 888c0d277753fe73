//! `wait`: a durable timer, for a duration or until a timestamp.

use serde::Serialize;

use super::TemplateUse;
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::duration::Duration;
use crate::playbook::template::Template;
use crate::yaml::{Node, Value};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Wait {
    /// `wait: 10m`
    For(Spanned<Duration>),
    /// `wait: { until: '2026-12-01T22:00:00Z' }`
    Until {
        /// An RFC 3339 timestamp; templates allowed.
        until: Template,
    },
}

impl Wait {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Wait> {
        if let Value::Scalar { .. } = node.value {
            return decode::duration(node, diags).map(Wait::For);
        }
        let mut f = Fields::of(node, "`wait`", diags)?;
        let duration = f.take("duration").and_then(|n| decode::duration(n, diags));
        let until = f.take("until").and_then(|n| decode::template(n, diags));
        let location = f.location;
        f.finish(diags);
        match (duration, until) {
            (Some(d), None) => Some(Wait::For(d)),
            (None, Some(until)) => {
                if until.is_literal() && chrono::DateTime::parse_from_rfc3339(&until.text).is_err()
                {
                    diags
                        .error(
                            until.location,
                            format!("`{}` is not an RFC 3339 timestamp", until.text),
                        )
                        .hint("write e.g. `2026-12-01T22:00:00Z` or `2026-12-01T23:00:00+01:00`");
                    return None;
                }
                Some(Wait::Until { until })
            }
            (Some(_), Some(_)) => {
                diags
                    .error(location, "`wait` has both `duration` and `until`")
                    .hint("keep one");
                None
            }
            (None, None) => {
                diags.error(
                    location,
                    "`wait` needs a duration (`wait: 10m`) or `until:`",
                );
                None
            }
        }
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        match self {
            Wait::For(_) => Vec::new(),
            Wait::Until { until } => vec![TemplateUse::new(until, "until", false)],
        }
    }
}
