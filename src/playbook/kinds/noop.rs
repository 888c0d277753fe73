//! `noop`: does nothing; a join point or a heading in the plan.

use serde::Serialize;

use crate::diagnostic::Diagnostics;
use crate::playbook::decode::Fields;
use crate::yaml::Node;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Noop {}

impl Noop {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Noop> {
        let f = Fields::of(node, "`noop`", diags)?;
        f.finish(diags);
        Some(Noop {})
    }
}
