//! `approval`: the run parks until enough people approve, or someone rejects.

use serde::Serialize;

use super::TemplateUse;
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::template::Template;
use crate::yaml::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// The step fails when its timeout passes.
    #[default]
    Fail,
    /// Notify `escalate`, then keep waiting.
    Escalate,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub url: Template,
    pub message: Template,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub prompt: Template,
    /// Distinct approvers needed (default 1).
    #[serde(default = "one")]
    pub quorum: u32,
    /// Who may decide: names, or `role:NAME`. Empty: anyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Spanned<String>>,
    /// The person who started the run cannot approve it.
    #[serde(default)]
    pub exclude_starter: bool,
    #[serde(default)]
    pub require_comment: bool,
    #[serde(default)]
    pub on_timeout: OnTimeout,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Escalation>,
}

fn one() -> u32 {
    1
}

impl Approval {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Approval> {
        let mut f = Fields::of(node, "`approval`", diags)?;
        let prompt = f
            .require("prompt", diags)
            .and_then(|n| decode::template(n, diags));
        let quorum = f
            .take("quorum")
            .map(|n| decode::integer(n, 1, 100, diags).map(|q| q.value as u32));
        let approvers = f
            .take("approvers")
            .and_then(|n| decode::string_list(n, diags))
            .unwrap_or_default();
        let exclude_starter = f
            .take("exclude_starter")
            .and_then(|n| decode::boolean(n, diags))
            .unwrap_or(false);
        let require_comment = f
            .take("require_comment")
            .and_then(|n| decode::boolean(n, diags))
            .unwrap_or(false);
        let on_timeout =
            f.take("on_timeout")
                .and_then(|n| match decode::string(n, diags)?.as_str() {
                    "fail" => Some(OnTimeout::Fail),
                    "escalate" => Some(OnTimeout::Escalate),
                    other => {
                        diags
                            .error(
                                n.location,
                                format!("`{other}` is not an `on_timeout` outcome"),
                            )
                            .hint("use `fail` or `escalate`");
                        None
                    }
                });
        let escalate = f.take("escalate").and_then(|n| {
            let mut e = Fields::of(n, "`escalate`", diags)?;
            let url = e
                .require("url", diags)
                .and_then(|n| decode::template(n, diags));
            let message = e
                .require("message", diags)
                .and_then(|n| decode::template(n, diags));
            e.finish(diags);
            Some(Escalation {
                url: url?,
                message: message?,
            })
        });
        let location = f.location;
        let has_escalate = f.has("escalate");
        f.finish(diags);
        let on_timeout = on_timeout.unwrap_or_default();
        if on_timeout == OnTimeout::Escalate && !has_escalate {
            diags
                .error(
                    location,
                    "`on_timeout: escalate` needs an `escalate:` webhook",
                )
                .hint("add `escalate: { url: '{{secrets.PAGER_WEBHOOK}}', message: ... }`");
        }
        let quorum = match quorum {
            Some(q) => q?,
            None => 1,
        };
        if !approvers.is_empty()
            && !approvers.iter().any(|a| a.starts_with("role:"))
            && (approvers.len() as u32) < quorum
        {
            diags.error(
                location,
                format!(
                    "quorum {quorum} cannot be reached by the {} approver(s) listed",
                    approvers.len()
                ),
            );
        }
        Some(Approval {
            prompt: prompt?,
            quorum,
            approvers,
            exclude_starter,
            require_comment,
            on_timeout,
            escalate,
        })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        let mut uses = vec![TemplateUse::new(&self.prompt, "prompt", false)];
        if let Some(e) = &self.escalate {
            uses.push(TemplateUse::new(&e.url, "escalate url", true));
            uses.push(TemplateUse::new(&e.message, "escalate message", false));
        }
        uses
    }
}
