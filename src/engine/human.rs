//! Decisions by people at `approval` and `checklist` steps: who may decide, what a
//! decision is bound to, and when the decisions so far end the step.
//!
//! The rules checked here, before the store records anything: the step is an approval or
//! checklist of the run's plan; an approver is in `approvers` (a name, or `role:NAME` held
//! by the operator) and is not the run's starter when `exclude_starter`; a comment is given
//! when `require_comment` (and always for a rejection or a failed item); the decision names
//! the plan it was made on (the run's [`plan_hash`]) when the caller gives one, and it must
//! match. The store then refuses, atomically, a step that is not waiting (decided already,
//! timed out, cancelled), a run that ended, and a second decision by the same person or for
//! the same item.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::plan::Plan;
use crate::playbook::kinds::{Approval, Checklist, StepKind};
use crate::playbook::step::Step;
use crate::state::StepStatus;
use crate::store::{Finish, Judge, NewStepDecision, Run, StepDecision, Verdict};

/// Who is deciding: a name and the roles they hold.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub roles: Vec<String>,
}

/// The plan a decision is bound to: the run's pinned definition (its content hash) and its
/// params, hashed together. `runway status` shows it; `--plan-hash` makes a decision
/// conditional on it.
pub fn plan_hash(run: &Run) -> String {
    plan_hash_of(&run.content_hash, &run.params)
}

/// [`plan_hash`] from the content hash and params themselves (as `run.created` records
/// them), for readers of the evidence.
pub fn plan_hash_of(content_hash: &str, params: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(content_hash.as_bytes());
    h.update(b"\n");
    h.update(params.to_string().as_bytes());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A decision a person asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub verdict: Verdict,
    /// The checklist item; `None` for an approval.
    pub item: Option<String>,
    pub comment: Option<String>,
    /// The plan hash the person reviewed, if they name one.
    pub plan_hash: Option<String>,
}

/// Checks a request against the step's rules; the decision to record, and the judge that
/// says when the step ends. `Err` is the reason for refusing, for the person to read.
pub fn prepare<'a>(
    plan: &'a Plan,
    run: &Run,
    step_id: &str,
    operator: &Operator,
    request: &Request,
) -> Result<(NewStepDecision, Box<dyn Judge + 'a>), String> {
    let step = plan
        .playbook
        .all_steps()
        .find(|s| s.id.value == step_id)
        .ok_or_else(|| format!("run {} has no step `{step_id}`", run.id))?;
    let hash = plan_hash(run);
    if let Some(given) = &request.plan_hash
        && *given != hash
    {
        return Err(format!(
            "the plan changed: you reviewed {given}, run {} is {hash}; review it again (runway status {})",
            run.id, run.id
        ));
    }
    let comment = request
        .comment
        .as_ref()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let item = match (&step.kind, &request.item, request.verdict) {
        (StepKind::Approval(a), None, Verdict::Approve | Verdict::Reject) => {
            check_approver(a, run, operator)?;
            if comment.is_none() && (a.require_comment || request.verdict == Verdict::Reject) {
                return Err(match request.verdict {
                    Verdict::Reject => "a rejection needs a reason (--reason \"...\")".to_owned(),
                    _ => format!("step `{step_id}` requires a comment (--comment \"...\")"),
                });
            }
            String::new()
        }
        (StepKind::Checklist(c), Some(item), Verdict::Pass | Verdict::Fail | Verdict::Na) => {
            let Some(found) = c.items.iter().find(|i| i.id.value == *item) else {
                let ids: Vec<&str> = c.items.iter().map(|i| i.id.value.as_str()).collect();
                return Err(format!(
                    "step `{step_id}` has no item `{item}`; its items: {}",
                    ids.join(", ")
                ));
            };
            if found.required && request.verdict == Verdict::Na {
                return Err(format!(
                    "item `{item}` is required: answer --pass or --fail"
                ));
            }
            if request.verdict == Verdict::Fail && comment.is_none() {
                return Err("a failed item needs a note (--note \"...\")".to_owned());
            }
            item.clone()
        }
        (StepKind::Approval(_), _, _) => {
            return Err(format!(
                "step `{step_id}` is an approval: use runway approve or runway reject"
            ));
        }
        (StepKind::Checklist(_), _, _) => {
            return Err(format!(
                "step `{step_id}` is a checklist: use runway check {} {step_id} ITEM --pass|--fail|--na",
                run.id
            ));
        }
        (kind, _, _) => {
            return Err(format!(
                "step `{step_id}` is a `{}` step: only approval and checklist steps take decisions",
                kind.name()
            ));
        }
    };
    let judge: Box<dyn Judge> = match &step.kind {
        StepKind::Approval(a) => Box::new(ApprovalJudge { approval: a, step }),
        StepKind::Checklist(c) => Box::new(ChecklistJudge { checklist: c, step }),
        _ => unreachable!("refused above"),
    };
    Ok((
        NewStepDecision {
            item,
            operator: operator.name.clone(),
            verdict: request.verdict,
            comment,
            plan_hash: hash,
        },
        judge,
    ))
}

fn check_approver(a: &Approval, run: &Run, operator: &Operator) -> Result<(), String> {
    if a.exclude_starter && operator.name == run.starter {
        return Err(format!(
            "{} started run {} and this approval excludes the starter: someone else must decide",
            operator.name, run.id
        ));
    }
    if a.approvers.is_empty() {
        return Ok(());
    }
    let allowed = a
        .approvers
        .iter()
        .any(|who| match who.value.strip_prefix("role:") {
            Some(role) => operator.roles.iter().any(|r| r == role),
            None => who.value == operator.name,
        });
    if allowed {
        Ok(())
    } else {
        let names: Vec<&str> = a.approvers.iter().map(|w| w.value.as_str()).collect();
        Err(format!(
            "{} may not decide this approval; allowed: {} (roles come from RUNWAY_OPERATOR_ROLES)",
            operator.name,
            names.join(", ")
        ))
    }
}

fn failed(step: &Step) -> StepStatus {
    if step.critical {
        StepStatus::Failed
    } else {
        StepStatus::Warned
    }
}

struct ApprovalJudge<'a> {
    approval: &'a Approval,
    step: &'a Step,
}

impl Judge for ApprovalJudge<'_> {
    fn judge(&self, decisions: &[StepDecision]) -> Option<Finish> {
        if let Some(r) = decisions.iter().find(|d| d.verdict == Verdict::Reject) {
            return Some(Finish {
                error: Some(format!(
                    "rejected by {}: {}",
                    r.operator,
                    r.comment.as_deref().unwrap_or("")
                )),
                outputs: Some(json!({ "rejected_by": r.operator })),
                ..Finish::new(failed(self.step))
            });
        }
        let approvers: Vec<&str> = decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
            .map(|d| d.operator.as_str())
            .collect();
        (approvers.len() >= self.approval.quorum.max(1) as usize).then(|| Finish {
            outputs: Some(json!({ "approvers": approvers })),
            ..Finish::new(StepStatus::Succeeded)
        })
    }
}

struct ChecklistJudge<'a> {
    checklist: &'a Checklist,
    step: &'a Step,
}

impl Judge for ChecklistJudge<'_> {
    fn judge(&self, decisions: &[StepDecision]) -> Option<Finish> {
        let answer = |id: &str| decisions.iter().find(|d| d.item == id);
        if let Some((item, d)) = self
            .checklist
            .items
            .iter()
            .filter(|i| i.required)
            .find_map(|i| {
                answer(&i.id.value)
                    .filter(|d| d.verdict == Verdict::Fail)
                    .map(|d| (i, d))
            })
        {
            return Some(Finish {
                error: Some(format!(
                    "item `{}` failed ({}): {}",
                    item.id.value,
                    d.operator,
                    d.comment.as_deref().unwrap_or("")
                )),
                ..Finish::new(failed(self.step))
            });
        }
        let done = self
            .checklist
            .items
            .iter()
            .filter(|i| i.required)
            .all(|i| answer(&i.id.value).is_some_and(|d| d.verdict == Verdict::Pass));
        done.then(|| {
            let items: serde_json::Map<String, serde_json::Value> = self
                .checklist
                .items
                .iter()
                .map(|i| {
                    let v = answer(&i.id.value).map_or("unanswered", |d| d.verdict.as_str());
                    (i.id.value.clone(), json!(v))
                })
                .collect();
            Finish {
                outputs: Some(json!({ "items": items })),
                ..Finish::new(StepStatus::Succeeded)
            }
        })
    }
}
