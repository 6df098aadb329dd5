//! The answer path end to end against a real OpenAI-compatible HTTP server started by the test:
//! no raw PHI reaches the model, the streamed answer is re-identified exactly (a surrogate split
//! across two deltas included), red flags put an escalation first, identifiers the record did
//! not contain are masked and counted, the answer is stored with its provenance and audited,
//! and model failures map to the documented statuses.

use crate::common::{error_code, metric, setups, test_config, TestApp};
use axum::extract::State;
use axum::routing::post;
use medai_core::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers naming the patient placeholder, split inside it.
    Echo,
    /// Answers with an SSN that is in no record.
    Leak,
    /// Fails with 503.
    Down,
    /// Streams a sentence every 50 ms for 10 s; notes when its connection is dropped.
    Slow,
}

/// Sets its flag when dropped: the upstream response body is dropped when the connection
/// closes.
struct Closed(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Upstream {
    seen: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

fn chunk(content: &str) -> String {
    let c = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    format!("data: {c}\n\n")
}

async fn completions(
    State(up): State<Upstream>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let req: Value = serde_json::from_slice(&body).unwrap();
    up.seen.lock().unwrap().push(req.clone());
    let mode = *up.mode.lock().unwrap();
    if mode == Mode::Down {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": {"message": "overloaded", "type": "server_error"}})),
        )
            .into_response();
    }
    if mode == Mode::Slow {
        let guard = Closed(Arc::clone(&up.closed));
        let body = futures_util::stream::unfold((0u32, guard), |(n, guard)| async move {
            if n >= 200 {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let bytes = axum::body::Bytes::from(chunk("Still thinking. "));
            Some((Ok::<_, std::convert::Infallible>(bytes), (n + 1, guard)))
        });
        return (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            axum::body::Body::from_stream(body),
        )
            .into_response();
    }
    let system = req["messages"][0]["content"].as_str().unwrap().to_owned();
    let name = system
        .lines()
        .find_map(|l| l.strip_prefix("Patient name: "))
        .unwrap()
        .to_owned();
    let (a, b) = name.split_at(name.len() / 2);
    let mut out = String::new();
    match mode {
        Mode::Echo => {
            for piece in [
                "Consider ACS in ",
                a,
                b,
                ". Obtain a troponin and an ECG now.\n",
                "I am not certain without the ECG.",
            ] {
                out.push_str(&chunk(piece));
            }
        }
        Mode::Leak | Mode::Down | Mode::Slow => {
            for piece in ["Her SSN is 123-45-6789. ", "Review ", a, b, "."] {
                out.push_str(&chunk(piece));
            }
        }
    }
    let end = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    out.push_str(&format!("data: {end}\n\n"));
    let usage = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream",
        "choices": [], "usage": {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338}});
    out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        out,
    )
        .into_response()
}

async fn upstream() -> (Upstream, String) {
    let up = Upstream {
        seen: Arc::default(),
        mode: Arc::new(Mutex::new(Mode::Echo)),
        closed: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (up, format!("http://{addr}"))
}

fn llm_config(endpoint: &str) -> Value {
    json!({
        "default_model": "tiny",
        "models": [{
            "id": "tiny", "provider": "openai", "endpoint": endpoint, "model": "tiny-upstream",
            "context_window": 4096, "params": {"temperature": 0.1},
            "retry": {"max_retries": 0},
            "breaker": {"failure_threshold": 50, "cool_down": "1s"}
        }]
    })
}

/// The events of an SSE body, in order.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn answers_are_deidentified_upstream_reidentified_here_escalated_and_traceable() {
    for (kind, sessions) in setups() {
        let (up, endpoint) = upstream().await;
        let mut config = test_config();
        config.llm = Some(llm_config(&endpoint));
        let app = TestApp::start_with(kind, sessions, config).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let colleague = app
            .user(&admin, "colleague", Role::Clinician, &[&team])
            .await;
        let r = doc
            .client
            .post(app.url("/api/v1/patients"))
            .json(
                &json!({"mrn": "MRN-4471", "given_name": "Margaret", "family_name": "Whitfield",
                "date_of_birth": "1948-02-21", "sex": "female"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let pid = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = doc
            .client
            .post(app.url(&format!("/api/v1/patients/{pid}/notes")))
            .json(&json!({"text": "Mrs Whitfield seen by Dr Okafor on 3/14/2025; call back on 617-555-0142."}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let cid = app.conversation(&doc, &pid, "Chest pain").await;
        let ask = |c: &reqwest::Client, text: &str| {
            c.post(app.url(&format!("/api/v1/conversations/{cid}/messages")))
                .json(&json!({ "text": text }))
                .send()
        };

        let r = ask(
            &doc.client,
            "Mrs Whitfield has crushing chest pain with diaphoresis right now. Next steps?",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{kind:?}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let evs = events(&r.text().await.unwrap());
        assert_eq!(evs[0].0, "escalation", "{kind:?}: {evs:?}");
        assert_eq!(evs[0].1["rules"][0]["rule"], "acs");
        assert_eq!(evs.last().unwrap().0, "done", "{kind:?}: {evs:?}");
        let text: String = evs
            .iter()
            .filter(|(n, _)| n == "delta")
            .map(|(_, d)| d["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            text,
            "Consider ACS in Margaret Whitfield. Obtain a troponin and an ECG now.\nI am not certain without the ECG.",
            "{kind:?}"
        );

        // Nothing the record or question identifies reached the model.
        let seen = serde_json::to_string(&*up.seen.lock().unwrap()).unwrap();
        for phi in [
            "Margaret",
            "Whitfield",
            "MRN-4471",
            "1948-02-21",
            "Okafor",
            "617-555-0142",
            "3/14/2025",
        ] {
            assert!(!seen.contains(phi), "{kind:?}: {phi} reached the model");
        }
        assert!(seen.contains("clinical decision support"));
        assert!(seen.contains("\"temperature\":0.1"), "{seen}");

        // Stored with provenance; the question keeps its escalation.
        let detail: Value = doc
            .client
            .get(app.url(&format!("/api/v1/conversations/{cid}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let msgs = detail["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{kind:?}");
        assert_eq!(msgs[0]["kind"], "question");
        assert_eq!(msgs[0]["escalations"], json!(["acs"]));
        assert_eq!(msgs[1]["text"], text);
        let prov = &msgs[1]["provenance"];
        assert_eq!(prov["model"]["id"], "tiny", "{prov}");
        assert_eq!(prov["model"]["version"], "tiny-upstream");
        assert_eq!(prov["provider"], "openai");
        assert_eq!(prov["prompt_template_version"], "clinical-support-v1");
        assert_eq!(prov["tokens"], json!({"prompt": 321, "completion": 17}));
        assert_eq!(prov["finish_reason"], "stop");
        assert!(
            prov["deidentified"]["NAME"].as_u64().unwrap() >= 2,
            "{prov}"
        );
        assert!(prov["latency_ms"]["total"].is_u64());
        assert_eq!(evs.last().unwrap().1["provenance"], *prov);
        let stored: (Vec<u8>,) = {
            let mut c = app.state.store.pool().acquire().await.unwrap();
            sqlx::query_as("SELECT body_enc FROM conversation_messages WHERE kind = 'answer'")
                .fetch_one(&mut *c)
                .await
                .unwrap()
        };
        assert!(
            !stored.0.windows(9).any(|w| w == b"Whitfield"),
            "answer in plaintext"
        );
        assert_eq!(app.audit("assistant.question").await.len(), 1);
        assert_eq!(app.audit("assistant.answer").await.len(), 1);
        assert_eq!(app.audit("safety.escalation").await.len(), 1);
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "medai_safety_escalations_total{rule=\"acs\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(&m, "medai_llm_requests_total{model=\"tiny\",kind=\"ok\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &m,
                "medai_llm_tokens_total{model=\"tiny\",kind=\"completion\"}"
            ),
            Some(17.0)
        );

        // An identifier the record did not contain is masked, counted and audited.
        *up.mode.lock().unwrap() = Mode::Leak;
        let r = ask(&doc.client, "What is the differential for fatigue?")
            .await
            .unwrap();
        let evs = events(&r.text().await.unwrap());
        assert_ne!(evs[0].0, "escalation", "{kind:?}: no red flag");
        let text: String = evs
            .iter()
            .filter(|(n, _)| n == "delta")
            .map(|(_, d)| d["text"].as_str().unwrap())
            .collect();
        assert!(!text.contains("123-45-6789"), "{kind:?}: {text}");
        assert!(text.contains("[REDACTED"), "{kind:?}: {text}");
        assert!(
            text.ends_with("Review Margaret Whitfield."),
            "{kind:?}: {text}"
        );
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "medai_phi_leak_suspected_total{model=\"tiny\"}"),
            Some(1.0)
        );
        assert_eq!(app.audit("phi.leak_suspected").await.len(), 1);
        // The earlier exchange went to the model de-identified too.
        let seen = serde_json::to_string(&*up.seen.lock().unwrap()).unwrap();
        assert!(!seen.contains("Whitfield"), "{kind:?}");

        // A model that fails (upstream 503): 502 with the error kind, audited, nothing stored.
        *up.mode.lock().unwrap() = Mode::Down;
        let (status, code) = error_code(ask(&doc.client, "And now?").await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_GATEWAY, "status_5xx"),
            "{kind:?}"
        );
        let failures = app
            .audit("assistant.answer")
            .await
            .into_iter()
            .filter(|e| e.event.outcome == medai_core::audit::Outcome::Failure)
            .count();
        assert_eq!(failures, 1, "{kind:?}");

        // Only the owner asks; validation; a closed conversation takes no questions.
        let (status, code) = error_code(ask(&colleague.client, "May I?").await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "not_your_conversation")
        );
        for bad in ["", &"q".repeat(4001)] {
            let r = ask(&doc.client, bad).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{kind:?}");
        }
        let r = doc
            .client
            .post(app.url(&format!("/api/v1/conversations/{cid}/close")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (status, code) = error_code(ask(&doc.client, "Still there?").await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "conversation_closed")
        );
    }
}

#[tokio::test]
async fn without_a_configured_model_the_assistant_says_so() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-1", "Quimby", None).await;
        let cid = app.conversation(&doc, &pid, "Question").await;
        let r = doc
            .client
            .post(app.url(&format!("/api/v1/conversations/{cid}/messages")))
            .json(&json!({"text": "Anything?"}))
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "no_model"),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn a_clinician_who_goes_away_cancels_the_model_call_and_nothing_is_stored() {
    for (kind, sessions) in setups() {
        let (up, endpoint) = upstream().await;
        *up.mode.lock().unwrap() = Mode::Slow;
        let mut config = test_config();
        config.llm = Some(llm_config(&endpoint));
        let app = TestApp::start_with(kind, sessions, config).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-2", "Quimby", None).await;
        let cid = app.conversation(&doc, &pid, "Long answer").await;
        let mut r = doc
            .client
            .post(app.url(&format!("/api/v1/conversations/{cid}/messages")))
            .json(&json!({"text": "Summarise the plan."}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{kind:?}");
        // Read until the answer text has started (the start event may come in a chunk of its
        // own, and text is held back until the output check can see identifiers whole).
        let mut seen = String::new();
        while !seen.contains("event: delta") {
            let chunk = r.chunk().await.unwrap().expect("the answer streams");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(r);
        // The upstream connection closes well before the 10 s answer would end (waits up to
        // 8 s: a loaded CI machine can take seconds to notice the closed client socket).
        let mut closed = false;
        for _ in 0..160 {
            if up.closed.load(std::sync::atomic::Ordering::SeqCst) {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(closed, "{kind:?}: the upstream call was not cancelled");
        // "Test Quimby" is no dictionary name: the record's own values are replaced anyway.
        let seen = serde_json::to_string(&*up.seen.lock().unwrap()).unwrap();
        for phi in ["Quimby", "MRN-2", "Patient name: Test"] {
            assert!(!seen.contains(phi), "{kind:?}: {phi} reached the model");
        }
        // The failure is audited once the task has finished; no answer is stored.
        let mut failures = Vec::new();
        for _ in 0..200 {
            failures = app.audit("assistant.answer").await;
            if !failures.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(failures.len(), 1, "{kind:?}");
        assert_eq!(
            failures[0].event.outcome,
            medai_core::audit::Outcome::Failure
        );
        assert!(failures[0]
            .event
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("client_disconnected"));
        let mut c = app.state.store.pool().acquire().await.unwrap();
        let (answers,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM conversation_messages WHERE kind = 'answer'")
                .fetch_one(&mut *c)
                .await
                .unwrap();
        assert_eq!(answers, 0, "{kind:?}");
    }
}
