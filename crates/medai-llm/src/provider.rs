//! The provider trait every model backend implements.

use crate::error::LlmError;
use crate::types::{ChatRequest, Health, ModelDescription, StreamEvent};
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;

/// A stream of answer events: text deltas, then one [`StreamEvent::Done`], or an error (after
/// which the stream ends). Dropping it cancels the upstream request.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send + 'static>>;

/// A boxed future, so the trait stays object-safe (`Arc<dyn ModelProvider>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A model backend: the OpenAI-compatible client here, the embedded engine elsewhere.
///
/// Implementations send the request as given (the caller de-identifies first), apply the model's
/// default parameters to unset ones, and never retry: retries, timeouts, the breaker and the queue
/// belong to [`crate::ModelRegistry`], which wraps every provider the same way.
pub trait ModelProvider: Send + Sync {
    /// Starts a streamed chat completion. The future resolves once the upstream accepted the
    /// request (status and headers received); tokens then come through the stream.
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<EventStream, LlmError>>;

    /// A cheap probe of the upstream (for `medai model list` and readiness).
    fn health(&self) -> BoxFuture<'_, Health>;

    /// What this model is, without secrets.
    fn describe(&self) -> &ModelDescription;
}
