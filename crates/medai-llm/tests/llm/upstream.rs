//! A scriptable OpenAI-compatible server for tests and the benchmark. It speaks the streaming
//! protocol as vLLM does (`text/event-stream`, one `data:` event per chunk, a usage chunk with
//! empty `choices`, `data: [DONE]`), writes the body in byte pieces chosen by the script (inside
//! UTF-8 characters, inside surrogates), can delay, hang, or drop the connection mid-stream,
//! answers error statuses with JSON bodies, and records every request it receives. It also notices
//! when a client goes away before the body was written to the end.

#![allow(
    dead_code,
    reason = "shared by the tests and the benchmark; each uses a part"
)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How a streamed body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// After the last piece (which normally holds `[DONE]`).
    Finish,
    /// The connection is dropped after the last piece.
    Disconnect,
    /// The body stays open and silent.
    Hang,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A streamed answer.
    Stream {
        /// Wait before sending the status and headers.
        header_delay: Duration,
        /// Wait after the headers, before the first piece.
        first_delay: Duration,
        /// Wait between pieces.
        gap: Duration,
        /// The body, piece by piece.
        pieces: Vec<Vec<u8>>,
        /// What happens after the last piece.
        end: End,
    },
    /// An error status with a body.
    Error {
        /// The status.
        status: u16,
        /// The body (JSON in the servers' styles).
        body: String,
        /// A `Retry-After` header in seconds.
        retry_after: Option<u64>,
    },
}

impl Reply {
    /// A prompt answer: one piece per event.
    pub fn tokens(tokens: &[&str]) -> Self {
        Self::pieces(sse_events(
            tokens,
            "test-model-v1",
            Some((11, tokens.len())),
        ))
    }

    /// A prompt answer made of the given pieces.
    pub fn pieces(pieces: Vec<Vec<u8>>) -> Self {
        Self::Stream {
            header_delay: Duration::ZERO,
            first_delay: Duration::ZERO,
            gap: Duration::ZERO,
            pieces,
            end: End::Finish,
        }
    }

    /// An OpenAI-style error.
    pub fn error(status: u16, message: &str) -> Self {
        Self::Error {
            status,
            body: serde_json::json!({"error": {"message": message, "type": "test"}}).to_string(),
            retry_after: None,
        }
    }

    /// Sets the delays of a stream.
    pub fn delayed(mut self, header: Duration, first: Duration, between: Duration) -> Self {
        if let Self::Stream {
            header_delay,
            first_delay,
            gap,
            ..
        } = &mut self
        {
            *header_delay = header;
            *first_delay = first;
            *gap = between;
        }
        self
    }

    /// Sets how a stream ends.
    pub fn ending(mut self, how: End) -> Self {
        if let Self::Stream { end, .. } = &mut self {
            *end = how;
        }
        self
    }
}

/// The events of a streamed answer, one byte vector per event: a role chunk, one chunk per
/// token, a chunk with the finish reason, a usage chunk when `usage` is given, then `[DONE]`.
pub fn sse_events(tokens: &[&str], model: &str, usage: Option<(usize, usize)>) -> Vec<Vec<u8>> {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let v = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        format!("data: {v}\n\n").into_bytes()
    };
    let mut events = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )];
    for t in tokens {
        events.push(chunk(serde_json::json!({"content": t}), None));
    }
    events.push(chunk(serde_json::json!({}), Some("stop")));
    if let Some((prompt, completion)) = usage {
        let v = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        });
        events.push(format!("data: {v}\n\n").into_bytes());
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// Cuts the concatenated body into pieces of the given sizes (cycled), wherever they fall.
pub fn cut_every(events: &[Vec<u8>], sizes: &[usize]) -> Vec<Vec<u8>> {
    let body: Vec<u8> = events.concat();
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < body.len() {
        let size = sizes[k % sizes.len()].max(1);
        let end = (at + size).min(body.len());
        pieces.push(body[at..end].to_vec());
        at = end;
        k += 1;
    }
    pieces
}

/// What the server received.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The path.
    pub path: String,
    /// The query string.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: serde_json::Value,
    /// The body as text.
    pub raw: String,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    captured: Mutex<Vec<Captured>>,
    cut_short: AtomicUsize,
    cut_short_notify: Notify,
    chat_requests: AtomicUsize,
    durations: Mutex<Vec<Duration>>,
}

/// A running server.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts a server on a free local port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies for the next chat requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// The reply once the script is used up.
    pub fn always(&self, reply: Reply) {
        *self.shared.fallback.lock().unwrap() = Some(reply);
    }

    /// Every request received so far.
    pub fn captured(&self) -> Vec<Captured> {
        self.shared.captured.lock().unwrap().clone()
    }

    /// Chat requests received so far.
    pub fn chat_requests(&self) -> usize {
        self.shared.chat_requests.load(Ordering::SeqCst)
    }

    /// How long each completed stream took on the server, from receiving the request to the
    /// last piece written (taken: the list is emptied).
    pub fn take_durations(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.shared.durations.lock().unwrap())
    }

    /// Bodies whose client went away before the end.
    pub fn cut_short(&self) -> usize {
        self.shared.cut_short.load(Ordering::SeqCst)
    }

    /// Waits until a client has gone away mid-body.
    pub async fn wait_cut_short(&self, at_least: usize) {
        loop {
            let notified = self.shared.cut_short_notify.notified();
            if self.cut_short() >= at_least {
                return;
            }
            notified.await;
        }
    }
}

/// Notices a body dropped before its end: hyper drops the body when the connection closes.
struct BodyGuard {
    shared: Arc<Shared>,
    finished: bool,
    started: std::time::Instant,
}

impl BodyGuard {
    fn done(&mut self) {
        self.finished = true;
        let took = self.started.elapsed();
        self.shared.durations.lock().unwrap().push(took);
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cut_short.fetch_add(1, Ordering::SeqCst);
            self.shared.cut_short_notify.notify_waiters();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let path = parts.uri.path().to_string();
    shared.captured.lock().unwrap().push(Captured {
        path: path.clone(),
        query: parts.uri.query().map(String::from),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        raw,
    });
    if path.ends_with("/models") {
        return (
            [("content-type", "application/json")],
            r#"{"object":"list","data":[{"id":"test-model-v1","object":"model"}]}"#,
        )
            .into_response();
    }
    if !path.ends_with("/chat/completions") {
        return StatusCode::NOT_FOUND.into_response();
    }
    shared.chat_requests.fetch_add(1, Ordering::SeqCst);
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| shared.fallback.lock().unwrap().clone())
        .unwrap_or_else(|| Reply::error(500, "no scripted reply"));
    match reply {
        Reply::Error {
            status,
            body,
            retry_after,
        } => {
            let mut response = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some(s) = retry_after {
                response = response.header("retry-after", s.to_string());
            }
            response.body(Body::from(body)).unwrap()
        }
        Reply::Stream {
            header_delay,
            first_delay,
            gap,
            pieces,
            end,
        } => {
            tokio::time::sleep(header_delay).await;
            let guard = BodyGuard {
                shared: Arc::clone(&shared),
                finished: false,
                started,
            };
            let state = (guard, VecDeque::from(pieces), true);
            let stream = futures_util::stream::unfold(
                state,
                move |(mut guard, mut rest, first)| async move {
                    if !rest.is_empty() {
                        tokio::time::sleep(if first { first_delay } else { gap }).await;
                    }
                    match rest.pop_front() {
                        Some(piece) => Some((Ok(bytes::Bytes::from(piece)), (guard, rest, false))),
                        None => match end {
                            End::Finish => {
                                guard.done();
                                None
                            }
                            End::Disconnect => {
                                // let the pieces already written reach the socket first
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                guard.done();
                                Some((
                                    Err(std::io::Error::other("scripted disconnect")),
                                    (guard, rest, false),
                                ))
                            }
                            End::Hang => {
                                std::future::pending::<()>().await;
                                None
                            }
                        },
                    }
                },
            );
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}
