//! One attempt of an `http` step: send one request, read a bounded body, check the status.
//!
//! Redirects are never followed: a 3xx is a status like any other, so a step only ever talks
//! to the host its playbook names, and credentials in its headers never travel on to another.
//! Proxy variables of the worker's environment (`HTTP_PROXY`...) are not used, for the same
//! reason the shell executor does not pass the worker's environment on: what a step does must
//! not depend on where the worker happens to run. Responses are not decompressed (no
//! `Accept-Encoding` is sent). `https://` is verified against the Mozilla root certificates
//! built into the binary (webpki-roots), not the machine's store.
//!
//! Error messages name the target as `scheme://host:port/path` only: the URL's user, password,
//! query and fragment, and every header value, may hold secrets and never appear in them.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::playbook::kinds::Method;
use crate::secrets::Secrets;

/// An `http` step's timeout per attempt when neither the step nor the playbook sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of response body kept in the outputs when the caller does not say otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The body of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    /// Sent as it is; no `Content-Type` is added.
    Text(String),
    /// Serialized and sent with `Content-Type: application/json` unless the headers set one.
    Json(Value),
}

/// One request, with every template already rendered.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Sent in order; a name given twice is sent twice.
    pub headers: Vec<(String, String)>,
    pub body: Option<HttpBody>,
    /// The statuses that count as success; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// From the start of the attempt to the last byte of the body kept.
    pub timeout: Duration,
    /// Bytes of response body kept; the rest is not read.
    pub body_limit: usize,
}

impl HttpRequest {
    /// A request without headers or body that accepts any 2xx, with [`DEFAULT_TIMEOUT`] and
    /// [`DEFAULT_BODY_LIMIT`].
    pub fn new(method: Method, url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            expect_status: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// The server answered. Whether the answer is a success is [`HttpOutcome::error`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutcome {
    pub status: u16,
    /// The step's outputs: `status`; `headers` (an object keyed by lower-case name, values of
    /// a repeated header joined with `", "`); `body` (at most the body limit, invalid UTF-8
    /// replaced); `body_truncated` (whether the body was longer than that); and `json`, the
    /// body parsed as JSON, present only when the whole body was read and parses, whatever its
    /// `Content-Type` says.
    pub outputs: Value,
    /// Set when the status is not one the request expects; the step should then fail.
    pub error: Option<String>,
}

impl HttpOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Why no usable answer came back. Messages never contain header values or the URL's user,
/// password, query or fragment.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "`url` is not a valid URL ({reason}); write an absolute URL such as `https://host/path`"
    )]
    BadUrl { reason: String },
    #[error(
        "`url` uses the scheme `{scheme}`; only `http://` and `https://` URLs can be requested"
    )]
    UnsupportedScheme { scheme: String },
    #[error("`{name}` is not a valid header name; use letters, digits and `-`")]
    BadHeaderName { name: String },
    #[error(
        "the value of header `{name}` cannot be sent: it contains a line break or another control character"
    )]
    BadHeaderValue { name: String },
    #[error("could not set up the HTTP client: {reason}")]
    Client { reason: String },
    #[error("could not connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("no response from {target} within {}", human(*.after))]
    Timeout { target: String, after: Duration },
    #[error("the response body from {target} did not arrive in full within {}", human(*.after))]
    BodyTimeout { target: String, after: Duration },
    #[error("the request to {target} failed: {reason}")]
    Transport { target: String, reason: String },
    #[error("{target} answered with status {status}, not a success (2xx)")]
    Rejected { target: String, status: u16 },
    #[error("cancelled")]
    Cancelled,
}

impl HttpError {
    /// Whether the attempt ran out of time (before the response, or while reading its body).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            HttpError::Timeout { .. } | HttpError::BodyTimeout { .. }
        )
    }
}

/// Sends one request and reads its answer, giving up at `req.timeout` or when `cancel` fires.
/// An unexpected status is not an `Err`: the answer is still the step's outputs, and
/// [`HttpOutcome::error`] says why the step fails.
pub async fn request(
    req: HttpRequest,
    cancel: CancellationToken,
) -> Result<HttpOutcome, HttpError> {
    let url = parse_url(&req.url)?;
    let target = target(&url);
    let secrets = secrets_of(&url, &req.headers);
    let headers = header_map(&req.headers)?;
    if cancel.is_cancelled() {
        return Err(HttpError::Cancelled);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent(concat!("runway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HttpError::Client {
            reason: secrets.mask(&innermost(&e)),
        })?;

    let mut builder = client.request(reqwest_method(req.method), url);
    match req.body {
        Some(HttpBody::Text(text)) => builder = builder.body(text),
        Some(HttpBody::Json(value)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            builder = builder.body(value.to_string());
        }
        None => {}
    }
    let builder = builder.headers(headers);

    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + req.timeout);
    let exchange = async {
        let response = match tokio::time::timeout_at(deadline, builder.send()).await {
            Err(_) => {
                return Err(HttpError::Timeout {
                    target: target.clone(),
                    after: req.timeout,
                });
            }
            Ok(Err(e)) => return Err(send_error(&e, &target, &secrets)),
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        let headers = response_headers(response.headers());
        let body =
            match tokio::time::timeout_at(deadline, read_bounded(response, req.body_limit)).await {
                Err(_) => {
                    return Err(HttpError::BodyTimeout {
                        target: target.clone(),
                        after: req.timeout,
                    });
                }
                Ok(Err(e)) => {
                    return Err(HttpError::Transport {
                        target: target.clone(),
                        reason: secrets.mask(&innermost(&e)),
                    });
                }
                Ok(Ok(b)) => b,
            };
        Ok((status, headers, body))
    };
    let (status, headers, body) = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(HttpError::Cancelled),
        r = exchange => r?,
    };
    tracing::debug!(
        method = req.method.as_str(),
        target = %target,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "http response"
    );

    let error = status_error(status, &req.expect_status);
    Ok(HttpOutcome {
        status,
        outputs: outputs(status, headers, body),
        error,
    })
}

/// A body read up to a limit.
struct Bounded {
    bytes: Vec<u8>,
    truncated: bool,
}

async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bounded, reqwest::Error> {
    let mut bytes = Vec::with_capacity(limit.min(64 * 1024));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Bounded {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bounded {
        bytes,
        truncated: false,
    })
}

fn outputs(status: u16, headers: Map<String, Value>, body: Bounded) -> Value {
    let mut out = Map::new();
    out.insert("status".into(), status.into());
    out.insert("headers".into(), Value::Object(headers));
    let json = if body.truncated || body.bytes.is_empty() {
        None
    } else {
        serde_json::from_slice::<Value>(&body.bytes).ok()
    };
    out.insert(
        "body".into(),
        Value::String(lossy_text(&body.bytes, body.truncated)),
    );
    out.insert("body_truncated".into(), Value::Bool(body.truncated));
    if let Some(json) = json {
        out.insert("json".into(), json);
    }
    Value::Object(out)
}

/// The bytes as text, invalid UTF-8 replaced. When the body limit cut a character in half,
/// its first bytes are dropped rather than shown as a replacement character.
fn lossy_text(bytes: &[u8], truncated: bool) -> String {
    let end = if truncated {
        bytes.len() - incomplete_tail(bytes)
    } else {
        bytes.len()
    };
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// How many bytes at the end of `bytes` start a UTF-8 character that is not complete.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 != 0b1000_0000 {
            let needed = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return 0,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}

fn response_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        // `HeaderName`s are already lower case.
        out.insert(name.as_str().to_owned(), Value::String(joined));
    }
    out
}

fn status_error(status: u16, expected: &[u16]) -> Option<String> {
    if expected.is_empty() {
        if (200..300).contains(&status) {
            None
        } else {
            Some(format!("status {status} is not a success (2xx)"))
        }
    } else if expected.contains(&status) {
        None
    } else {
        let list = expected
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "status {status} is not one of the expected [{list}]"
        ))
    }
}

pub(crate) fn parse_url(text: &str) -> Result<Url, HttpError> {
    // The parser's messages ("relative URL without a base", "invalid port number") never
    // quote the input, which may hold a secret.
    let url = Url::parse(text.trim()).map_err(|e| HttpError::BadUrl {
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(HttpError::UnsupportedScheme {
                scheme: other.to_owned(),
            });
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(HttpError::BadUrl {
            reason: "it has no host".into(),
        });
    }
    Ok(url)
}

/// `scheme://host:port/path`: what a message may show of a URL.
pub(crate) fn target(url: &Url) -> String {
    format!(
        "{}://{}:{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default(),
        url.path()
    )
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpError::BadHeaderName {
                name: name.escape_debug().to_string(),
            })?;
        let value = HeaderValue::from_str(value).map_err(|_| HttpError::BadHeaderValue {
            name: header.as_str().to_owned(),
        })?;
        map.append(header, value);
    }
    Ok(map)
}

fn reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn send_error(e: &reqwest::Error, target: &str, secrets: &Secrets) -> HttpError {
    let reason = secrets.mask(&innermost(e));
    if e.is_connect() {
        HttpError::Connect {
            target: target.to_owned(),
            reason,
        }
    } else {
        HttpError::Transport {
            target: target.to_owned(),
            reason,
        }
    }
}

/// The message of the deepest cause: the one that says what happened ("Connection refused",
/// "invalid peer certificate: UnknownIssuer"), where the outer layers only say where.
/// reqwest's own message is never used: it quotes the whole URL.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = e;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    if std::ptr::addr_eq(deepest, e) {
        // No cause: the error is reqwest's, and only its kind may be shown.
        return match e.downcast_ref::<reqwest::Error>() {
            Some(r) if r.is_body() => "the connection broke while the body was read".into(),
            Some(r) if r.is_decode() => "the response could not be decoded".into(),
            Some(_) => "the request failed".into(),
            None => e.to_string(),
        };
    }
    deepest.to_string()
}

/// Values that must not appear in a message (the URL's password, user, query and fragment,
/// the header values), masked out of any text that came from elsewhere (a library's error)
/// before it is shown. Our own messages never include them to start with.
pub(crate) fn secrets_of(url: &Url, headers: &[(String, String)]) -> Secrets {
    let mut values: Vec<String> = Vec::new();
    values.extend(url.password().map(str::to_owned));
    values.extend(url.password().and_then(percent_decoded));
    if !url.username().is_empty() {
        values.push(url.username().to_owned());
    }
    values.extend(url.query().map(str::to_owned));
    values.extend(url.fragment().map(str::to_owned));
    values.extend(headers.iter().map(|(_, v)| v.clone()));
    Secrets::from_values(values)
}

/// `text` with its `%XX` escapes decoded, when that changes it and gives UTF-8.
pub(crate) fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| s != text)
}

/// A duration as a playbook writes it: `300ms`, `10s`, `1m30s`.
pub(crate) fn human(d: Duration) -> String {
    crate::playbook::duration::Duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_the_limit_is_dropped_not_replaced() {
        let text = "héllo €";
        let bytes = text.as_bytes();
        assert_eq!(lossy_text(&bytes[..bytes.len() - 1], true), "héllo ");
        assert_eq!(lossy_text(&bytes[..bytes.len() - 2], true), "héllo ");
        assert_eq!(lossy_text(&bytes[..2], true), "h");
        assert_eq!(lossy_text(bytes, true), text);
        assert_eq!(lossy_text(b"a\xffb", false), "a\u{fffd}b");
        assert_eq!(lossy_text(&bytes[..2], false), "h\u{fffd}");
    }

    #[test]
    fn the_target_shows_no_credentials_query_or_fragment() {
        let url = parse_url("https://user:pw@example.com/a/b?token=s3cret#frag").unwrap();
        assert_eq!(target(&url), "https://example.com:443/a/b");
    }

    #[test]
    fn secrets_are_scrubbed_longest_first_and_percent_decoded() {
        let url = parse_url("http://me:p%40ss-word@h/?k=abcdef").unwrap();
        let s = secrets_of(&url, &[("Authorization".into(), "Bearer tok".into())]);
        assert_eq!(
            s.mask("p@ss-word p%40ss-word k=abcdef Bearer tok"),
            "*** *** *** ***"
        );
    }

    #[test]
    fn status_errors_name_the_expected_statuses() {
        assert_eq!(status_error(204, &[]), None);
        assert_eq!(
            status_error(301, &[]).as_deref(),
            Some("status 301 is not a success (2xx)")
        );
        assert_eq!(
            status_error(503, &[200]).as_deref(),
            Some("status 503 is not one of the expected [200]")
        );
        assert_eq!(status_error(503, &[200, 503]), None);
    }
}
