//! `checklist`: manual items an operator records as pass, fail or n/a with a note.

use serde::Serialize;

use super::TemplateUse;
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::template::Template;
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    pub id: Spanned<String>,
    pub text: Template,
    /// A failed required item fails the step (default true).
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checklist {
    pub items: Vec<ChecklistItem>,
}

impl Checklist {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Checklist> {
        let mut f = Fields::of(node, "`checklist`", diags)?;
        let items_node = f.require("items", diags);
        f.finish(diags);
        let nodes = decode::list(items_node?, diags)?;
        if nodes.is_empty() {
            diags.error(items_node?.location, "a checklist needs at least one item");
            return None;
        }
        let id_pattern = crate::playbook::id_pattern();
        let mut items: Vec<ChecklistItem> = Vec::new();
        for n in nodes {
            let Some(mut item) = Fields::of(n, "a checklist item", diags) else {
                continue;
            };
            let id = item
                .require("id", diags)
                .and_then(|n| decode::string(n, diags));
            let text = item
                .require("text", diags)
                .and_then(|n| decode::template(n, diags));
            let required = item
                .take("required")
                .and_then(|n| decode::boolean(n, diags))
                .unwrap_or(true);
            item.finish(diags);
            let (Some(id), Some(text)) = (id, text) else {
                continue;
            };
            if !decode::identifier(&id, id_pattern, "checklist item id", "smoke-login", diags) {
                continue;
            }
            if let Some(first) = items.iter().find(|i| i.id.value == id.value) {
                diags
                    .error(
                        id.location,
                        format!("duplicate checklist item id `{}`", id.value),
                    )
                    .hint(format!("the first is at line {}", first.id.location.line));
                continue;
            }
            items.push(ChecklistItem { id, text, required });
        }
        Some(Checklist { items })
    }

    pub fn templates(&self) -> Vec<TemplateUse<'_>> {
        self.items
            .iter()
            .map(|i| TemplateUse::new(&i.text, "item text", false))
            .collect()
    }
}
