//! The OpenAI-compatible streaming client: vLLM, TGI, Ollama, llama.cpp server, OpenAI, and Azure
//! OpenAI (deployment paths, `api-version`, `api-key` header).

use crate::config::ModelConfig;
use crate::error::LlmError;
use crate::provider::{BoxFuture, EventStream, ModelProvider};
use crate::sse::{SseDecoder, SseEvent};
use crate::types::{
    ChatRequest, Completion, Health, Message, ModelDescription, ProviderKind, SamplingParams,
    StreamEvent, Timing, Usage,
};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Response, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most bytes of an error body read (the message is cut much shorter).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most characters of an upstream error message kept.
const MAX_ERROR_MESSAGE: usize = 300;

/// A model reached over the OpenAI chat completions protocol.
pub struct OpenAiProvider {
    client: Client,
    chat_url: Url,
    health_url: Url,
    api_key: Option<SecretString>,
    include_usage: bool,
    description: ModelDescription,
}

// The key is a `SecretString` (masked), but say so explicitly rather than rely on it.
impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("description", &self.description)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A client for one configured model (the config must have passed validation).
    pub fn new(config: &ModelConfig) -> Result<Self, LlmError> {
        let base = config.endpoint_url().map_err(LlmError::InvalidRequest)?;
        let join = |path: &str| {
            let mut url = base.clone();
            let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
            url.set_path(&joined);
            url
        };
        let (chat_url, health_url, upstream_model) = match config.provider {
            ProviderKind::Openai => (
                join("v1/chat/completions"),
                join("v1/models"),
                config.model.clone().unwrap_or_default(),
            ),
            ProviderKind::Embedded => {
                return Err(LlmError::InvalidRequest(
                    "provider \"embedded\" is run by the embedded engine, not an HTTP client"
                        .into(),
                ))
            }
            ProviderKind::Azure => {
                let deployment = config.deployment.clone().unwrap_or_default();
                let version = config.api_version.clone().unwrap_or_default();
                let mut chat = join(&format!("openai/deployments/{deployment}/chat/completions"));
                chat.query_pairs_mut().append_pair("api-version", &version);
                let mut health = join("openai/models");
                health
                    .query_pairs_mut()
                    .append_pair("api-version", &version);
                (chat, health, deployment)
            }
        };
        let client = Client::builder()
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|_| LlmError::InvalidRequest("cannot build the HTTP client".into()))?;
        let mut endpoint = chat_url.clone();
        endpoint.set_query(None);
        Ok(Self {
            client,
            chat_url,
            health_url,
            api_key: config.api_key.clone(),
            include_usage: config.include_usage,
            description: ModelDescription {
                id: config.id.clone(),
                provider: config.provider,
                endpoint: endpoint.to_string(),
                upstream_model,
                context_window: config.context_window,
                default_params: config.params.clone(),
            },
        })
    }

    fn authorise(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let Some(key) = &self.api_key else {
            return request;
        };
        match self.description.provider {
            ProviderKind::Openai => request.bearer_auth(key.expose_secret()),
            ProviderKind::Azure => match HeaderValue::from_str(key.expose_secret()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request.header("api-key", value)
                }
                Err(_) => request,
            },
            ProviderKind::Embedded => request,
        }
    }

    async fn start(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let started = Instant::now();
        let params = request.params.or(&self.description.default_params);
        params.validate().map_err(LlmError::InvalidRequest)?;
        let body = RequestBody {
            model: match self.description.provider {
                ProviderKind::Openai => Some(&self.description.upstream_model),
                ProviderKind::Azure | ProviderKind::Embedded => None,
            },
            messages: &request.messages,
            stream: true,
            stream_options: self.include_usage.then_some(StreamOptions {
                include_usage: true,
            }),
            params: &params,
        };
        let response = self
            .authorise(self.client.post(self.chat_url.clone()))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body)
            .send()
            .await
            .map_err(|e| LlmError::Connect(transport_reason(&e)))?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
            return Err(LlmError::Protocol(
                "upstream did not answer with an event stream".into(),
            ));
        }
        let completion = Completion {
            model_id: self.description.id.clone(),
            provider: self.description.provider.as_str().to_string(),
            upstream_model: None,
            params,
            usage: None,
            finish_reason: None,
            timing: Timing::default(),
            attempts: 1,
            failover: false,
        };
        let state = BodyState {
            response,
            decoder: ChatStreamDecoder::new(completion),
            queue: VecDeque::new(),
            started,
            first_token: None,
            ended: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, next_event)))
    }
}

impl ModelProvider for OpenAiProvider {
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<EventStream, LlmError>> {
        Box::pin(self.start(request))
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self
                .authorise(self.client.get(self.health_url.clone()))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            let detail = match result {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("status {}", r.status().as_u16())),
                Err(e) => Some(transport_reason(&e)),
            };
            Health {
                ok: detail.is_none(),
                latency: started.elapsed(),
                detail,
            }
        })
    }

    fn describe(&self) -> &ModelDescription {
        &self.description
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct RequestBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a String>,
    messages: &'a [Message],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    params: &'a SamplingParams,
}

/// A short, secret-free reason for a transport failure (the URL is left out).
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "body error".into()
    } else {
        "request failed".into()
    }
}

async fn status_error(mut response: Response) -> LlmError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    LlmError::Status {
        status,
        retry_after,
        upstream_message: error_message(&body),
    }
}

/// The message of an OpenAI (`{"error": {"message"}}`), TGI (`{"error": "..."}`) or vLLM
/// (`{"message"}`) error body, cut short.
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("error").filter(|e| e.is_string()))
        .or_else(|| value.get("message"))?
        .as_str()?;
    Some(message.chars().take(MAX_ERROR_MESSAGE).collect())
}

struct BodyState {
    response: Response,
    decoder: ChatStreamDecoder,
    queue: VecDeque<Result<StreamEvent, LlmError>>,
    started: Instant,
    first_token: Option<Duration>,
    ended: bool,
}

async fn next_event(mut state: BodyState) -> Option<(Result<StreamEvent, LlmError>, BodyState)> {
    loop {
        if let Some(mut item) = state.queue.pop_front() {
            match &mut item {
                Ok(StreamEvent::Delta(_)) => {
                    state
                        .first_token
                        .get_or_insert_with(|| state.started.elapsed());
                }
                Ok(StreamEvent::Done(done)) => {
                    let total = state.started.elapsed();
                    done.timing = Timing {
                        first_token: state.first_token.unwrap_or(total),
                        total,
                    };
                    state.ended = true;
                    state.queue.clear();
                }
                Err(_) => {
                    state.ended = true;
                    state.queue.clear();
                }
            }
            return Some((item, state));
        }
        if state.ended {
            return None;
        }
        match state.response.chunk().await {
            Ok(Some(bytes)) => {
                let mut out = Vec::new();
                state.decoder.feed(&bytes, &mut out);
                state.queue.extend(out);
            }
            Ok(None) => {
                let end = state.decoder.finish();
                state.queue.push_back(end);
            }
            Err(_) => state.queue.push_back(Err(LlmError::Protocol(
                "upstream connection broke mid-stream".into(),
            ))),
        }
    }
}

/// Turns the bytes of a chat completions event stream into [`StreamEvent`]s: text deltas of the
/// first choice, then `Done` with the usage, finish reason and upstream model collected on the
/// way. Public so the benchmark can time exactly what the client does per byte.
#[derive(Debug)]
pub struct ChatStreamDecoder {
    sse: SseDecoder,
    events: Vec<SseEvent>,
    completion: Option<Completion>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    object: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<DeltaJson>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct DeltaJson {
    #[serde(default)]
    content: Option<String>,
}

impl ChatStreamDecoder {
    /// A decoder whose `Done` event starts from `completion` (model id, parameters).
    pub fn new(completion: Completion) -> Self {
        Self {
            sse: SseDecoder::new(),
            events: Vec::new(),
            completion: Some(completion),
        }
    }

    /// Feeds the next piece of the body. After an error or `Done`, further input is ignored.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Result<StreamEvent, LlmError>>) {
        if self.completion.is_none() {
            return;
        }
        if self.sse.feed(bytes, &mut self.events).is_err() {
            self.completion = None;
            out.push(Err(LlmError::Protocol("event line too long".into())));
            return;
        }
        let events = std::mem::take(&mut self.events);
        for event in &events {
            match self.event(&event.data) {
                Ok(None) => {}
                Ok(Some(item)) => {
                    let last = matches!(item, StreamEvent::Done(_));
                    out.push(Ok(item));
                    if last {
                        break;
                    }
                }
                Err(e) => {
                    self.completion = None;
                    out.push(Err(e));
                    break;
                }
            }
        }
        self.events = events;
        self.events.clear();
    }

    /// The body ended. A stream that gave a finish reason but no `[DONE]` (some servers) is
    /// complete; one that did not is truncated.
    pub fn finish(&mut self) -> Result<StreamEvent, LlmError> {
        match self.completion.take() {
            Some(c) if c.finish_reason.is_some() => Ok(StreamEvent::Done(Box::new(c))),
            _ => Err(LlmError::Protocol(
                "upstream closed the stream before it finished".into(),
            )),
        }
    }

    fn event(&mut self, data: &str) -> Result<Option<StreamEvent>, LlmError> {
        let Some(completion) = self.completion.as_mut() else {
            return Ok(None);
        };
        if data.trim() == "[DONE]" {
            return Ok(self
                .completion
                .take()
                .map(|c| StreamEvent::Done(Box::new(c))));
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|_| LlmError::Protocol("event data is not a completion chunk".into()))?;
        if chunk.error.is_some() || chunk.object.as_deref() == Some("error") {
            return Err(LlmError::Protocol(
                "upstream reported an error inside the stream".into(),
            ));
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            completion.upstream_model = Some(model);
        }
        if let Some(usage) = chunk.usage {
            completion.usage = Some(usage);
        }
        let mut text = None;
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(reason) = choice.finish_reason {
                completion.finish_reason = Some(reason);
            }
            text = choice
                .delta
                .and_then(|d| d.content)
                .filter(|t| !t.is_empty());
        }
        Ok(text.map(StreamEvent::Delta))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn completion() -> Completion {
        Completion {
            model_id: "m".into(),
            provider: "openai".into(),
            upstream_model: None,
            params: SamplingParams::default(),
            usage: None,
            finish_reason: None,
            timing: Timing::default(),
            attempts: 1,
            failover: false,
        }
    }

    #[test]
    fn error_bodies_of_each_server_style() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad key","type":"auth"}}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(
            error_message(br#"{"error":"overloaded","error_type":"x"}"#).as_deref(),
            Some("overloaded")
        );
        assert_eq!(
            error_message(br#"{"object":"error","message":"too long"}"#).as_deref(),
            Some("too long")
        );
        assert_eq!(error_message(b"<html>502</html>"), None);
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(1000));
        assert_eq!(
            error_message(long.as_bytes()).unwrap().len(),
            MAX_ERROR_MESSAGE
        );
    }

    #[test]
    fn error_object_inside_the_stream_ends_it() {
        let mut d = ChatStreamDecoder::new(completion());
        let mut out = Vec::new();
        d.feed(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\n",
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Ok(StreamEvent::Delta(t)) if t == "a"));
        assert!(matches!(&out[1], Err(LlmError::Protocol(_))));
    }

    #[test]
    fn finish_reason_without_done_completes_but_bare_eof_does_not() {
        let mut d = ChatStreamDecoder::new(completion());
        let mut out = Vec::new();
        d.feed(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            &mut out,
        );
        assert!(out.is_empty());
        assert!(
            matches!(d.finish(), Ok(StreamEvent::Done(c)) if c.finish_reason.as_deref() == Some("stop"))
        );
        let mut d = ChatStreamDecoder::new(completion());
        assert!(d.finish().is_err());
    }
}
