//! `followup`: schedule a one-off run of another playbook for later (the 24-hour and 1-week
//! checklists after a go-live). The step ends as soon as the follow-up is registered; the
//! scheduler starts the run when it is due, as a child of this run and step.

use serde::Serialize;

use super::{TemplateMap, TemplateUse};
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::duration::Duration;
use crate::playbook::template::Template;
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Followup {
    /// The `name` of a loaded playbook.
    pub playbook: Spanned<String>,
    #[serde(default, skip_serializing_if = "TemplateMap::is_empty")]
    pub params: TemplateMap,
    /// How long after this step runs the follow-up is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Spanned<Duration>>,
    /// When it is due instead: an RFC 3339 timestamp (templates allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Template>,
}

impl Followup {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Followup> {
        let mut f = Fields::of(node, "`followup`", diags)?;
        let playbook = f
            .require("playbook", diags)
            .and_then(|n| decode::string(n, diags));
        let params = f
            .take("params")
            .and_then(|n| TemplateMap::decode(n, diags))
            .unwrap_or_default();
        let after = f.take("after").and_then(|n| decode::duration(n, diags));
        let at = f.take("at").and_then(|n| decode::template(n, diags));
        let location = f.location;
        f.finish(diags);
        match (&after, &at) {
            (Some(_), Some(_)) => {
                diags
                    .error(location, "`followup` has both `after` and `at`")
                    .hint("keep one");
                return None;
            }
            (None, None) => {
                diags
                    .error(
                        location,
                        "`followup` needs `after:` (a duration) or `at:` (a timestamp)",
                    )
                    .hint("e.g. `after: 24h`");
                return None;
            }
            (None, Some(t))
                if t.is_literal() && chrono::DateTime::parse_from_rfc3339(&t.text).is_err() =>
            {
                diags
                    .error(
                        t.location,
                        format!("`{}` is not an RFC 3339 timestamp", t.text),
                    )
                    .hint("write e.g. `2026-12-01T22:00:00Z` or `2026-12-01T23:00:00+01:00`");
                return None;
            }
            _ => {}
        }
        Some(Followup {
            playbook: playbook?,
            params,
            after,
            at,
        })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        // Params are stored with the follow-up and its run: no secrets.
        let mut uses: Vec<TemplateUse<'_>> = self.params.uses("param", false).collect();
        if let Some(at) = &self.at {
            uses.push(TemplateUse::new(at, "at", false));
        }
        uses
    }
}
