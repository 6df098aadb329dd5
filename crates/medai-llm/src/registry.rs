//! The configured models and the resilience around every call: queue, breaker, timeouts,
//! retries before the first token, failover, and the metrics hook.

use crate::breaker::{BreakerPermit, CircuitBreaker, CircuitState, Clock, SystemClock};
use crate::config::ModelConfig;
use crate::config::{
    BreakerConfig, ConfigError, LimitConfig, LlmConfig, RetryConfig, TimeoutConfig,
};
use crate::error::{ErrorKind, LlmError};
use crate::limiter::ConcurrencyLimit;
use crate::observer::LlmObserver;
use crate::openai::OpenAiProvider;
use crate::provider::{EventStream, ModelProvider};
use crate::types::{ChatRequest, Health, ModelDescription, ProviderKind, StreamEvent};
use futures_util::{Stream, StreamExt};
use rand::Rng;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// How one model is protected.
#[derive(Debug, Clone, Default)]
pub struct Resilience {
    /// Timeouts (`connect` is applied by the provider's HTTP client).
    pub timeouts: TimeoutConfig,
    /// Retries before the first token.
    pub retry: RetryConfig,
    /// The breaker.
    pub breaker: BreakerConfig,
    /// Concurrency and queue.
    pub limits: LimitConfig,
}

struct ManagedModel {
    id: String,
    provider: Arc<dyn ModelProvider>,
    resilience: Resilience,
    breaker: CircuitBreaker,
    limit: ConcurrencyLimit,
    failover: Option<String>,
}

/// Builds the providers of the kinds this crate has no client for: the server implements it with
/// the embedded engine (which depends on this crate, so this crate cannot call it directly).
pub trait ProviderFactory: Send + Sync {
    /// The provider for `model` (a validated config of a kind the factory serves), or why it
    /// cannot be built (the message is shown under the model's config key).
    fn build(&self, model: &ModelConfig) -> Result<Arc<dyn ModelProvider>, String>;
}

/// What `medai model list` shows for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    /// The model, without secrets.
    pub description: ModelDescription,
    /// Whether it is the default.
    pub is_default: bool,
    /// Its failover model, if any.
    pub failover: Option<String>,
    /// Breaker state.
    pub circuit: CircuitState,
    /// Requests streaming now.
    pub in_flight: usize,
    /// Requests waiting for a slot.
    pub queue_depth: usize,
}

/// The configured models. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct ModelRegistry {
    models: HashMap<String, Arc<ManagedModel>>,
    order: Vec<String>,
    default_model: String,
    observer: Arc<dyn LlmObserver>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("models", &self.order)
            .field("default_model", &self.default_model)
            .finish_non_exhaustive()
    }
}

impl ModelRegistry {
    /// Builds the OpenAI-compatible clients of a validated-here config.
    pub fn from_config(
        config: &LlmConfig,
        observer: Arc<dyn LlmObserver>,
    ) -> Result<Self, ConfigError> {
        Self::from_config_with_clock(config, observer, Arc::new(SystemClock))
    }

    /// As [`Self::from_config`], with the clock the breakers use (tests pass a manual clock).
    pub fn from_config_with_clock(
        config: &LlmConfig,
        observer: Arc<dyn LlmObserver>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Self::from_config_with(config, observer, clock, None)
    }

    /// As [`Self::from_config_with_clock`], with a factory for the providers this crate cannot
    /// build itself (`embedded`: the server passes the engine). Without one, an `embedded` model
    /// is a configuration error.
    pub fn from_config_with(
        config: &LlmConfig,
        observer: Arc<dyn LlmObserver>,
        clock: Arc<dyn Clock>,
        factory: Option<&dyn ProviderFactory>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut registry = Self::new(&config.default_model, observer, clock);
        for (i, model) in config.models.iter().enumerate() {
            let key = format!("llm.models[{i}]");
            let provider: Arc<dyn ModelProvider> = match (model.provider, factory) {
                (ProviderKind::Embedded, Some(factory)) => factory
                    .build(model)
                    .map_err(|message| ConfigError { key, message })?,
                (ProviderKind::Embedded, None) => {
                    return Err(ConfigError {
                        key: format!("{key}.provider"),
                        message: "provider \"embedded\" needs the embedded engine, which this build does not include".into(),
                    })
                }
                _ => Arc::new(OpenAiProvider::new(model).map_err(|e| ConfigError {
                    key,
                    message: e.to_string(),
                })?),
            };
            registry.add(
                provider,
                Resilience {
                    timeouts: model.timeouts.clone(),
                    retry: model.retry.clone(),
                    breaker: model.breaker.clone(),
                    limits: model.limits.clone(),
                },
                model.failover.clone(),
            );
        }
        Ok(registry)
    }

    /// An empty registry, to which [`Self::add`] adds providers of any kind (the embedded engine).
    pub fn new(default_model: &str, observer: Arc<dyn LlmObserver>, clock: Arc<dyn Clock>) -> Self {
        Self {
            models: HashMap::new(),
            order: Vec::new(),
            default_model: default_model.to_string(),
            observer,
            clock,
        }
    }

    /// Adds (or replaces) a model under its described id.
    pub fn add(
        &mut self,
        provider: Arc<dyn ModelProvider>,
        resilience: Resilience,
        failover: Option<String>,
    ) {
        let id = provider.describe().id.clone();
        let model = ManagedModel {
            id: id.clone(),
            breaker: CircuitBreaker::new(resilience.breaker.clone(), Arc::clone(&self.clock)),
            limit: ConcurrencyLimit::new(resilience.limits.clone()),
            provider,
            resilience,
            failover,
        };
        if self.models.insert(id.clone(), Arc::new(model)).is_none() {
            self.order.push(id);
        }
    }

    /// The id used when a request names no model.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// Every model in configuration order, with breaker and queue state.
    pub fn list(&self) -> Vec<ModelStatus> {
        self.order
            .iter()
            .filter_map(|id| self.models.get(id))
            .map(|m| ModelStatus {
                description: m.provider.describe().clone(),
                is_default: m.id == self.default_model,
                failover: m.failover.clone(),
                circuit: m.breaker.state(),
                in_flight: m.limit.in_flight(),
                queue_depth: m.limit.queue_depth(),
            })
            .collect()
    }

    /// The breaker state of a model.
    pub fn circuit_state(&self, model: &str) -> Option<CircuitState> {
        self.models.get(model).map(|m| m.breaker.state())
    }

    /// Probes every model (concurrently).
    pub async fn health(&self) -> Vec<(String, Health)> {
        let probes = self
            .order
            .iter()
            .filter_map(|id| self.models.get(id))
            .map(|m| async move { (m.id.clone(), m.provider.health().await) });
        futures_util::future::join_all(probes).await
    }

    /// Starts an answer from `model` (the default when `None`). Resolves once the first token has
    /// arrived, so every error that can be answered with an HTTP status (429 with
    /// `Retry-After`, 503, 504, 502) comes here, before the server commits to a stream. Retries
    /// and failover happen inside; nothing is retried after the first token.
    ///
    /// Dropping this future, or the returned stream, cancels the upstream request and frees the
    /// model's slot.
    pub async fn chat_stream(
        &self,
        model: Option<&str>,
        request: ChatRequest,
    ) -> Result<AnswerStream, LlmError> {
        let started = Instant::now();
        let id = model.unwrap_or(&self.default_model);
        let primary = self
            .models
            .get(id)
            .ok_or_else(|| LlmError::InvalidRequest(format!("no model \"{id}\"")))?;
        let error = match self.attempt(primary, &request, started, false).await {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        let failover = primary
            .failover
            .as_ref()
            .and_then(|f| self.models.get(f))
            .filter(|_| error.kind() != ErrorKind::InvalidRequest);
        match failover {
            Some(backup) => {
                tracing::warn!(model = %primary.id, failover = %backup.id, kind = error.kind().as_str(), "model failed before its first token; failing over");
                self.attempt(backup, &request, started, true)
                    .await
                    .map_err(|_| error)
            }
            None => Err(error),
        }
    }

    async fn attempt(
        &self,
        model: &Arc<ManagedModel>,
        request: &ChatRequest,
        started: Instant,
        failover: bool,
    ) -> Result<AnswerStream, LlmError> {
        let observer = &*self.observer;
        observer.request_started(&model.id);
        let fail = |e: LlmError| {
            observer.upstream_error(&model.id, e.kind());
            observer.request_finished(&model.id, Some(e.kind()));
            e
        };
        let slot = model
            .limit
            .acquire(&model.id, observer)
            .await
            .map_err(fail)?;
        let timeouts = &model.resilience.timeouts;
        let deadline = tokio::time::Instant::now() + timeouts.total;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (permit, changed) = model.breaker.try_acquire();
            if let Some(state) = changed {
                observer.circuit_state(&model.id, state);
            }
            let permit = permit.map_err(|retry_after| {
                fail(LlmError::CircuitOpen {
                    model: model.id.clone(),
                    retry_after,
                })
            })?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = left.min(timeouts.first_token);
            let outcome = tokio::time::timeout(limit, first_event(&*model.provider, request)).await;
            let error = match outcome {
                Ok(Ok((inner, first))) => {
                    let latency = started.elapsed();
                    observer.first_token(&model.id, latency);
                    return Ok(AnswerStream {
                        first: Some(first),
                        inner,
                        deadline: Box::pin(tokio::time::sleep_until(deadline)),
                        total_timeout: timeouts.total,
                        model: Arc::clone(model),
                        observer: Arc::clone(&self.observer),
                        permit: Some(permit),
                        slot: Some(slot),
                        started,
                        first_token: latency,
                        attempts,
                        failover,
                    });
                }
                Ok(Err(e)) => e,
                Err(_) if limit < timeouts.first_token => LlmError::TimeoutTotal(timeouts.total),
                Err(_) => LlmError::TimeoutFirstToken(timeouts.first_token),
            };
            if error.kind() == ErrorKind::InvalidRequest {
                model.breaker.release(permit);
                observer.request_finished(&model.id, Some(error.kind()));
                return Err(error);
            }
            observer.upstream_error(&model.id, error.kind());
            if let Some(state) = model
                .breaker
                .record(permit, !error.counts_against_upstream())
            {
                observer.circuit_state(&model.id, state);
            }
            let retry = &model.resilience.retry;
            let backoff = backoff(retry, attempts);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !error.is_retryable() || attempts > retry.max_retries || backoff >= left {
                observer.request_finished(&model.id, Some(error.kind()));
                return Err(error);
            }
            tracing::debug!(model = %model.id, attempt = attempts, kind = error.kind().as_str(), "retrying before the first token");
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Full-jitter exponential backoff before retry number `attempt`.
fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let cap = retry
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(retry.max_delay);
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

/// Sends the request and waits for the first event (a token, or `Done` for an empty answer).
async fn first_event(
    provider: &dyn ModelProvider,
    request: &ChatRequest,
) -> Result<(EventStream, StreamEvent), LlmError> {
    let mut stream = provider.chat_stream(request).await?;
    match stream.next().await {
        Some(Ok(event)) => Ok((stream, event)),
        Some(Err(e)) => Err(e),
        None => Err(LlmError::Protocol(
            "the stream ended without an event".into(),
        )),
    }
}

/// An answer in progress: text deltas, then `Done` with the provenance. Enforces the total
/// timeout, reports to the breaker and the observer, and holds the model's slot until it ends.
/// Dropping it before the end cancels the upstream request (the connection is closed) and is
/// counted as `cancelled`.
pub struct AnswerStream {
    first: Option<StreamEvent>,
    inner: EventStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    total_timeout: Duration,
    model: Arc<ManagedModel>,
    observer: Arc<dyn LlmObserver>,
    permit: Option<BreakerPermit>,
    slot: Option<OwnedSemaphorePermit>,
    started: Instant,
    first_token: Duration,
    attempts: u32,
    failover: bool,
}

impl std::fmt::Debug for AnswerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerStream")
            .field("model", &self.model.id)
            .field("attempts", &self.attempts)
            .field("failover", &self.failover)
            .finish_non_exhaustive()
    }
}

impl AnswerStream {
    /// The configured id of the model answering (the failover's after a failover).
    pub fn model_id(&self) -> &str {
        &self.model.id
    }

    /// Whether the answer comes from the failover model.
    pub fn is_failover(&self) -> bool {
        self.failover
    }

    fn finish(&mut self, error: Option<&LlmError>) {
        self.inner = Box::pin(futures_util::stream::empty());
        self.slot = None;
        let id = &self.model.id;
        if let Some(permit) = self.permit.take() {
            let healthy = error.is_none_or(|e| !e.counts_against_upstream());
            if let Some(state) = self.model.breaker.record(permit, healthy) {
                self.observer.circuit_state(id, state);
            }
        }
        if let Some(e) = error {
            self.observer.upstream_error(id, e.kind());
        }
        self.observer
            .request_finished(id, error.map(LlmError::kind));
    }

    fn deliver(&mut self, event: StreamEvent) -> StreamEvent {
        match event {
            StreamEvent::Done(mut done) => {
                done.timing.first_token = self.first_token;
                done.timing.total = self.started.elapsed();
                done.attempts = self.attempts;
                done.failover = self.failover;
                self.observer
                    .completed(&self.model.id, done.timing.total, done.usage);
                self.finish(None);
                StreamEvent::Done(done)
            }
            delta => delta,
        }
    }
}

impl Stream for AnswerStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.slot.is_none() {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(this.deliver(first))));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let e = LlmError::TimeoutTotal(this.total_timeout);
            this.finish(Some(&e));
            return Poll::Ready(Some(Err(e)));
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(this.deliver(event)))),
            Poll::Ready(Some(Err(e))) => {
                this.finish(Some(&e));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let e = LlmError::Protocol("the stream ended without Done".into());
                this.finish(Some(&e));
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Drop for AnswerStream {
    fn drop(&mut self) {
        if self.slot.is_some() {
            if let Some(permit) = self.permit.take() {
                self.model.breaker.release(permit);
            }
            self.observer
                .upstream_error(&self.model.id, ErrorKind::Cancelled);
            self.observer
                .request_finished(&self.model.id, Some(ErrorKind::Cancelled));
        }
    }
}
