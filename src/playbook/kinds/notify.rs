//! `notify`: POST a JSON message to a webhook.

use serde::Serialize;

use super::{TemplateMap, TemplateUse};
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields};
use crate::playbook::template::Template;
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub url: Template,
    pub message: Template,
    #[serde(default, skip_serializing_if = "TemplateMap::is_empty")]
    pub headers: TemplateMap,
}

impl Notify {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Notify> {
        let mut f = Fields::of(node, "`notify`", diags)?;
        let url = f
            .require("url", diags)
            .and_then(|n| decode::template(n, diags));
        let message = f
            .require("message", diags)
            .and_then(|n| decode::template(n, diags));
        let headers = f
            .take("headers")
            .and_then(|n| TemplateMap::decode(n, diags))
            .unwrap_or_default();
        f.finish(diags);
        Some(Notify {
            url: url?,
            message: message?,
            headers,
        })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        let mut uses = vec![
            TemplateUse::new(&self.url, "url", true),
            TemplateUse::new(&self.message, "message", false),
        ];
        uses.extend(self.headers.uses("header", true));
        uses
    }
}
