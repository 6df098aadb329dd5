//! Errors of the provider layer, with the kind used for metrics, retries and HTTP mapping.

use std::time::Duration;

/// The kind of a failure: a metric label, and what decides retries and the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The connection could not be made or the request could not be sent.
    Connect,
    /// No token arrived within the time-to-first-token limit.
    TimeoutFirstToken,
    /// The answer did not finish within the total limit.
    TimeoutTotal,
    /// The upstream answered 4xx (its body is not shown).
    Status4xx,
    /// The upstream answered 5xx.
    Status5xx,
    /// The upstream sent something that is not the streaming protocol, reported an error inside
    /// the stream, or closed the stream early.
    Protocol,
    /// The model's circuit breaker is open.
    CircuitOpen,
    /// The model's queue is full.
    QueueFull,
    /// The caller dropped the stream before it finished.
    Cancelled,
    /// The request names no configured model or breaks a parameter rule.
    InvalidRequest,
}

impl ErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::TimeoutFirstToken => "timeout_first_token",
            Self::TimeoutTotal => "timeout_total",
            Self::Status4xx => "status_4xx",
            Self::Status5xx => "status_5xx",
            Self::Protocol => "protocol",
            Self::CircuitOpen => "circuit_open",
            Self::QueueFull => "queue_full",
            Self::Cancelled => "cancelled",
            Self::InvalidRequest => "invalid_request",
        }
    }
}

/// A failure of a model call. `Display` never contains a secret, a prompt or an upstream body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// No connection or the request could not be sent.
    #[error("model upstream unreachable ({0})")]
    Connect(String),
    /// No first token in time.
    #[error("model gave no first token within {0:?}")]
    TimeoutFirstToken(Duration),
    /// The answer took too long.
    #[error("model answer exceeded {0:?}")]
    TimeoutTotal(Duration),
    /// The upstream answered with an error status. `upstream_message` is the `error.message` of
    /// its JSON body, cut short; it may quote the (de-identified) request, so log it at debug level
    /// only.
    #[error("model upstream answered status {status}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The upstream's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The upstream's error message, cut short.
        upstream_message: Option<String>,
    },
    /// The stream broke the protocol or carried an error object.
    #[error("model stream protocol error: {0}")]
    Protocol(String),
    /// The circuit breaker is open; try again after the cool-down.
    #[error("model {model} is unavailable (circuit open)")]
    CircuitOpen {
        /// The configured model id.
        model: String,
        /// Time left until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The queue is full: answer 429 with `Retry-After`.
    #[error("model {model} is busy (queue full)")]
    QueueFull {
        /// The configured model id.
        model: String,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The stream was dropped before it finished.
    #[error("cancelled")]
    Cancelled,
    /// The request cannot be served as asked.
    #[error("invalid model request: {0}")]
    InvalidRequest(String),
}

impl LlmError {
    /// The kind, for metrics and decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect(_) => ErrorKind::Connect,
            Self::TimeoutFirstToken(_) => ErrorKind::TimeoutFirstToken,
            Self::TimeoutTotal(_) => ErrorKind::TimeoutTotal,
            Self::Status { status, .. } if *status >= 500 => ErrorKind::Status5xx,
            Self::Status { .. } => ErrorKind::Status4xx,
            Self::Protocol(_) => ErrorKind::Protocol,
            Self::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Self::QueueFull { .. } => ErrorKind::QueueFull,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::InvalidRequest(_) => ErrorKind::InvalidRequest,
        }
    }

    /// Whether another attempt may succeed (only ever tried before the first token).
    /// Client errors (400, 401, 403, 404, 422) are not retried: they would fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::TimeoutFirstToken(_) | Self::Protocol(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// Whether the failure speaks against the upstream's health (counts towards the breaker).
    pub fn counts_against_upstream(&self) -> bool {
        match self {
            Self::Connect(_)
            | Self::TimeoutFirstToken(_)
            | Self::TimeoutTotal(_)
            | Self::Protocol(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status the server should answer its client with: 429 for a full queue, 503 for an
    /// open breaker or an overloaded upstream, 504 for timeouts, 502 for other upstream failures,
    /// 400 for an invalid request.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::QueueFull { .. } => 429,
            Self::CircuitOpen { .. } => 503,
            Self::Status { status: 429, .. } => 503,
            Self::TimeoutFirstToken(_) | Self::TimeoutTotal(_) => 504,
            Self::InvalidRequest(_) => 400,
            Self::Cancelled => 499,
            _ => 502,
        }
    }

    /// Seconds for a `Retry-After` header (at least 1), where waiting helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        let wait = match self {
            Self::QueueFull { retry_after, .. } | Self::CircuitOpen { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }?;
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).map(|s| s.max(1))
    }
}
