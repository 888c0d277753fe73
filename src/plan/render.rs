//! Showing a plan: text for people, JSON for tools, DOT and Mermaid for pictures.
//!
//! Templates are rendered with the bound params; secrets show as `***`, and values only a
//! run can know (run id, step outputs) as `<run.id>`, `<steps.ID.outputs.KEY>`.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::{Plan, WorstCase};
use crate::playbook::kinds::{StepKind, Wait};
use crate::playbook::step::Step;
use crate::playbook::template::{Template, renderer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Dot,
    Mermaid,
}

/// Renders `plan` with `params` (already bound and checked).
pub fn render(plan: &Plan, params: &Map<String, Value>, format: Format) -> String {
    let view = View::new(plan, params);
    match format {
        Format::Text => view.text(),
        Format::Json => {
            serde_json::to_string_pretty(&view.json()).expect("plain JSON values serialize")
        }
        Format::Dot => view.dot(),
        Format::Mermaid => view.mermaid(),
    }
}

struct View<'p> {
    plan: &'p Plan,
    data: Value,
    hb: handlebars::Handlebars<'static>,
}

impl<'p> View<'p> {
    fn new(plan: &'p Plan, params: &Map<String, Value>) -> Self {
        let secrets: Map<String, Value> = plan
            .playbook
            .secrets
            .iter()
            .map(|s| (s.value.clone(), Value::String("***".into())))
            .collect();
        let run: Map<String, Value> = crate::compiler::RUN_FIELDS
            .iter()
            .map(|f| (f.to_string(), Value::String(format!("<run.{f}>"))))
            .collect();
        // Step outputs do not exist yet: every path a template names becomes a placeholder.
        let mut steps = Value::Object(Map::new());
        for step in plan.playbook.all_steps() {
            for t in step_templates(step) {
                for r in &t.refs {
                    if r.root() == "steps" {
                        insert_path(&mut steps, &r.segments()[1..], format!("<{}>", r.dotted()));
                    }
                }
            }
        }
        View {
            plan,
            data: json!({ "params": params, "secrets": secrets, "run": run, "steps": steps }),
            hb: renderer(),
        }
    }

    fn show(&self, t: &Template) -> String {
        t.render(&self.hb, &self.data)
            .unwrap_or_else(|e| format!("<{e}>"))
    }

    fn steps(&self) -> &'p [Step] {
        &self.plan.playbook.steps
    }

    /// One line saying what the step will do, templates rendered.
    fn action(&self, step: &Step) -> String {
        match &step.kind {
            StepKind::Shell(s) => match (&s.argv, &s.script) {
                (Some(argv), _) => {
                    let words: Vec<String> =
                        argv.iter().map(|t| shell_quote(&self.show(t))).collect();
                    let env: Vec<String> = s
                        .env
                        .0
                        .iter()
                        .map(|(k, v)| format!("{}={}", k.value, shell_quote(&self.show(v))))
                        .collect();
                    let env = if env.is_empty() {
                        String::new()
                    } else {
                        format!("{} ", env.join(" "))
                    };
                    let cwd = s
                        .cwd
                        .as_ref()
                        .map(|c| format!(" (in {})", self.show(c)))
                        .unwrap_or_default();
                    format!("{env}{}{cwd}", words.join(" "))
                }
                (None, Some(script)) => {
                    let lines = script.lines().count();
                    format!(
                        "bash script, {lines} line(s): {}",
                        script.lines().next().unwrap_or_default()
                    )
                }
                (None, None) => String::new(),
            },
            StepKind::Http(h) => {
                let status = if h.expect_status.is_empty() {
                    "2xx".to_owned()
                } else {
                    h.expect_status
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join("|")
                };
                format!(
                    "{} {} (expect {status})",
                    h.method.as_str(),
                    self.show(&h.url)
                )
            }
            StepKind::Sql(q) => {
                let args: Vec<String> = q
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("${} = {}", i + 1, self.show(a)))
                    .collect();
                let args = if args.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", args.join(", "))
                };
                format!(
                    "{} on {}{args}",
                    q.query
                        .value
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                    self.show(&q.url)
                )
            }
            StepKind::Wait(Wait::For(d)) => format!("wait {}", d.value),
            StepKind::Wait(Wait::Until { until }) => format!("wait until {}", self.show(until)),
            StepKind::Approval(a) => {
                let mut s = format!(
                    "\"{}\" needs {} approval(s)",
                    self.show(&a.prompt),
                    a.quorum
                );
                if !a.approvers.is_empty() {
                    let who: Vec<&str> = a.approvers.iter().map(|x| x.as_str()).collect();
                    let _ = write!(s, " from {}", who.join(", "));
                }
                if a.exclude_starter {
                    s.push_str(", not the starter");
                }
                if a.require_comment {
                    s.push_str(", with a comment");
                }
                s
            }
            StepKind::Checklist(c) => {
                let required = c.items.iter().filter(|i| i.required).count();
                format!("{} item(s), {required} required", c.items.len())
            }
            StepKind::Gate(_) => {
                let checks: Vec<String> = self.plan.graph.deps[self.index_of(step)]
                    .iter()
                    .map(|&j| {
                        let s = &self.steps()[j];
                        format!(
                            "{}{}",
                            s.id.value,
                            if s.critical { "" } else { " (non-critical)" }
                        )
                    })
                    .collect();
                format!("GO/NO-GO over {}", checks.join(", "))
            }
            StepKind::Invoke(i) => format!(
                "run playbook {} {}",
                i.playbook.value,
                self.params(&i.params)
            )
            .trim_end()
            .to_owned(),
            StepKind::Followup(f) => {
                let when = match (&f.after, &f.at) {
                    (Some(d), _) => format!("{} after this step", d.value),
                    (None, Some(at)) => format!("at {}", self.show(at)),
                    (None, None) => String::new(),
                };
                format!(
                    "schedule playbook {} {when} {}",
                    f.playbook.value,
                    self.params(&f.params)
                )
                .trim_end()
                .to_owned()
            }
            StepKind::Notify(n) => format!(
                "POST \"{}\" to {}",
                self.show(&n.message),
                self.show(&n.url)
            ),
            StepKind::Noop(_) => String::new(),
        }
    }

    /// `k=v` pairs of `invoke`/`followup` params, rendered.
    fn params(&self, params: &crate::playbook::kinds::TemplateMap) -> String {
        let pairs: Vec<String> = params
            .0
            .iter()
            .map(|(k, v)| format!("{}={}", k.value, self.show(v)))
            .collect();
        pairs.join(" ")
    }

    fn index_of(&self, step: &Step) -> usize {
        self.steps()
            .iter()
            .position(|s| std::ptr::eq(s, step))
            .unwrap_or(0)
    }

    fn flags(&self, step: &Step, main: bool) -> Vec<String> {
        let mut flags = Vec::new();
        if !step.critical {
            flags.push("non-critical".to_owned());
        }
        if let Some(w) = &step.when {
            flags.push(format!("when {}", w.value.source()));
        }
        if let Some(e) = &step.expect {
            flags.push(format!("expect {}", e.value.source()));
        }
        if let Some(t) = self.plan.timeout(step) {
            flags.push(format!("timeout {t}"));
        }
        let retry = self.plan.retry(step);
        if retry.attempts > 1 {
            flags.push(format!(
                "{} attempts, backoff {}",
                retry.attempts, retry.backoff
            ));
        }
        if main && step.mutates() {
            flags.push(match (&step.undo, step.irreversible) {
                (Some(u), _) => format!("mutates, undo {}", u.value),
                (None, true) => "mutates, irreversible".to_owned(),
                (None, false) => "mutates, NO UNDO".to_owned(),
            });
        }
        flags
    }

    fn text(&self) -> String {
        let pb = &self.plan.playbook;
        let mut out = String::new();
        let _ = writeln!(out, "{} ({})", pb.display_title(), pb.name.value);
        if let Some(d) = &pb.description {
            let _ = writeln!(out, "  {}", d.trim());
        }
        let _ = writeln!(out, "  hash     {}", self.plan.content_hash);
        if !pb.params.is_empty() {
            let shown: Vec<String> = pb
                .params
                .0
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.name.value,
                        display_value(&self.data["params"][p.name.as_str()])
                    )
                })
                .collect();
            let _ = writeln!(out, "  params   {}", shown.join(" "));
        }
        if !pb.secrets.is_empty() {
            let names: Vec<&str> = pb.secrets.iter().map(|s| s.as_str()).collect();
            let _ = writeln!(
                out,
                "  secrets  {} (read from the environment at run time)",
                names.join(", ")
            );
        }
        if let Some(lock) = &pb.lock {
            let _ = writeln!(out, "  lock     {}", self.show(lock));
        }
        let _ = writeln!(
            out,
            "\nSteps, in order (steps in the same stage run in parallel):"
        );
        let width = pb.all_steps().map(|s| s.id.len()).max().unwrap_or(0);
        let mut current_stage = usize::MAX;
        for &i in &self.plan.graph.order {
            let step = &pb.steps[i];
            let stage = self.plan.graph.stage[i];
            if stage != current_stage {
                current_stage = stage;
                let _ = writeln!(out, "  stage {}", stage + 1);
            }
            self.step_lines(&mut out, step, width, true);
        }
        if !pb.compensations.is_empty() {
            let _ = writeln!(
                out,
                "\nCompensations (undo, in reverse order of completion, when a run fails):"
            );
            for step in &pb.compensations {
                self.step_lines(&mut out, step, width, false);
            }
        }
        if !pb.on_failure.is_empty() {
            let _ = writeln!(out, "\nOn failure (after undo, in order):");
            for step in &pb.on_failure {
                self.step_lines(&mut out, step, width, false);
            }
        }
        let humans: Vec<&Step> = pb.all_steps().filter(|s| s.kind.needs_human()).collect();
        if !humans.is_empty() {
            let _ = writeln!(out, "\nA human must act on:");
            for s in humans {
                let command = match s.kind {
                    StepKind::Approval(_) => "runway approve RUN",
                    _ => "runway check RUN",
                };
                let _ = writeln!(
                    out,
                    "  {:width$}  {} ({command} {})",
                    s.id.value,
                    s.kind.name(),
                    s.id.value
                );
            }
        }
        let mutating: Vec<&Step> = pb.steps.iter().filter(|s| s.mutates()).collect();
        if !mutating.is_empty() {
            let _ = writeln!(out, "\nMutating steps:");
            for s in mutating {
                let undo = match (&s.undo, s.irreversible) {
                    (Some(u), _) => format!("undo: {}", u.value),
                    (None, true) => "irreversible".into(),
                    (None, false) => "no undo".into(),
                };
                let _ = writeln!(out, "  {:width$}  {undo}", s.id.value);
            }
        }
        for s in &pb.schedules {
            let overlap = serde_json::to_value(s.overlap).unwrap_or_default();
            let _ = writeln!(
                out,
                "\nSchedule {}: `{}` ({}), overlap: {}",
                s.id.value,
                s.cron.value,
                s.timezone.value,
                overlap.as_str().unwrap_or_default()
            );
        }
        let (total, path) = self.plan.critical_path();
        let ids: Vec<&str> = path.iter().map(|&i| pb.steps[i].id.as_str()).collect();
        let _ = writeln!(
            out,
            "\nWorst case: {} along {}",
            worst_case_text(total, &path, self.plan),
            ids.join(" -> ")
        );
        out
    }

    fn step_lines(&self, out: &mut String, step: &Step, width: usize, main: bool) {
        let title = step
            .title
            .as_ref()
            .map(|t| self.show(t))
            .unwrap_or_default();
        let line = format!(
            "    {:width$}  {:9}  {title}",
            step.id.value,
            step.kind.name()
        );
        let _ = writeln!(out, "{}", line.trim_end());
        let action = self.action(step);
        if !action.is_empty() {
            let _ = writeln!(out, "    {:width$}    {action}", "");
        }
        let flags = self.flags(step, main);
        if !flags.is_empty() {
            let _ = writeln!(out, "    {:width$}    [{}]", "", flags.join("; "));
        }
    }

    fn step_json(&self, step: &Step, index: Option<usize>) -> Value {
        let mut v = json!({
            "id": step.id.value,
            "kind": step.kind.name(),
            "title": step.title.as_ref().map(|t| self.show(t)),
            "action": self.action(step),
            "critical": step.critical,
            "mutates": step.mutates(),
            "undo": step.undo.as_ref().map(|u| u.value.clone()),
            "irreversible": step.irreversible,
            "when": step.when.as_ref().map(|c| c.value.source().to_owned()),
            "expect": step.expect.as_ref().map(|c| c.value.source().to_owned()),
            "timeout": self.plan.timeout(step).map(|t| t.to_string()),
            "attempts": self.plan.retry(step).attempts,
            "worst_case": self.plan.worst_case(step).to_string(),
            "needs_human": step.kind.needs_human(),
        });
        if let Some(i) = index {
            let ids = |v: &[usize]| {
                v.iter()
                    .map(|&j| self.steps()[j].id.value.clone())
                    .collect::<Vec<_>>()
            };
            v["stage"] = json!(self.plan.graph.stage[i] + 1);
            v["needs"] = json!(ids(&self.plan.graph.deps[i]));
            v["parallel_with"] = json!(ids(&self.plan.parallel_with(i)));
        }
        v
    }

    fn json(&self) -> Value {
        let pb = &self.plan.playbook;
        let (total, path) = self.plan.critical_path();
        json!({
            "playbook": pb.name.value,
            "title": pb.display_title(),
            "content_hash": self.plan.content_hash,
            "params": self.data["params"],
            "secrets": pb.secrets.iter().map(|s| s.value.clone()).collect::<Vec<_>>(),
            "lock": pb.lock.as_ref().map(|l| self.show(l)),
            "steps": self.plan.graph.order.iter().map(|&i| self.step_json(&pb.steps[i], Some(i))).collect::<Vec<_>>(),
            "compensations": pb.compensations.iter().map(|s| self.step_json(s, None)).collect::<Vec<_>>(),
            "on_failure": pb.on_failure.iter().map(|s| self.step_json(s, None)).collect::<Vec<_>>(),
            "schedules": pb.schedules,
            "worst_case": {
                "total": worst_case_text(total, &path, self.plan),
                "seconds": match total { WorstCase::Bounded(d) => Some(d.as_secs_f64()), WorstCase::Unbounded => None },
                "critical_path": path.iter().map(|&i| pb.steps[i].id.value.clone()).collect::<Vec<_>>(),
            },
        })
    }

    fn dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n",
            self.plan.playbook.name.value
        );
        for (i, step) in self.steps().iter().enumerate() {
            let shape = match step.kind {
                StepKind::Gate(_) => "diamond",
                StepKind::Approval(_) | StepKind::Checklist(_) => "hexagon",
                StepKind::Wait(_) => "ellipse",
                _ => "box",
            };
            let style = if step.critical { "solid" } else { "dashed" };
            let _ = writeln!(
                out,
                "  s{i} [label=\"{}\\n{}\", shape={shape}, style={style}];",
                dot_escape(&step.id.value),
                step.kind.name()
            );
        }
        for (i, deps) in self.plan.graph.deps.iter().enumerate() {
            for j in deps {
                let _ = writeln!(out, "  s{j} -> s{i};");
            }
        }
        out.push_str("}\n");
        out
    }

    fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, step) in self.steps().iter().enumerate() {
            let label = format!("{}<br/><i>{}</i>", step.id.value, step.kind.name());
            let node = match step.kind {
                StepKind::Gate(_) => format!("s{i}{{\"{label}\"}}"),
                StepKind::Approval(_) | StepKind::Checklist(_) => {
                    format!("s{i}{{{{\"{label}\"}}}}")
                }
                _ => format!("s{i}[\"{label}\"]"),
            };
            let _ = writeln!(out, "  {node}");
        }
        for (i, deps) in self.plan.graph.deps.iter().enumerate() {
            for j in deps {
                let arrow = if self.steps()[*j].critical {
                    "-->"
                } else {
                    "-.->"
                };
                let _ = writeln!(out, "  s{j} {arrow} s{i}");
            }
        }
        out
    }
}

fn worst_case_text(total: WorstCase, path: &[usize], plan: &Plan) -> String {
    match total {
        WorstCase::Bounded(_) => total.to_string(),
        WorstCase::Unbounded => {
            let waiting: Vec<&str> = path
                .iter()
                .map(|&i| &plan.playbook.steps[i])
                .filter(|s| plan.worst_case(s) == WorstCase::Unbounded)
                .map(|s| s.id.as_str())
                .collect();
            format!("unbounded (no timeout on {})", waiting.join(", "))
        }
    }
}

fn step_templates(step: &Step) -> Vec<&Template> {
    let mut all: Vec<&Template> = step
        .kind
        .templates()
        .into_iter()
        .map(|u| u.template)
        .collect();
    all.extend(step.title.iter());
    all
}

fn insert_path(root: &mut Value, path: &[&str], leaf: String) {
    let mut cur = root;
    for (k, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        let map = cur.as_object_mut().expect("checked above");
        if k + 1 == path.len() {
            map.entry(seg.to_string()).or_insert(Value::String(leaf));
            return;
        }
        cur = map
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => shell_quote(s),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// Quotes a word the way a shell user would read it; plain words stay bare.
fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,<>*".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
