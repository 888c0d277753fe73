//! `invoke`: a child run of another playbook; the step ends with the child's outcome.

use serde::Serialize;

use super::{TemplateMap, TemplateUse};
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    /// The `name` of a loaded playbook.
    pub playbook: Spanned<String>,
    #[serde(default, skip_serializing_if = "TemplateMap::is_empty")]
    pub params: TemplateMap,
}

impl Invoke {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Invoke> {
        let mut f = Fields::of(node, "`invoke`", diags)?;
        let playbook = f
            .require("playbook", diags)
            .and_then(|n| decode::string(n, diags));
        let params = f
            .take("params")
            .and_then(|n| TemplateMap::decode(n, diags))
            .unwrap_or_default();
        f.finish(diags);
        Some(Invoke {
            playbook: playbook?,
            params,
        })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        // Params are stored with the child run, so secrets may not travel through them.
        self.params.uses("param", false).collect()
    }
}
