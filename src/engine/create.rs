//! A new run from a plan: its params bound, its lock key rendered, its step rows with the
//! first steps already ready.

use serde_json::{Map, Value, json};

use super::progress::progress;
use crate::plan::Plan;
use crate::playbook::template::renderer;
use crate::state::StepStatus;
use crate::store::{NewRun, NewStep, StepList, new_id};

/// Who or what starts a run, and under which parent.
#[derive(Debug, Clone)]
pub struct Origin {
    pub starter: String,
    /// `manual`, `schedule:ID`, `invoke:RUN/STEP`, `retry:RUN`.
    pub trigger: String,
    pub parent: Option<(String, String)>,
}

/// The run to insert. `params` are already bound and checked (`plan::bind_params`).
/// `definition` is the playbook text the plan was compiled from: the run pins it.
pub fn new_run(
    plan: &Plan,
    definition: &str,
    params: Map<String, Value>,
    origin: &Origin,
) -> Result<NewRun, String> {
    new_run_keeping(plan, definition, params, origin, &[])
}

/// A main step carried over from an earlier run: its status (succeeded or warned) and
/// outputs stand, and it does not run again.
#[derive(Debug, Clone)]
pub struct Kept {
    pub step_id: String,
    pub status: StepStatus,
    pub outputs: Option<Value>,
}

/// A new run that keeps the results of `kept` main steps (`runway retry`).
pub fn new_run_keeping(
    plan: &Plan,
    definition: &str,
    params: Map<String, Value>,
    origin: &Origin,
    kept: &[Kept],
) -> Result<NewRun, String> {
    let id = new_id();
    let params = Value::Object(params);
    let ctx = json!({
        "params": params,
        "run": {
            "id": id, "starter": origin.starter, "trigger": origin.trigger,
            "playbook": plan.playbook.name.value, "started_at": "",
        },
        "steps": {},
    });
    let lock_key = plan
        .playbook
        .lock
        .as_ref()
        .map(|t| t.render(&renderer(), &ctx))
        .transpose()
        .map_err(|e| format!("cannot render `lock`: {e}"))?;
    let kept_of = |id: &str| kept.iter().find(|k| k.step_id == id);
    let statuses: Vec<StepStatus> = plan
        .playbook
        .steps
        .iter()
        .map(|s| kept_of(&s.id.value).map_or(StepStatus::Pending, |k| k.status))
        .collect();
    let mut ctx = ctx;
    if let Some(by_id) = ctx.get_mut("steps").and_then(Value::as_object_mut) {
        for k in kept {
            by_id.insert(
                k.step_id.clone(),
                json!({ "status": k.status.as_str(), "outputs": k.outputs }),
            );
        }
    }
    let first = progress(plan, &statuses, &ctx);
    let mut steps = Vec::new();
    for (i, s) in plan.playbook.steps.iter().enumerate() {
        if let Some(k) = kept_of(&s.id.value) {
            let mut step = new_step(plan, s, StepList::Main, k.status);
            step.outputs = k.outputs.clone();
            steps.push(step);
            continue;
        }
        let status = if first.ready.contains(&i) {
            StepStatus::Ready
        } else if first.skipped.iter().any(|(j, _)| *j == i) {
            StepStatus::Skipped
        } else {
            StepStatus::Pending
        };
        steps.push(new_step(plan, s, StepList::Main, status));
    }
    for s in &plan.playbook.compensations {
        steps.push(new_step(
            plan,
            s,
            StepList::Compensation,
            StepStatus::Pending,
        ));
    }
    for s in &plan.playbook.on_failure {
        steps.push(new_step(plan, s, StepList::OnFailure, StepStatus::Pending));
    }
    Ok(NewRun {
        id,
        playbook: plan.playbook.name.value.clone(),
        content_hash: plan.content_hash.clone(),
        definition: definition.to_owned(),
        params,
        starter: origin.starter.clone(),
        trigger: origin.trigger.clone(),
        lock_key,
        queue_on_lock: true,
        parent_run_id: origin.parent.as_ref().map(|p| p.0.clone()),
        parent_step_id: origin.parent.as_ref().map(|p| p.1.clone()),
        steps,
    })
}

fn new_step(
    plan: &Plan,
    step: &crate::playbook::step::Step,
    list: StepList,
    status: StepStatus,
) -> NewStep {
    NewStep {
        step_id: step.id.value.clone(),
        list,
        status,
        max_attempts: i32::try_from(plan.retry(step).attempts.max(1)).unwrap_or(i32::MAX),
        outputs: None,
    }
}
