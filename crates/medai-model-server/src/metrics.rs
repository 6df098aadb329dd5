//! The serving mode's Prometheus metrics, on the internal metrics listener like the app's
//! (`/metrics`, OpenMetrics text, `medai_` prefix). Latencies are measured here, at the HTTP
//! layer, as a client sees them; queue depth and running requests come from the engine at scrape
//! time. No label carries a request, a user or text: only fixed outcome and token-kind words.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// An outcome label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// See [`Outcome`].
    pub outcome: String,
}

/// A token-kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `prompt` or `completion`.
    pub kind: String,
}

/// How a chat completion request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The answer was delivered in full.
    Ok,
    /// The client went away before the end (generation was cancelled).
    Cancelled,
    /// The request was malformed or broke a limit (400/404/413).
    Invalid,
    /// No or a wrong bearer token (401).
    Unauthorized,
    /// The queue was full (429).
    Rejected,
    /// The model was not loaded yet (503).
    NotReady,
    /// The model failed while answering.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Cancelled => "cancelled",
            Self::Invalid => "invalid",
            Self::Unauthorized => "unauthorized",
            Self::Rejected => "rejected",
            Self::NotReady => "not_ready",
            Self::Error => "error",
        }
    }
}

/// Every metric of the serving mode.
pub struct ServerMetrics {
    registry: Registry,
    /// Chat completion requests by outcome.
    pub requests: Family<OutcomeLabels, Counter>,
    /// From receiving a request to its first token of text leaving the server.
    pub time_to_first_token: Histogram,
    /// Between consecutive pieces of text of one answer.
    pub inter_token: Histogram,
    /// Generation speed of each answer: completion tokens after the first, per second after
    /// the first.
    pub tokens_per_second: Histogram,
    /// From receiving a request to the end of its answer.
    pub duration: Histogram,
    /// Tokens by kind.
    pub tokens: Family<KindLabels, Counter>,
    /// Requests waiting for the model (set at scrape time).
    pub queue_depth: Gauge,
    /// Requests the queue holds at most (set at scrape time).
    pub queue_capacity: Gauge,
    /// Requests generating now (set at scrape time).
    pub running: Gauge,
    /// Requests generated at once at most: 1 for the embedded engine (set at scrape time).
    pub max_running: Gauge,
    /// 1 once the model is loaded, 0 before (or after a failed load).
    pub model_loaded: Gauge,
    /// The engine's cached-prompt-token count at the last scrape (the counter grows by the
    /// difference).
    cached_seen: std::sync::atomic::AtomicU64,
}

fn histogram(bounds: &'static [f64]) -> Histogram {
    Histogram::new(bounds.iter().copied())
}

/// Time-to-first-token and request-duration buckets, seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Inter-token latency buckets, seconds.
pub const INTER_TOKEN_BUCKETS: &[f64] = &[0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0];
/// Tokens-per-second buckets.
pub const RATE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0,
];

impl ServerMetrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut root = Registry::with_prefix("medai");
        let registry = root.sub_registry_with_prefix("model_server");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Chat completion requests by outcome",
            requests.clone(),
        );
        let time_to_first_token = histogram(LATENCY_BUCKETS);
        registry.register(
            "time_to_first_token_seconds",
            "From receiving a request to its first token leaving the server",
            time_to_first_token.clone(),
        );
        let inter_token = histogram(INTER_TOKEN_BUCKETS);
        registry.register(
            "inter_token_latency_seconds",
            "Between consecutive pieces of one answer",
            inter_token.clone(),
        );
        let tokens_per_second = histogram(RATE_BUCKETS);
        registry.register(
            "tokens_per_second",
            "Decode speed of each answer (tokens after the first per second after the first)",
            tokens_per_second.clone(),
        );
        let duration = histogram(LATENCY_BUCKETS);
        registry.register(
            "request_duration_seconds",
            "From receiving a request to the end of its answer",
            duration.clone(),
        );
        let tokens = Family::<KindLabels, Counter>::default();
        registry.register("tokens", "Tokens by kind", tokens.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Requests waiting for the model",
            queue_depth.clone(),
        );
        let queue_capacity = Gauge::default();
        registry.register(
            "queue_capacity",
            "Requests the queue holds at most",
            queue_capacity.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "requests_running",
            "Requests generating now",
            running.clone(),
        );
        let max_running = Gauge::default();
        registry.register(
            "max_concurrent_generations",
            "Requests generated at once at most (1: one generation at a time per model)",
            max_running.clone(),
        );
        let model_loaded = Gauge::default();
        registry.register(
            "model_loaded",
            "1 once the model is loaded and serving",
            model_loaded.clone(),
        );
        for o in [
            Outcome::Ok,
            Outcome::Cancelled,
            Outcome::Invalid,
            Outcome::Unauthorized,
            Outcome::Rejected,
            Outcome::NotReady,
            Outcome::Error,
        ] {
            let _ = requests.get_or_create(&OutcomeLabels {
                outcome: o.as_str().into(),
            });
        }
        for k in ["prompt", "completion", "prompt_cached"] {
            let _ = tokens.get_or_create(&KindLabels { kind: k.into() });
        }
        Self {
            registry: root,
            requests,
            time_to_first_token,
            inter_token,
            tokens_per_second,
            duration,
            tokens,
            queue_depth,
            queue_capacity,
            running,
            max_running,
            model_loaded,
            cached_seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Brings `tokens_total{kind="prompt_cached"}` up to the engine's own count (read at scrape
    /// time; the engine's counter only grows).
    pub fn set_cached_prompt_tokens(&self, total: u64) {
        let before = self
            .cached_seen
            .fetch_max(total, std::sync::atomic::Ordering::Relaxed);
        if total > before {
            self.tokens
                .get_or_create(&KindLabels {
                    kind: "prompt_cached".into(),
                })
                .inc_by(total - before);
        }
    }

    /// Counts one finished request.
    pub fn outcome(&self, o: Outcome) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: o.as_str().into(),
            })
            .inc();
    }

    /// Adds token counts.
    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.tokens
            .get_or_create(&KindLabels {
                kind: "prompt".into(),
            })
            .inc_by(prompt);
        self.tokens
            .get_or_create(&KindLabels {
                kind: "completion".into(),
            })
            .inc_by(completion);
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
