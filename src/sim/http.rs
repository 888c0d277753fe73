//! A small HTTP/1.1 server on tokio's `TcpListener`: enough for a simulator, and correct where
//! clients care. Requests carry their body by `Content-Length` (chunked request bodies are
//! refused with 501); every response has a `Content-Length`; connections are kept alive
//! (HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`), so
//! pipelined requests are answered in order; `Expect: 100-continue` is honoured; heads and
//! bodies are bounded and a connection idle for [`IDLE`] is closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest request line plus headers.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
const MAX_BODY: usize = 1024 * 1024;
/// A kept-alive connection with no new request for this long is closed; also the longest
/// wait for the rest of a request once it has started.
pub const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The target's path, without the query.
    pub path: String,
    /// Lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What the server calls for each request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// Accepts connections until `stop` is cancelled; each connection is its own task.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler.as_ref()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// A problem with the request itself, answered with its status and then the connection is
/// closed (the rest of the stream cannot be trusted to start at a request boundary).
struct Refusal(u16, &'static str);

struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    body_len: usize,
    expects_continue: bool,
}

async fn connection<H: Handler>(mut stream: TcpStream, handler: &H) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                return refuse(&mut stream, Refusal(431, "request head too large")).await;
            }
            match tokio::time::timeout(IDLE, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        };
        let head = match parse_head(&buf[..head_end]) {
            Ok(head) => head,
            Err(refusal) => return refuse(&mut stream, refusal).await,
        };
        let body_start = head_end + 4;
        if head.expects_continue && buf.len() < body_start + head.body_len {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        while buf.len() < body_start + head.body_len {
            match tokio::time::timeout(IDLE, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
        let body = buf[body_start..body_start + head.body_len].to_vec();
        buf.drain(..body_start + head.body_len);
        let is_head = head.method == "HEAD";
        let keep_alive = head.keep_alive;
        let response = handler
            .handle(Request {
                method: head.method,
                path: head.path,
                headers: head.headers,
                body,
            })
            .await;
        stream
            .write_all(&encode(&response, keep_alive, !is_head))
            .await?;
        if !keep_alive {
            stream.shutdown().await?;
            return Ok(());
        }
    }
}

async fn refuse(stream: &mut TcpStream, Refusal(status, why): Refusal) -> std::io::Result<()> {
    let response = Response::json(status, &serde_json::json!({ "error": why }));
    stream.write_all(&encode(&response, false, true)).await?;
    stream.shutdown().await
}

fn parse_head(bytes: &[u8]) -> Result<Head, Refusal> {
    let text = std::str::from_utf8(bytes).map_err(|_| Refusal(400, "request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal(400, "malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Refusal(505, "only HTTP/1.0 and HTTP/1.1 are spoken here")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Refusal(400, "malformed method"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(Refusal(400, "malformed header line"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(Refusal(400, "malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let get = |name: &'static str| values(&headers, name);
    if get("transfer-encoding").next().is_some() {
        return Err(Refusal(501, "chunked request bodies are not supported"));
    }
    let lengths: Vec<&str> = get("content-length").collect();
    let body_len = match lengths.as_slice() {
        [] => 0,
        [one] => one
            .parse::<usize>()
            .map_err(|_| Refusal(400, "malformed Content-Length"))?,
        _ => return Err(Refusal(400, "more than one Content-Length")),
    };
    if body_len > MAX_BODY {
        return Err(Refusal(413, "request body too large"));
    }
    let connection: Vec<String> = get("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let keep_alive = if http11 {
        !connection.iter().any(|t| t == "close")
    } else {
        connection.iter().any(|t| t == "keep-alive")
    };
    let expects_continue = get("expect").any(|v| v.eq_ignore_ascii_case("100-continue"));
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_owned();
    Ok(Head {
        method: method.to_owned(),
        path,
        headers,
        keep_alive,
        body_len,
        expects_continue,
    })
}

/// The values of every header named `name` (lower case), in order.
fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn encode(response: &Response, keep_alive: bool, with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    if keep_alive {
        out.push_str(&format!(
            "Connection: keep-alive\r\nKeep-Alive: timeout={}\r\n",
            IDLE.as_secs()
        ));
    } else {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if with_body {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, u16> {
        parse_head(text.as_bytes()).map_err(|Refusal(s, _)| s)
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(head("GET / HTTP/1.1\r\nHost: x").unwrap().keep_alive);
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: close")
                .unwrap()
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\nHost: x").unwrap().keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: Keep-Alive")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn bodies_need_one_sane_content_length() {
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 12")
                .unwrap()
                .body_len,
            12
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: x").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked").err(),
            Some(501)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 99999999").err(),
            Some(413)
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert_eq!(head("GET /\r\n").err(), Some(400));
        assert_eq!(head("GET / HTTP/2").err(), Some(505));
        assert_eq!(head("GET / HTTP/1.1\r\nno colon").err(), Some(400));
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        assert_eq!(head("GET /health?x=1 HTTP/1.1").unwrap().path, "/health");
    }

    #[test]
    fn responses_always_carry_their_length() {
        let r = Response::json(200, &serde_json::json!({"a": 1}));
        let text = String::from_utf8(encode(&r, true, true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 8\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"a\":1}\n"), "{text}");
        let head_only = String::from_utf8(encode(&r, false, false)).unwrap();
        assert!(head_only.contains("Content-Length: 8\r\nConnection: close\r\n\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"));
    }
}
