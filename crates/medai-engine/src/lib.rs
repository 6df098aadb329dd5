//! medai's embedded inference engine: GGUF quantised models of the Qwen2/Qwen2.5 and Llama
//! families (SmolLM2 is Llama-shaped) run in-process on [candle], behind medai-llm's
//! [`ModelProvider`] trait, so `medai serve` can answer with no other server installed.
//!
//! - [`Engine::load`] reads the GGUF file and the `tokenizer.json`, renders the model's own chat
//!   template (from the GGUF metadata `tokenizer.chat_template`, with the functions Hugging Face
//!   templates use), and runs a warm-up forward pass over the configured system prompt, whose
//!   keys and values it keeps: a request that starts with them runs only what follows (as does
//!   the next turn of the conversation run last).
//! - Inference runs on one dedicated thread per model, never on the async executor. Requests wait
//!   in a bounded queue (one generation at a time per model); a full queue is refused at once with
//!   [`LlmError::QueueFull`].
//! - Tokens stream as [`StreamEvent::Delta`]s, then one [`StreamEvent::Done`] with token counts.
//!   Temperature, top-p, max tokens, stop sequences (never emitted, even when split across
//!   tokens) and seed (same seed, same answer) are honoured; a prompt that does not fit the
//!   context window is refused before anything is generated.
//! - Dropping the stream cancels the generation: the worker checks before every token.
//! - [`Engine::stats`] gives queue depth, requests running and latency histograms for metrics.
//!
//! The engine never logs prompt or answer text.
//!
//! [candle]: https://github.com/huggingface/candle
//! [`ModelProvider`]: medai_llm::ModelProvider
//! [`LlmError::QueueFull`]: medai_llm::LlmError::QueueFull
//! [`StreamEvent::Delta`]: medai_llm::StreamEvent::Delta
//! [`StreamEvent::Done`]: medai_llm::StreamEvent::Done

mod engine;
mod error;
#[cfg(feature = "fixtures")]
pub mod fixture;
mod model;
mod sample;
mod stats;
mod template;
mod text;
mod transformer;
mod worker;

pub use engine::{Engine, EngineConfig};
pub use error::EngineError;
pub use model::Arch;
pub use stats::{EngineStats, Histogram, INTER_TOKEN_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS};
pub use template::ChatTemplate;
