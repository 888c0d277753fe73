//! Attempts of the kinds that talk to another service: `http`, `sql`, `notify`. The
#![allow(clippy::result_large_err)] // as in attempt.rs
//! executors live in [`crate::exec`]; this file renders their inputs.

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::attempt::{Ended, Input, render};
use crate::exec;
use crate::playbook::kinds::StepKind;

pub(super) async fn attempt(input: &Input<'_>, cancel: CancellationToken) -> Result<Ended, Ended> {
    let mask = |e: &dyn std::fmt::Display| Ended::failed(input.secrets.mask(&e.to_string()));
    match &input.step.kind {
        StepKind::Http(http) => {
            let mut headers = Vec::new();
            for (name, value) in &http.headers.0 {
                headers.push((name.value.clone(), render(value, input, "headers")?));
            }
            let body = match (&http.body, &http.json) {
                (Some(t), _) => Some(exec::http::HttpBody::Text(render(t, input, "body")?)),
                (None, Some(json)) => Some(exec::http::HttpBody::Json(render_json(json, input)?)),
                (None, None) => None,
            };
            let request = exec::http::HttpRequest {
                method: http.method,
                url: render(&http.url, input, "url")?,
                headers,
                body,
                expect_status: http.expect_status.clone(),
                timeout: input.timeout,
                body_limit: exec::http::DEFAULT_BODY_LIMIT,
            };
            let outcome = exec::http::request(request, cancel)
                .await
                .map_err(|e| mask(&e))?;
            Ok(Ended {
                outputs: Some(outcome.outputs),
                error: outcome.error,
                ..Ended::default()
            })
        }
        StepKind::Sql(sql) => {
            let mut args = Vec::new();
            for a in &sql.args {
                args.push(render(a, input, "args")?);
            }
            let query = exec::sql::SqlQuery {
                url: render(&sql.url, input, "url")?,
                query: sql.query.value.clone(),
                args,
                timeout: input.timeout,
                row_limit: exec::sql::DEFAULT_ROW_LIMIT,
                bytes_limit: exec::sql::DEFAULT_BYTES_LIMIT,
            };
            let outcome = exec::sql::query(query, cancel)
                .await
                .map_err(|e| mask(&e))?;
            Ok(Ended::ok(Some(outcome.outputs)))
        }
        StepKind::Notify(notify) => {
            let mut headers = Vec::new();
            for (name, value) in &notify.headers.0 {
                headers.push((name.value.clone(), render(value, input, "headers")?));
            }
            let n = exec::notify::Notification {
                url: render(&notify.url, input, "url")?,
                headers,
                run_id: input.run.id.clone(),
                step_id: input.step.id.value.clone(),
                message: render(&notify.message, input, "message")?,
                timeout: input.timeout,
            };
            let outputs = exec::notify::send(n, cancel).await.map_err(|e| mask(&e))?;
            Ok(Ended::ok(Some(outputs)))
        }
        _ => Err(Ended::failed("not a remote step")),
    }
}

/// A `json:` body with its string values rendered as templates.
fn render_json(value: &Value, input: &Input<'_>) -> Result<Value, Ended> {
    Ok(match value {
        Value::String(s) if s.contains("{{") => {
            let t = crate::playbook::template::Template::parse(s, input.step.location)
                .map_err(|e| Ended::failed(format!("bad template in `json`: {}", e.message)))?;
            Value::String(render(&t, input, "json")?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, input))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, input)?)))
                .collect::<Result<_, Ended>>()?,
        ),
        other => other.clone(),
    })
}
