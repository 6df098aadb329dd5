//! What goes to a model and what comes back.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Who wrote a message of the conversation sent to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions framing the assistant.
    System,
    /// The clinician's (de-identified) text.
    User,
    /// An earlier answer of the model.
    Assistant,
}

/// One message of the conversation. The text must already be de-identified: this crate sends it
/// as it is.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The (de-identified) text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

// Message text may quote a record; keep it out of logs even when de-identified.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("role", &self.role)
            .field("len", &self.content.len())
            .finish()
    }
}

/// Sampling parameters. `None` leaves the choice to the model's configured defaults, then to the
/// upstream server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, greater than 0 and at most 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Strings that end generation (at most 4, as OpenAI allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed for reproducible sampling where the server supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl SamplingParams {
    /// `self` with every unset field taken from `defaults`.
    pub fn or(&self, defaults: &SamplingParams) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.or(defaults.temperature),
            top_p: self.top_p.or(defaults.top_p),
            max_tokens: self.max_tokens.or(defaults.max_tokens),
            stop: if self.stop.is_empty() {
                defaults.stop.clone()
            } else {
                self.stop.clone()
            },
            seed: self.seed.or(defaults.seed),
        }
    }

    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(format!("temperature must be between 0 and 2, got {t}"));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!(
                    "top_p must be greater than 0 and at most 1, got {p}"
                ));
            }
        }
        if self.max_tokens == Some(0) {
            return Err("max_tokens must be at least 1".into());
        }
        if self.stop.len() > 4 {
            return Err(format!(
                "stop holds at most 4 strings, got {}",
                self.stop.len()
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err("stop strings must not be empty".into());
        }
        Ok(())
    }
}

/// One chat completion request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Parameters for this request; unset ones come from the model's defaults.
    pub params: SamplingParams,
}

/// Token counts as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// How long an answer took, measured by this crate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// From the call to the first token of text (retries included).
    #[serde(with = "humantime_serde")]
    pub first_token: Duration,
    /// From the call to the end of the stream.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
}

/// Everything known about a finished answer: what produced it, what it cost, how long it took.
/// The server stores this as the answer's provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The configured id of the model that answered (the failover's id after a failover).
    pub model_id: String,
    /// The kind of provider ("openai", "azure", "embedded").
    pub provider: String,
    /// The model name and version the upstream reported in its chunks, if it did.
    pub upstream_model: Option<String>,
    /// The parameters sent, after defaults were applied.
    pub params: SamplingParams,
    /// Token counts, if the upstream reported them.
    pub usage: Option<Usage>,
    /// Why generation stopped ("stop", "length", ...), if the upstream said.
    pub finish_reason: Option<String>,
    /// Latencies.
    pub timing: Timing,
    /// Attempts made on the model that answered (1 without retries).
    pub attempts: u32,
    /// Whether the primary model failed and this answer came from its failover.
    pub failover: bool,
}

/// One item of an answer stream: text, then exactly one `Done` at the end.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of generated text (never empty).
    Delta(String),
    /// The answer is complete.
    Done(Box<Completion>),
}

/// The kind of upstream API a model is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any server speaking OpenAI's chat completions: vLLM, TGI, Ollama, llama.cpp, OpenAI.
    Openai,
    /// Azure OpenAI: deployment paths, `api-version`, `api-key` header.
    Azure,
    /// A GGUF model run in-process by the embedded engine (`medai-engine`); the server supplies
    /// the provider through [`crate::ProviderFactory`].
    Embedded,
}

impl ProviderKind {
    /// The name used in config, provenance and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Azure => "azure",
            Self::Embedded => "embedded",
        }
    }
}

/// A model as `medai model list` shows it: nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDescription {
    /// The configured id.
    pub id: String,
    /// The kind of provider.
    pub provider: ProviderKind,
    /// Where requests go (no credentials: those are never part of an endpoint).
    pub endpoint: String,
    /// The upstream model name sent with requests (the deployment for Azure).
    pub upstream_model: String,
    /// Context window in tokens.
    pub context_window: u32,
    /// Parameters applied when a request leaves them unset.
    pub default_params: SamplingParams,
}

/// Whether a model answered a cheap probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// True when the probe succeeded.
    pub ok: bool,
    /// How long the probe took.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// A short reason when not ok ("status 503", "connect"); never a secret.
    pub detail: Option<String>,
}
