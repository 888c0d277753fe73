//! What templates and conditions of a run see: `params`, `run`, `steps.ID.status`,
//! `steps.ID.outputs`, and for templates `secrets`.

use serde_json::{Map, Value, json};

use crate::store::{Run, StepRun};

/// The condition context (no secrets: conditions never need them, and an error message
/// quoting a value must not show one).
pub fn context(run: &Run, steps: &[StepRun]) -> Value {
    let mut by_id = Map::new();
    for s in steps {
        let mut entry = Map::new();
        entry.insert("status".into(), Value::String(s.status.as_str().to_owned()));
        if let Some(outputs) = &s.outputs {
            entry.insert("outputs".into(), outputs.clone());
        }
        by_id.insert(s.step_id.clone(), Value::Object(entry));
    }
    json!({
        "params": run.params,
        "run": {
            "id": run.id,
            "starter": run.starter,
            "started_at": run.started_at.unwrap_or(run.created_at).to_rfc3339(),
            "trigger": run.trigger,
            "playbook": run.playbook,
        },
        "steps": by_id,
    })
}

/// Template data: the condition context plus `secrets`.
pub fn template_data(run: &Run, steps: &[StepRun], secrets: &super::Secrets) -> Value {
    let mut data = context(run, steps);
    if let Some(root) = data.as_object_mut() {
        root.insert("secrets".into(), secrets.as_json());
    }
    data
}
