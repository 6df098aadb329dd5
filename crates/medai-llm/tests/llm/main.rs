//! Integration tests of the provider layer against a real OpenAI-compatible server on a local
//! port (see `upstream.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test code"
)]

mod client;
mod phi;
mod resilience;
mod upstream;

use futures_util::StreamExt;
use medai_llm::{
    AnswerStream, ChatRequest, Completion, ErrorKind, LlmConfig, LlmError, LlmObserver, Message,
    ModelRegistry, Role, StreamEvent,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A model entry for `url`, with short timeouts and no retries unless `extra` says otherwise.
pub fn model_toml(id: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[models]]
id = "{id}"
provider = "openai"
endpoint = "{url}"
model = "test-model"
api_key = "sk-test-secret-123"
context_window = 4096
{extra}
"#
    )
}

/// A config from model entries; the first is the default.
pub fn config(models: &[String]) -> LlmConfig {
    let first = models[0]
        .lines()
        .find_map(|l| l.strip_prefix("id = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let text = format!("default_model = \"{first}\"\n{}", models.concat());
    let config: LlmConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

/// Records what the registry reports.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    pub fn has(&self, event: &str) -> bool {
        self.events().iter().any(|e| e == event)
    }
    fn push(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }
}

impl LlmObserver for Recorder {
    fn request_started(&self, model: &str) {
        self.push(format!("started {model}"));
    }
    fn request_finished(&self, model: &str, error: Option<ErrorKind>) {
        self.push(format!(
            "finished {model} {}",
            error.map_or("ok", ErrorKind::as_str)
        ));
    }
    fn first_token(&self, model: &str, _: Duration) {
        self.push(format!("first_token {model}"));
    }
    fn completed(&self, model: &str, _: Duration, usage: Option<medai_llm::Usage>) {
        let usage = usage.map(|u| format!("{}/{}", u.prompt_tokens, u.completion_tokens));
        self.push(format!("completed {model} {}", usage.unwrap_or_default()));
    }
    fn upstream_error(&self, model: &str, kind: ErrorKind) {
        self.push(format!("error {model} {}", kind.as_str()));
    }
    fn circuit_state(&self, model: &str, state: medai_llm::CircuitState) {
        self.push(format!("circuit {model} {}", state.as_str()));
    }
    fn queue_depth(&self, model: &str, depth: usize) {
        self.push(format!("queue {model} {depth}"));
    }
}

pub fn registry(config: &LlmConfig) -> (ModelRegistry, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let registry = ModelRegistry::from_config(config, recorder.clone()).unwrap();
    (registry, recorder)
}

pub fn question(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::new(Role::System, "You are clinical decision support."),
            Message::new(Role::User, text),
        ],
        params: Default::default(),
    }
}

/// Reads a stream to its end: the text, and the completion or the error that ended it.
pub async fn collect(mut stream: AnswerStream) -> (String, Result<Completion, LlmError>) {
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Delta(t)) => text.push_str(&t),
            Ok(StreamEvent::Done(c)) => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return (text, Ok(*c));
            }
            Err(e) => {
                assert!(stream.next().await.is_none(), "nothing after an error");
                return (text, Err(e));
            }
        }
    }
    panic!("stream ended without Done or error");
}
