//! `gate`: a GO/NO-GO verdict over the steps it needs (its checks).

use serde::Serialize;

use crate::diagnostic::Diagnostics;
use crate::playbook::decode::Fields;
use crate::yaml::Node;

/// Has no fields of its own: its checks are its `needs`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {}

impl Gate {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Gate> {
        let f = Fields::of(
            node,
            "`gate` (its checks are the steps in its `needs`)",
            diags,
        )?;
        f.finish(diags);
        Some(Gate {})
    }
}
