//! The engine handle: loading, the bounded queue in front of the model's thread, and the
//! [`ModelProvider`] implementation.

use crate::error::EngineError;
use crate::model::LoadedModel;
use crate::stats::{Counters, EngineStats};
use crate::template::ChatTemplate;
use crate::worker::{self, Job, WorkerContext};
use candle_core::Device;
use medai_llm::{
    BoxFuture, ChatRequest, EventStream, Health, LlmError, Message, ModelDescription,
    ModelProvider, ProviderKind, SamplingParams,
};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokenizers::Tokenizer;

/// How to load and run one model.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The model id used in requests, metrics and provenance.
    pub id: String,
    /// The GGUF weights (Qwen2/Qwen2.5 or Llama family).
    pub gguf_path: PathBuf,
    /// The Hugging Face `tokenizer.json` that goes with the weights.
    pub tokenizer_path: PathBuf,
    /// Context window in tokens; `None` uses the model's own (from the GGUF metadata). Never
    /// more than the model's own.
    pub context_window: Option<u32>,
    /// Requests that may wait while one generates; one more is refused as overloaded.
    pub queue_capacity: usize,
    /// Run a short forward pass at load so the first request does not pay for it.
    pub warmup: bool,
    /// The system message most requests start with (medai's assistant prompt, say). With
    /// warm-up on, its keys and values are computed at load and kept, so a request that starts
    /// with it runs only the tokens after it. `None` warms up with a generic message.
    pub warmup_system_prompt: Option<String>,
    /// CPU threads for inference; `None` uses every core. Also sizes candle's process-wide
    /// matmul pool (`CANDLE_NUM_THREADS`, unless the environment sets it) before its first use,
    /// so the first model loaded with `threads` decides it for the process.
    pub threads: Option<usize>,
    /// Parameters applied when a request leaves them unset (then temperature 1, top-p 1,
    /// as many tokens as the context window holds, a random seed).
    pub defaults: SamplingParams,
}

impl EngineConfig {
    /// A config with the default queue (8), warm-up on, every core, no default parameters.
    pub fn new(id: impl Into<String>, gguf_path: PathBuf, tokenizer_path: PathBuf) -> Self {
        Self {
            id: id.into(),
            gguf_path,
            tokenizer_path,
            context_window: None,
            queue_capacity: 8,
            warmup: true,
            warmup_system_prompt: None,
            threads: None,
            defaults: SamplingParams::default(),
        }
    }

    fn validate(&self) -> Result<(), EngineError> {
        let err = |m: &str| Err(EngineError::Config(m.to_string()));
        if self.id.trim().is_empty() {
            return err("id must not be empty");
        }
        if self.context_window == Some(0) {
            return err("context_window must be at least 1");
        }
        if self.queue_capacity > 4096 {
            return err("queue_capacity must be at most 4096");
        }
        if self
            .warmup_system_prompt
            .as_ref()
            .is_some_and(|p| p.trim().is_empty() || p.len() > 65_536)
        {
            return err("warmup_system_prompt must be non-empty and at most 64 KiB");
        }
        if self.threads.is_some_and(|t| t == 0 || t > 1024) {
            return err("threads must be between 1 and 1024");
        }
        self.defaults
            .validate()
            .map_err(|m| EngineError::Config(format!("defaults: {m}")))
    }
}

/// Renders a conversation with the model's template and tokenises it.
struct Prompter {
    template: ChatTemplate,
    tokenizer: Arc<Tokenizer>,
    /// The special tokens' text (`<|im_end|>`, ...), longest first.
    specials: Vec<String>,
}

/// Put inside a special token's text found in a message, so it stays text: U+2060 WORD JOINER,
/// invisible and not part of any token's text.
const BREAK: char = '\u{2060}';

impl Prompter {
    fn new(template: ChatTemplate, tokenizer: Arc<Tokenizer>) -> Self {
        let mut specials: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special && t.content.chars().count() > 1)
            .map(|t| t.content)
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self {
            template,
            tokenizer,
            specials,
        }
    }

    /// A message's text with every special token's text broken up, so a message cannot close its
    /// turn or open another role's (the template's own special tokens stay intact).
    fn neutralise(&self, text: &str) -> String {
        let mut text = text.to_string();
        for special in &self.specials {
            if text.contains(special.as_str()) {
                let mut chars = special.chars();
                let first = chars.next().map(String::from).unwrap_or_default();
                let broken = format!("{first}{BREAK}{}", chars.as_str());
                text = text.replace(special.as_str(), &broken);
            }
        }
        text
    }

    fn render(&self, messages: &[Message]) -> Result<String, EngineError> {
        let safe: Vec<Message> = messages
            .iter()
            .map(|m| Message::new(m.role, self.neutralise(&m.content)))
            .collect();
        self.template.render(&safe)
    }

    fn tokens(&self, messages: &[Message]) -> Result<Vec<u32>, EngineError> {
        let text = self.render(messages)?;
        // The template writes the special tokens (BOS included) itself.
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| EngineError::Inference(format!("tokenisation failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// A loaded model with its own inference thread. Share it behind an `Arc`; dropping the last
/// handle stops the thread once the running generation ends.
pub struct Engine {
    description: ModelDescription,
    prompter: Arc<Prompter>,
    context_window: usize,
    queue_capacity: usize,
    jobs: SyncSender<Job>,
    counters: Arc<Counters>,
    worker: JoinHandle<()>,
    load_time: Duration,
    warmup_time: Option<Duration>,
    prefix_tokens: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.description.id)
            .field("context_window", &self.context_window)
            .finish_non_exhaustive()
    }
}

fn device() -> Result<Device, EngineError> {
    #[cfg(feature = "cuda")]
    {
        Device::cuda_if_available(0).map_err(|e| EngineError::Inference(e.to_string()))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(Device::Cpu)
    }
}

/// Tokens that end an answer when the GGUF metadata does not list them all.
const END_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "</s>",
];

impl Engine {
    /// Loads the model and tokenizer, starts the model's thread and (if configured) warms it up.
    /// Blocks for as long as that takes (seconds for a real model): call it from
    /// `tokio::task::spawn_blocking` in async code.
    pub fn load(config: EngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        if let Some(n) = config.threads {
            limit_candle_threads(n);
        }
        let started = Instant::now();
        let device = device()?;
        let tokenizer =
            Tokenizer::from_file(&config.tokenizer_path).map_err(|e| EngineError::Tokenizer {
                path: config.tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let model = LoadedModel::load(&config.gguf_path, &device)?;
        let token_text = |id: u32| tokenizer.id_to_token(id).unwrap_or_default();
        let bos = model.bos_token_id.map(token_text).unwrap_or_default();
        let mut end_tokens = model.end_token_ids.clone();
        for t in END_TOKENS {
            if let Some(id) = tokenizer.token_to_id(t) {
                if Some(id) != model.bos_token_id && !end_tokens.contains(&id) {
                    end_tokens.push(id);
                }
            }
        }
        let eos = end_tokens
            .first()
            .map(|&id| token_text(id))
            .unwrap_or_default();
        let template = match &model.chat_template {
            Some(source) => ChatTemplate::new(source, &bos, &eos)?,
            None => ChatTemplate::family_default(
                model.arch,
                |t| tokenizer.token_to_id(t).is_some(),
                &bos,
                &eos,
            )?,
        };
        let context_window = config.context_window.map_or(model.max_positions, |c| {
            (c as usize).min(model.max_positions)
        });
        let description = ModelDescription {
            id: config.id.clone(),
            provider: ProviderKind::Embedded,
            endpoint: config.gguf_path.display().to_string(),
            upstream_model: model
                .name
                .clone()
                .unwrap_or_else(|| model.arch.as_str().to_string()),
            context_window: u32::try_from(context_window).unwrap_or(u32::MAX),
            default_params: config.defaults.clone(),
        };
        let tokenizer = Arc::new(tokenizer);
        let prompter = Arc::new(Prompter::new(template, Arc::clone(&tokenizer)));
        let warmup_prompt = if config.warmup {
            Some(match &config.warmup_system_prompt {
                // The system turn alone (the assistant's turn opened after it): the longest
                // prefix it shares with a real prompt is what requests reuse.
                Some(system) => {
                    prompter.tokens(&[Message::new(medai_llm::Role::System, system.clone())])?
                }
                None => prompter.tokens(&[
                    Message::new(medai_llm::Role::System, "You are a helpful assistant."),
                    Message::new(medai_llm::Role::User, "Hello, how are you today?"),
                ])?,
            })
        } else {
            None
        };
        let counters = Arc::new(Counters::new());
        let ctx = WorkerContext {
            model_id: config.id.clone(),
            upstream_model: model.name.clone(),
            vocab_size: tokenizer.get_vocab_size(true),
            tokenizer,
            end_tokens,
            counters: Arc::clone(&counters),
        };
        let (jobs, queue) = sync_channel::<Job>(config.queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pool = match config.threads {
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("medai-engine-{i}"))
                    .build()
                    .map_err(|e| EngineError::Config(format!("threads: {e}")))?,
            ),
            None => None,
        };
        let worker = std::thread::Builder::new()
            .name(format!("medai-engine-{}", config.id))
            .spawn(move || {
                let body = move || {
                    let mut model = model;
                    let warm = warmup_prompt.map(|prompt| {
                        let t = Instant::now();
                        let out = warm_up(&mut model, &prompt);
                        out.map(|()| (t.elapsed(), model.pinned_len()))
                    });
                    let failed = matches!(warm, Some(Err(_)));
                    let _ = ready_tx.send(warm.transpose());
                    if !failed {
                        worker::run(model, ctx, queue);
                    }
                };
                match pool {
                    Some(pool) => pool.install(body),
                    None => body(),
                }
            })
            .map_err(|e| EngineError::Inference(format!("cannot start the model thread: {e}")))?;
        let warm = match ready_rx.recv() {
            Ok(result) => result?,
            Err(_) => {
                return Err(EngineError::Inference(
                    "the model thread stopped during warm-up".into(),
                ))
            }
        };
        let warmup_time = warm.map(|(t, _)| t);
        let prefix_tokens = warm.map_or(0, |(_, n)| n);
        let load_time = started.elapsed();
        tracing::info!(
            model = %config.id,
            model_name = %description.upstream_model,
            context_window,
            load_ms = load_time.as_millis() as u64,
            warmup_ms = warmup_time.map(|d| d.as_millis() as u64),
            prefix_tokens,
            "embedded model loaded"
        );
        Ok(Self {
            description,
            prompter,
            context_window,
            queue_capacity: config.queue_capacity,
            jobs,
            counters,
            worker,
            load_time,
            warmup_time,
            prefix_tokens,
        })
    }

    /// The effective context window in tokens.
    pub fn context_window(&self) -> usize {
        self.context_window
    }

    /// How long [`Engine::load`] took, warm-up included.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// How long the warm-up pass took (`None` when warm-up was off).
    pub fn warmup_time(&self) -> Option<Duration> {
        self.warmup_time
    }

    /// Tokens of the warm-up prompt whose keys and values are kept for good (0 without
    /// warm-up): a prompt that starts with them runs only what follows.
    pub fn prefix_tokens(&self) -> usize {
        self.prefix_tokens
    }

    /// The conversation as the model's chat template renders it (the assistant's turn opened).
    pub fn render_prompt(&self, messages: &[Message]) -> Result<String, EngineError> {
        self.prompter.render(messages)
    }

    /// The prompt's token ids, as generation would see them.
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, EngineError> {
        self.prompter.tokens(messages)
    }

    /// Queue depth, requests running, counters and latency histograms.
    pub fn stats(&self) -> EngineStats {
        self.counters.snapshot(self.queue_capacity)
    }

    /// Whether the model's thread is still running.
    pub fn is_running(&self) -> bool {
        !self.worker.is_finished()
    }

    async fn start(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let params = request.params.or(&self.description.default_params);
        params.validate().map_err(LlmError::InvalidRequest)?;
        if request.messages.is_empty() {
            return Err(LlmError::InvalidRequest(
                "the conversation has no messages".into(),
            ));
        }
        let enqueued = Instant::now();
        let prompter = Arc::clone(&self.prompter);
        let messages = request.messages.clone();
        let prompt = tokio::task::spawn_blocking(move || prompter.tokens(&messages))
            .await
            .map_err(|_| LlmError::Protocol("prompt preparation was interrupted".into()))?
            .map_err(|e| LlmError::InvalidRequest(e.to_string()))?;
        let max_tokens = params.max_tokens.map(|m| m as usize);
        let room = self.context_window.saturating_sub(prompt.len());
        if room == 0 || max_tokens.is_some_and(|m| m > room) {
            return Err(LlmError::InvalidRequest(
                EngineError::ContextExceeded {
                    prompt_tokens: prompt.len(),
                    max_tokens: max_tokens.unwrap_or(0),
                    context_window: self.context_window,
                }
                .to_string(),
            ));
        }
        let (events, mut rx) = tokio::sync::mpsc::channel(64);
        let job = Job {
            prompt,
            temperature: params.temperature.unwrap_or(1.0),
            top_p: params.top_p.unwrap_or(1.0),
            seed: params.seed.unwrap_or_else(rand::random),
            max_tokens: max_tokens.unwrap_or(room),
            params,
            enqueued,
            events,
        };
        self.counters.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(e) => {
                self.counters.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    TrySendError::Full(_) => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        LlmError::QueueFull {
                            model: self.description.id.clone(),
                            retry_after: Duration::from_secs(1),
                        }
                    }
                    TrySendError::Disconnected(_) => {
                        LlmError::Connect("the embedded model's thread has stopped".into())
                    }
                });
            }
        }
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Box::pin(stream))
    }
}

/// Sizes candle's process-wide matmul pool (a spinning barrier pool, read once at its first use
/// from `CANDLE_NUM_THREADS`) unless the environment already does. On a machine whose cores are
/// shared, spinning threads waiting for descheduled ones cost far more than they gain: one thread
/// decoded 25 times faster than two on a loaded 2-core machine (docs/engine.md).
fn limit_candle_threads(n: usize) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Before the first quantised matmul of the process, so the pool is built this size. Later
        // loads find it set (the first configured model decides for the process).
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}

/// Runs the warm-up prompt and two decode steps (the single-token path has its own first-call
/// costs), then keeps the prompt's keys and values: later prompts that start the same way run
/// only what follows.
fn warm_up(model: &mut LoadedModel, prompt: &[u32]) -> Result<(), EngineError> {
    if prompt.is_empty() {
        return Ok(());
    }
    let n = prompt
        .len()
        .min(model.max_positions.saturating_sub(2))
        .max(1);
    let (logits, _) = model.prefill(&prompt[..n])?;
    let next = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| u32::try_from(i).unwrap_or(0));
    if n + 2 <= model.max_positions {
        model.step(next)?;
        model.step(next)?;
    }
    model.pin_prefix(n)?;
    model.clear();
    Ok(())
}

impl ModelProvider for Engine {
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<EventStream, LlmError>> {
        Box::pin(self.start(request))
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            let ok = self.is_running();
            Health {
                ok,
                latency: Duration::ZERO,
                detail: (!ok).then(|| "the model thread has stopped".to_string()),
            }
        })
    }

    fn describe(&self) -> &ModelDescription {
        &self.description
    }
}
