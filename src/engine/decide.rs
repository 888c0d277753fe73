//! The engine's answer to "what follows now?", given to the store as a [`Decide`] so it is
//! asked inside the transaction that changed the run (see [`crate::store::Advance`]).
//!
//! A run goes through up to three phases, read off its rows each time (no phase is
//! stored, so nothing can disagree with the rows):
//! 1. **main**: [`progress`] over the main steps: successors made ready, skips, gate
//!    verdicts. When every main step is terminal and nothing is fatal, the run succeeds
//!    (its unused compensation and `on_failure` rows are skipped).
//! 2. **unwinding** after a fatal failure or an operator's cancel: open main steps are
//!    cancelled (a running one loses its lease and its worker stops it), then the undo of
//!    every succeeded mutating step runs, one at a time, in reverse order of completion
//!    ([`undo_order`]).
//! 3. **on_failure** (after a failure, not after a cancel): the playbook's `on_failure`
//!    steps, one at a time in list order. Then the run ends `failed` (or `cancelled`).
//!
//! A compensation or `on_failure` step that fails is recorded and the next one still
//! runs: unwinding is best effort, and the evidence says what did not work.

use std::collections::HashMap;

use serde_json::json;

use super::context::context;
use super::progress::{Outcome, progress, ready_after, undo_order};
use crate::plan::{Place, Plan};
use crate::playbook::step::Step;
use crate::state::{RunStatus, StepStatus};
use crate::store::{Advance, Decide, Decision, Ended, NewEvent, Run, StepList, StepRun};

/// Decides for runs of one plan.
pub struct Decider<'a> {
    pub plan: &'a Plan,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Failed,
    Cancelled,
}

impl Decider<'_> {
    /// The main step that ended, when its end can be decided from its dependents alone (a
    /// success or a warning; anything else may end or unwind the run).
    fn main_success(&self, ended: &Ended<'_>) -> Option<usize> {
        match (self.plan.index().place(ended.step_id)?, ended.status) {
            (Place::Main(i), StepStatus::Succeeded | StepStatus::Warned) => Some(i),
            _ => None,
        }
    }
}

impl Decide for Decider<'_> {
    fn reads_after(&self, ended: &Ended<'_>) -> Option<Vec<String>> {
        let i = self.main_success(ended)?;
        let (plan, index) = (self.plan, self.plan.index());
        let steps = &plan.playbook.steps;
        let mut ids: Vec<&str> = Vec::new();
        for &d in index.dependents(i) {
            ids.push(&steps[d].id.value);
            ids.extend(
                plan.graph.deps[d]
                    .iter()
                    .map(|&j| steps[j].id.value.as_str()),
            );
            ids.extend(
                index
                    .reads(&plan.playbook, &steps[d].id.value)
                    .iter()
                    .map(String::as_str),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        Some(ids.into_iter().map(str::to_owned).collect())
    }

    fn reads_for(&self, step_id: &str) -> Vec<String> {
        let (plan, index) = (self.plan, self.plan.index());
        let mut ids: Vec<String> = index.reads(&plan.playbook, step_id).to_vec();
        let ended = Ended {
            step_id,
            status: StepStatus::Succeeded,
        };
        ids.extend(self.reads_after(&ended).unwrap_or_default());
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn decide_after(&self, run: &Run, ended: &Ended<'_>, rows: &[StepRun]) -> Option<Advance> {
        let i = self.main_success(ended)?;
        let steps = &self.plan.playbook.steps;
        let by_id: HashMap<&str, &StepRun> = rows.iter().map(|r| (r.step_id.as_str(), r)).collect();
        let status = |j: usize| by_id.get(steps[j].id.value.as_str()).map(|r| r.status);
        let ready = ready_after(self.plan, i, status, &context(run, rows))?;
        Some(Advance {
            then: ready
                .into_iter()
                .map(|d| Decision::ready(steps[d].id.value.clone()))
                .collect(),
            ..Advance::default()
        })
    }

    fn decide(&self, run: &Run, rows: &[StepRun]) -> Advance {
        let plan = self.plan;
        let by_id: HashMap<&str, &StepRun> = rows.iter().map(|r| (r.step_id.as_str(), r)).collect();
        let main: Vec<StepStatus> = plan
            .playbook
            .steps
            .iter()
            .map(|s| {
                by_id
                    .get(s.id.value.as_str())
                    .map_or(StepStatus::Pending, |r| r.status)
            })
            .collect();
        let ctx = context(run, rows);
        let p = progress(plan, &main, &ctx);
        let mut adv = Advance::default();
        let steps = &plan.playbook.steps;

        for (i, reason) in &p.skipped {
            let mut d = Decision::skipped(steps[*i].id.value.clone());
            d.error = Some(format!("{reason:?}"));
            adv.then.push(d);
        }
        for (i, verdict) in &p.verdicts {
            let names = |ix: &[usize]| -> Vec<String> {
                ix.iter().map(|&j| steps[j].id.value.clone()).collect()
            };
            let status = verdict.status(steps[*i].critical);
            let error = match (verdict.go, verdict.none_ran) {
                (true, _) => None,
                (false, true) => Some("NO-GO: none of its checks ran (all skipped)".to_owned()),
                (false, false) => Some(format!(
                    "NO-GO: failed checks: {}",
                    names(&verdict.failed).join(", ")
                )),
            };
            adv.then.push(Decision {
                step_id: steps[*i].id.value.clone(),
                status,
                error,
            });
            adv.events.push(NewEvent::step(
                "gate.verdict",
                &steps[*i].id.value,
                0,
                json!({
                    "verdict": if verdict.go { "GO" } else { "NO-GO" },
                    "failed": names(&verdict.failed),
                    "warned": names(&verdict.warned),
                    "passed": names(&verdict.passed),
                    "none_ran": verdict.none_ran,
                }),
            ));
        }
        for (i, message) in &p.failed {
            adv.then.push(Decision {
                step_id: steps[*i].id.value.clone(),
                status: StepStatus::Failed,
                error: Some(message.clone()),
            });
        }

        let cancelled = main.contains(&StepStatus::Cancelled);
        let ending = match &p.outcome {
            Some(Outcome::Failed { .. }) => Some(Ending::Failed),
            _ if cancelled => Some(Ending::Cancelled),
            Some(Outcome::Succeeded) => {
                for r in rows.iter().filter(|r| r.list != StepList::Main) {
                    if r.status == StepStatus::Pending {
                        adv.then.push(Decision::skipped(r.step_id.clone()));
                    }
                }
                adv.run_status = Some(RunStatus::Succeeded);
                return finish(adv, run);
            }
            None => None,
        };
        let Some(ending) = ending else {
            for &i in &p.ready {
                adv.then.push(Decision::ready(steps[i].id.value.clone()));
            }
            return finish(adv, run);
        };

        // Unwinding: nothing new starts in the main list; open steps stop.
        let decided: Vec<String> = adv.then.iter().map(|d| d.step_id.clone()).collect();
        for (i, s) in steps.iter().enumerate() {
            let id = s.id.value.as_str();
            match main[i] {
                StepStatus::Pending if !decided.iter().any(|d| d == id) => {
                    adv.then.push(Decision {
                        step_id: id.to_owned(),
                        status: StepStatus::Cancelled,
                        error: None,
                    })
                }
                StepStatus::Ready | StepStatus::Running | StepStatus::Waiting => {
                    adv.cancel.push(id.to_owned());
                }
                _ => {}
            }
        }
        let failed_step = match &p.outcome {
            Some(Outcome::Failed { step }) => Some(*step),
            _ => None,
        };

        // Compensations, in reverse order of completion of the steps they undo.
        let mut completed: Vec<(usize, &StepRun)> = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| by_id.get(s.id.value.as_str()).map(|r| (i, *r)))
            .filter(|(_, r)| r.status == StepStatus::Succeeded)
            .collect();
        completed.sort_by_key(|(_, r)| (r.finished_at, r.position));
        let completed: Vec<usize> = completed.into_iter().map(|(i, _)| i).collect();
        let order: Vec<&Step> = undo_order(plan, &completed, &main)
            .into_iter()
            .map(|c| &plan.playbook.compensations[c])
            .collect();
        for c in &plan.playbook.compensations {
            let chosen = order.iter().any(|o| o.id.value == c.id.value);
            if !chosen && status_of(&by_id, &c.id.value) == Some(StepStatus::Pending) {
                adv.then.push(Decision::skipped(c.id.value.clone()));
            }
        }
        if !next_in_sequence(&order, &by_id, &ctx, &mut adv) {
            return finish(adv, run);
        }
        // Then on_failure, after a failure only.
        let on_failure: Vec<&Step> = plan.playbook.on_failure.iter().collect();
        if ending == Ending::Failed {
            if !next_in_sequence(&on_failure, &by_id, &ctx, &mut adv) {
                return finish(adv, run);
            }
        } else {
            for s in &on_failure {
                if status_of(&by_id, &s.id.value) == Some(StepStatus::Pending) {
                    adv.then.push(Decision::skipped(s.id.value.clone()));
                }
            }
        }
        match ending {
            Ending::Failed => {
                let step = failed_step.map(|i| &steps[i]);
                let reason = step
                    .and_then(|s| by_id.get(s.id.value.as_str()))
                    .and_then(|r| r.error.clone())
                    .or_else(|| {
                        p.failed
                            .iter()
                            .find(|(i, _)| Some(*i) == failed_step)
                            .map(|(_, m)| m.clone())
                    })
                    .or_else(|| {
                        adv.then
                            .iter()
                            .find(|d| step.is_some_and(|s| s.id.value == d.step_id))
                            .and_then(|d| d.error.clone())
                    });
                adv.run_status = Some(RunStatus::Failed);
                adv.run_error = Some(match (step, reason) {
                    (Some(s), Some(r)) => format!("step `{}` failed: {r}", s.id.value),
                    (Some(s), None) => format!("step `{}` failed", s.id.value),
                    (None, _) => "the run failed".to_owned(),
                });
            }
            Ending::Cancelled => {
                adv.run_status = Some(RunStatus::Cancelled);
                adv.run_error = Some("cancelled by an operator".to_owned());
            }
        }
        finish(adv, run)
    }
}

/// Drives `sequence` one step at a time: returns true when every step of it is terminal;
/// otherwise makes the next pending one ready (unless one is still open) and returns false.
/// A step whose `when:` is false is skipped; one whose `when:` cannot be evaluated fails
/// (and the sequence goes on: unwinding is best effort).
fn next_in_sequence(
    sequence: &[&Step],
    by_id: &HashMap<&str, &StepRun>,
    ctx: &serde_json::Value,
    adv: &mut Advance,
) -> bool {
    for s in sequence {
        match status_of(by_id, &s.id.value) {
            Some(StepStatus::Pending) => match s.when.as_ref().map(|w| w.value.eval(ctx)) {
                None | Some(Ok(true)) => {
                    adv.then.push(Decision::ready(s.id.value.clone()));
                    return false;
                }
                Some(Ok(false)) => {
                    let mut d = Decision::skipped(s.id.value.clone());
                    d.error = Some("WhenFalse".to_owned());
                    adv.then.push(d);
                }
                Some(Err(e)) => adv.then.push(Decision {
                    step_id: s.id.value.clone(),
                    status: StepStatus::Failed,
                    error: Some(format!("`when` could not be evaluated: {e}")),
                }),
            },
            Some(st) if !st.is_terminal() => return false,
            _ => {}
        }
    }
    true
}

fn status_of(by_id: &HashMap<&str, &StepRun>, id: &str) -> Option<StepStatus> {
    by_id.get(id).map(|r| r.status)
}

/// The last touches: a child run that ends wakes its parent's `invoke` step.
fn finish(mut adv: Advance, run: &Run) -> Advance {
    if adv.run_status.is_some_and(RunStatus::is_terminal)
        && let (Some(parent), Some(step)) = (&run.parent_run_id, &run.parent_step_id)
    {
        adv.wake.push((parent.clone(), step.clone()));
    }
    adv
}
