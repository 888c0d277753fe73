//! One attempt of a `notify` step: POST a small JSON message to a webhook, through the
//! [`http`](super::http) executor, so the same rules hold (no redirects, no proxies, nothing
//! secret in error messages).

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::http::{self, HttpBody, HttpError, HttpRequest};
use crate::playbook::kinds::Method;

/// A `notify` step's timeout per attempt when neither the step nor the playbook sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of the webhook's answer read: only its status matters.
const BODY_LIMIT: usize = 64 * 1024;

/// One message, with every template already rendered.
#[derive(Debug, Clone)]
pub struct Notification {
    pub url: String,
    /// Sent in order. A `Content-Type` here replaces `application/json`.
    pub headers: Vec<(String, String)>,
    pub run_id: String,
    pub step_id: String,
    pub message: String,
    pub timeout: Duration,
}

/// POSTs `{"run": run_id, "step": step_id, "message": message}` as `application/json`.
/// Returns the step's outputs, `{"status": code}`. Any status but 2xx is
/// [`HttpError::Rejected`]; redirects are not followed, so a 3xx is one too.
pub async fn send(n: Notification, cancel: CancellationToken) -> Result<Value, HttpError> {
    let target = http::target(&http::parse_url(&n.url)?);
    let request = HttpRequest {
        method: Method::Post,
        url: n.url,
        headers: n.headers,
        body: Some(HttpBody::Json(json!({
            "run": n.run_id,
            "step": n.step_id,
            "message": n.message,
        }))),
        expect_status: Vec::new(),
        timeout: n.timeout,
        body_limit: BODY_LIMIT,
    };
    let outcome = http::request(request, cancel).await?;
    if outcome.succeeded() {
        Ok(json!({ "status": outcome.status }))
    } else {
        Err(HttpError::Rejected {
            target,
            status: outcome.status,
        })
    }
}
