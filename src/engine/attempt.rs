//! One attempt of one claimed step: render its templates, do what its kind says, and say
//! how it ended. No store writes happen here; the worker records the result.

// `Ended` is the error of most functions here: an attempt that stops early ends with it.
// Boxing it would only add an allocation to a path that runs once per attempt.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{Secrets, orphans};
use crate::exec::{self, End, Program, RunwayEnv, ShellSpec};
use crate::playbook::kinds::{OnTimeout, StepKind, Wait};
use crate::playbook::step::Step;
use crate::playbook::template::{Template, renderer};
use crate::store::{Run, StepRun};

/// How an attempt ended.
#[derive(Debug)]
pub enum Action {
    /// The attempt is over: success (`error` is `None`) or failure.
    Ended(Ended),
    /// The step waits without a worker, until `until` (or a human, when `None`).
    Park(Option<DateTime<Utc>>),
    /// An approval with `on_timeout: escalate` passed its timeout and its webhook was
    /// notified (the `step.escalated` data says how that went): it waits on, with no timer.
    Escalated(Value),
    /// An `invoke` step starts its child run and waits for it.
    Invoke {
        playbook: String,
        params: Vec<(String, String)>,
        until: Option<DateTime<Utc>>,
    },
    /// A `followup` step registers a run of another playbook for `due`, and ends.
    Followup {
        playbook: String,
        params: Vec<(String, String)>,
        due: DateTime<Utc>,
    },
}

#[derive(Debug, Default)]
pub struct Ended {
    pub outputs: Option<Value>,
    pub error: Option<String>,
    /// Persisted whatever the result, so the next attempt resumes from it.
    pub checkpoint: Option<Vec<u8>>,
    /// A failure that another attempt cannot fix (a template naming a missing secret).
    pub permanent: bool,
}

impl Ended {
    pub fn ok(outputs: Option<Value>) -> Ended {
        Ended {
            outputs,
            ..Ended::default()
        }
    }

    pub fn failed(error: impl Into<String>) -> Ended {
        Ended {
            error: Some(error.into()),
            ..Ended::default()
        }
    }

    fn permanent(error: impl Into<String>) -> Ended {
        Ended {
            error: Some(error.into()),
            permanent: true,
            ..Ended::default()
        }
    }
}

/// Everything an attempt may look at.
pub struct Input<'a> {
    pub run: &'a Run,
    pub row: &'a StepRun,
    pub step: &'a Step,
    /// Template data: params, run, steps, secrets.
    pub data: &'a Value,
    pub secrets: &'a Secrets,
    pub timeout: Duration,
    /// The directory relative `cwd`s resolve against.
    pub workdir: &'a std::path::Path,
}

/// Runs one attempt. `cancel` fires when the lease is lost or the run is cancelled.
pub async fn attempt(input: &Input<'_>, cancel: CancellationToken) -> Action {
    match run_kind(input, cancel).await {
        Ok(action) => action,
        Err(ended) => Action::Ended(ended),
    }
}

async fn run_kind(input: &Input<'_>, cancel: CancellationToken) -> Result<Action, Ended> {
    let step = input.step;
    let now = Utc::now();
    let started = input.row.started_at.unwrap_or(now);
    match &step.kind {
        StepKind::Noop(_) => Ok(Action::Ended(Ended::ok(None))),
        StepKind::Shell(shell) => {
            let program = match (&shell.argv, &shell.script) {
                (Some(argv), _) => Program::Argv(
                    argv.iter()
                        .map(|t| render(t, input, "argv"))
                        .collect::<Result<_, _>>()?,
                ),
                (None, Some(script)) => Program::Script(script.value.clone()),
                (None, None) => {
                    return Err(Ended::permanent("`shell` has neither argv nor script"));
                }
            };
            let mut env = Vec::new();
            for (name, value) in &shell.env.0 {
                env.push((name.value.clone(), render(value, input, "env")?));
            }
            let cwd = match &shell.cwd {
                Some(t) => Some(input.workdir.join(PathBuf::from(render(t, input, "cwd")?))),
                None => Some(input.workdir.to_owned()),
            };
            let runway_env = RunwayEnv {
                run_id: input.run.id.clone(),
                step_id: step.id.value.clone(),
                attempt: u32::try_from(input.row.attempt.max(1)).unwrap_or(1),
                idempotency_key: input.row.idempotency_key.clone(),
            };
            let mut spec = ShellSpec::new(program, runway_env);
            spec.env = env;
            spec.cwd = cwd;
            spec.timeout = input.timeout;
            spec.checkpoint_in = input.row.checkpoint.clone();
            spec.token = Some(orphans::attempt_token(
                &input.run.id,
                &step.id.value,
                input.row.attempt,
            ));
            // The previous attempt's worker may have died with its processes still running
            // (its reaper may be on another host): they must not run alongside this one.
            let swept =
                orphans::sweep_previous(&input.run.id, &step.id.value, input.row.attempt).await;
            if swept > 0 {
                tracing::warn!(run.id = %input.run.id, step.id = %step.id.value, attempt = input.row.attempt, count = swept, "killed processes the previous attempt left running");
            }
            let outcome = exec::run(spec, cancel)
                .await
                .map_err(|e| Ended::failed(input.secrets.mask(&e.to_string())))?;
            let mut outputs: Map<String, Value> = outcome.outputs.clone();
            outputs.insert("stdout".into(), Value::String(outcome.stdout.tail.clone()));
            outputs.insert("stderr".into(), Value::String(outcome.stderr.tail.clone()));
            if outcome.stdout.truncated || outcome.stderr.truncated {
                outputs.insert(
                    "truncated".into(),
                    serde_json::json!({
                        "stdout_bytes": outcome.stdout.total_bytes,
                        "stderr_bytes": outcome.stderr.total_bytes,
                    }),
                );
            }
            let error = match outcome.end {
                End::Exited(0) => outcome
                    .output_error
                    .as_ref()
                    .map(|e| format!("RUNWAY_OUTPUT: {e}")),
                End::Exited(code) => Some(format!(
                    "exited with status {code}{}",
                    last_line(&outcome.stderr.tail)
                )),
                End::Signalled(sig) => Some(format!("killed by signal {sig}")),
                End::TimedOut => Some(format!(
                    "timed out after {}; its process group was terminated",
                    crate::playbook::duration::Duration(input.timeout)
                )),
                End::Cancelled => Some("cancelled".to_owned()),
            };
            Ok(Action::Ended(Ended {
                outputs: Some(Value::Object(outputs)),
                error,
                checkpoint: outcome.checkpoint.clone(),
                permanent: false,
            }))
        }
        StepKind::Wait(wait) => {
            let due = match wait {
                Wait::For(d) => {
                    started
                        + chrono::Duration::from_std(d.value.as_std())
                            .unwrap_or(chrono::Duration::MAX)
                }
                Wait::Until { until } => {
                    let text = render(until, input, "until")?;
                    DateTime::parse_from_rfc3339(text.trim())
                        .map_err(|e| {
                            Ended::permanent(format!(
                                "`until` is not an RFC 3339 timestamp (`{text}`): {e}"
                            ))
                        })?
                        .with_timezone(&Utc)
                }
            };
            if now >= due {
                Ok(Action::Ended(Ended::ok(None)))
            } else {
                Ok(Action::Park(Some(due)))
            }
        }
        StepKind::Approval(_) | StepKind::Checklist(_) => {
            let deadline = step.timeout.as_ref().map(|t| {
                started
                    + chrono::Duration::from_std(t.value.as_std()).unwrap_or(chrono::Duration::MAX)
            });
            match (deadline, &step.kind) {
                (Some(d), StepKind::Approval(a))
                    if now >= d && a.on_timeout == OnTimeout::Escalate =>
                {
                    let sent = super::escalate::notify(
                        super::escalate::notification(a, input),
                        input.secrets,
                        cancel,
                    );
                    Ok(Action::Escalated(sent.await))
                }
                (Some(d), _) if now >= d => Err(Ended::permanent(format!(
                    "no decision within {}",
                    step.timeout
                        .as_ref()
                        .map(|t| t.value.to_string())
                        .unwrap_or_default()
                ))),
                (d, _) => Ok(Action::Park(d)),
            }
        }
        StepKind::Invoke(invoke) => {
            let mut params = Vec::new();
            for (name, value) in &invoke.params.0 {
                params.push((name.value.clone(), render(value, input, "params")?));
            }
            let until = Some(
                started
                    + chrono::Duration::from_std(input.timeout).unwrap_or(chrono::Duration::MAX),
            );
            Ok(Action::Invoke {
                playbook: invoke.playbook.value.clone(),
                params,
                until,
            })
        }
        StepKind::Followup(followup) => {
            let mut params = Vec::new();
            for (name, value) in &followup.params.0 {
                params.push((name.value.clone(), render(value, input, "params")?));
            }
            // From the step's first start, so an attempt after a crash asks for the same time.
            let due = match (&followup.after, &followup.at) {
                (Some(d), _) => {
                    started
                        + chrono::Duration::from_std(d.value.as_std())
                            .unwrap_or(chrono::Duration::MAX)
                }
                (None, Some(at)) => {
                    let text = render(at, input, "at")?;
                    DateTime::parse_from_rfc3339(text.trim())
                        .map_err(|e| {
                            Ended::permanent(format!(
                                "`at` is not an RFC 3339 timestamp (`{text}`): {e}"
                            ))
                        })?
                        .with_timezone(&Utc)
                }
                (None, None) => return Err(Ended::permanent("`followup` has no `after` or `at`")),
            };
            Ok(Action::Followup {
                playbook: followup.playbook.value.clone(),
                params,
                due,
            })
        }
        StepKind::Gate(_) => Err(Ended::permanent(
            "a gate is decided from its checks and never runs on a worker",
        )),
        StepKind::Http(_) | StepKind::Sql(_) | StepKind::Notify(_) => {
            super::remote::attempt(input, cancel)
                .await
                .map(Action::Ended)
        }
    }
}

/// Renders a template of the step; a failure is permanent (another attempt renders the
/// same), with a hint for a secret the worker does not have.
pub(super) fn render(t: &Template, input: &Input<'_>, field: &str) -> Result<String, Ended> {
    t.render(&renderer(), input.data).map_err(|e| {
        let missing_secret = t
            .refs
            .iter()
            .filter_map(|r| r.path.strip_prefix("secrets."))
            .find(|name| !input.secrets.is_set(name));
        match missing_secret {
            Some(name) => Ended::permanent(format!(
                "`{field}` needs secret `{name}`, which is not set: export {name}=... in the environment of the worker (it is never stored)"
            )),
            None => Ended::permanent(format!("cannot render `{field}`: {e}")),
        }
    })
}

fn last_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            let l: String = l.chars().take(300).collect();
            format!(": {l}")
        })
        .unwrap_or_default()
}
