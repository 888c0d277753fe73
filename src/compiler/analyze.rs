//! Checks that need the whole playbook: ids, the step graph, undo, names in templates and
//! conditions, gates, invoke targets, and the mutating-without-undo warning.

use std::collections::HashMap;

use super::catalog::Catalog;
use super::graph::StepGraph;
use super::scope::{Scope, StepAccess};
use crate::condition::Condition;
use crate::diagnostic::{Diagnostics, Location, did_you_mean};
use crate::playbook::decode::{self, Spanned};
use crate::playbook::kinds::{StepKind, TemplateUse};
use crate::playbook::step::Step;
use crate::playbook::{Playbook, id_pattern};

/// Runs every check; returns the graph of main steps when it is a DAG.
pub fn analyze(
    playbook: &Playbook,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) -> Option<StepGraph> {
    check_ids(playbook, diags);
    let index: HashMap<&str, usize> = playbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let compensations: HashMap<&str, usize> = playbook
        .compensations
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let graph = StepGraph::build(&playbook.steps, &index, diags);

    if let Some(lock) = &playbook.lock {
        let scope = Scope {
            playbook,
            index: &index,
            steps: StepAccess::None,
            place: "`lock`".into(),
            own_outputs: false,
        };
        scope.check_template(
            &TemplateUse {
                template: lock,
                field: "lock".into(),
                secrets: false,
            },
            diags,
        );
        for r in &lock.refs {
            if r.root() == "run" {
                diags
                    .error(r.location, "`lock` cannot use run fields")
                    .hint(
                        "a lock key made from `run.id` would never be shared; build it from params",
                    );
            }
        }
    }
    for schedule in &playbook.schedules {
        check_invoke_params(
            &playbook.name.value,
            &playbook.params,
            &schedule.params,
            schedule.id.location,
            "schedule",
            diags,
        );
        // The webhook sees the schedule's params, its secrets and the failed run: no steps.
        if let Some(notify) = &schedule.notify {
            let scope = Scope {
                playbook,
                index: &index,
                steps: StepAccess::None,
                place: format!("schedule `{}`", schedule.id.value),
                own_outputs: false,
            };
            for use_ in notify.templates() {
                scope.check_template(&use_, diags);
            }
        }
    }

    // Main steps: their ancestors are known only when the graph is a DAG; without one,
    // every step reference would be reported again, so those checks wait for a fix.
    for (i, step) in playbook.steps.iter().enumerate() {
        let is_ancestor = |j: usize| graph.as_ref().is_none_or(|g| g.is_ancestor(j, i));
        check_step(
            playbook,
            step,
            &index,
            StepAccess::Ancestors(&is_ancestor),
            catalog,
            diags,
        );
        check_undo(step, &compensations, playbook, diags);
        if let StepKind::Gate(_) = step.kind
            && (matches!(&step.needs, Some(n) if n.is_empty()) || (i == 0 && step.needs.is_none()))
        {
            diags
                .error(
                    step.id.location,
                    format!("gate `{}` has no checks", step.id.value),
                )
                .hint("list the checks it decides on in `needs:`");
        }
        if step.mutates() && step.undo.is_none() && !step.irreversible {
            diags
                .warning(step.id.location, format!("step `{}` changes things but has no `undo`", step.id.value))
                .hint("add `undo: <a step under compensations:>`, or `irreversible: true` if it cannot be undone, or `mutates: false` if it only reads");
        }
    }

    // A compensation may read what the steps it undoes (and their ancestors) produced.
    for step in &playbook.compensations {
        let users: Vec<usize> = playbook
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.undo.as_ref().is_some_and(|u| u.value == step.id.value))
            .map(|(i, _)| i)
            .collect();
        if users.is_empty() {
            diags
                .warning(
                    step.id.location,
                    format!(
                        "compensation `{}` is not the `undo` of any step",
                        step.id.value
                    ),
                )
                .hint("it will never run; reference it with `undo:` or remove it");
        }
        let readable = |j: usize| {
            users
                .iter()
                .all(|&u| u == j || graph.as_ref().is_none_or(|g| g.is_ancestor(j, u)))
        };
        check_side_list(step, "compensations", diags);
        check_step(
            playbook,
            step,
            &index,
            StepAccess::Ancestors(&readable),
            catalog,
            diags,
        );
    }
    for step in &playbook.on_failure {
        check_side_list(step, "on_failure", diags);
        check_step(
            playbook,
            step,
            &index,
            StepAccess::StatusOnly,
            catalog,
            diags,
        );
    }
    graph
}

fn check_ids(playbook: &Playbook, diags: &mut Diagnostics) {
    let mut seen: HashMap<&str, &Spanned<String>> = HashMap::new();
    for step in playbook.all_steps() {
        if !decode::identifier(&step.id, id_pattern(), "step id", "preflight-schema", diags) {
            continue;
        }
        if let Some(first) = seen.get(step.id.as_str()) {
            diags
                .error(step.id.location, format!("duplicate step id `{}`", step.id.value))
                .hint(format!("the first `{}` is at line {}; step ids are unique across steps, compensations and on_failure", first.value, first.location.line));
        } else {
            seen.insert(step.id.as_str(), &step.id);
        }
    }
    let mut schedules: HashMap<&str, Location> = HashMap::new();
    for s in &playbook.schedules {
        decode::identifier(&s.id, id_pattern(), "schedule id", "every-5-minutes", diags);
        if let Some(first) = schedules.insert(s.id.as_str(), s.id.location) {
            diags
                .error(
                    s.id.location,
                    format!("duplicate schedule id `{}`", s.id.value),
                )
                .hint(format!("the first is at line {}", first.line));
        }
    }
}

/// Compensations and on_failure steps run one after another; `needs`, `undo` and `gate`
/// mean nothing there.
fn check_side_list(step: &Step, list: &str, diags: &mut Diagnostics) {
    if let Some(n) = step.needs.as_ref().and_then(|n| n.first()) {
        diags
            .error(n.location, format!("`needs` has no effect in `{list}`"))
            .hint(format!("`{list}` steps run one after another, in order"));
    }
    if let Some(u) = &step.undo {
        diags.error(
            u.location,
            format!("a step in `{list}` cannot have an `undo`"),
        );
    }
    if let StepKind::Gate(_) = step.kind {
        diags.error(
            step.id.location,
            format!("a `gate` in `{list}` has no checks to decide on"),
        );
    }
}

fn check_undo(
    step: &Step,
    compensations: &HashMap<&str, usize>,
    playbook: &Playbook,
    diags: &mut Diagnostics,
) {
    let Some(undo) = &step.undo else { return };
    if step.irreversible {
        diags
            .error(
                undo.location,
                format!(
                    "step `{}` has an `undo` and is marked `irreversible`",
                    step.id.value
                ),
            )
            .hint("keep one");
    }
    if compensations.contains_key(undo.as_str()) {
        return;
    }
    let e = diags.error(
        undo.location,
        format!(
            "`undo` names `{}`, which is not under `compensations:`",
            undo.value
        ),
    );
    if playbook
        .steps
        .iter()
        .chain(&playbook.on_failure)
        .any(|s| s.id.value == undo.value)
    {
        e.hint("an undo step must be declared under `compensations:`, or it would also run in the normal flow");
    } else if let Some(close) = did_you_mean(undo, compensations.keys().copied()) {
        e.hint(format!("did you mean `{close}`?"));
    } else {
        e.hint("declare the compensating step under `compensations:`");
    }
}

fn check_step(
    playbook: &Playbook,
    step: &Step,
    index: &HashMap<&str, usize>,
    access: StepAccess<'_>,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) {
    let kind = step.kind.name();
    if let (Some(_), false) = (&step.retry, step.kind.executes()) {
        diags
            .error(
                step.id.location,
                format!("`retry` has no effect on a `{kind}` step"),
            )
            .hint("only shell, http, sql, notify and invoke steps are tried again; remove `retry`");
    }
    if let (Some(t), false) = (&step.timeout, step.kind.takes_timeout()) {
        diags
            .error(
                t.location,
                format!("`timeout` has no effect on a `{kind}` step"),
            )
            .hint(match step.kind {
                StepKind::Wait(_) => "a wait lasts as long as it says; remove `timeout`",
                _ => "it decides at once; remove `timeout`",
            });
    }
    let place = format!("step `{}`", step.id.value);
    let scope = Scope {
        playbook,
        index,
        steps: access,
        place: place.clone(),
        own_outputs: false,
    };
    if let Some(title) = &step.title {
        scope.check_template(
            &TemplateUse {
                template: title,
                field: "title".into(),
                secrets: false,
            },
            diags,
        );
    }
    for use_ in step.kind.templates() {
        scope.check_template(&use_, diags);
    }
    if let Some(when) = &step.when {
        check_condition(&scope, when, diags);
    }
    if let Some(expect) = &step.expect {
        let scope = Scope {
            own_outputs: true,
            ..scope
        };
        check_condition(&scope, expect, diags);
    }
    // A follow-up runs later and on its own, so it may name any playbook, itself
    // included (no invoke cycle), but the playbook and its params must be right now.
    if let StepKind::Followup(followup) = &step.kind {
        match catalog.get(&followup.playbook) {
            None if followup.playbook.value == playbook.name.value => check_invoke_params(
                &followup.playbook,
                &playbook.params,
                &followup.params,
                followup.playbook.location,
                "followup",
                diags,
            ),
            None => unknown_playbook(&followup.playbook, "followup", catalog, diags),
            Some(target) => check_invoke_params(
                &followup.playbook,
                &target.params,
                &followup.params,
                followup.playbook.location,
                "followup",
                diags,
            ),
        }
    }
    if let StepKind::Invoke(invoke) = &step.kind {
        match catalog.get(&invoke.playbook) {
            None => unknown_playbook(&invoke.playbook, "invoke", catalog, diags),
            Some(target) => {
                check_invoke_params(
                    &invoke.playbook,
                    &target.params,
                    &invoke.params,
                    invoke.playbook.location,
                    "invoke",
                    diags,
                );
                if let Some(cycle) = catalog.invoke_cycle(&playbook.name, &invoke.playbook) {
                    diags
                        .error(
                            invoke.playbook.location,
                            format!(
                                "invoking `{}` makes a cycle: {}",
                                invoke.playbook.value,
                                cycle.join(" -> ")
                            ),
                        )
                        .hint("a playbook cannot end up invoking itself");
                }
            }
        }
    }
}

fn unknown_playbook(
    name: &Spanned<String>,
    kind: &str,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) {
    let e = diags.error(
        name.location,
        format!("`{kind}` names an unknown playbook `{}`", name.value),
    );
    match did_you_mean(name, catalog.names()) {
        Some(close) => e.hint(format!("did you mean `{close}`?")),
        None => e.hint("give its file to `runway validate` too, or put it in RUNWAY_WORKFLOWS (default `workflows/`)"),
    };
}

/// `params:` given to a playbook (by `invoke` or a schedule): all required ones present, no
/// unknown ones, and literal values valid for their type.
fn check_invoke_params(
    target: &str,
    declared: &crate::playbook::Params,
    given: &crate::playbook::kinds::TemplateMap,
    at: Location,
    what: &str,
    diags: &mut Diagnostics,
) {
    for (name, value) in &given.0 {
        match declared.get(name) {
            None => {
                diags
                    .error(
                        name.location,
                        format!("`{target}` has no param `{}`", name.value),
                    )
                    .hint(declared.unknown_hint(name));
            }
            Some(p) if value.is_literal() => {
                if let Err(message) = p.parse_cli(&value.text) {
                    diags.error(
                        value.location,
                        format!("param `{}` of `{target}`: {message}", name.value),
                    );
                }
            }
            Some(_) => {}
        }
    }
    for p in &declared.0 {
        if p.required && !given.0.iter().any(|(n, _)| n.value == p.name.value) {
            diags
                .error(
                    at,
                    format!(
                        "{what} of `{target}` does not give its required param `{}`",
                        p.name.value
                    ),
                )
                .hint(format!("add `{}: ...` to its `params:`", p.name.value));
        }
    }
}

fn check_condition(scope: &Scope<'_>, condition: &Spanned<Condition>, diags: &mut Diagnostics) {
    // The scope reports step-order problems itself (into `diags`); the condition checker
    // reports type problems. A RefCell lets the resolver closure share `diags`.
    let cell = std::cell::RefCell::new(Diagnostics::default());
    let source = condition.value.source();
    let errors = condition.value.check(&|path| {
        let location = crate::yaml::scalar_offset(
            condition.location,
            source,
            path.span.start,
            path.span.end.saturating_sub(path.span.start),
        );
        scope.resolve(path, &mut cell.borrow_mut(), location)
    });
    for e in errors {
        let at = crate::yaml::scalar_offset(
            condition.location,
            source,
            e.span.start,
            e.span.end.saturating_sub(e.span.start),
        );
        let d = diags.error(at, e.message);
        if let Some(h) = e.hint {
            d.hint(h);
        }
    }
    diags.extend(cell.into_inner());
}
