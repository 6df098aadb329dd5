//! What `POST /api/v1/conversations/{id}/messages` adds to an answer, model time excluded.
//!
//! The real server (router, sessions, authorisation, store, audit log, PHI de-identification,
//! triage, streaming re-identification, leak check, provenance) runs on loopback in front of a
//! local OpenAI-compatible upstream that streams 200 tokens at a fixed pace. 1, 16 and 64
//! clinicians each ask one question after another in their own conversation (a closed loop, with
//! their first questions spread over one answer's duration), so that many answers are always in
//! flight. The upstream notes, per
//! request, when it received it, when it sent the first token and when it sent the last byte;
//! the client notes when it sent the question, when the first `delta` arrived and when `done`
//! arrived. Per answer:
//! - overhead = client total − upstream's own stream duration (everything medai adds: the work
//!   before the model call, any lag while streaming, and storing and auditing the answer);
//! - before = question sent → upstream has the request (authorise, load and de-identify the
//!   record, triage, store and audit the question, open the upstream connection);
//! - first token = extra time to the first delta over the upstream's own time to first token;
//! - after = upstream's last byte → `done` (last re-identification, store and audit the answer).
//!
//! `cargo bench -p medai-server --bench answer`. SQLite always; PostgreSQL too when
//! `MEDAI_TEST_POSTGRES_URL` is set. `MEDAI_BENCH_GAP_MS` sets the token pace (default 2; at 20
//! the run takes about 4 minutes a backend); `MEDAI_BENCH_STREAMS=64` runs only that level.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    dead_code,
    reason = "benchmark harness"
)]

#[path = "../tests/api/common.rs"]
mod common;

use axum::extract::State;
use axum::routing::post;
use common::{setups, test_config, Sessions, TestApp};
use medai_core::Role;
use medai_store::DatabaseKind;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKENS: usize = 200;

/// What the upstream saw of one request.
#[derive(Clone, Copy, Debug)]
struct UpTimes {
    received: Instant,
    first: Instant,
    last: Instant,
}

#[derive(Clone)]
struct Upstream {
    gap: Duration,
    /// By the marker number found in the question.
    times: Arc<Mutex<HashMap<u64, UpTimes>>>,
}

fn chunk(content: &str) -> String {
    let c = json!({"id": "b1", "object": "chat.completion.chunk", "model": "bench-upstream",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    format!("data: {c}\n\n")
}

/// The marker `zq<N>xv` the bench puts in each question, N in letters (a = 0 … j = 9) so that
/// de-identification leaves it alone.
fn marker_text(id: u64) -> String {
    let digits: String = id
        .to_string()
        .bytes()
        .map(|d| char::from(b'a' + (d - b'0')))
        .collect();
    format!("zq{digits}xv")
}

fn marker(req: &Value) -> u64 {
    let text = req["messages"].to_string();
    // the last one: earlier questions of the conversation come along as history
    let start = text.rfind("zq").expect("marker in prompt") + 2;
    let digits: String = text[start..]
        .chars()
        .take_while(|c| ('a'..='j').contains(c))
        .map(|c| char::from(b'0' + (c as u8 - b'a')))
        .collect();
    digits.parse().expect("marker number")
}

async fn completions(
    State(up): State<Upstream>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let received = Instant::now();
    let req: Value = serde_json::from_slice(&body).unwrap();
    let id = marker(&req);
    // The surrogate name the record was given, so re-identification has work to do.
    let system = req["messages"][0]["content"].as_str().unwrap_or("");
    let name = system
        .lines()
        .find_map(|l| l.strip_prefix("Patient name: "))
        .unwrap_or("the patient")
        .to_owned();
    let words: Vec<String> = format!("Consider {name} for acute coronary syndrome, pulmonary embolism and aortic dissection; obtain a troponin and an ECG. ")
        .split_inclusive(' ')
        .map(str::to_owned)
        .collect();
    let mut pieces: Vec<String> = (0..TOKENS)
        .map(|i| chunk(&words[i % words.len()]))
        .collect();
    let end = json!({"id": "b1", "object": "chat.completion.chunk", "model": "bench-upstream",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 300, "completion_tokens": TOKENS, "total_tokens": 300 + TOKENS}});
    pieces.push(format!("data: {end}\n\ndata: [DONE]\n\n"));
    let gap = up.gap;
    let times = Arc::clone(&up.times);
    let body = futures_util::stream::unfold(
        (0usize, pieces, None::<Instant>),
        move |(n, pieces, first)| {
            let times = Arc::clone(&times);
            async move {
                if n >= pieces.len() {
                    return None;
                }
                if n > 0 {
                    tokio::time::sleep(gap).await;
                }
                let now = Instant::now();
                let first = first.or(Some(now));
                if n + 1 == pieces.len() {
                    times.lock().unwrap().insert(
                        id,
                        UpTimes {
                            received,
                            first: first.unwrap_or(now),
                            last: now,
                        },
                    );
                }
                let bytes = axum::body::Bytes::from(pieces[n].clone());
                Some((
                    Ok::<_, std::convert::Infallible>(bytes),
                    (n + 1, pieces, first),
                ))
            }
        },
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// What the client saw of one answer.
struct ClientTimes {
    id: u64,
    sent: Instant,
    first_delta: Instant,
    done: Instant,
    text_len: usize,
}

async fn ask(app: &TestApp, client: &reqwest::Client, conversation: &str, id: u64) -> ClientTimes {
    let sent = Instant::now();
    let r = client
        .post(app.url(&format!("/api/v1/conversations/{conversation}/messages")))
        .json(&json!({"text": format!("What should I consider for her blood pressure today? Reference {}.", marker_text(id))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let mut r = r;
    let mut buf: Vec<u8> = Vec::new();
    let mut first_delta = None;
    let mut done = None;
    let mut text_len = 0;
    while let Some(bytes) = r.chunk().await.unwrap() {
        buf.extend_from_slice(&bytes);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let block = String::from_utf8(block).unwrap();
            if block.contains("event: delta") || block.contains("event:delta") {
                first_delta.get_or_insert_with(Instant::now);
                text_len += block.len();
            } else if block.contains("event: done") || block.contains("event:done") {
                done = Some(Instant::now());
            } else if block.contains("event: error") || block.contains("event:error") {
                panic!("answer failed: {block}");
            }
        }
    }
    ClientTimes {
        id,
        sent,
        first_delta: first_delta.expect("a delta"),
        done: done.expect("a done event"),
        text_len,
    }
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    let rank = ((values.len() as f64) * p).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// CPU time used so far by the threads whose name starts with one of `prefixes` (Linux
/// `/proc`; `None` elsewhere). Unlike wall time it does not grow while a thread waits for a core.
fn cpu_of(prefixes: &[&str]) -> Option<Duration> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !prefixes.iter().any(|p| comm.starts_with(p)) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// CPU time of the whole process so far, exited threads included (`/proc/self/stat`, in clock
/// ticks of 10 ms).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU used by the server: the process minus the bench's own client and upstream threads
/// (which live as long as the bench, so their per-thread counters are exact).
fn server_cpu() -> Option<Duration> {
    let others = cpu_of(&["bench-client", "bench-upstream"])?;
    Some(process_cpu()?.saturating_sub(others))
}

fn bench(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    kind: DatabaseKind,
    sessions: Sessions,
    up: &Upstream,
    endpoint: &str,
) {
    server_rt.block_on(bench_on(client_rt, kind, sessions, up, endpoint));
}

async fn bench_on(
    client_rt: &tokio::runtime::Runtime,
    kind: DatabaseKind,
    sessions: Sessions,
    up: &Upstream,
    endpoint: &str,
) {
    let mut config = test_config();
    // Setting up 64 clinicians moves the test clock 30 s per sign-in; keep their sessions.
    config.auth.session_idle_timeout = Duration::from_secs(12 * 3600);
    config.llm = Some(json!({
        "default_model": "bench",
        "models": [{
            "id": "bench", "provider": "openai", "endpoint": endpoint, "model": "bench-upstream",
            "context_window": 8192,
            "limits": {"max_concurrent": 128, "max_queue": 128},
            "retry": {"max_retries": 0}
        }]
    }));
    let app = Arc::new(TestApp::start_with(kind, sessions, config).await);
    let admin = app.admin().await;
    let team = app.care_team(&admin, "bench").await;
    let max_streams = 64;
    let mut clinicians = Vec::new();
    for i in 0..max_streams {
        let doc = app
            .user(&admin, &format!("doc{i}"), Role::Clinician, &[&team])
            .await;
        let r = doc
            .client
            .post(app.url("/api/v1/patients"))
            .json(
                &json!({"mrn": format!("MRN-{:05}", 40000 + i), "given_name": "Margaret",
                "family_name": format!("Whitfield{}", char::from(b'a' + (i % 26) as u8)),
                "date_of_birth": "1948-02-21", "sex": "female"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        let pid = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = doc
            .client
            .post(app.url(&format!("/api/v1/patients/{pid}/notes")))
            .json(&json!({"text": "Seen by Dr Okafor on 3/14/2025 for hypertension; BP 162/94 on amlodipine 5 mg. Call back on 617-555-0142."}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        let conv = app.conversation(&doc, &pid, "bench").await;
        clinicians.push((doc.client, conv));
    }
    let clinicians = Arc::new(clinicians);
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let backend = match kind {
        DatabaseKind::Sqlite => "SQLite",
        DatabaseKind::Postgres => "PostgreSQL",
    };
    // Closed loop: `streams` clinicians each ask one question after another, their first
    // questions spread over one answer's duration, so `streams` answers are always in flight
    // (a steady load, not a burst). Each clinician's first answer warms up and is not measured.
    let answer_time = up.gap * (TOKENS as u32 + 1);
    for (streams, per_clinician) in levels() {
        let client = client_rt.handle().clone();
        let cpu_before = server_cpu();
        let tasks: Vec<_> = (0..streams)
            .map(|i| {
                let app = Arc::clone(&app);
                let clinicians = Arc::clone(&clinicians);
                let next_id = Arc::clone(&next_id);
                let offset = answer_time * i as u32 / streams as u32;
                client.spawn(async move {
                    tokio::time::sleep(offset).await;
                    let (http, conv) = &clinicians[i];
                    let mut out = Vec::new();
                    for k in 0..per_clinician {
                        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let t = ask(&app, http, conv, id).await;
                        if k > 0 {
                            out.push(t);
                        }
                    }
                    out
                })
            })
            .collect();
        let mut samples = Vec::new();
        for t in tasks {
            samples.extend(t.await.unwrap());
        }
        // every answer (warm-ups included) used server CPU during the run
        let answers = (streams * per_clinician) as u32;
        let server_cpu = server_cpu()
            .zip(cpu_before)
            .map(|(after, before)| ms(after.saturating_sub(before) / answers))
            .unwrap_or_else(|| "n/a".into());
        let times = up.times.lock().unwrap().clone();
        let (mut overhead, mut before, mut first, mut after, mut total, mut upstream) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for s in &samples {
            assert!(s.text_len > 0);
            let Some(u) = times.get(&s.id) else {
                let mut seen: Vec<_> = times.keys().collect();
                seen.sort_unstable();
                panic!("the upstream did not see question {} (saw {seen:?})", s.id);
            };
            let client_total = s.done - s.sent;
            let up_total = u.last - u.received;
            total.push(client_total);
            upstream.push(up_total);
            overhead.push(client_total.saturating_sub(up_total));
            before.push(u.received.saturating_duration_since(s.sent));
            first.push(
                (s.first_delta - s.sent)
                    .saturating_sub(u.first.saturating_duration_since(u.received)),
            );
            after.push(s.done.saturating_duration_since(u.last));
        }
        println!(
            "{:>10} {:>7} {:>7} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>8} | {:>8} {:>8}",
            backend,
            streams,
            samples.len(),
            ms(percentile(&mut overhead, 0.50)),
            ms(percentile(&mut overhead, 0.99)),
            ms(percentile(&mut before, 0.50)),
            ms(percentile(&mut before, 0.99)),
            ms(percentile(&mut first, 0.50)),
            ms(percentile(&mut first, 0.99)),
            ms(percentile(&mut after, 0.50)),
            ms(percentile(&mut after, 0.99)),
            server_cpu,
            ms(percentile(&mut total, 0.50)),
            ms(percentile(&mut upstream, 0.50)),
        );
    }
    drop(clinicians);
    if let Ok(app) = Arc::try_unwrap(app) {
        drop(app);
    }
}

/// Concurrency levels and answers per clinician (the first of each is a warm-up):
/// `MEDAI_BENCH_STREAMS=64` runs one level; the default runs 1, 16 and 64 streams with at least
/// 20 measured answers at 1 stream and 320 at 64, so that p99 is not one or two answers.
fn levels() -> Vec<(usize, usize)> {
    let all = [(1usize, 21usize), (16, 11), (64, 6)];
    match std::env::var("MEDAI_BENCH_STREAMS") {
        Ok(v) => v
            .split(',')
            .map(|s| {
                let n: usize = s.trim().parse().unwrap_or(0);
                *all.iter()
                    .find(|(streams, _)| *streams == n)
                    .unwrap_or_else(|| {
                        panic!("MEDAI_BENCH_STREAMS={v:?}: each level must be 1, 16 or 64")
                    })
            })
            .collect(),
        Err(_) => all.to_vec(),
    }
}

fn main() {
    let gap_ms: u64 = std::env::var("MEDAI_BENCH_GAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let up = Upstream {
        gap: Duration::from_millis(gap_ms),
        times: Arc::default(),
    };
    // The upstream has its own runtime thread so its pace does not depend on medai's load.
    let upstream_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-upstream")
        .enable_all()
        .build()
        .unwrap();
    let endpoint = upstream_rt.block_on(async {
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(up.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("medai-server")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "medai answer path overhead: {TOKENS} tokens per answer, one SSE event every {gap_ms} ms, {cores} cores; server, clients and upstream in one process"
    );
    println!(
        "{:>10} {:>7} {:>7} | {:>17} | {:>17} | {:>17} | {:>17} | {:>8} | {:>8} {:>8}",
        "backend",
        "streams",
        "answers",
        "overhead p50/p99",
        "before p50/p99",
        "1st tok p50/p99",
        "after p50/p99",
        "cpu/ans",
        "total",
        "upstream"
    );
    for (kind, sessions) in setups() {
        if sessions == Sessions::Redis && kind == DatabaseKind::Sqlite {
            continue;
        }
        bench(&server_rt, &client_rt, kind, sessions, &up, &endpoint);
    }
    println!("(ms; overhead = client total - upstream stream duration; before = question sent -> upstream has it; after = upstream last byte -> done event; cpu/ans = CPU of the server's threads per answer (PostgreSQL's own processes not included); total/upstream are p50)");
    drop(client_rt);
    drop(server_rt);
    drop(upstream_rt);
}
