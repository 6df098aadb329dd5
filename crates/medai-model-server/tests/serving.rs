//! The serving mode over the real embedded engine on a tiny random-weight model: readiness
//! before and after loading, the bearer token, answers streamed and not (the same text for the
//! same seed), OpenAI-style refusals, cancellation when the client goes away, the metrics
//! (checked against the catalogue in docs/metrics.md), and medai's own OpenAI client streaming
//! an answer from this server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test"
)]

use futures_util::StreamExt as _;
use medai_engine::{fixture, Arch, Engine, EngineConfig};
use medai_llm::{ChatRequest, Message, ModelProvider as _, Role, SamplingParams, StreamEvent};
use medai_model_server::{BearerToken, LoadStats, ServerState};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef0123456789";

struct Server {
    url: String,
    metrics_url: String,
    state: Arc<ServerState>,
    http: reqwest::Client,
    _running: medai_model_server::Running,
}

impl Server {
    fn start() -> Server {
        let state = ServerState::new(
            "tiny",
            BearerToken::new(TOKEN).unwrap(),
            Arc::new(medai_core::SystemClock),
        );
        let public = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let running = medai_model_server::start(state.clone(), public, metrics, None).unwrap();
        Server {
            url: format!("http://{}", running.addr),
            metrics_url: format!("http://{}/metrics", running.metrics_addr),
            state,
            http: reqwest::Client::new(),
            _running: running,
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(TOKEN)
            .json(body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn metrics(&self) -> String {
        self.http
            .get(&self.metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

fn ask(stream: bool, extra: Value) -> Value {
    let mut body = json!({
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is a normal resting heart rate?"}
        ],
        "stream": stream,
        "temperature": 0.8,
        "seed": 11,
        "max_tokens": 12
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The `data:` payloads of an event stream, in order.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

async fn load(dir: &std::path::Path) -> Arc<Engine> {
    let (gguf, tokenizer) = fixture::write_tiny_model(dir, Arch::Qwen2).unwrap();
    let mut cfg = EngineConfig::new("tiny", gguf, tokenizer);
    cfg.queue_capacity = 4;
    tokio::task::spawn_blocking(move || Arc::new(Engine::load(cfg).unwrap()))
        .await
        .unwrap()
}

fn stats_of(engine: &Arc<Engine>) -> Arc<dyn medai_model_server::StatsSource> {
    let e = engine.clone();
    Arc::new(move || {
        let s = e.stats();
        LoadStats {
            queue_depth: s.queue_depth,
            queue_capacity: s.queue_capacity,
            running: s.running,
            max_running: s.max_running,
            cached_prompt_tokens: s.cached_prompt_tokens,
        }
    })
}

#[tokio::test]
async fn serves_the_embedded_engine_over_the_openai_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start();

    // Before the model is loaded: alive, not ready, and /v1 says so.
    let (status, body) = s.get("/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "loading");
    let r = s.post(&ask(false, json!({}))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_loading"
    );
    let (status, _) = s.get("/v1/models").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        metric(&s.metrics().await, "medai_model_server_model_loaded"),
        Some(0.0)
    );

    let engine = load(dir.path()).await;
    s.state.set_loaded(engine.clone(), stats_of(&engine));
    let (status, body) = s.get("/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let (status, body) = s.get("/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"][0]["id"], "tiny");

    // The bearer token: missing, wrong, wrong scheme.
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789abcdef0123456789"),
        Some(&*format!("Basic {TOKEN}")),
    ] {
        let mut req = s
            .http
            .post(format!("{}/v1/chat/completions", s.url))
            .json(&ask(false, json!({})));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    let r = s
        .http
        .get(format!("{}/v1/models", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // One answer as JSON, then the same request streamed: the same text (same seed).
    let r = s.post(&ask(false, json!({}))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let full: Value = r.json().await.unwrap();
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["model"], "tiny");
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!text.is_empty());
    let reason = full["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(["stop", "length"].contains(&reason), "{reason}");
    let completion = full["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion), "{full}");
    assert!(full["usage"]["prompt_tokens"].as_u64().unwrap() > 5);

    let r = s
        .post(&ask(
            true,
            json!({"stream_options": {"include_usage": true}}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().await.unwrap();
    let ev = events(&body);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed, text,
        "streamed and whole answers differ for one seed"
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], reason);
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(
        usage["usage"]["completion_tokens"].as_u64(),
        Some(completion)
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));

    // Refusals in OpenAI's format, naming the field.
    let bad: [(Value, StatusCode, Option<&str>); 6] = [
        (
            json!({"model": "other", "messages": [{"role": "user", "content": "x"}]}),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tools": []}),
            StatusCode::BAD_REQUEST,
            Some("tools"),
        ),
        (
            json!({"messages": []}),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 5}),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 3}),
            StatusCode::BAD_REQUEST,
            Some("n"),
        ),
        // More than the fixture model's 2048-token context window.
        (
            json!({"messages": [{"role": "user", "content": "heart rate ".repeat(3000)}]}),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
    ];
    for (body, status, param) in bad {
        let r = s.post(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"].as_str(), param, "{e}");
        assert!(e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
    let r = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(TOKEN)
        .body(vec![b' '; medai_model_server::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = s.get("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "unknown_url");

    // A client that goes away mid-answer cancels the generation.
    let cancelled_before = engine.stats().requests_cancelled;
    let r = s
        .post(&ask(true, json!({"max_tokens": 1500, "temperature": 1.0})))
        .send()
        .await
        .unwrap();
    let mut r = r;
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.stats().requests_cancelled == cancelled_before {
        assert!(
            Instant::now() < deadline,
            "the generation was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // medai's OpenAI-compatible client streams an answer from this server.
    let cfg: medai_llm::ModelConfig = serde_json::from_value(json!({
        "id": "remote", "provider": "openai", "endpoint": s.url, "model": "tiny",
        "api_key": TOKEN, "context_window": 2048
    }))
    .unwrap();
    let client = medai_llm::OpenAiProvider::new(&cfg).unwrap();
    assert!(client.health().await.ok);
    let request = ChatRequest {
        messages: vec![Message::new(
            Role::User,
            "What is a normal resting heart rate?",
        )],
        params: SamplingParams {
            temperature: Some(0.8),
            seed: Some(11),
            max_tokens: Some(12),
            ..SamplingParams::default()
        },
    };
    let mut stream = client.chat_stream(&request).await.unwrap();
    let (mut deltas, mut done) = (Vec::new(), None);
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            StreamEvent::Delta(t) => deltas.push(t),
            StreamEvent::Done(c) => done = Some(c),
        }
    }
    let done = done.expect("no Done event");
    assert!(!deltas.is_empty());
    assert_eq!(done.upstream_model.as_deref(), Some("tiny"));
    let usage = done.usage.expect("usage reported");
    assert!(
        usage.completion_tokens >= 1 && usage.prompt_tokens > 5,
        "{usage:?}"
    );
    assert!(done.finish_reason.is_some());
    let wrong: medai_llm::ModelConfig = serde_json::from_value(json!({
        "id": "remote", "provider": "openai", "endpoint": s.url, "model": "tiny",
        "api_key": "wrong-token-0123456789abcdef0123456789", "context_window": 2048
    }))
    .unwrap();
    let err = medai_llm::OpenAiProvider::new(&wrong)
        .unwrap()
        .chat_stream(&request)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, medai_llm::LlmError::Status { status: 401, .. }),
        "{err:?}"
    );

    // Metrics: latencies, tokens, outcomes and the load gauges, all catalogued.
    let m = s.metrics().await;
    assert_eq!(metric(&m, "medai_model_server_model_loaded"), Some(1.0));
    assert_eq!(
        metric(&m, "medai_model_server_max_concurrent_generations"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "medai_model_server_queue_capacity"), Some(4.0));
    assert_eq!(metric(&m, "medai_model_server_queue_depth"), Some(0.0));
    assert!(metric(&m, "medai_model_server_requests_running").is_some());
    assert_eq!(
        metric(&m, "medai_model_server_requests_total{outcome=\"ok\"}"),
        Some(3.0)
    );
    assert!(
        metric(
            &m,
            "medai_model_server_requests_total{outcome=\"unauthorized\"}"
        )
        .unwrap()
            >= 4.0
    );
    assert!(metric(&m, "medai_model_server_requests_total{outcome=\"invalid\"}").unwrap() >= 7.0);
    assert!(
        metric(
            &m,
            "medai_model_server_requests_total{outcome=\"cancelled\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        metric(
            &m,
            "medai_model_server_requests_total{outcome=\"not_ready\"}"
        ),
        Some(1.0)
    );
    assert!(metric(&m, "medai_model_server_time_to_first_token_seconds_count").unwrap() >= 4.0);
    assert!(metric(&m, "medai_model_server_inter_token_latency_seconds_count").unwrap() >= 1.0);
    assert!(metric(&m, "medai_model_server_tokens_per_second_count").unwrap() >= 1.0);
    assert!(metric(&m, "medai_model_server_tokens_total{kind=\"completion\"}").unwrap() >= 3.0);
    // Every ChatML prompt opens like the warm-up prompt did: at least that was not run again.
    assert!(
        metric(
            &m,
            "medai_model_server_tokens_total{kind=\"prompt_cached\"}"
        )
        .unwrap()
            >= 1.0
    );
    catalogue_matches(&m);
}

/// `(name as scraped, type)` of the model server section of docs/metrics.md, compared both ways
/// with the exposition.
fn catalogue_matches(exposition: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Model server"))
        .expect("docs/metrics.md has a `## Model server` section");
    let mut documented = BTreeMap::new();
    for line in section.lines() {
        let Some(rest) = line.strip_prefix("| `medai_") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let name = format!("medai_{}", cells[0].trim_end_matches('`'));
        assert!(documented
            .insert(name, cells[1].trim().to_owned())
            .is_none());
    }
    let live: BTreeMap<String, String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            (name, kind.to_owned())
        })
        .collect();
    assert_eq!(
        live, documented,
        "docs/metrics.md `## Model server` vs /metrics"
    );
}

#[tokio::test]
async fn a_failed_load_is_never_ready() {
    let s = Server::start();
    s.state.set_failed("the weights failed their hash check");
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "failed");
    assert!(
        !body.to_string().contains("hash"),
        "the reason stays in the log"
    );
    let r = s.post(&ask(false, json!({}))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}
