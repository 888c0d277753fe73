//! Deriving a report's [`Summary`] from the sealed record: the run's pinned definition and
//! its events, plus the few [`StoreFacts`] only the database knows.
//!
//! Pure: the same inputs always give the same summary, which is what lets
//! `runway verify FILE.json` derive it again from the file's own events and refuse a file
//! whose summary says something its events do not. Every status here is read off the
//! chain (the store appends an event for every state change), never off the mutable rows;
//! `super::check` compares the two.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::model::*;
use crate::engine::human::plan_hash_of;
use crate::plan::{Plan, content_hash};
use crate::playbook::kinds::StepKind;
use crate::playbook::step::Step;
use crate::playbook::template::{Template, renderer};
use crate::source::Source;
use crate::state::StepStatus;
use crate::store::{Event, StepList, chain};

/// The last lines of an output stream that a report keeps.
pub const TAIL_LINES: usize = 40;
/// ... and at most this many characters of them.
pub const TAIL_CHARS: usize = 4000;
/// Characters kept of one output value, of an error, of a history note.
pub const VALUE_CHARS: usize = 300;
pub const ERROR_CHARS: usize = 2000;
/// Output keys listed per step; the rest are counted.
pub const OUTPUT_KEYS: usize = 30;

/// The summary of a run from its definition, its events and what the store adds.
pub fn summarize(definition: &str, events: &[Event], store: &StoreFacts) -> Summary {
    let plan = crate::compiler::outline(&Source {
        name: "definition".into(),
        text: definition.to_owned(),
    });
    let created = events.iter().find(|e| e.kind == "run.created");
    let created_data = created.map_or(Value::Null, |e| e.data.clone());
    let content = str_of(&created_data, "content_hash").unwrap_or_default();
    let params = created_data.get("params").cloned().unwrap_or(json!({}));

    let mut by_step: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        if let Some(id) = e.step_id.as_deref() {
            by_step.entry(id).or_default().push(e);
        }
    }
    let steps = step_entries(plan.as_ref(), &created_data, events, &by_step, store);
    let run = run_info(&created_data, created, events, &content, &params, store);
    let data = template_data(&params, &run, &steps, plan.as_ref());
    let hb = renderer();
    let render = |t: &Template| t.render(&hb, &data).unwrap_or_else(|_| t.text.clone());
    let mut steps = steps;
    if let Some(plan) = &plan {
        for entry in &mut steps {
            if let Some(step) = plan.playbook.all_steps().find(|s| s.id.value == entry.id)
                && let Some(t) = &step.title
            {
                entry.title = render(t);
            }
        }
    }
    let title_of = |id: &str| {
        steps
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_owned(), |s| s.title.clone())
    };
    let step_of = |id: &str| {
        plan.as_ref()
            .and_then(|p| p.playbook.all_steps().find(|s| s.id.value == id))
    };
    let status_of = |id: &str| steps.iter().find(|s| s.id == id).map(|s| s.status.clone());

    let plan_hash = plan_hash_of(&content, &params);
    let mut gates = Vec::new();
    let mut approvals = Vec::new();
    let mut escalations = Vec::new();
    let mut answers: HashMap<(&str, &str), &Event> = HashMap::new();
    let mut cancel = None;
    let mut sealed_children: Vec<(String, String)> = Vec::new();
    for e in events {
        let step_id = e.step_id.as_deref().unwrap_or_default();
        match e.kind.as_str() {
            "gate.verdict" => gates.push(gate_entry(e, &title_of, &status_of, plan.as_ref())),
            "step.decision" => {
                let item = str_of(&e.data, "item").unwrap_or_default();
                if item.is_empty() {
                    let prompt = match step_of(step_id).map(|s| &s.kind) {
                        Some(StepKind::Approval(a)) => render(&a.prompt),
                        _ => title_of(step_id),
                    };
                    let recorded = str_of(&e.data, "plan_hash").unwrap_or_default();
                    approvals.push(ApprovalEntry {
                        step_id: step_id.to_owned(),
                        prompt,
                        operator: str_of(&e.data, "operator").unwrap_or_default(),
                        verdict: str_of(&e.data, "verdict").unwrap_or_default(),
                        comment: str_of(&e.data, "comment"),
                        plan_hash_matches: recorded == plan_hash,
                        plan_hash: recorded,
                        at: stamp(e.at),
                    });
                } else if let Some(item) = e.data.get("item").and_then(Value::as_str) {
                    answers.insert((step_id, item), e);
                }
            }
            "step.escalated" => escalations.push(EscalationEntry {
                step_id: step_id.to_owned(),
                at: stamp(e.at),
                message: str_of(&e.data, "message").unwrap_or_default(),
                delivered: e.data.get("delivered").and_then(Value::as_bool) == Some(true),
                error: str_of(&e.data, "error").map(|t| excerpt(&t, ERROR_CHARS)),
            }),
            "run.cancel_requested" => {
                cancel = Some(CancelEntry {
                    by: str_of(&e.data, "by").unwrap_or_default(),
                    reason: str_of(&e.data, "reason").unwrap_or_default(),
                    at: stamp(e.at),
                })
            }
            "step.waiting" => {
                if let Some(child) = str_of(&e.data, "child_run_id")
                    && !sealed_children.iter().any(|(c, _)| *c == child)
                {
                    sealed_children.push((child, step_id.to_owned()));
                }
            }
            _ => {}
        }
    }

    let mut checklists = Vec::new();
    if let Some(plan) = &plan {
        for step in plan.playbook.all_steps() {
            let StepKind::Checklist(c) = &step.kind else {
                continue;
            };
            let id = step.id.value.as_str();
            let items = c
                .items
                .iter()
                .map(|item| {
                    let answer = answers.get(&(id, item.id.value.as_str()));
                    ItemEntry {
                        id: item.id.value.clone(),
                        text: render(&item.text),
                        required: item.required,
                        answer: answer.and_then(|e| str_of(&e.data, "verdict")),
                        operator: answer.and_then(|e| str_of(&e.data, "operator")),
                        note: answer.and_then(|e| str_of(&e.data, "comment")),
                        at: answer.map(|e| stamp(e.at)),
                    }
                })
                .collect();
            checklists.push(ChecklistEntry {
                step_id: id.to_owned(),
                title: title_of(id),
                status: status_of(id).unwrap_or_else(|| "pending".into()),
                items,
            });
        }
    }

    let unwinding = steps
        .iter()
        .filter(|s| s.list != StepList::Main.as_str())
        .filter(|s| !matches!(s.status.as_str(), "pending" | "skipped"))
        .map(|s| UndoEntry {
            id: s.id.clone(),
            title: s.title.clone(),
            list: s.list.clone(),
            undoes: s.undoes.clone(),
            status: s.status.clone(),
            error: s.error.clone(),
        })
        .collect();

    let mut children: Vec<RunLink> = sealed_children
        .into_iter()
        .map(|(run_id, step_id)| {
            let known = store.children.iter().find(|c| c.run_id == run_id);
            RunLink {
                playbook: known.and_then(|c| c.playbook.clone()),
                status: known.and_then(|c| c.status.clone()),
                trigger: known.and_then(|c| c.trigger.clone()),
                run_id,
                step_id: Some(step_id),
                sealed: true,
            }
        })
        .collect();
    for c in &store.children {
        if !children.iter().any(|k| k.run_id == c.run_id) {
            children.push(RunLink {
                sealed: false,
                ..c.clone()
            });
        }
    }

    let (intact, first_bad) = match chain::verify(events) {
        None => (true, None),
        Some(seq) => (false, Some(seq)),
    };
    let last = events.last();
    let playbook = match &plan {
        Some(p) => PlaybookInfo {
            name: p.playbook.name.value.clone(),
            title: p.playbook.display_title().to_owned(),
            description: p.playbook.description.clone(),
            definition_matches: p.content_hash == content,
            content_hash: content,
        },
        None => PlaybookInfo {
            name: str_of(&created_data, "playbook").unwrap_or_default(),
            title: str_of(&created_data, "playbook").unwrap_or_default(),
            description: None,
            definition_matches: content_hash(definition) == content,
            content_hash: content,
        },
    };
    Summary {
        secrets: plan.as_ref().map_or_else(Vec::new, |p| {
            p.playbook.secrets.iter().map(|s| s.value.clone()).collect()
        }),
        params: match &params {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| NameValue {
                    name: k.clone(),
                    value: display(v),
                })
                .collect(),
            _ => Vec::new(),
        },
        playbook,
        run,
        steps,
        gates,
        approvals,
        checklists,
        escalations,
        cancel,
        unwinding,
        children,
        chain: ChainInfo {
            events: events.len(),
            head_seq: last.map(|e| e.seq),
            head_hash: last.map(|e| e.hash.clone()),
            first_at: events.first().map(|e| stamp(e.at)),
            last_at: last.map(|e| stamp(e.at)),
            intact,
            first_bad,
        },
    }
}

fn run_info(
    created_data: &Value,
    created: Option<&Event>,
    events: &[Event],
    content: &str,
    params: &Value,
    store: &StoreFacts,
) -> RunInfo {
    let run_id = events
        .first()
        .map_or_else(String::new, |e| e.run_id.clone());
    let mut status = str_of(created_data, "status").unwrap_or_else(|| "queued".into());
    let mut started = (status == "running")
        .then(|| created.map(|e| e.at))
        .flatten();
    let (mut finished, mut error) = (None, None);
    for e in events.iter().filter(|e| e.step_id.is_none()) {
        let Some(to) = e.kind.strip_prefix("run.") else {
            continue;
        };
        if to.parse::<crate::state::RunStatus>().is_err() {
            continue;
        }
        status = to.to_owned();
        if to == "running" && started.is_none() {
            started = Some(e.at);
        }
        if matches!(to, "succeeded" | "failed" | "cancelled") {
            finished = Some(e.at);
            error = str_of(&e.data, "error");
        }
    }
    let trigger = str_of(created_data, "trigger").unwrap_or_default();
    let parent = str_of(created_data, "parent_run_id").map(|run_id| {
        let known = store.parent.as_ref().filter(|p| p.run_id == run_id);
        RunLink {
            step_id: str_of(created_data, "parent_step_id"),
            playbook: known.and_then(|p| p.playbook.clone()),
            status: known.and_then(|p| p.status.clone()),
            trigger: known.and_then(|p| p.trigger.clone()),
            run_id,
            sealed: true,
        }
    });
    let outcome = match (status.as_str(), &error) {
        ("succeeded", _) => "succeeded".to_owned(),
        ("failed" | "cancelled", Some(e)) => format!("{status}: {}", excerpt(e, ERROR_CHARS)),
        ("failed" | "cancelled", None) => status.clone(),
        _ => format!("{status} (the run had not ended when this report was made)"),
    };
    RunInfo {
        id: run_id,
        outcome,
        starter: str_of(created_data, "starter").unwrap_or_default(),
        retry_of: trigger.strip_prefix("retry:").map(str::to_owned),
        trigger,
        lock_key: str_of(created_data, "lock_key"),
        plan_hash: plan_hash_of(content, params),
        created_at: created.map_or_else(String::new, |e| stamp(e.at)),
        started_at: started.map(stamp),
        finished_at: finished.map(stamp),
        duration: started.zip(finished).map(|(s, f)| span(f - s)),
        error: error.map(|e| excerpt(&e, ERROR_CHARS)),
        status,
        parent,
    }
}

/// One entry per step, in the order the run created their rows.
fn step_entries(
    plan: Option<&Plan>,
    created_data: &Value,
    events: &[Event],
    by_step: &HashMap<&str, Vec<&Event>>,
    store: &StoreFacts,
) -> Vec<StepEntry> {
    let mut order: Vec<(String, Option<&Step>, StepList)> = match plan {
        Some(p) => p
            .playbook
            .steps
            .iter()
            .map(|s| (s, StepList::Main))
            .chain(
                p.playbook
                    .compensations
                    .iter()
                    .map(|s| (s, StepList::Compensation)),
            )
            .chain(
                p.playbook
                    .on_failure
                    .iter()
                    .map(|s| (s, StepList::OnFailure)),
            )
            .map(|(s, l)| (s.id.value.clone(), Some(s), l))
            .collect(),
        None => Vec::new(),
    };
    // Steps the events name but the definition does not (a definition that no longer
    // decodes): listed in the order they first appear.
    for e in events {
        if let Some(id) = &e.step_id
            && !order.iter().any(|(o, _, _)| o == id)
        {
            order.push((id.clone(), None, StepList::Main));
        }
    }
    let ready: Vec<&str> = created_data
        .get("ready")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let initial: HashMap<&str, &Value> = created_data
        .get("initial")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| Some((v.get("step_id")?.as_str()?, v)))
                .collect()
        })
        .unwrap_or_default();
    let undoes: HashMap<&str, &str> = plan.map_or_else(HashMap::new, |p| {
        p.playbook
            .steps
            .iter()
            .filter_map(|s| Some((s.undo.as_ref()?.value.as_str(), s.id.value.as_str())))
            .collect()
    });
    let index: HashMap<&str, usize> = plan.map_or_else(HashMap::new, |p| {
        p.playbook
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.value.as_str(), i))
            .collect()
    });

    order
        .iter()
        .map(|(id, step, list)| {
            let mut status = if ready.contains(&id.as_str()) {
                "ready".to_owned()
            } else {
                "pending".to_owned()
            };
            let mut outputs: Option<&Value> = None;
            if let Some(init) = initial.get(id.as_str()) {
                status = str_of(init, "status").unwrap_or(status);
                outputs = init.get("outputs").filter(|o| !o.is_null());
            }
            let (mut attempts, mut started, mut finished, mut error) = (0, None, None, None);
            let mut history = Vec::new();
            for e in by_step.get(id.as_str()).map_or(&[][..], Vec::as_slice) {
                if let Some(to) = status_after(&e.kind) {
                    status = to.as_str().to_owned();
                    if to.is_terminal() {
                        finished = Some(e.at);
                        outputs = e.data.get("outputs").filter(|o| !o.is_null()).or(outputs);
                        error = str_of(&e.data, "error").or(error);
                    }
                }
                match e.kind.as_str() {
                    "step.running" => {
                        attempts = attempts.max(i64::from(e.attempt.unwrap_or(0)));
                        started.get_or_insert(e.at);
                    }
                    "step.retry" => error = str_of(&e.data, "error"),
                    _ => {}
                }
                history.push(HistoryEntry {
                    seq: e.seq,
                    at: stamp(e.at),
                    kind: e.kind.clone(),
                    attempt: e.attempt,
                    note: note(e),
                });
            }
            let (stdout, stderr) = match outputs {
                Some(o) => (tail_of(o, "stdout"), tail_of(o, "stderr")),
                None => (None, None),
            };
            let i = index
                .get(id.as_str())
                .copied()
                .filter(|_| *list == StepList::Main);
            StepEntry {
                id: id.clone(),
                title: step.map_or(id.as_str(), |s| s.display_title()).to_owned(),
                kind: step.map_or("unknown", |s| s.kind.name()).to_owned(),
                list: list.as_str().to_owned(),
                critical: step.is_none_or(|s| s.critical),
                stage: i.and_then(|i| plan.map(|p| p.graph.stage[i] + 1)),
                needs: match (i, plan) {
                    (Some(i), Some(p)) => p.graph.deps[i]
                        .iter()
                        .map(|&j| p.playbook.steps[j].id.value.clone())
                        .collect(),
                    _ => Vec::new(),
                },
                undoes: undoes.get(id.as_str()).map(|s| (*s).to_owned()),
                status,
                attempts,
                max_attempts: match (step, plan) {
                    (Some(s), Some(p)) => p.retry(s).attempts.max(1),
                    _ => 1,
                },
                started_at: started.map(stamp),
                finished_at: finished.map(stamp),
                duration: started.zip(finished).map(|(s, f)| span(f - s)),
                error: error.map(|e| excerpt(&e, ERROR_CHARS)),
                outputs: outputs.map(output_values).unwrap_or_default(),
                stdout,
                stderr,
                checkpoint_bytes: store
                    .checkpoints
                    .iter()
                    .find(|c| c.step_id == *id)
                    .map(|c| c.bytes),
                history,
            }
        })
        .collect()
}

/// The step status an event leaves its step in, if it is a transition.
fn status_after(kind: &str) -> Option<StepStatus> {
    match kind.strip_prefix("step.")? {
        "retry" | "lease_expired" => Some(StepStatus::Ready),
        other => other.parse().ok(),
    }
}

fn gate_entry(
    e: &Event,
    title_of: &dyn Fn(&str) -> String,
    status_of: &dyn Fn(&str) -> Option<String>,
    plan: Option<&Plan>,
) -> GateEntry {
    let id = e.step_id.clone().unwrap_or_default();
    let names = |key: &str| -> Vec<String> {
        e.data
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut checks: Vec<CheckEntry> = [
        ("failed", "failed"),
        ("warned", "warned"),
        ("passed", "passed"),
    ]
    .into_iter()
    .flat_map(|(key, result)| names(key).into_iter().map(move |n| (n, result)))
    .map(|(n, result)| {
        let skipped = status_of(&n).as_deref() == Some("skipped");
        CheckEntry {
            title: title_of(&n),
            critical: plan
                .and_then(|p| p.playbook.steps.iter().find(|s| s.id.value == n))
                .is_none_or(|s| s.critical),
            result: if skipped { "skipped" } else { result }.to_owned(),
            id: n,
        }
    })
    .collect();
    if let Some(p) = plan {
        let position = |id: &str| p.playbook.steps.iter().position(|s| s.id.value == id);
        checks.sort_by_key(|c| position(&c.id));
    }
    let verdict = str_of(&e.data, "verdict").unwrap_or_default();
    GateEntry {
        title: title_of(&id),
        go: verdict == "GO",
        verdict,
        at: stamp(e.at),
        none_ran: e.data.get("none_ran").and_then(Value::as_bool) == Some(true),
        checks,
        id,
    }
}

/// What templates in titles, prompts and checklist items may name, as the run ended:
/// params, run fields, steps' status and outputs; secrets show as `***`.
fn template_data(params: &Value, run: &RunInfo, steps: &[StepEntry], plan: Option<&Plan>) -> Value {
    let secrets: Map<String, Value> = plan.map_or_else(Map::new, |p| {
        p.playbook
            .secrets
            .iter()
            .map(|s| (s.value.clone(), json!(crate::secrets::MASK)))
            .collect()
    });
    let by_id: Map<String, Value> = steps
        .iter()
        .map(|s| {
            let outputs: Map<String, Value> = s
                .outputs
                .iter()
                .map(|o| (o.name.clone(), json!(o.value)))
                .collect();
            (
                s.id.clone(),
                json!({ "status": s.status, "outputs": outputs }),
            )
        })
        .collect();
    json!({
        "params": params,
        "secrets": secrets,
        "run": {
            "id": run.id, "starter": run.starter, "trigger": run.trigger,
            "started_at": run.started_at.as_deref().unwrap_or(&run.created_at),
            "playbook": plan.map(|p| p.playbook.name.value.clone()),
        },
        "steps": by_id,
    })
}

/// One history line for people.
fn note(e: &Event) -> String {
    let d = &e.data;
    let text = |k: &str| str_of(d, k).unwrap_or_default();
    let short = |k: &str| excerpt(&text(k), VALUE_CHARS);
    let kind = e.kind.as_str();
    match kind {
        "step.running" => format!(
            "attempt {} started on {}",
            e.attempt.unwrap_or(0),
            text("worker")
        ),
        "step.waiting" => match (
            str_of(d, "child_run_id"),
            d.get("until").and_then(Value::as_i64),
        ) {
            (Some(child), _) => format!("waits for child run {child}"),
            (None, Some(ms)) => format!("waits until {}", millis_stamp(ms)),
            (None, None) => "waits for a decision".to_owned(),
        },
        "step.retry" => format!(
            "attempt {} failed: {}; next attempt at {}",
            e.attempt.unwrap_or(0),
            short("error"),
            d.get("ready_at")
                .and_then(Value::as_i64)
                .map_or_else(String::new, millis_stamp)
        ),
        "step.lease_expired" => format!(
            "the lease of {} expired; the step is ready again",
            text("worker")
        ),
        "step.decision" => {
            let item = text("item");
            let what = if item.is_empty() {
                String::new()
            } else {
                format!(" item `{item}`")
            };
            let comment = str_of(d, "comment")
                .map_or_else(String::new, |c| format!(": {}", excerpt(&c, VALUE_CHARS)));
            format!("{} {}{what}{comment}", text("operator"), text("verdict"))
        }
        "step.escalated" => match d.get("delivered").and_then(Value::as_bool) {
            Some(true) => format!("no decision in time; escalated: {}", short("message")),
            _ => format!(
                "no decision in time; the escalation could not be delivered: {}",
                short("error")
            ),
        },
        "gate.verdict" => format!("verdict {}", text("verdict")),
        _ => {
            let after = str_of(d, "decided_after").map(|a| format!(" (decided after {a})"));
            let reason = str_of(d, "reason").map(|r| format!(" ({r})"));
            let error = str_of(d, "error").map(|e| format!(": {}", excerpt(&e, VALUE_CHARS)));
            let status = kind.strip_prefix("step.").unwrap_or(kind);
            format!(
                "{status}{}{}",
                error.unwrap_or_default(),
                reason.or(after).unwrap_or_default()
            )
        }
    }
}

fn output_values(outputs: &Value) -> Vec<NameValue> {
    let Some(map) = outputs.as_object() else {
        return vec![NameValue {
            name: "value".into(),
            value: excerpt(&display(outputs), VALUE_CHARS),
        }];
    };
    // In name order: the backends keep a map's keys in different orders (Postgres's jsonb
    // sorts them by length), and a report of the same record must read the same on both.
    let mut shown: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "stdout" | "stderr"))
        .collect();
    shown.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<NameValue> = shown
        .iter()
        .take(OUTPUT_KEYS)
        .map(|(k, v)| NameValue {
            name: (*k).clone(),
            value: excerpt(&display(v), VALUE_CHARS),
        })
        .collect();
    if shown.len() > OUTPUT_KEYS {
        out.push(NameValue {
            name: "…".into(),
            value: format!(
                "{} more output(s) in the JSON export",
                shown.len() - OUTPUT_KEYS
            ),
        });
    }
    out
}

/// The end of an output stream: its last [`TAIL_LINES`] lines, at most [`TAIL_CHARS`].
fn tail_of(outputs: &Value, key: &str) -> Option<String> {
    let text = outputs.get(key)?.as_str()?.trim_end();
    if text.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    let cut_lines = lines.len() > TAIL_LINES;
    let chars = kept.chars().count();
    if chars > TAIL_CHARS {
        kept = kept.chars().skip(chars - TAIL_CHARS).collect();
    }
    if cut_lines || chars > TAIL_CHARS {
        kept = format!("…\n{kept}");
    }
    Some(kept)
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(super) fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

/// A JSON value for people: strings as they are, anything else as compact JSON.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => sorted(other).to_string(),
    }
}

/// `v` with every object's keys in name order (see [`output_values`]).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// RFC 3339 in UTC with milliseconds: how every time in a report is written.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn millis_stamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), stamp)
}

/// A span for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 07 min`.
pub fn span(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        let ms = chrono::Duration::milliseconds;
        assert_eq!(span(ms(850)), "850 ms");
        assert_eq!(span(ms(12_345)), "12.3 s");
        assert_eq!(span(ms(245_000)), "4 min 05 s");
        assert_eq!(span(ms(7_620_000)), "2 h 07 min");
        assert_eq!(span(ms(-5)), "0 ms");
    }

    #[test]
    fn tails_keep_the_end_of_long_streams() {
        let long: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let t = tail_of(&json!({ "stdout": long }), "stdout").unwrap();
        assert!(t.starts_with("…\nline 61\n"), "{t}");
        assert!(t.ends_with("line 100"), "{t}");
        let wide = "x".repeat(TAIL_CHARS + 10);
        let t = tail_of(&json!({ "stdout": wide }), "stdout").unwrap();
        assert_eq!(t.chars().count(), TAIL_CHARS + 2);
        assert_eq!(tail_of(&json!({ "stdout": " \n" }), "stdout"), None);
    }

    #[test]
    fn excerpts_cut_on_characters_not_bytes() {
        assert_eq!(excerpt("ééé", 2), "éé…");
        assert_eq!(excerpt("abc", 3), "abc");
    }
}
