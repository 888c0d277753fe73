//! Black-box tests of the `http` and `notify` executors against real HTTP/1.1 servers on
//! loopback: each test starts a small server on port 0 that records what it received and
//! answers with canned bytes. Time only appears as short step timeouts and generous upper
//! bounds that fail a test instead of letting it hang.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runway::exec::http::{self, HttpBody, HttpError, HttpOutcome, HttpRequest};
use runway::exec::notify::{self, Notification};
use runway::playbook::kinds::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longer than any request here should take; reaching it means the executor hung.
const HANG: Duration = Duration::from_secs(60);
/// A step timeout short enough to wait out in a test.
const SHORT: Duration = Duration::from_millis(300);

const URL_SECRET: &str = "s3cr3t-in-query";
const PASSWORD_SECRET: &str = "pa55word-in-userinfo";
const HEADER_SECRET: &str = "Bearer t0ken-in-header";

/// What the server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    /// Path and query, as sent.
    target: String,
    /// Lower-case names, in order; a repeated header appears twice.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How the server answers a request.
#[derive(Clone)]
enum Answer {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// Nothing at all; the connection stays open.
    Silence,
    /// The head of a response whose body never comes.
    HeadOnly(Vec<u8>),
}

struct Server {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request the server received.
    async fn next(&mut self) -> Received {
        bounded(self.received.recv())
            .await
            .expect("the server received a request")
    }

    /// Whether the server received another request (none is expected).
    fn has_more(&mut self) -> bool {
        self.received.try_recv().is_ok()
    }
}

/// A server on a free loopback port answering every request with `answer`.
async fn serve(answer: Answer) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, received) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, answer) = (tx.clone(), answer.clone());
            tokio::spawn(async move { handle(stream, tx, &answer).await });
        }
    });
    Server { addr, received }
}

async fn handle(mut stream: TcpStream, tx: mpsc::UnboundedSender<Received>, answer: &Answer) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let _ = tx.send(request);
    match answer {
        Answer::Bytes(bytes) => {
            let _ = stream.write_all(bytes).await;
            let _ = stream.shutdown().await;
        }
        Answer::Silence => hold(stream).await,
        Answer::HeadOnly(head) => {
            let _ = stream.write_all(head).await;
            hold(stream).await;
        }
    }
}

/// Keeps the connection open until the client goes away.
async fn hold(mut stream: TcpStream) {
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        target,
        headers,
        body,
    })
}

/// A complete response with these headers and body.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut bytes = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        bytes.push_str(&format!("{name}: {value}\r\n"));
    }
    bytes.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    Answer::Bytes(bytes)
}

fn json_response(status: &str, body: &Value) -> Answer {
    response(
        status,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .expect("the executor did not return")
}

async fn send(req: HttpRequest) -> Result<HttpOutcome, HttpError> {
    bounded(http::request(req, CancellationToken::new())).await
}

async fn get(url: String) -> HttpOutcome {
    send(HttpRequest::new(Method::Get, url))
        .await
        .expect("the server answered")
}

/// A URL on `server` carrying secrets in its userinfo and query, and a request for it with a
/// secret header.
fn secret_request(addr: SocketAddr) -> HttpRequest {
    let mut req = HttpRequest::new(
        Method::Get,
        format!("http://runway:{PASSWORD_SECRET}@{addr}/hook?token={URL_SECRET}"),
    );
    req.headers = vec![("Authorization".into(), HEADER_SECRET.into())];
    req
}

fn assert_no_secret(message: &str) {
    for secret in [
        URL_SECRET,
        PASSWORD_SECRET,
        HEADER_SECRET,
        "t0ken-in-header",
    ] {
        assert!(
            !message.contains(secret),
            "`{secret}` leaked into: {message}"
        );
    }
}

/// A port nothing listens on: bound, then released.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn a_json_body_becomes_outputs_json() {
    let mut server = serve(json_response(
        "200 OK",
        &json!({"overall": "GREEN", "p95_ms": 12}),
    ))
    .await;
    let outcome = get(server.url("/health/golive?verbose=1")).await;

    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.status, 200);
    let out = &outcome.outputs;
    assert_eq!(out["status"], 200);
    assert_eq!(out["json"], json!({"overall": "GREEN", "p95_ms": 12}));
    assert_eq!(out["body"], r#"{"overall":"GREEN","p95_ms":12}"#);
    assert_eq!(out["body_truncated"], false);
    assert_eq!(out["headers"]["content-type"], "application/json");
    let got = server.next().await;
    assert_eq!(got.method, "GET");
    assert_eq!(got.target, "/health/golive?verbose=1");
    assert!(got.body.is_empty());
}

#[tokio::test]
async fn a_text_body_is_kept_as_text_without_json() {
    let server = serve(response(
        "200 OK",
        &[("Content-Type", "text/plain"), ("X-Trace", "abc")],
        b"all good",
    ))
    .await;
    let outcome = get(server.url("/")).await;

    assert!(outcome.succeeded());
    assert_eq!(outcome.outputs["body"], "all good");
    assert_eq!(outcome.outputs["headers"]["x-trace"], "abc");
    assert!(
        outcome.outputs.get("json").is_none(),
        "{:?}",
        outcome.outputs
    );
}

#[tokio::test]
async fn a_listed_status_is_a_success_even_when_not_2xx() {
    let server = serve(json_response(
        "503 Service Unavailable",
        &json!({"overall": "RED"}),
    ))
    .await;
    let mut req = HttpRequest::new(Method::Get, server.url("/health"));
    req.expect_status = vec![200, 503];
    let outcome = send(req).await.unwrap();

    assert_eq!(outcome.error, None);
    assert_eq!(outcome.status, 503);
    assert_eq!(outcome.outputs["json"]["overall"], "RED");
}

#[tokio::test]
async fn an_unexpected_status_is_an_error_and_keeps_the_outputs() {
    let server = serve(json_response(
        "503 Service Unavailable",
        &json!({"overall": "RED"}),
    ))
    .await;
    let mut req = HttpRequest::new(Method::Get, server.url("/health"));
    req.expect_status = vec![200];
    let outcome = send(req).await.unwrap();

    assert_eq!(
        outcome.error.as_deref(),
        Some("status 503 is not one of the expected [200]")
    );
    assert_eq!(outcome.outputs["status"], 503);
    assert_eq!(outcome.outputs["json"]["overall"], "RED");
}

#[tokio::test]
async fn without_expect_status_anything_but_2xx_is_an_error() {
    let server = serve(response("404 Not Found", &[], b"no")).await;
    let outcome = get(server.url("/missing")).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("status 404 is not a success (2xx)")
    );
}

#[tokio::test]
async fn a_redirect_is_a_status_and_is_not_followed() {
    let mut target = serve(response("200 OK", &[], b"elsewhere")).await;
    let mut server = serve(response(
        "302 Found",
        &[("Location", &target.url("/elsewhere"))],
        b"",
    ))
    .await;
    let outcome = get(server.url("/old")).await;

    assert_eq!(outcome.status, 302);
    assert_eq!(
        outcome.error.as_deref(),
        Some("status 302 is not a success (2xx)")
    );
    assert_eq!(
        outcome.outputs["headers"]["location"],
        target.url("/elsewhere")
    );
    server.next().await;
    assert!(!target.has_more(), "the redirect was followed");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = serve(Answer::Silence).await;
    let mut req = HttpRequest::new(Method::Get, server.url("/slow"));
    req.timeout = SHORT;
    let err = send(req).await.unwrap_err();

    assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
    assert!(err.is_timeout());
    assert_eq!(
        err.to_string(),
        format!("no response from http://{}/slow within 300ms", server.addr)
    );
}

#[tokio::test]
async fn a_body_that_never_comes_times_out() {
    let server = serve(Answer::HeadOnly(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec(),
    ))
    .await;
    let mut req = HttpRequest::new(Method::Get, server.url("/stall"));
    req.timeout = SHORT;
    let err = send(req).await.unwrap_err();

    assert!(matches!(err, HttpError::BodyTimeout { .. }), "{err:?}");
    assert!(err.is_timeout());
}

#[tokio::test]
async fn cancelling_ends_the_request() {
    let mut server = serve(Answer::Silence).await;
    let cancel = CancellationToken::new();
    let mut req = HttpRequest::new(Method::Get, server.url("/slow"));
    req.timeout = HANG;
    let attempt = tokio::spawn(http::request(req, cancel.clone()));
    // Cancel once the request is in flight.
    server.next().await;
    cancel.cancel();
    let err = bounded(attempt).await.unwrap().unwrap_err();
    assert!(matches!(err, HttpError::Cancelled), "{err:?}");
}

#[tokio::test]
async fn a_cancelled_attempt_sends_nothing() {
    let mut server = serve(response("200 OK", &[], b"")).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = bounded(http::request(
        HttpRequest::new(Method::Post, server.url("/mutate")),
        cancel,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, HttpError::Cancelled), "{err:?}");
    // A request would have reached the server long before this.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!server.has_more());
}

#[tokio::test]
async fn a_body_over_the_limit_is_truncated_marked_and_not_parsed() {
    // A valid JSON array of 20,000 bytes or so.
    let body = format!("[{}1]", "1,".repeat(10_000));
    let server = serve(response(
        "200 OK",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    ))
    .await;
    let mut req = HttpRequest::new(Method::Get, server.url("/big"));
    req.body_limit = 1000;
    let outcome = send(req).await.unwrap();

    assert!(outcome.succeeded());
    assert_eq!(outcome.outputs["body_truncated"], true);
    assert_eq!(outcome.outputs["body"], &body[..1000]);
    assert!(outcome.outputs.get("json").is_none());
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_whole() {
    let server = serve(response("200 OK", &[], b"[1,2,3]")).await;
    let mut req = HttpRequest::new(Method::Get, server.url("/"));
    req.body_limit = 7;
    let outcome = send(req).await.unwrap();
    assert_eq!(outcome.outputs["body_truncated"], false);
    assert_eq!(outcome.outputs["json"], json!([1, 2, 3]));
}

#[tokio::test]
async fn a_json_body_is_posted_as_application_json_with_the_headers() {
    let mut server = serve(response("201 Created", &[], b"")).await;
    let mut req = HttpRequest::new(Method::Post, server.url("/tenants"));
    req.body = Some(HttpBody::Json(
        json!({"slug": "greenwood-high", "seats": 40}),
    ));
    req.headers = vec![
        ("Authorization".into(), "Bearer abc".into()),
        ("X-Tag".into(), "one".into()),
        ("x-tag".into(), "two".into()),
    ];
    let outcome = send(req).await.unwrap();

    assert!(outcome.succeeded(), "{outcome:?}");
    let got = server.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-type"), ["application/json"]);
    assert_eq!(got.header("authorization"), ["Bearer abc"]);
    assert_eq!(got.header("x-tag"), ["one", "two"]);
    let sent: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(sent, json!({"slug": "greenwood-high", "seats": 40}));
}

#[tokio::test]
async fn a_content_type_header_replaces_the_json_default() {
    let mut server = serve(response("200 OK", &[], b"")).await;
    let mut req = HttpRequest::new(Method::Put, server.url("/doc"));
    req.body = Some(HttpBody::Json(json!({"a": 1})));
    req.headers = vec![("Content-Type".into(), "application/merge-patch+json".into())];
    send(req).await.unwrap();
    let got = server.next().await;
    assert_eq!(got.method, "PUT");
    assert_eq!(got.header("content-type"), ["application/merge-patch+json"]);
}

#[tokio::test]
async fn a_text_body_is_sent_as_it_is() {
    let mut server = serve(response("200 OK", &[], b"")).await;
    let mut req = HttpRequest::new(Method::Patch, server.url("/raw"));
    req.body = Some(HttpBody::Text("a=1&b=it's".into()));
    send(req).await.unwrap();
    let got = server.next().await;
    assert_eq!(got.method, "PATCH");
    assert_eq!(got.body, b"a=1&b=it's");
    assert!(got.header("content-type").is_empty());
}

#[tokio::test]
async fn a_refused_connection_says_where_and_why() {
    let addr = closed_port().await;
    let err = send(HttpRequest::new(
        Method::Get,
        format!("http://{addr}/health"),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("could not connect to http://{addr}/health: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn a_url_that_is_not_http_is_refused_with_a_hint() {
    let err = send(HttpRequest::new(Method::Get, "ftp://x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::UnsupportedScheme { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "`url` uses the scheme `ftp`; only `http://` and `https://` URLs can be requested"
    );

    let err = send(HttpRequest::new(Method::Get, "not a url"))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::BadUrl { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "`url` is not a valid URL (relative URL without a base); write an absolute URL such as `https://host/path`"
    );
}

#[tokio::test]
async fn a_bad_header_is_refused_before_anything_is_sent() {
    let mut req = HttpRequest::new(Method::Get, "http://127.0.0.1:9/");
    req.headers = vec![("Bad Name".into(), "v".into())];
    let err = send(req).await.unwrap_err();
    assert!(matches!(err, HttpError::BadHeaderName { .. }), "{err:?}");

    let mut req = HttpRequest::new(Method::Get, "http://127.0.0.1:9/");
    req.headers = vec![("X-Token".into(), format!("{HEADER_SECRET}\r\nX-Evil: 1"))];
    let err = send(req).await.unwrap_err();
    assert!(matches!(err, HttpError::BadHeaderValue { .. }), "{err:?}");
    assert!(err.to_string().contains("`x-token`"), "{err}");
    assert_no_secret(&err.to_string());
}

#[tokio::test]
async fn no_error_message_shows_a_secret_from_the_url_or_headers() {
    // Refused.
    let addr = closed_port().await;
    let err = send(secret_request(addr)).await.unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err:?}");
    assert_no_secret(&err.to_string());
    assert_no_secret(&format!("{err:?}"));
    assert!(err.to_string().contains(&format!("http://{addr}/hook")));

    // Timed out.
    let server = serve(Answer::Silence).await;
    let mut req = secret_request(server.addr);
    req.timeout = SHORT;
    let err = send(req).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_no_secret(&err.to_string());

    // Answered with an unexpected status.
    let mut server = serve(response("401 Unauthorized", &[], b"")).await;
    let outcome = send(secret_request(server.addr)).await.unwrap();
    assert_no_secret(outcome.error.as_deref().unwrap());
    // The secrets did reach the server, where they belong.
    let got = server.next().await;
    assert_eq!(got.header("authorization"), [HEADER_SECRET]);
    assert!(got.target.contains(URL_SECRET));

    // A webhook that refuses.
    let server = serve(response("500 Internal Server Error", &[], b"")).await;
    let err = bounded(notify::send(
        notification(&secret_request(server.addr).url),
        CancellationToken::new(),
    ))
    .await
    .unwrap_err();
    assert_no_secret(&err.to_string());
}

#[tokio::test]
async fn head_has_a_status_and_headers_but_no_body() {
    let mut server = serve(Answer::Bytes(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n".to_vec(),
    ))
    .await;
    let outcome = send(HttpRequest::new(Method::Head, server.url("/")))
        .await
        .unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.outputs["body"], "");
    assert_eq!(outcome.outputs["headers"]["content-length"], "5");
    assert_eq!(server.next().await.method, "HEAD");
}

fn notification(url: &str) -> Notification {
    Notification {
        url: url.to_owned(),
        headers: vec![("X-Source".into(), "runway".into())],
        run_id: "run-42".into(),
        step_id: "tell-oncall".into(),
        message: "Go-live of greenwood-high finished".into(),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn notify_posts_the_run_step_and_message_as_json() {
    let mut server = serve(response("204 No Content", &[], b"")).await;
    let outputs = bounded(notify::send(
        notification(&server.url("/hook")),
        CancellationToken::new(),
    ))
    .await
    .unwrap();

    assert_eq!(outputs, json!({"status": 204}));
    let got = server.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.target, "/hook");
    assert_eq!(got.header("content-type"), ["application/json"]);
    assert_eq!(got.header("x-source"), ["runway"]);
    let sent: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        sent,
        json!({
            "run": "run-42",
            "step": "tell-oncall",
            "message": "Go-live of greenwood-high finished",
        })
    );
}

#[tokio::test]
async fn notify_fails_on_a_status_other_than_2xx() {
    let server = serve(response("500 Internal Server Error", &[], b"boom")).await;
    let err = bounded(notify::send(
        notification(&server.url("/hook")),
        CancellationToken::new(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, HttpError::Rejected { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "http://{}/hook answered with status 500, not a success (2xx)",
            server.addr
        )
    );
}

#[tokio::test]
async fn notify_reports_a_refused_connection() {
    let addr = closed_port().await;
    let err = bounded(notify::send(
        notification(&format!("http://{addr}/hook")),
        CancellationToken::new(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err:?}");
}
