//! medai's own OpenAI-compatible model server (`medai serve --role model-server`): one model,
//! usually the embedded engine, behind `/v1/chat/completions` (server-sent events or one JSON
//! answer), `/v1/models`, `/healthz` and `/readyz`, for CPU nodes where vLLM is not wanted.
//!
//! - Every `/v1` request needs the bearer token ([`BearerToken`], compared in constant time); the
//!   server does not start without one.
//! - The model loads in the background; `/readyz` answers 200 only once it is loaded
//!   ([`ServerState::set_loaded`]), and `/v1` answers 503 before.
//! - Requests are checked field by field and refused with OpenAI-style JSON errors; unknown
//!   parameters are refused by name, not silently ignored.
//! - A client that goes away cancels its generation (the provider's stream is dropped).
//! - Metrics ([`ServerMetrics`]) go to a separate listener: time to first token, inter-token
//!   latency, tokens per second, queue depth and requests running.
//!
//! The server never logs prompt or answer text, and its errors never quote them.

mod auth;
mod error;
pub mod metrics;
mod wire;

pub use auth::{BearerToken, WeakToken, MAX_TOKEN_LEN, MIN_TOKEN_LEN};
pub use error::ApiError;
pub use metrics::{Outcome, ServerMetrics};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use medai_llm::{LlmError, ModelProvider, StreamEvent, Usage};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the engine reports for the load gauges, read at every scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Requests waiting.
    pub queue_depth: usize,
    /// Requests the queue holds at most.
    pub queue_capacity: usize,
    /// Requests generating now.
    pub running: usize,
    /// Requests generated at once at most.
    pub max_running: usize,
    /// Prompt tokens found in the model's kept prefix and not run again, since load.
    pub cached_prompt_tokens: u64,
}

/// A source of [`LoadStats`]; any `Fn() -> LoadStats` is one.
pub trait StatsSource: Send + Sync {
    /// The current figures.
    fn load_stats(&self) -> LoadStats;
}

impl<F: Fn() -> LoadStats + Send + Sync> StatsSource for F {
    fn load_stats(&self) -> LoadStats {
        self()
    }
}

struct Loaded {
    provider: Arc<dyn ModelProvider>,
    stats: Arc<dyn StatsSource>,
}

/// The server's shared state: settings, the model once loaded, metrics.
pub struct ServerState {
    model_id: String,
    clock: Arc<dyn medai_core::Clock>,
    token: BearerToken,
    loaded: OnceLock<Loaded>,
    failed: Mutex<Option<String>>,
    /// The metrics (exported on the metrics listener).
    pub metrics: ServerMetrics,
}

impl ServerState {
    /// State for serving `model_id` (the id clients name and `/v1/models` lists) to holders of
    /// `token`; `clock` dates the answers. Not ready until [`Self::set_loaded`].
    pub fn new(
        model_id: impl Into<String>,
        token: BearerToken,
        clock: Arc<dyn medai_core::Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            model_id: model_id.into(),
            clock,
            token,
            loaded: OnceLock::new(),
            failed: Mutex::new(None),
            metrics: ServerMetrics::new(),
        })
    }

    /// The model is loaded: start answering. A second call is ignored.
    pub fn set_loaded(&self, provider: Arc<dyn ModelProvider>, stats: Arc<dyn StatsSource>) {
        if self.loaded.set(Loaded { provider, stats }).is_ok() {
            self.metrics.model_loaded.set(1);
        }
    }

    /// Loading failed: `/readyz` says so (the reason is for the log, not for clients).
    pub fn set_failed(&self, reason: impl Into<String>) {
        if let Ok(mut f) = self.failed.lock() {
            *f = Some(reason.into());
        }
    }

    /// Whether requests are answered.
    pub fn is_ready(&self) -> bool {
        self.loaded.get().is_some()
    }

    fn has_failed(&self) -> bool {
        self.failed.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// The metrics exposition, with the load gauges refreshed.
    pub fn encode_metrics(&self) -> String {
        if let Some(l) = self.loaded.get() {
            let s = l.stats.load_stats();
            let g = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
            self.metrics.queue_depth.set(g(s.queue_depth));
            self.metrics.queue_capacity.set(g(s.queue_capacity));
            self.metrics.running.set(g(s.running));
            self.metrics.max_running.set(g(s.max_running));
            self.metrics
                .set_cached_prompt_tokens(s.cached_prompt_tokens);
        }
        self.metrics.encode()
    }
}

/// The public router: `/v1/*` behind the bearer token, `/healthz` and `/readyz` open.
pub fn router(state: Arc<ServerState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(v1)
        .fallback(|| async { ApiError::no_route() })
        .with_state(state)
}

/// The internal router: `/metrics`.
pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(st): State<Arc<ServerState>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    st.encode_metrics(),
                )
            }),
        )
        .with_state(state)
}

async fn require_token(State(st): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !st.token.admits(header) {
        if req.uri().path() == "/v1/chat/completions" {
            st.metrics.outcome(Outcome::Unauthorized);
        }
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

async fn readyz(State(st): State<Arc<ServerState>>) -> Response {
    if st.is_ready() {
        Json(json!({"status": "ready", "model": st.model_id})).into_response()
    } else {
        let status = if st.has_failed() { "failed" } else { "loading" };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": status, "model": st.model_id})),
        )
            .into_response()
    }
}

async fn models(State(st): State<Arc<ServerState>>) -> Response {
    if !st.is_ready() {
        return ApiError::not_ready().into_response();
    }
    Json(json!({"object": "list", "data": [
        {"id": st.model_id, "object": "model", "created": 0, "owned_by": "medai"}
    ]}))
    .into_response()
}

async fn chat_completions(
    State(st): State<Arc<ServerState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let received = Instant::now();
    match answer(&st, received, body).await {
        Ok(r) => r,
        Err((outcome, e)) => {
            st.metrics.outcome(outcome);
            e.into_response()
        }
    }
}

async fn answer(
    st: &Arc<ServerState>,
    received: Instant,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, (Outcome, ApiError)> {
    let invalid = |e| (Outcome::Invalid, e);
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            invalid(ApiError::too_large(MAX_BODY_BYTES))
        } else {
            invalid(ApiError::invalid(
                None,
                "the request body could not be read",
            ))
        }
    })?;
    let parsed = wire::parse(&body).map_err(invalid)?;
    if let Some(m) = parsed.model.as_deref() {
        if m != st.model_id {
            return Err(invalid(ApiError::model_not_found(m, &st.model_id)));
        }
    }
    let Some(loaded) = st.loaded.get() else {
        return Err((Outcome::NotReady, ApiError::not_ready()));
    };
    let events = loaded
        .provider
        .chat_stream(&parsed.request)
        .await
        .map_err(|e| failure(&e))?;
    let id = wire::AnswerId::new(&st.model_id, u64::try_from(st.clock.now()).unwrap_or(0));
    let tracker = Tracker::new(st.clone(), received);
    if parsed.stream {
        Ok(stream_response(events, id, parsed.include_usage, tracker))
    } else {
        collect_response(events, id, tracker).await
    }
}

fn failure(e: &LlmError) -> (Outcome, ApiError) {
    let outcome = match e {
        LlmError::InvalidRequest(_) => Outcome::Invalid,
        LlmError::QueueFull { .. } => Outcome::Rejected,
        LlmError::Cancelled => Outcome::Cancelled,
        _ => Outcome::Error,
    };
    if outcome == Outcome::Error {
        // The kind only: the provider's message may quote its input.
        tracing::error!(kind = e.kind().as_str(), "model failed to answer");
    }
    (outcome, ApiError::from(e))
}

/// Timing of one answer; records its metrics once, when it ends or is dropped.
struct Tracker {
    st: Arc<ServerState>,
    received: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    outcome: Option<Outcome>,
}

impl Tracker {
    fn new(st: Arc<ServerState>, received: Instant) -> Self {
        Self {
            st,
            received,
            first: None,
            last: None,
            outcome: None,
        }
    }

    fn text(&mut self) {
        let now = Instant::now();
        match self.last {
            None => {
                self.st
                    .metrics
                    .time_to_first_token
                    .observe(secs(now - self.received));
                self.first = Some(now);
            }
            Some(prev) => self.st.metrics.inter_token.observe(secs(now - prev)),
        }
        self.last = Some(now);
    }

    fn done(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.st
                .metrics
                .add_tokens(u64::from(u.prompt_tokens), u64::from(u.completion_tokens));
            if let (Some(first), Some(last)) = (self.first, self.last) {
                let span = secs(last - first);
                if u.completion_tokens >= 2 && span > 0.0 {
                    self.st
                        .metrics
                        .tokens_per_second
                        .observe(f64::from(u.completion_tokens - 1) / span);
                }
            }
        }
        self.outcome = Some(Outcome::Ok);
    }

    fn fail(&mut self, o: Outcome) {
        self.outcome = Some(o);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // Dropped without an end: the client went away mid-answer.
        let o = self.outcome.unwrap_or(Outcome::Cancelled);
        self.st.metrics.outcome(o);
        self.st
            .metrics
            .duration
            .observe(secs(self.received.elapsed()));
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn sse(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn stream_response(
    events: medai_llm::EventStream,
    id: wire::AnswerId,
    include_usage: bool,
    tracker: Tracker,
) -> Response {
    struct S {
        events: medai_llm::EventStream,
        id: wire::AnswerId,
        include_usage: bool,
        tracker: Tracker,
        started: bool,
        ended: bool,
    }
    let state = S {
        events,
        id,
        include_usage,
        tracker,
        started: false,
        ended: false,
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        let mut out = Vec::new();
        if !s.started {
            s.started = true;
            out.extend_from_slice(&sse(&s
                .id
                .chunk(json!({"role": "assistant", "content": ""}), None)));
        }
        match s.events.next().await {
            Some(Ok(StreamEvent::Delta(text))) => {
                s.tracker.text();
                out.extend_from_slice(&sse(&s.id.chunk(json!({"content": text}), None)));
            }
            Some(Ok(StreamEvent::Done(done))) => {
                s.tracker.done(done.usage);
                let reason = done.finish_reason.as_deref().unwrap_or("stop");
                out.extend_from_slice(&sse(&s.id.chunk(json!({}), Some(reason))));
                if s.include_usage {
                    out.extend_from_slice(&sse(&s.id.usage_chunk(done.usage.unwrap_or_default())));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                s.ended = true;
            }
            Some(Err(e)) => {
                let (outcome, err) = failure(&e);
                s.tracker.fail(outcome);
                out.extend_from_slice(&sse(&err.body()));
                s.ended = true;
            }
            None => {
                // The provider ended without `Done`: say so rather than end silently.
                s.tracker.fail(Outcome::Error);
                out.extend_from_slice(&sse(&ApiError::internal().body()));
                s.ended = true;
            }
        }
        Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(out)), s))
    });
    let mut r = Response::new(Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

async fn collect_response(
    mut events: medai_llm::EventStream,
    id: wire::AnswerId,
    mut tracker: Tracker,
) -> Result<Response, (Outcome, ApiError)> {
    let mut text = String::new();
    while let Some(item) = events.next().await {
        match item {
            Ok(StreamEvent::Delta(t)) => {
                tracker.text();
                text.push_str(&t);
            }
            Ok(StreamEvent::Done(done)) => {
                tracker.done(done.usage);
                let reason = done.finish_reason.as_deref().unwrap_or("stop");
                return Ok(
                    Json(id.completion(&text, reason, done.usage.unwrap_or_default()))
                        .into_response(),
                );
            }
            Err(e) => {
                let (o, err) = failure(&e);
                tracker.fail(o);
                // The tracker counts this outcome; the caller must not count it again.
                drop(tracker);
                return Ok(err.into_response());
            }
        }
    }
    tracker.fail(Outcome::Error);
    drop(tracker);
    Ok(ApiError::internal().into_response())
}

/// A running server.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    handle: axum_server::Handle,
    metrics_handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting connections; in-flight answers get `grace` to finish.
    pub fn shutdown(&self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        self.metrics_handle.graceful_shutdown(Some(grace));
    }

    /// Waits until both listeners have stopped.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Serves on two bound listeners (plain, or TLS on the public one when `tls` is given).
pub fn start(
    state: Arc<ServerState>,
    public: std::net::TcpListener,
    metrics: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<Running> {
    public.set_nonblocking(true)?;
    metrics.set_nonblocking(true)?;
    let addr = public.local_addr()?;
    let metrics_addr = metrics.local_addr()?;
    let handle = axum_server::Handle::new();
    let metrics_handle = axum_server::Handle::new();
    let api = router(state.clone()).into_make_service();
    let internal = metrics_router(state).into_make_service();
    let (h1, h2) = (handle.clone(), metrics_handle.clone());
    let task = tokio::spawn(async move {
        let public_srv = async move {
            match tls {
                Some(cfg) => {
                    let cfg = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
                    axum_server::from_tcp_rustls(public, cfg)
                        .handle(h1)
                        .serve(api)
                        .await
                }
                None => axum_server::from_tcp(public).handle(h1).serve(api).await,
            }
        };
        let metrics_srv = axum_server::from_tcp(metrics).handle(h2).serve(internal);
        let (a, b) = tokio::join!(public_srv, metrics_srv);
        a?;
        b
    });
    Ok(Running {
        addr,
        metrics_addr,
        handle,
        metrics_handle,
        task,
    })
}

/// Serves until `shutdown` resolves, then drains in-flight answers for up to `grace`.
pub async fn run_until(
    running: Running,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    shutdown.await;
    running.shutdown(grace);
    running.wait().await
}
