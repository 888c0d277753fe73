//! The decision function of a run: given the plan and the current state of every main step,
//! what happens next.
//!
//! Rules (docs/playbooks.md states them for users):
//! - A step is decided once every step it needs is terminal.
//! - A step whose explicit `needs` were all skipped is skipped; a step that only follows
//!   skipped steps in list order runs, and a step with no needs is never skipped for that
//!   reason.
//! - A gate whose checks were all skipped says NO-GO: no evidence is not a GO.
//! - `when:` false skips the step; a `when:` that cannot be evaluated (a missing output)
//!   fails it with the evaluation error.
//! - A failed step (a critical failure; non-critical failures are `warned`) fails the run,
//!   unless every step that needs it is a gate: then the gates decide. A gate's verdict is
//!   NO-GO when any of its checks failed, GO (with warnings) otherwise; a NO-GO gate fails,
//!   and fails the run like any critical step.
//! - After a failure nothing new starts; steps already running finish or are cancelled by
//!   the engine, then compensations run in reverse order of completion.

use serde_json::{Map, Value};

use crate::plan::Plan;
use crate::playbook::kinds::StepKind;
use crate::state::StepStatus;

/// Why a step will not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Its `when:` was false.
    WhenFalse,
    /// Every step it needs was skipped.
    NeedsSkipped,
}

/// A gate's decision over its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub go: bool,
    /// Checks that failed (critical failures): the reasons for NO-GO.
    pub failed: Vec<usize>,
    /// Checks that failed but are not critical: GO with warnings.
    pub warned: Vec<usize>,
    /// Checks that passed or were skipped.
    pub passed: Vec<usize>,
    /// Every check was skipped: NO-GO, since nothing was checked.
    pub none_ran: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every main step is terminal and none failed the run.
    Succeeded,
    /// Step `step` failed and no gate absorbs it: the run fails (after undo).
    Failed { step: usize },
}

/// What to do next. Indices are into `plan.playbook.steps`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Steps to queue now, in plan order.
    pub ready: Vec<usize>,
    pub skipped: Vec<(usize, SkipReason)>,
    /// Gates decided now; a NO-GO gate is to be recorded as failed.
    pub verdicts: Vec<(usize, Verdict)>,
    /// Steps whose `when:` could not be evaluated: to be recorded as failed with the message.
    pub failed: Vec<(usize, String)>,
    pub outcome: Option<Outcome>,
}

/// Decides what happens next. `statuses[i]` is the status of main step `i`; `context` is
/// the condition context (`params`, `run`, and `steps.ID.outputs` of finished steps); the
/// statuses in it are filled in here, so they always match `statuses`.
pub fn progress(plan: &Plan, statuses: &[StepStatus], context: &Value) -> Progress {
    let steps = &plan.playbook.steps;
    let mut st: Vec<StepStatus> = statuses.to_vec();
    let mut ctx = context.clone();
    for (i, s) in st.iter().enumerate() {
        set_status(&mut ctx, &steps[i].id, *s);
    }
    let mut out = Progress::default();

    // A failure that no gate absorbs stops everything new from starting.
    let mut fatal = fatal_failure(plan, &st);
    if fatal.is_none() {
        for &i in &plan.graph.order {
            if st[i] != StepStatus::Pending {
                continue;
            }
            if plan.graph.deps[i].iter().any(|&j| !st[j].is_terminal()) {
                continue;
            }
            let decided = match decide_step(plan, i, |j| st[j], &ctx) {
                Decided::Ready => {
                    out.ready.push(i);
                    StepStatus::Ready
                }
                Decided::Skipped(reason) => {
                    out.skipped.push((i, reason));
                    StepStatus::Skipped
                }
                Decided::Gate(verdict) => {
                    let status = verdict.status(steps[i].critical);
                    out.verdicts.push((i, verdict));
                    status
                }
                Decided::Failed(message) => {
                    out.failed.push((i, message));
                    StepStatus::Failed
                }
            };
            st[i] = decided;
            set_status(&mut ctx, &steps[i].id, decided);
            if decided == StepStatus::Failed && fatal.is_none() {
                fatal = fatal_failure(plan, &st);
                if fatal.is_some() {
                    out.ready.clear();
                    break;
                }
            }
        }
    }
    out.outcome = match fatal {
        Some(step) => Some(Outcome::Failed { step }),
        None if st.iter().all(|s| s.is_terminal()) => Some(Outcome::Succeeded),
        None => None,
    };
    out
}

/// How a pending main step whose needs are all terminal is decided.
enum Decided {
    Ready,
    Skipped(SkipReason),
    Gate(Verdict),
    Failed(String),
}

/// Decides pending main step `i`, every step it needs being terminal (`st` gives their
/// statuses; `ctx` is the condition context).
fn decide_step(plan: &Plan, i: usize, st: impl Fn(usize) -> StepStatus, ctx: &Value) -> Decided {
    let step = &plan.playbook.steps[i];
    let deps = &plan.graph.deps[i];
    if let StepKind::Gate(_) = step.kind {
        return Decided::Gate(verdict(deps, &st));
    }
    if step.needs.is_some()
        && !deps.is_empty()
        && deps.iter().all(|&j| st(j) == StepStatus::Skipped)
    {
        // Only explicit `needs` propagate a skip: a step that merely follows a skipped one
        // in list order still runs (`when: false` on one step of a sequence must not end
        // the sequence).
        return Decided::Skipped(SkipReason::NeedsSkipped);
    }
    if deps.iter().any(|&j| st(j) == StepStatus::Failed) {
        // Only a check that feeds gates can be failed here without the run having failed;
        // a step that needs it directly cannot run without its result.
        return Decided::Skipped(SkipReason::NeedsSkipped);
    }
    match step.when.as_ref().map(|w| w.value.eval(ctx)) {
        None | Some(Ok(true)) => Decided::Ready,
        Some(Ok(false)) => Decided::Skipped(SkipReason::WhenFalse),
        Some(Err(e)) => Decided::Failed(format!("`when` could not be evaluated: {e}")),
    }
}

/// [`progress`] after main step `ended` succeeded or warned, from the statuses of its
/// dependents and their needs alone (`status` gives them; `ctx` holds what their `when`s
/// read): the dependents that become ready, in list order. `None` when something other
/// than "ready" follows (a skip, a gate's verdict, a failure), which can reach further than
/// the dependents and is left to [`progress`] over the whole run.
///
/// This is exact because a pending step is decided in the transaction where the last step
/// it needs ends, so only that step's dependents can become decidable; and a success or a
/// warning never makes a run's failure fatal.
pub fn ready_after(
    plan: &Plan,
    ended: usize,
    status: impl Fn(usize) -> Option<StepStatus>,
    ctx: &Value,
) -> Option<Vec<usize>> {
    let mut ready = Vec::new();
    for &d in plan.index().dependents(ended) {
        if status(d)? != StepStatus::Pending {
            continue;
        }
        let mut deps = Vec::with_capacity(plan.graph.deps[d].len());
        for &j in &plan.graph.deps[d] {
            deps.push(status(j)?);
        }
        if deps.iter().any(|s| !s.is_terminal()) {
            continue;
        }
        let st = |j: usize| status(j).unwrap_or(StepStatus::Pending);
        match decide_step(plan, d, st, ctx) {
            Decided::Ready => ready.push(d),
            _ => return None,
        }
    }
    Some(ready)
}

/// The first failed step (in plan order) that fails the run: one not absorbed by gates.
fn fatal_failure(plan: &Plan, st: &[StepStatus]) -> Option<usize> {
    plan.graph
        .order
        .iter()
        .copied()
        .find(|&i| st[i] == StepStatus::Failed && !absorbed_by_gates(plan, i))
}

/// Whether every step that needs `i` is a gate (and there is at least one).
fn absorbed_by_gates(plan: &Plan, i: usize) -> bool {
    let dependents = plan.index().dependents(i);
    !dependents.is_empty()
        && dependents
            .iter()
            .all(|&k| matches!(plan.playbook.steps[k].kind, StepKind::Gate(_)))
}

impl Verdict {
    /// The gate's own status: GO succeeds, NO-GO fails (only warns when not critical).
    pub fn status(&self, critical: bool) -> StepStatus {
        match (self.go, critical) {
            (true, _) => StepStatus::Succeeded,
            (false, true) => StepStatus::Failed,
            (false, false) => StepStatus::Warned,
        }
    }
}

fn verdict(checks: &[usize], st: impl Fn(usize) -> StepStatus) -> Verdict {
    let mut v = Verdict {
        go: true,
        failed: Vec::new(),
        warned: Vec::new(),
        passed: Vec::new(),
        none_ran: false,
    };
    for &j in checks {
        match st(j) {
            StepStatus::Failed | StepStatus::Cancelled => v.failed.push(j),
            StepStatus::Warned => v.warned.push(j),
            _ => v.passed.push(j),
        }
    }
    v.none_ran = !checks.is_empty() && checks.iter().all(|&j| st(j) == StepStatus::Skipped);
    v.go = v.failed.is_empty() && !v.none_ran;
    v
}

fn set_status(ctx: &mut Value, id: &str, status: StepStatus) {
    let Some(root) = ctx.as_object_mut() else {
        return;
    };
    let steps = root
        .entry("steps")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(steps) = steps.as_object_mut() {
        let entry = steps
            .entry(id.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(step) = entry.as_object_mut() {
            step.insert("status".into(), Value::String(status.as_str().to_owned()));
        }
    }
}

/// The compensations to run after a failure: the `undo` of every succeeded main step, in
/// reverse order of completion. `completed` lists main steps in the order they finished.
/// A step that failed (even non-critically) is not undone: a compensation reverses a
/// completed change, and what a failed step left behind is for `on_failure` to handle.
pub fn undo_order(plan: &Plan, completed: &[usize], statuses: &[StepStatus]) -> Vec<usize> {
    completed
        .iter()
        .rev()
        .filter(|&&i| statuses[i] == StepStatus::Succeeded)
        .filter_map(|&i| {
            let undo = plan.playbook.steps[i].undo.as_ref()?;
            plan.playbook
                .compensations
                .iter()
                .position(|c| c.id.value == undo.value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::compile;
    use crate::source::Source;
    use StepStatus::*;

    fn plan(steps: &str) -> Plan {
        let text = format!(
            "runway: 1\nname: t\nparams:\n  level: {{ type: integer, default: 1 }}\nsteps:\n{steps}"
        );
        let compiled = compile(Source::from_bytes("t.yaml", text.as_bytes()).unwrap());
        compiled
            .plan
            .unwrap_or_else(|| panic!("{:#?}", compiled.diagnostics))
    }

    fn ctx() -> Value {
        serde_json::json!({ "params": { "level": 1 }, "run": { "id": "r1" }, "steps": {} })
    }

    fn ids(plan: &Plan, idx: &[usize]) -> Vec<String> {
        idx.iter()
            .map(|&i| plan.playbook.steps[i].id.value.clone())
            .collect()
    }

    #[test]
    fn list_order_runs_one_step_after_another() {
        let p = plan("  - { id: a, noop: {} }\n  - { id: b, noop: {} }\n");
        assert_eq!(
            ids(&p, &progress(&p, &[Pending, Pending], &ctx()).ready),
            ["a"]
        );
        assert_eq!(
            ids(&p, &progress(&p, &[Running, Pending], &ctx()).ready),
            Vec::<String>::new()
        );
        let done = progress(&p, &[Succeeded, Pending], &ctx());
        assert_eq!(ids(&p, &done.ready), ["b"]);
        assert_eq!(
            progress(&p, &[Succeeded, Succeeded], &ctx()).outcome,
            Some(Outcome::Succeeded)
        );
    }

    #[test]
    fn parallel_steps_are_ready_together() {
        let p = plan(
            "  - { id: a, noop: {} }\n  - { id: b, needs: [], noop: {} }\n  - { id: c, noop: {} }\n",
        );
        assert_eq!(
            ids(
                &p,
                &progress(&p, &[Pending, Pending, Pending], &ctx()).ready
            ),
            ["a", "b"]
        );
        assert!(
            progress(&p, &[Succeeded, Running, Pending], &ctx())
                .ready
                .is_empty()
        );
    }

    #[test]
    fn when_false_skips_and_skips_propagate_to_steps_needing_only_skipped_steps() {
        let p = plan(concat!(
            "  - { id: a, when: 'params.level > 2', noop: {} }\n",
            "  - { id: b, noop: {} }\n",
            "  - { id: c, needs: [], noop: {} }\n",
            "  - { id: d, needs: [b, c], noop: {} }\n",
        ));
        let out = progress(&p, &[Pending, Pending, Pending, Pending], &ctx());
        assert_eq!(out.skipped, vec![(0, SkipReason::WhenFalse)]);
        assert_eq!(
            ids(&p, &out.ready),
            ["b", "c"],
            "b only follows a in list order, so it runs"
        );
        let out = progress(&p, &[Skipped, Succeeded, Succeeded, Pending], &ctx());
        assert_eq!(ids(&p, &out.ready), ["d"]);

        let p = plan(concat!(
            "  - { id: a, when: 'params.level > 2', noop: {} }\n",
            "  - { id: b, needs: [a], noop: {} }\n",
            "  - { id: c, needs: [b], noop: {} }\n",
            "  - { id: d, noop: {} }\n",
        ));
        let out = progress(&p, &[Pending, Pending, Pending, Pending], &ctx());
        assert_eq!(
            out.skipped,
            vec![
                (0, SkipReason::WhenFalse),
                (1, SkipReason::NeedsSkipped),
                (2, SkipReason::NeedsSkipped)
            ],
            "explicit needs propagate the skip"
        );
        assert_eq!(ids(&p, &out.ready), ["d"]);
    }

    #[test]
    fn a_gate_whose_checks_were_all_skipped_says_no_go() {
        let p = plan(concat!(
            "  - { id: a, when: 'params.level > 2', noop: {} }\n",
            "  - { id: g, needs: [a], gate: {} }\n",
        ));
        let out = progress(&p, &[Skipped, Pending], &ctx());
        assert_eq!(out.verdicts.len(), 1);
        assert!(!out.verdicts[0].1.go && out.verdicts[0].1.none_ran);
        assert_eq!(out.outcome, Some(Outcome::Failed { step: 1 }));
    }

    #[test]
    fn when_sees_the_status_of_earlier_steps() {
        let p = plan(concat!(
            "  - { id: health, critical: false, noop: {} }\n",
            "  - { id: rollback, when: 'steps.health.status == \"warned\"', noop: {} }\n",
        ));
        assert_eq!(
            ids(&p, &progress(&p, &[Warned, Pending], &ctx()).ready),
            ["rollback"]
        );
        assert_eq!(
            progress(&p, &[Succeeded, Pending], &ctx()).skipped,
            vec![(1, SkipReason::WhenFalse)]
        );
    }

    #[test]
    fn a_when_that_cannot_be_evaluated_fails_the_step_and_the_run() {
        let p = plan(concat!(
            "  - { id: a, noop: {} }\n",
            "  - { id: b, when: 'steps.a.outputs.n == 1', noop: {} }\n",
        ));
        let out = progress(&p, &[Succeeded, Pending], &ctx());
        assert_eq!(out.failed.len(), 1);
        assert!(
            out.failed[0].1.contains("does not exist"),
            "{}",
            out.failed[0].1
        );
        assert_eq!(out.outcome, Some(Outcome::Failed { step: 1 }));
    }

    #[test]
    fn a_critical_failure_fails_the_run_and_starts_nothing_new() {
        let p = plan(
            "  - { id: a, noop: {} }\n  - { id: b, needs: [], noop: {} }\n  - { id: c, noop: {} }\n",
        );
        let out = progress(&p, &[Failed, Pending, Pending], &ctx());
        assert!(out.ready.is_empty());
        assert_eq!(out.outcome, Some(Outcome::Failed { step: 0 }));
    }

    #[test]
    fn warned_steps_let_the_run_go_on() {
        let p = plan("  - { id: a, critical: false, noop: {} }\n  - { id: b, noop: {} }\n");
        assert_eq!(
            ids(&p, &progress(&p, &[Warned, Pending], &ctx()).ready),
            ["b"]
        );
        assert_eq!(
            progress(&p, &[Warned, Succeeded], &ctx()).outcome,
            Some(Outcome::Succeeded)
        );
    }

    #[test]
    fn a_gate_absorbs_its_checks_failures_and_decides() {
        let p = plan(concat!(
            "  - { id: db, needs: [], noop: {} }\n",
            "  - { id: redis, needs: [], critical: false, noop: {} }\n",
            "  - { id: go, needs: [db, redis], gate: {} }\n",
            "  - { id: onboard, noop: {} }\n",
        ));
        // A warned (non-critical) check: GO with a warning.
        let out = progress(&p, &[Succeeded, Warned, Pending, Pending], &ctx());
        assert_eq!(
            out.verdicts,
            vec![(
                2,
                Verdict {
                    go: true,
                    failed: vec![],
                    warned: vec![1],
                    passed: vec![0],
                    none_ran: false,
                }
            )]
        );
        assert_eq!(ids(&p, &out.ready), ["onboard"]);
        // A failed critical check does not fail the run by itself while the gate is pending...
        let waiting = progress(&p, &[Failed, Running, Pending, Pending], &ctx());
        assert_eq!(waiting.outcome, None);
        // ...the gate says NO-GO once every check is done, and that fails the run.
        let out = progress(&p, &[Failed, Succeeded, Pending, Pending], &ctx());
        assert!(!out.verdicts[0].1.go);
        assert_eq!(out.verdicts[0].1.failed, vec![0]);
        assert!(out.ready.is_empty());
        assert_eq!(out.outcome, Some(Outcome::Failed { step: 2 }));
    }

    #[test]
    fn a_non_critical_gate_only_warns() {
        let p = plan(concat!(
            "  - { id: check, noop: {} }\n",
            "  - { id: soft, critical: false, gate: {} }\n",
            "  - { id: next, noop: {} }\n",
        ));
        let out = progress(&p, &[Failed, Pending, Pending], &ctx());
        assert!(!out.verdicts[0].1.go);
        assert_eq!(ids(&p, &out.ready), ["next"]);
        assert_eq!(out.outcome, None);
    }

    #[test]
    fn undo_runs_in_reverse_order_of_completion_for_succeeded_steps_only() {
        let text = concat!(
            "runway: 1\nname: u\nsteps:\n",
            "  - { id: a, shell: { argv: [x] }, undo: undo-a }\n",
            "  - { id: b, needs: [], shell: { argv: [x] }, undo: undo-b }\n",
            "  - { id: c, needs: [], shell: { argv: [x] }, undo: undo-c }\n",
            "compensations:\n",
            "  - { id: undo-a, noop: {} }\n  - { id: undo-b, noop: {} }\n  - { id: undo-c, noop: {} }\n",
        );
        let p = compile(Source::from_bytes("u.yaml", text.as_bytes()).unwrap())
            .plan
            .unwrap();
        // Completed b, then a, then c failed.
        let order = undo_order(&p, &[1, 0, 2], &[Succeeded, Succeeded, Failed]);
        let names: Vec<&str> = order
            .iter()
            .map(|&k| p.playbook.compensations[k].id.as_str())
            .collect();
        assert_eq!(names, ["undo-a", "undo-b"]);
    }

    /// Every state of a few small plans in which step `i` has just ended: whenever
    /// `ready_after` answers, its answer is exactly what `progress` over the whole run
    /// decides (so the store may skip reading the rest of the run).
    #[test]
    fn ready_after_agrees_with_progress_over_the_whole_run() {
        let plans = [
            // A chain, with a `when` reading an earlier step.
            concat!(
                "  - { id: a, noop: {} }\n",
                "  - { id: b, noop: {} }\n",
                "  - { id: c, when: 'steps.a.status == \"succeeded\"', noop: {} }\n",
            ),
            // A fan-out and a join, a gate, and a step after the gate.
            concat!(
                "  - { id: a, noop: {} }\n",
                "  - { id: b, needs: [a], noop: {} }\n",
                "  - { id: c, needs: [a], critical: false, noop: {} }\n",
                "  - { id: j, needs: [b, c], noop: {} }\n",
                "  - { id: g, needs: [j], gate: {} }\n",
                "  - { id: after, noop: {} }\n",
            ),
            // Explicit needs, list order after a skippable step, and `needs: []`.
            concat!(
                "  - { id: a, when: 'params.level > 2', noop: {} }\n",
                "  - { id: b, needs: [a], noop: {} }\n",
                "  - { id: c, noop: {} }\n",
                "  - { id: d, needs: [], noop: {} }\n",
                "  - { id: e, needs: [c, d], when: 'params.level == 1', noop: {} }\n",
            ),
        ];
        let choices = [Pending, Running, Succeeded, Warned, Skipped];
        let mut compared = 0;
        for text in plans {
            let p = plan(text);
            let n = p.playbook.steps.len();
            let with_statuses = |st: &[StepStatus]| {
                let mut c = ctx();
                for (k, s) in st.iter().enumerate() {
                    set_status(&mut c, &p.playbook.steps[k].id, *s);
                }
                c
            };
            for code in 0..choices.len().pow(n as u32) {
                let mut st = Vec::with_capacity(n);
                let mut rest = code;
                for _ in 0..n {
                    st.push(choices[rest % choices.len()]);
                    rest /= choices.len();
                }
                // Before `i` ended, everything decidable had been decided.
                let before = progress(&p, &st, &ctx());
                if before != Progress::default() {
                    continue;
                }
                for i in (0..n).filter(|&i| st[i] == Running) {
                    for ended in [Succeeded, Warned] {
                        let mut after = st.clone();
                        after[i] = ended;
                        let whole = progress(&p, &after, &ctx());
                        let partial =
                            ready_after(&p, i, |k| Some(after[k]), &with_statuses(&after));
                        if let Some(ready) = partial {
                            compared += 1;
                            assert_eq!(
                                (ready, whole.skipped.is_empty(), whole.verdicts.is_empty()),
                                (whole.ready.clone(), true, true),
                                "{text} in state {after:?} after step {i}"
                            );
                            assert!(whole.failed.is_empty());
                        }
                    }
                }
            }
        }
        assert!(compared > 1000, "only {compared} states compared");
    }
}
