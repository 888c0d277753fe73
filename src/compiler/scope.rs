//! What a template or a condition may name at a given place in a playbook.
//!
//! A step may use params, secrets (where they stay out of listings and records), the run,
//! and the outputs and status of steps that certainly finished before it: its ancestors in
//! the graph. Anything else is an error here, so a strict render at run time never meets
//! an unknown name.

use crate::condition::{PathRef, Segment, Type};
use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::playbook::Playbook;
use crate::playbook::kinds::TemplateUse;
use crate::playbook::param::ParamType;
use crate::playbook::template::TemplateRef;

pub const RUN_FIELDS: [&str; 5] = ["id", "starter", "started_at", "trigger", "playbook"];
pub const STEP_STATUSES: [&str; 5] = ["succeeded", "failed", "warned", "skipped", "cancelled"];
const ROOTS: [&str; 4] = ["params", "secrets", "run", "steps"];

/// Which step outputs a place may read.
#[derive(Clone, Copy)]
pub enum StepAccess<'a> {
    /// Only steps for which the predicate holds (the ancestors of a main step, or of the
    /// step a compensation undoes).
    Ancestors(&'a dyn Fn(usize) -> bool),
    /// Any main step's status, no outputs (on_failure: they may not have run).
    StatusOnly,
    /// No steps at all (lock, playbook-level fields).
    None,
}

pub struct Scope<'a> {
    pub playbook: &'a Playbook,
    pub index: &'a std::collections::HashMap<&'a str, usize>,
    pub steps: StepAccess<'a>,
    /// Where this is, for messages: "step `provision`", "`lock`".
    pub place: String,
    /// Whether `outputs` (the step's own outputs) may be used: in `expect`.
    pub own_outputs: bool,
}

impl Scope<'_> {
    /// Checks every name in a template.
    pub fn check_template(&self, use_: &TemplateUse<'_>, diags: &mut Diagnostics) {
        for r in &use_.template.refs {
            self.check_template_ref(r, use_, diags);
        }
    }

    fn check_template_ref(&self, r: &TemplateRef, use_: &TemplateUse<'_>, diags: &mut Diagnostics) {
        let segs = r.segments();
        let shown = r.dotted();
        match segs.as_slice() {
            ["secrets", name] => {
                if !self.playbook.secrets.iter().any(|s| s.value == *name) {
                    unknown(
                        diags,
                        r,
                        "secret",
                        name,
                        self.playbook.secrets.iter().map(|s| s.as_str()),
                        "declare it under `secrets:`",
                    );
                } else if !use_.secrets {
                    diags
                        .error(
                            r.location,
                            format!(
                                "secret `{name}` cannot be used in {} of {}",
                                use_.field, self.place
                            ),
                        )
                        .hint(secret_hint(&use_.field));
                }
            }
            ["params", name] => {
                if self.playbook.params.get(name).is_none() {
                    unknown(
                        diags,
                        r,
                        "param",
                        name,
                        self.playbook.params.0.iter().map(|p| p.name.as_str()),
                        "declare it under `params:`",
                    );
                }
            }
            ["run", field] => {
                if !RUN_FIELDS.contains(field) {
                    unknown(diags, r, "run field", field, RUN_FIELDS, "");
                }
            }
            ["steps", id, "outputs", ..] | ["steps", id, "status"] => {
                self.check_step(id, segs[2] == "outputs", r.location, shown, diags);
            }
            [root, ..] if !ROOTS.contains(root) && *root != "outputs" => {
                let e = diags.error(r.location, format!("unknown name `{shown}` in a template"));
                match did_you_mean(root, ROOTS) {
                    Some(close) => e.hint(format!("did you mean `{close}.`...?")),
                    None => e.hint("templates use params.NAME, secrets.NAME, run.FIELD or steps.ID.outputs.KEY"),
                };
            }
            ["outputs", ..] => {
                diags
                    .error(r.location, format!("`{shown}` is not available in a template"))
                    .hint("a step's own outputs exist only after it ran; use them in `expect:`, or in a later step as `steps.ID.outputs...`");
            }
            _ => {
                diags
                    .error(r.location, format!("`{shown}` is not a complete name"))
                    .hint("write params.NAME, secrets.NAME, run.FIELD or steps.ID.outputs.KEY");
            }
        }
    }

    /// Whether `steps.<id>` is readable here; reports why not.
    fn check_step(
        &self,
        id: &str,
        outputs: bool,
        location: crate::diagnostic::Location,
        shown: &str,
        diags: &mut Diagnostics,
    ) -> bool {
        let Some(&i) = self.index.get(id) else {
            let in_other_list = self
                .playbook
                .compensations
                .iter()
                .chain(&self.playbook.on_failure)
                .any(|s| s.id.value == id);
            let e = diags.error(location, format!("`{shown}` names an unknown step `{id}`"));
            if in_other_list {
                e.hint(format!("`{id}` is a compensation or on_failure step; only main steps have outputs to read"));
            } else if let Some(close) = did_you_mean(id, self.index.keys().copied()) {
                e.hint(format!("did you mean `{close}`?"));
            }
            return false;
        };
        match self.steps {
            StepAccess::Ancestors(is_ancestor) if is_ancestor(i) => true,
            StepAccess::Ancestors(_) => {
                diags
                    .error(
                        location,
                        format!(
                            "{} uses `{shown}`, but step `{id}` does not always finish before it",
                            self.place
                        ),
                    )
                    .hint(format!(
                        "add `{id}` to `needs:` (directly or through a step that needs it)"
                    ));
                false
            }
            StepAccess::StatusOnly if !outputs => true,
            StepAccess::StatusOnly => {
                diags
                    .error(location, format!("{} cannot use `{shown}`: after a failure, step `{id}` may not have run", self.place))
                    .hint(format!("test `steps.{id}.status` in `when:` instead"));
                false
            }
            StepAccess::None => {
                diags.error(
                    location,
                    format!("{} cannot use step results (`{shown}`)", self.place),
                );
                false
            }
        }
    }

    /// The static type of a path in a condition, or why it cannot be used.
    pub fn resolve(
        &self,
        path: &PathRef,
        diags: &mut Diagnostics,
        location: crate::diagnostic::Location,
    ) -> Result<Type, (String, Option<String>)> {
        let fields: Vec<Option<&str>> = path
            .segments
            .iter()
            .map(|s| match s {
                Segment::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect();
        let shown = render_path(path);
        match fields.as_slice() {
            [Some("params"), Some(name)] => match self.playbook.params.get(name) {
                Some(p) => Ok(param_type(p)),
                None => Err((
                    format!("unknown param `{name}`"),
                    did_you_mean(name, self.playbook.params.0.iter().map(|p| p.name.as_str())).map(|c| format!("did you mean `{c}`?")),
                )),
            },
            [Some("secrets"), ..] => Err((
                "secrets cannot be used in conditions".into(),
                Some("a condition's values are recorded in the run's evidence; test a param or a step output instead".into()),
            )),
            [Some("run"), Some(field)] if RUN_FIELDS.contains(field) => Ok(Type::String),
            [Some("run"), Some(field)] => Err((
                format!("unknown run field `{field}`"),
                Some(format!("use one of: {}", RUN_FIELDS.join(", "))),
            )),
            [Some("steps"), Some(id), Some("status")] => {
                if self.check_step(id, false, location, &shown, diags) {
                    Ok(Type::OneOf(STEP_STATUSES.iter().map(|s| (*s).to_owned()).collect()))
                } else {
                    Ok(Type::Any)
                }
            }
            [Some("steps"), Some(id), Some("outputs"), ..] => {
                self.check_step(id, true, location, &shown, diags);
                Ok(Type::Any)
            }
            [Some("steps"), ..] => Err((
                format!("`{shown}` is not a step result"),
                Some("write `steps.ID.status` or `steps.ID.outputs.KEY`".into()),
            )),
            [Some("outputs"), ..] if self.own_outputs => Ok(Type::Any),
            [Some("outputs"), ..] => Err((
                "`outputs` (this step's outputs) is only available in `expect:`".into(),
                Some("in `when:`, the step has not run yet; use `steps.ID.outputs...` of an earlier step".into()),
            )),
            [Some(root), ..] => Err((
                format!("unknown name `{root}`"),
                Some(match did_you_mean(root, ROOTS.iter().copied().chain(["outputs"])) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => "conditions use params, run, steps and (in `expect:`) outputs".into(),
                }),
            )),
            _ => Err((format!("`{shown}` is not a name"), None)),
        }
    }
}

fn param_type(p: &crate::playbook::param::Param) -> Type {
    let scalar = |t: ParamType| match t {
        ParamType::Integer => Type::Int,
        ParamType::Number => Type::Number,
        ParamType::Boolean => Type::Bool,
        _ => Type::String,
    };
    match p.ty {
        ParamType::Enum => Type::OneOf(
            p.values
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect(),
        ),
        ParamType::List => Type::List(Box::new(scalar(p.items.unwrap_or(ParamType::String)))),
        t => scalar(t),
    }
}

fn render_path(path: &PathRef) -> String {
    let mut out = String::new();
    for (i, s) in path.segments.iter().enumerate() {
        match s {
            Segment::Field(f) if i == 0 => out.push_str(f),
            Segment::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Segment::Index(n) => out.push_str(&format!("[{n}]")),
            Segment::Key(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}

fn unknown<'a>(
    diags: &mut Diagnostics,
    r: &TemplateRef,
    what: &str,
    name: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
    otherwise: &str,
) {
    let e = diags.error(
        r.location,
        format!("unknown {what} `{name}` in `{}`", r.dotted()),
    );
    match did_you_mean(name, candidates.clone()) {
        Some(close) => {
            e.hint(format!("did you mean `{close}`?"));
        }
        None if !otherwise.is_empty() => {
            e.hint(otherwise.to_owned());
        }
        None => {
            let all: Vec<&str> = candidates.into_iter().collect();
            e.hint(format!("use one of: {}", all.join(", ")));
        }
    }
}

fn secret_hint(field: &str) -> String {
    if field == "argv" {
        "argv is visible to every user through `ps`; pass the secret through `env:` and read it in the program".into()
    } else if field.starts_with("param") {
        "params are stored with the child run; declare the secret in the invoked playbook instead"
            .into()
    } else {
        "secrets may only go in shell `env`, http/notify `url`, `headers` and `body`, and `sql.url`"
            .into()
    }
}
