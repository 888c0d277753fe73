//! Failure notices: the webhook a schedule declares (`notify:` under the schedule), told
//! about every failed scheduled run and every tick that could not start one.
//!
//! Crash safety: the notice is queued (`notify_state = 'pending'`) by the same transaction
//! that records the failure, and marked sent only after the webhook answered 2xx. A
//! scheduler that dies between the two leaves it pending, and its claim lapses, so another
//! scheduler sends it again: at least once, never zero times.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::diagnostic::Location;
use crate::exec::notify::{Notification, send};
use crate::playbook::template::{Template, renderer};
use crate::secrets::Secrets;
use crate::store::{FireOutcome, Notice, Schedule, ScheduleStatus};

/// How long a webhook may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Renders and sends one notice with the secrets named by the schedule's playbook (read
/// from this process' environment). The error is masked and says what to do.
pub async fn deliver(notice: &Notice, secret_names: &[String]) -> Result<(), String> {
    let Some(notify) = &notice.schedule.notify else {
        return Ok(());
    };
    let secrets = Secrets::from_env(secret_names.iter().map(String::as_str));
    let data = template_data(notice, &secrets);
    let render = |field: &str, text: &str| -> Result<String, String> {
        let template = Template::parse(text, Location::default())
            .map_err(|e| format!("`notify` {field}: {}", e.message))?;
        template.render(&renderer(), &data).map_err(|e| {
            match template
                .refs
                .iter()
                .filter_map(|r| r.path.strip_prefix("secrets."))
                .find(|name| !secrets.is_set(name))
            {
                Some(name) => format!(
                    "`notify` {field} needs secret `{name}`, which is not set: export {name}=... in the scheduler's environment"
                ),
                None => format!("cannot render `notify` {field}: {e}"),
            }
        })
    };
    let text = |key: &str| notify.get(key).and_then(Value::as_str).unwrap_or_default();
    let url = render("url", text("url"))?;
    let mut headers = Vec::new();
    if let Some(map) = notify.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            headers.push((
                name.clone(),
                render("header", value.as_str().unwrap_or_default())?,
            ));
        }
    }
    let message = format!(
        "{}\n{}",
        render("message", text("message"))?,
        summary(notice)
    );
    let notification = Notification {
        url,
        headers,
        run_id: notice
            .run
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default(),
        step_id: notice.schedule.trigger(),
        message,
        timeout: TIMEOUT,
    };
    send(notification, CancellationToken::new())
        .await
        .map(|_| ())
        .map_err(|e| secrets.mask(&e.to_string()))
}

/// The webhook's templates see the schedule's params, its secrets and the failed run.
fn template_data(notice: &Notice, secrets: &Secrets) -> Value {
    let run = notice.run.as_ref();
    json!({
        "params": notice.schedule.params,
        "secrets": secrets.as_json(),
        "run": {
            "id": run.map(|r| r.id.as_str()).unwrap_or_default(),
            "starter": run.map_or(notice.schedule.added_by.as_str(), |r| r.starter.as_str()),
            "started_at": run
                .map(|r| r.started_at.unwrap_or(r.created_at).to_rfc3339())
                .unwrap_or_default(),
            "trigger": notice.schedule.trigger(),
            "playbook": notice.schedule.playbook,
        },
    })
}

/// What happened, in a sentence Runway adds under the playbook's message.
pub fn summary(notice: &Notice) -> String {
    let Notice {
        schedule,
        fire,
        run,
        ..
    } = notice;
    let tick = local(schedule, fire.tick_at);
    let mut text = match (fire.outcome, run) {
        (FireOutcome::Started, Some(run)) => format!(
            "Scheduled run {} of `{}` {} (schedule {}, tick {tick}): {}",
            run.id,
            run.playbook,
            run.status,
            schedule.id,
            run.error.as_deref().unwrap_or("no error recorded")
        ),
        _ => format!(
            "Schedule {} could not start a run for its tick {tick}: {}",
            schedule.id,
            fire.reason.as_deref().unwrap_or("no reason recorded")
        ),
    };
    if schedule.status == ScheduleStatus::Paused {
        text.push_str(&format!(
            " The schedule is paused ({}); resume it with `runway schedule resume {}`.",
            schedule
                .status_reason
                .as_deref()
                .unwrap_or("by an operator"),
            schedule.id
        ));
    }
    text
}

/// A tick on the schedule's own wall clock.
pub fn local(schedule: &Schedule, t: chrono::DateTime<chrono::Utc>) -> String {
    crate::cadence::local(&schedule.timezone, t)
}
