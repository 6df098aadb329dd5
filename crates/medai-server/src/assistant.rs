//! The assistant's engine: the configured models (`[llm]`), the PHI detector, the safety rule
//! set, the system prompt, and the Prometheus implementation of the model layer's observer.

use crate::metrics::{LlmKindLabels, LlmLabels, LlmMetrics};
use medai_llm::{
    CircuitState, ErrorKind, LlmConfig, LlmObserver, ModelRegistry, ProviderFactory, SystemClock,
    Usage,
};
use medai_phi::Detector;
use medai_safety::RuleSet;
use std::sync::Arc;
use std::time::Duration;

/// The version of [`SYSTEM_PROMPT`], recorded in every answer's provenance.
pub const PROMPT_TEMPLATE_VERSION: &str = "clinical-support-v1";

/// Frames the model as clinical decision support.
pub const SYSTEM_PROMPT: &str = "You are a clinical decision support assistant for licensed \
clinicians. You answer questions about the patient described in the context below. State the basis \
of each statement (the context you were given, or general medical knowledge). Say clearly when \
you are unsure or when the context does not contain what is needed. Never issue orders or \
prescriptions: offer considerations for the clinician, who decides. Identifiers in the context \
are placeholders; use them exactly as written.";

/// How every system message the assistant sends begins (the patient context follows). The
/// embedded engine computes this prefix at load and keeps it, so requests run only what follows.
pub fn system_prompt_prefix() -> String {
    format!("{SYSTEM_PROMPT}\n\nPatient context:\n")
}

/// The assistant's shared parts.
pub struct Assistant {
    /// The configured models; `None` when `[llm]` is not set (answers are then 503).
    pub registry: Option<Arc<ModelRegistry>>,
    /// The PHI detector used for de-identification and the output check.
    pub detector: Arc<Detector>,
    /// The safety triage rules.
    pub rules: Arc<RuleSet>,
    /// How often the background probe checks every model (`llm.health_interval_secs`).
    pub health_interval: std::time::Duration,
}

/// Why the assistant could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    /// `[llm]` is not a valid model configuration.
    #[error("{0}")]
    Config(String),
    /// The built-in safety rule set did not load (a build defect).
    #[error("safety rules: {0}")]
    Rules(String),
}

impl Assistant {
    /// Builds the assistant from the `[llm]` section (if any), with metrics.
    pub fn new(
        llm: Option<&serde_json::Value>,
        metrics: &LlmMetrics,
    ) -> Result<Self, AssistantError> {
        let mut health_interval = std::time::Duration::from_secs(30);
        let registry = match llm {
            Some(v) => {
                let cfg: LlmConfig = serde_json::from_value(v.clone())
                    .map_err(|e| AssistantError::Config(format!("llm: {e}")))?;
                health_interval = std::time::Duration::from_secs(cfg.health_interval_secs);
                let observer = Arc::new(PromObserver(metrics.clone()));
                Some(Arc::new(
                    ModelRegistry::from_config_with(
                        &cfg,
                        observer,
                        Arc::new(SystemClock),
                        provider_factory(),
                    )
                    .map_err(|e| AssistantError::Config(e.to_string()))?,
                ))
            }
            None => None,
        };
        let rules = RuleSet::builtin().map_err(|e| AssistantError::Rules(e.to_string()))?;
        Ok(Self {
            registry,
            detector: Arc::new(Detector::new()),
            rules: Arc::new(rules),
            health_interval,
        })
    }
}

/// The factory for `provider = "embedded"` models: the in-process engine, when built in.
#[cfg(feature = "engine")]
fn provider_factory() -> Option<&'static dyn ProviderFactory> {
    Some(&EngineFactory)
}

#[cfg(not(feature = "engine"))]
fn provider_factory() -> Option<&'static dyn ProviderFactory> {
    None
}

/// Loads `embedded` models with [`medai_engine::Engine`]. Loading reads the whole model and
/// runs the warm-up pass, so it blocks for seconds with a real model (once, at start-up).
#[cfg(feature = "engine")]
struct EngineFactory;

#[cfg(feature = "engine")]
impl ProviderFactory for EngineFactory {
    fn build(
        &self,
        model: &medai_llm::ModelConfig,
    ) -> Result<Arc<dyn medai_llm::ModelProvider>, String> {
        let embedded = model
            .embedded
            .as_ref()
            .ok_or_else(|| "embedded: required for provider \"embedded\"".to_string())?;
        let config = medai_engine::EngineConfig {
            id: model.id.clone(),
            gguf_path: embedded.gguf.clone(),
            tokenizer_path: embedded.tokenizer.clone(),
            context_window: (model.context_window > 0).then_some(model.context_window),
            queue_capacity: embedded.queue_capacity,
            warmup: embedded.warmup,
            warmup_system_prompt: Some(system_prompt_prefix()),
            threads: embedded.threads,
            defaults: model.params.clone(),
        };
        let engine = medai_engine::Engine::load(config).map_err(|e| e.to_string())?;
        Ok(Arc::new(engine))
    }
}

/// Checks an `[llm]` section without starting anything (for `medai config check`).
pub fn check_llm_config(llm: &serde_json::Value) -> Result<(), AssistantError> {
    let cfg: LlmConfig = serde_json::from_value(llm.clone())
        .map_err(|e| AssistantError::Config(format!("llm: {e}")))?;
    cfg.validate()
        .map_err(|e| AssistantError::Config(e.to_string()))
}

/// The model layer's events as Prometheus metrics.
struct PromObserver(LlmMetrics);

fn model(m: &str) -> LlmLabels {
    LlmLabels {
        model: m.to_owned(),
    }
}

fn kind(m: &str, k: &str) -> LlmKindLabels {
    LlmKindLabels {
        model: m.to_owned(),
        kind: k.to_owned(),
    }
}

impl LlmObserver for PromObserver {
    fn request_finished(&self, m: &str, error: Option<ErrorKind>) {
        let outcome = error.map_or("ok", ErrorKind::as_str);
        self.0.requests.get_or_create(&kind(m, outcome)).inc();
    }

    fn first_token(&self, m: &str, latency: Duration) {
        self.0
            .first_token
            .get_or_create(&model(m))
            .observe(latency.as_secs_f64());
    }

    fn completed(&self, m: &str, latency: Duration, usage: Option<Usage>) {
        self.0
            .duration
            .get_or_create(&model(m))
            .observe(latency.as_secs_f64());
        if let Some(u) = usage {
            self.0
                .tokens
                .get_or_create(&kind(m, "prompt"))
                .inc_by(u64::from(u.prompt_tokens));
            self.0
                .tokens
                .get_or_create(&kind(m, "completion"))
                .inc_by(u64::from(u.completion_tokens));
        }
    }

    fn upstream_error(&self, m: &str, k: ErrorKind) {
        self.0
            .upstream_errors
            .get_or_create(&kind(m, k.as_str()))
            .inc();
    }

    fn circuit_state(&self, m: &str, state: CircuitState) {
        let v = match state {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        };
        self.0.circuit_state.get_or_create(&model(m)).set(v);
    }

    fn queue_depth(&self, m: &str, depth: usize) {
        self.0
            .queue_depth
            .get_or_create(&model(m))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}
