//! The metrics hook. The server implements [`LlmObserver`] with Prometheus; every label this
//! crate passes is a configured model id or a fixed kind, never request content or patient data.

use crate::breaker::CircuitState;
use crate::error::ErrorKind;
use crate::types::Usage;
use std::time::Duration;

/// Receives events of the provider layer. Methods are called on the request path: keep them
/// cheap (counter and histogram updates), never block.
pub trait LlmObserver: Send + Sync {
    /// A request for `model` was accepted into the queue or started at once.
    fn request_started(&self, model: &str) {
        let _ = model;
    }
    /// A request ended; `error` is `None` when the answer completed.
    fn request_finished(&self, model: &str, error: Option<ErrorKind>) {
        let _ = (model, error);
    }
    /// The first token arrived after `latency` (from the call, retries included).
    fn first_token(&self, model: &str, latency: Duration) {
        let _ = (model, latency);
    }
    /// An answer completed after `latency`, with the upstream's token counts if it gave them.
    fn completed(&self, model: &str, latency: Duration, usage: Option<Usage>) {
        let _ = (model, latency, usage);
    }
    /// One attempt failed (retries are counted one by one).
    fn upstream_error(&self, model: &str, kind: ErrorKind) {
        let _ = (model, kind);
    }
    /// The model's circuit breaker changed state.
    fn circuit_state(&self, model: &str, state: CircuitState) {
        let _ = (model, state);
    }
    /// Requests waiting for a slot of `model` changed to `depth`.
    fn queue_depth(&self, model: &str, depth: usize) {
        let _ = (model, depth);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl LlmObserver for NoopObserver {}
