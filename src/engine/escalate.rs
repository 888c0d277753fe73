//! An approval's escalation: when nobody decided within its timeout and it says
//! `on_timeout: escalate`, its webhook is notified and the step goes on waiting, now with no
//! timer, for people only. The notification and its outcome are sealed in the run's chain
//! as `step.escalated`, whether or not it was delivered: a broken pager must neither decide
//! a release nor go unnoticed.
//!
//! The notification is sent during the attempt, while the worker still renews its lease; the
//! worker then records the outcome with `store::Store::step_escalate`. At least once: a
//! worker that dies after sending and before recording has its lease reaped, and the next
//! attempt notifies again.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Secrets;
use super::attempt::{Input, render};
use crate::exec::{self, Notification};
use crate::playbook::kinds::Approval;
use crate::playbook::template::Template;

/// Sends `notification` (or takes why there is none); the `step.escalated` event's data,
/// masked.
pub async fn notify(
    notification: Result<Notification, String>,
    secrets: &Secrets,
    cancel: CancellationToken,
) -> Value {
    match notification {
        Ok(n) => {
            let message = secrets.mask(&n.message);
            match exec::notify::send(n, cancel).await {
                Ok(outputs) => json!({
                    "message": message, "delivered": true, "status": outputs["status"],
                }),
                Err(e) => json!({
                    "message": message, "delivered": false, "error": secrets.mask(&e.to_string()),
                }),
            }
        }
        Err(why) => json!({ "message": null, "delivered": false, "error": secrets.mask(&why) }),
    }
}

/// The escalation webhook's message, rendered; `Err` says why it cannot be sent (the
/// approval waits on all the same: a broken pager must not decide a release).
pub(super) fn notification(a: &Approval, input: &Input<'_>) -> Result<exec::Notification, String> {
    let e = a
        .escalate
        .as_ref()
        .ok_or("the approval has no `escalate:` webhook")?;
    let text = |t: &Template, field: &str| {
        render(t, input, field).map_err(|ended| ended.error.unwrap_or_default())
    };
    Ok(exec::Notification {
        url: text(&e.url, "escalate url")?,
        headers: Vec::new(),
        run_id: input.run.id.clone(),
        step_id: input.step.id.value.clone(),
        message: text(&e.message, "escalate message")?,
        timeout: exec::notify::DEFAULT_TIMEOUT,
    })
}
