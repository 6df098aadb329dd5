//! medai's model provider layer: one trait for every model backend, an OpenAI-compatible
//! streaming client (vLLM, TGI, Ollama, llama.cpp server, Azure OpenAI), and the resilience every
//! call gets — connect, first-token and total timeouts, retries with jitter only before the first
//! token, a circuit breaker and a bounded queue per model, failover — plus streaming
//! re-identification of answers and a metrics hook.
//!
//! This crate sends text exactly as it is given: callers de-identify with `medai-phi` first, and
//! re-identify the answer with [`StreamingReidentifier`]. It never logs request or answer text,
//! never puts a secret in `Debug`, `Display` or a log line, and labels metrics by model id only.
//!
//! The server's answer path: [`ModelRegistry::chat_stream`] resolves after the first token (so a
//! full queue is still a 429 with `Retry-After`), then the [`AnswerStream`] yields deltas, each
//! passed through [`StreamingReidentifier::push`], and ends with a [`Completion`] to store as
//! provenance. Dropping the stream when the client goes away closes the upstream connection.

pub mod breaker;
pub mod config;
mod error;
mod limiter;
mod observer;
pub mod openai;
mod provider;
mod registry;
mod reidentify;
pub mod sse;
mod types;

pub use breaker::{CircuitState, Clock, ManualClock, SystemClock};
pub use config::{ConfigError, EmbeddedConfig, LlmConfig, ModelConfig};
pub use error::{ErrorKind, LlmError};
pub use observer::{LlmObserver, NoopObserver};
pub use openai::OpenAiProvider;
pub use provider::{BoxFuture, EventStream, ModelProvider};
pub use registry::{AnswerStream, ModelRegistry, ModelStatus, ProviderFactory, Resilience};
pub use reidentify::StreamingReidentifier;
pub use types::{
    ChatRequest, Completion, Health, Message, ModelDescription, ProviderKind, Role, SamplingParams,
    StreamEvent, Timing, Usage,
};
