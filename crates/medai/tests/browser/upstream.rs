//! A small OpenAI-compatible model server for the browser tests: `/v1/models` for the health
//! probe and a streaming `/v1/chat/completions` that sends its answer in pieces with a pause
//! between them, so a page that streams shows partial text before the whole answer.

use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The upstream model name, reported back as the answer's model version.
pub const UPSTREAM_MODEL: &str = "tiny-upstream-2026.12";

/// The pieces of every answer, in order. The page must show the first ones while the later
/// ones are still on their way.
pub const ANSWER_PIECES: [&str; 6] = [
    "Streaming check: ",
    "the troponin trend ",
    "is flat over six hours, ",
    "so an acute coronary syndrome is less likely. ",
    "Repeat the ECG if the pain returns. ",
    "End of answer.",
];

/// Pause between two pieces.
pub const PIECE_DELAY: Duration = Duration::from_millis(400);

/// The whole answer as the page should finally show it.
pub fn full_answer() -> String {
    ANSWER_PIECES.concat()
}

/// What the upstream saw: the bodies of the chat requests.
#[derive(Clone, Default)]
pub struct Upstream {
    /// Every chat request body received.
    pub seen: Arc<Mutex<Vec<Value>>>,
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-browser", "object": "chat.completion.chunk",
        "model": UPSTREAM_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

async fn completions(
    State(up): State<Upstream>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    up.seen.lock().unwrap().push(req);
    let pieces: Vec<String> = ANSWER_PIECES.iter().map(|p| (*p).to_owned()).collect();
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let pieces = pieces.clone();
        async move {
            let out = match i {
                0 => chunk(json!({"role": "assistant", "content": ""}), None),
                n if n <= pieces.len() => {
                    tokio::time::sleep(PIECE_DELAY).await;
                    chunk(json!({"content": pieces[n - 1]}), None)
                }
                n if n == pieces.len() + 1 => {
                    let usage = json!({"id": "chatcmpl-browser", "object": "chat.completion.chunk",
                        "model": UPSTREAM_MODEL, "choices": [],
                        "usage": {"prompt_tokens": 210, "completion_tokens": 31, "total_tokens": 241}});
                    format!(
                        "{}data: {usage}\n\ndata: [DONE]\n\n",
                        chunk(json!({}), Some("stop"))
                    )
                }
                _ => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(out)),
                i + 1,
            ))
        }
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn models() -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [{"id": UPSTREAM_MODEL, "object": "model"}]}))
}

/// Starts the upstream on a free loopback port; returns its state and base URL.
pub async fn start() -> (Upstream, String) {
    let up = Upstream::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(models))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (up, format!("http://{addr}"))
}
