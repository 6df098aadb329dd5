//! Configuration of the models, meant to be embedded in the server's config under `[llm]`.
//!
//! Every struct denies unknown keys, and [`LlmConfig::validate`] names the key of the first
//! problem (`llm.models[1].endpoint: ...`).

use crate::types::{ProviderKind, SamplingParams};
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// All configured models.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The id of the model used when a request names none.
    pub default_model: String,
    /// The models, each with its own endpoint, limits and breaker.
    pub models: Vec<ModelConfig>,
    /// Seconds between the server's background health probes of every model (the probe behind
    /// `medai model list`), which set `medai_llm_upstream_up`; 1 to 3600, default 30.
    #[serde(default = "default_health_interval_secs")]
    pub health_interval_secs: u64,
}

fn default_health_interval_secs() -> u64 {
    30
}

/// One model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id used in requests, metrics labels and provenance (`[a-z0-9._-]`, 1 to 64 characters).
    pub id: String,
    /// `openai` (vLLM, TGI, Ollama, llama.cpp, OpenAI), `azure`, or `embedded` (a GGUF model run
    /// in-process; see [`EmbeddedConfig`]).
    pub provider: ProviderKind,
    /// Base URL: `http://vllm:8000` (the client adds `/v1/chat/completions`), or for Azure
    /// `https://NAME.openai.azure.com`. No credentials and no query in it. Not set for `embedded`.
    #[serde(default)]
    pub endpoint: String,
    /// The model name sent upstream (required for `openai`, e.g. `meta-llama/Llama-3.1-8B-Instruct`).
    #[serde(default)]
    pub model: Option<String>,
    /// Azure deployment name (required for `azure`).
    #[serde(default)]
    pub deployment: Option<String>,
    /// Azure `api-version` (required for `azure`, e.g. `2024-10-21`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Bearer token (`openai`) or `api-key` (`azure`); masked in every output. Best set through
    /// the environment, not the file.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The model's context window in tokens. For `embedded` it may be left out (or 0): the
    /// model's own, from the GGUF file, applies; a smaller value caps it.
    #[serde(default)]
    pub context_window: u32,
    /// Parameters applied when a request leaves them unset.
    #[serde(default)]
    pub params: SamplingParams,
    /// Ask for token counts in the last chunk (`stream_options.include_usage`). Turn off only
    /// for a server that rejects the field (older Azure API versions).
    #[serde(default = "default_true")]
    pub include_usage: bool,
    /// A model id to use when this one fails before its first token or its breaker is open.
    #[serde(default)]
    pub failover: Option<String>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    /// Retries before the first token.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Concurrency and queue.
    #[serde(default)]
    pub limits: LimitConfig,
    /// The model file and engine settings (required for `embedded`, refused for the others).
    #[serde(default)]
    pub embedded: Option<EmbeddedConfig>,
}

/// A model run in-process by the embedded engine (`provider = "embedded"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// The GGUF weights (Qwen2/Qwen2.5 or Llama family, e.g. SmolLM2).
    pub gguf: PathBuf,
    /// The Hugging Face `tokenizer.json` that goes with them.
    pub tokenizer: PathBuf,
    /// Requests that may wait while one generates (one generation at a time per model); one
    /// more is refused with 429. 0 to 4096, default 8.
    #[serde(default = "default_embedded_queue")]
    pub queue_capacity: usize,
    /// Run a short forward pass at load so the first request is fast (default on).
    #[serde(default = "default_true")]
    pub warmup: bool,
    /// CPU threads for inference (1 to 1024); unset uses every core.
    #[serde(default)]
    pub threads: Option<usize>,
}

fn default_embedded_queue() -> usize {
    8
}

fn default_true() -> bool {
    true
}

/// Timeouts of one model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// TCP (and TLS) connection set-up.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// From sending the request to the first token, per attempt.
    #[serde(with = "humantime_serde")]
    pub first_token: Duration,
    /// From the call to the end of the answer, retries included.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            first_token: Duration::from_secs(30),
            total: Duration::from_secs(300),
        }
    }
}

/// Retries, made only before the first token has been streamed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts after the first (0 disables retries).
    pub max_retries: u32,
    /// Backoff before the first retry; it doubles each time, with full jitter.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Longest backoff.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// The circuit breaker of one model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed requests that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before letting probes through.
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
    /// Probes let through while half-open; that many successes close the circuit.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// Concurrency limit and queue of one model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Requests streaming from the upstream at once.
    pub max_concurrent: u32,
    /// Requests allowed to wait for a slot; one more is refused with 429.
    pub max_queue: u32,
    /// Longest wait in the queue before the request is refused with 429.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// The `Retry-After` given with a 429.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 16,
            max_queue: 64,
            queue_timeout: Duration::from_secs(30),
            retry_after: Duration::from_secs(2),
        }
    }
}

impl ModelConfig {
    /// The endpoint parsed, or why it is unusable.
    pub fn endpoint_url(&self) -> Result<Url, String> {
        let url = Url::parse(&self.endpoint).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with http:// or https://".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials (use api_key)".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not contain a query or fragment".into());
        }
        Ok(url)
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            key: format!("{key}.{field}"),
            message,
        };
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !id_ok {
            return Err(err(
                "id",
                "must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'".into(),
            ));
        }
        if self.provider == ProviderKind::Embedded {
            return self.validate_embedded(key);
        }
        if self.embedded.is_some() {
            return Err(err(
                "embedded",
                "applies to provider \"embedded\" only".into(),
            ));
        }
        self.endpoint_url().map_err(|m| err("endpoint", m))?;
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match self.provider {
            ProviderKind::Openai => {
                if !present(&self.model) {
                    return Err(err("model", "required for provider \"openai\"".into()));
                }
                if self.deployment.is_some() || self.api_version.is_some() {
                    return Err(err(
                        "deployment",
                        "deployment and api_version apply to provider \"azure\" only".into(),
                    ));
                }
            }
            ProviderKind::Embedded => {}
            ProviderKind::Azure => {
                for (field, value) in [
                    ("deployment", &self.deployment),
                    ("api_version", &self.api_version),
                ] {
                    if !present(value) {
                        return Err(err(field, "required for provider \"azure\"".into()));
                    }
                }
                let deployment = self.deployment.as_deref().unwrap_or_default();
                if !deployment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    return Err(err(
                        "deployment",
                        "must be letters, digits, '.', '_' or '-'".into(),
                    ));
                }
            }
        }
        if self.context_window == 0 {
            return Err(err("context_window", "must be at least 1".into()));
        }
        self.validate_common(key)
    }

    /// The checks of an `embedded` model.
    fn validate_embedded(&self, key: &str) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            key: format!("{key}.{field}"),
            message,
        };
        if !self.endpoint.is_empty() {
            return Err(err(
                "endpoint",
                "provider \"embedded\" runs in-process and takes no endpoint".into(),
            ));
        }
        for (field, set) in [
            ("deployment", self.deployment.is_some()),
            ("api_version", self.api_version.is_some()),
            ("api_key", self.api_key.is_some()),
        ] {
            if set {
                return Err(err(field, "does not apply to provider \"embedded\"".into()));
            }
        }
        let Some(embedded) = &self.embedded else {
            return Err(err(
                "embedded",
                "required for provider \"embedded\": set embedded.gguf and embedded.tokenizer"
                    .into(),
            ));
        };
        for (field, path) in [
            ("embedded.gguf", &embedded.gguf),
            ("embedded.tokenizer", &embedded.tokenizer),
        ] {
            if path.as_os_str().is_empty() {
                return Err(err(field, "must name a file".into()));
            }
        }
        if embedded.queue_capacity > 4096 {
            return Err(err(
                "embedded.queue_capacity",
                "must be at most 4096".into(),
            ));
        }
        if embedded.threads.is_some_and(|t| t == 0 || t > 1024) {
            return Err(err("embedded.threads", "must be between 1 and 1024".into()));
        }
        self.validate_common(key)
    }

    /// The checks every provider shares: parameters, timeouts, retries, breaker, limits.
    fn validate_common(&self, key: &str) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            key: format!("{key}.{field}"),
            message,
        };
        self.params.validate().map_err(|m| err("params", m))?;
        if self.context_window > 0
            && self
                .params
                .max_tokens
                .is_some_and(|m| m >= self.context_window)
        {
            return Err(err(
                "params.max_tokens",
                "must be smaller than context_window".into(),
            ));
        }
        let t = &self.timeouts;
        for (field, value) in [
            ("timeouts.connect", t.connect),
            ("timeouts.first_token", t.first_token),
            ("timeouts.total", t.total),
            ("limits.queue_timeout", self.limits.queue_timeout),
            ("breaker.cool_down", self.breaker.cool_down),
        ] {
            if value.is_zero() {
                return Err(err(field, "must be greater than zero".into()));
            }
        }
        if t.first_token > t.total {
            return Err(err(
                "timeouts.first_token",
                "must not exceed timeouts.total".into(),
            ));
        }
        if self.retry.base_delay > self.retry.max_delay {
            return Err(err(
                "retry.base_delay",
                "must not exceed retry.max_delay".into(),
            ));
        }
        if self.retry.max_retries > 10 {
            return Err(err("retry.max_retries", "must be at most 10".into()));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(err(
                "breaker.failure_threshold",
                "must be at least 1".into(),
            ));
        }
        if self.breaker.half_open_probes == 0 {
            return Err(err("breaker.half_open_probes", "must be at least 1".into()));
        }
        if self.limits.max_concurrent == 0 {
            return Err(err("limits.max_concurrent", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The offending key, e.g. `llm.models[0].endpoint`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl LlmConfig {
    /// Checks every model and the references between them. Keys are reported under `llm.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: String, message: String| ConfigError { key, message };
        if !(1..=3600).contains(&self.health_interval_secs) {
            return Err(err(
                "llm.health_interval_secs".into(),
                "must be between 1 and 3600 seconds".into(),
            ));
        }
        if self.models.is_empty() {
            return Err(err(
                "llm.models".into(),
                "configure at least one model".into(),
            ));
        }
        let mut ids = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let key = format!("llm.models[{i}]");
            model.validate(&key)?;
            if !ids.insert(model.id.as_str()) {
                return Err(err(
                    format!("{key}.id"),
                    format!("\"{}\" is used by an earlier model", model.id),
                ));
            }
        }
        if !ids.contains(self.default_model.as_str()) {
            return Err(err(
                "llm.default_model".into(),
                format!("no model has id \"{}\"", self.default_model),
            ));
        }
        for (i, model) in self.models.iter().enumerate() {
            if let Some(failover) = &model.failover {
                let key = format!("llm.models[{i}].failover");
                if failover == &model.id {
                    return Err(err(key, "a model cannot fail over to itself".into()));
                }
                if !ids.contains(failover.as_str()) {
                    return Err(err(key, format!("no model has id \"{failover}\"")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use secrecy::ExposeSecret;

    const GOOD: &str = r#"
default_model = "local"

[[models]]
id = "local"
provider = "openai"
endpoint = "http://127.0.0.1:8000"
model = "meta-llama/Llama-3.1-8B-Instruct"
api_key = "sk-local-secret"
context_window = 8192
failover = "azure"
params = { temperature = 0.2, max_tokens = 512 }
timeouts = { connect = "2s", first_token = "20s", total = "2m" }
breaker = { failure_threshold = 3, cool_down = "10s" }
limits = { max_concurrent = 4, max_queue = 8 }

[[models]]
id = "azure"
provider = "azure"
endpoint = "https://example.openai.azure.com"
deployment = "gpt-4o"
api_version = "2024-10-21"
context_window = 128000
"#;

    fn parse(text: &str) -> Result<LlmConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn validate(text: &str) -> Result<(), String> {
        parse(text)?.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_config_parses_and_hides_the_key() {
        let config = parse(GOOD).unwrap();
        config.validate().unwrap();
        let local = &config.models[0];
        assert_eq!(local.timeouts.first_token, Duration::from_secs(20));
        assert_eq!(local.limits.max_queue, 8);
        assert_eq!(local.retry.max_retries, 2);
        assert_eq!(
            local.api_key.as_ref().unwrap().expose_secret(),
            "sk-local-secret"
        );
        assert!(!format!("{config:?}").contains("sk-local-secret"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = GOOD.replace("context_window = 8192", "context_window = 8192\ncontex = 1");
        assert!(validate(&text).unwrap_err().contains("contex"));
        let text = GOOD.replace("cool_down = \"10s\"", "cool_down = \"10s\", treshold = 2");
        assert!(validate(&text).unwrap_err().contains("treshold"));
    }

    const EMBEDDED: &str = r#"
default_model = "local"

[[models]]
id = "local"
provider = "embedded"
params = { max_tokens = 256 }

[models.embedded]
gguf = "/models/qwen.gguf"
tokenizer = "/models/tokenizer.json"
"#;

    #[test]
    fn an_embedded_model_needs_files_and_no_endpoint() {
        let config = parse(EMBEDDED).unwrap();
        config.validate().unwrap();
        let e = config.models[0].embedded.as_ref().unwrap();
        assert_eq!(e.queue_capacity, 8);
        assert!(e.warmup);
        assert_eq!(e.threads, None);
        assert_eq!(config.models[0].context_window, 0, "the model's own");
        let cases = [
            ("[models.embedded]\ngguf = \"/models/qwen.gguf\"\ntokenizer = \"/models/tokenizer.json\"\n", "", "llm.models[0].embedded"),
            ("provider = \"embedded\"", "provider = \"embedded\"\nendpoint = \"http://h\"", "llm.models[0].endpoint"),
            ("provider = \"embedded\"", "provider = \"embedded\"\napi_key = \"k\"", "llm.models[0].api_key"),
            ("gguf = \"/models/qwen.gguf\"", "gguf = \"\"", "llm.models[0].embedded.gguf"),
            ("tokenizer = \"/models/tokenizer.json\"", "tokenizer = \"/models/tokenizer.json\"\nthreads = 0", "llm.models[0].embedded.threads"),
            ("tokenizer = \"/models/tokenizer.json\"", "tokenizer = \"/models/tokenizer.json\"\nqueue_capacity = 5000", "llm.models[0].embedded.queue_capacity"),
            ("max_tokens = 256", "max_tokens = 256, temperature = 9.0", "llm.models[0].params"),
        ];
        for (from, to, key) in cases {
            assert!(EMBEDDED.contains(from), "{from}");
            let message = validate(&EMBEDDED.replacen(from, to, 1)).unwrap_err();
            assert!(message.starts_with(&format!("{key}:")), "{to} -> {message}");
        }
        // A context window caps max_tokens as for any model.
        let text = EMBEDDED.replace(
            "provider = \"embedded\"",
            "provider = \"embedded\"\ncontext_window = 128",
        );
        assert!(validate(&text)
            .unwrap_err()
            .starts_with("llm.models[0].params.max_tokens:"));
        // The embedded table belongs to embedded models only.
        let text = GOOD.replace(
            "context_window = 128000",
            "context_window = 128000\nembedded = { gguf = \"a\", tokenizer = \"b\" }",
        );
        assert!(validate(&text)
            .unwrap_err()
            .starts_with("llm.models[1].embedded:"));
    }

    #[test]
    fn the_registry_needs_a_factory_for_embedded_models() {
        let config = parse(EMBEDDED).unwrap();
        let err =
            crate::ModelRegistry::from_config(&config, std::sync::Arc::new(crate::NoopObserver))
                .unwrap_err();
        assert_eq!(err.key, "llm.models[0].provider");
        assert!(err.message.contains("embedded engine"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "default_model = \"local\"",
                "default_model = \"nope\"",
                "llm.default_model",
            ),
            (
                "http://127.0.0.1:8000",
                "http://user:pw@127.0.0.1:8000",
                "llm.models[0].endpoint",
            ),
            (
                "http://127.0.0.1:8000",
                "ftp://127.0.0.1",
                "llm.models[0].endpoint",
            ),
            (
                "http://127.0.0.1:8000",
                "http://h/?key=1",
                "llm.models[0].endpoint",
            ),
            (
                "failover = \"azure\"",
                "failover = \"local\"",
                "llm.models[0].failover",
            ),
            (
                "failover = \"azure\"",
                "failover = \"gone\"",
                "llm.models[0].failover",
            ),
            ("deployment = \"gpt-4o\"\n", "", "llm.models[1].deployment"),
            (
                "api_version = \"2024-10-21\"\n",
                "",
                "llm.models[1].api_version",
            ),
            (
                "model = \"meta-llama/Llama-3.1-8B-Instruct\"\n",
                "",
                "llm.models[0].model",
            ),
            (
                "temperature = 0.2",
                "temperature = 3.0",
                "llm.models[0].params",
            ),
            (
                "max_tokens = 512",
                "max_tokens = 9000",
                "llm.models[0].params.max_tokens",
            ),
            (
                "first_token = \"20s\"",
                "first_token = \"5m\"",
                "llm.models[0].timeouts.first_token",
            ),
            (
                "max_concurrent = 4",
                "max_concurrent = 0",
                "llm.models[0].limits.max_concurrent",
            ),
            (
                "failure_threshold = 3",
                "failure_threshold = 0",
                "llm.models[0].breaker.failure_threshold",
            ),
            ("id = \"azure\"", "id = \"local\"", "llm.models[1].id"),
            ("id = \"azure\"", "id = \"Azure Prod\"", "llm.models[1].id"),
        ];
        for (from, to, key) in cases {
            assert!(GOOD.contains(from), "{from}");
            let message = validate(&GOOD.replacen(from, to, 1)).unwrap_err();
            assert!(message.starts_with(&format!("{key}:")), "{to} -> {message}");
        }
    }
}
