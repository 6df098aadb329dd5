//! What medai's provider layer adds to each answer, model time excluded.
//!
//! A local OpenAI-compatible upstream (the test server) streams 200 tokens at a fixed pace; 1, 16
//! and 64 answers run at once through `ModelRegistry::chat_stream` (queue, breaker, timeouts,
//! observer) and `StreamingReidentifier`. Per answer it reports:
//! - processing: time spent inside the pipeline — every poll of the answer stream (HTTP body
//!   read, SSE and JSON parsing, bookkeeping, observer) plus re-identification of each delta;
//!   waiting for the upstream is not counted. This is the overhead figure.
//! - end to end: the client's total next to the upstream's own duration for the same streams
//!   (the difference includes scheduling of both on the same cores).
//! - isolated: parse + re-identify of the same body with no network, single-threaded.
//!
//! `cargo bench -p medai-llm --bench overhead` (about 20 s). `MEDAI_BENCH_GAP_MS` sets the token
//! pace (default 2 ms).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    missing_docs,
    reason = "benchmark binary"
)]

#[path = "../tests/llm/upstream.rs"]
mod upstream;

use futures_util::{Stream, StreamExt};
use medai_llm::openai::ChatStreamDecoder;
use medai_llm::{
    ChatRequest, Completion, ErrorKind, LlmConfig, LlmObserver, Message, ModelRegistry, Role,
    SamplingParams, StreamEvent, StreamingReidentifier, Timing, Usage,
};
use medai_phi::{Detector, Vault};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use upstream::{sse_events, Reply, Upstream};

const TOKENS: usize = 200;

/// Counts like a Prometheus exporter would (atomic adds), so its cost is in the figures.
#[derive(Default)]
struct CountingObserver {
    counters: [AtomicU64; 8],
}

impl CountingObserver {
    fn add(&self, i: usize, v: u64) {
        self.counters[i].fetch_add(v, Ordering::Relaxed);
    }
}

impl LlmObserver for CountingObserver {
    fn request_started(&self, _: &str) {
        self.add(0, 1);
    }
    fn request_finished(&self, _: &str, _: Option<ErrorKind>) {
        self.add(1, 1);
    }
    fn first_token(&self, _: &str, latency: Duration) {
        self.add(2, latency.as_micros() as u64);
    }
    fn completed(&self, _: &str, latency: Duration, usage: Option<Usage>) {
        self.add(3, latency.as_micros() as u64);
        if let Some(u) = usage {
            self.add(4, u64::from(u.prompt_tokens));
            self.add(5, u64::from(u.completion_tokens));
        }
    }
    fn upstream_error(&self, _: &str, _: ErrorKind) {
        self.add(6, 1);
    }
    fn queue_depth(&self, _: &str, depth: usize) {
        self.add(7, depth as u64);
    }
}

/// Adds up the time spent inside `poll_next` of the wrapped stream.
struct Timed<S> {
    inner: S,
    busy: Duration,
}

impl<S: Stream + Unpin> Stream for Timed<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let started = Instant::now();
        let result = Pin::new(&mut self.inner).poll_next(cx);
        self.busy += started.elapsed();
        result
    }
}

struct Sample {
    processing: Duration,
    total: Duration,
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    let rank = ((values.len() as f64) * p).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// A 200-token answer in the style of a model, with surrogates from `vault` in it.
fn answer_tokens(deid_note: &str) -> Vec<String> {
    let words: Vec<&str> = deid_note
        .split_inclusive(' ')
        .chain("The differential includes acute coronary syndrome, pulmonary embolism and aortic dissection; ".split_inclusive(' '))
        .collect();
    (0..TOKENS)
        .map(|i| words[i % words.len()].to_string())
        .collect()
}

async fn one_answer(registry: &ModelRegistry, vault: &Vault) -> Sample {
    let started = Instant::now();
    let request = ChatRequest {
        messages: vec![
            Message::new(Role::System, "You are clinical decision support."),
            Message::new(Role::User, "What should I consider?"),
        ],
        params: SamplingParams::default(),
    };
    let stream = registry.chat_stream(None, request).await.unwrap();
    let mut stream = Timed {
        inner: stream,
        busy: Duration::ZERO,
    };
    let mut reid = StreamingReidentifier::new(vault);
    let mut reid_time = Duration::ZERO;
    let mut shown = 0usize;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Delta(text) => {
                let t = Instant::now();
                shown += reid.push(&text).len();
                reid_time += t.elapsed();
            }
            StreamEvent::Done(_) => break,
        }
    }
    let t = Instant::now();
    shown += reid.finish().len();
    reid_time += t.elapsed();
    assert!(shown > 0);
    Sample {
        processing: stream.busy + reid_time,
        total: started.elapsed(),
    }
}

fn isolated(body: &[Vec<u8>], vault: &Vault, runs: usize) -> Vec<Duration> {
    let template = Completion {
        model_id: "bench".into(),
        provider: "openai".into(),
        upstream_model: None,
        params: SamplingParams::default(),
        usage: None,
        finish_reason: None,
        timing: Timing::default(),
        attempts: 1,
        failover: false,
    };
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let mut decoder = ChatStreamDecoder::new(template.clone());
        let mut reid = StreamingReidentifier::new(vault);
        let mut shown = 0;
        for piece in body {
            decoder.feed(piece, &mut out);
            for event in out.drain(..) {
                if let Ok(StreamEvent::Delta(text)) = event {
                    shown += reid.push(&text).len();
                }
            }
        }
        shown += reid.finish().len();
        assert!(shown > 0);
        times.push(started.elapsed());
    }
    times
}

/// CPU time used so far by the client runtime's threads (Linux `/proc`; `None` elsewhere). Unlike
/// the wall time inside polls, it does not grow when another process preempts the thread.
fn client_cpu() -> Option<Duration> {
    let mut total = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("medai-client") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        found = true;
    }
    found.then(|| Duration::from_nanos(total))
}

fn main() {
    let gap_ms: u64 = std::env::var("MEDAI_BENCH_GAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let gap = Duration::from_millis(gap_ms);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut vault = Vault::with_seed(5);
    let note = vault.deidentify(
        &Detector::new(),
        "Margaret Okonkwo (MRN 5567123, DOB 02/11/1948) was seen by Dr. Alan Whitcombe at Springfield General on 03/14/2024; call (617) 555-0142 with results. ",
    );
    let tokens = answer_tokens(&note.text);
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = sse_events(&refs, "bench-model", Some((300, TOKENS)));

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let up = server_rt.block_on(Upstream::start());
    up.always(Reply::pieces(body.clone()).delayed(Duration::ZERO, gap, gap));
    let nominal = gap * (body.len() as u32);

    let config: LlmConfig = toml::from_str(&format!(
        r#"default_model = "bench"
[[models]]
id = "bench"
provider = "openai"
endpoint = "{}"
model = "bench-model"
context_window = 8192
limits = {{ max_concurrent = 128, max_queue = 128 }}
"#,
        up.url()
    ))
    .unwrap();
    let registry = Arc::new(
        ModelRegistry::from_config(&config, Arc::new(CountingObserver::default())).unwrap(),
    );
    let vault = Arc::new(vault);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("medai-client")
        .enable_all()
        .build()
        .unwrap();

    println!(
        "medai-llm overhead: {TOKENS} tokens per answer, one SSE event every {gap_ms} ms (scripted {} ms), {cores} cores, upstream in the same process",
        nominal.as_millis()
    );
    println!(
        "{:>7} {:>8} | {:>10} {:>10} {:>12} | {:>10} {:>10} {:>10} {:>10}",
        "streams",
        "answers",
        "proc p50",
        "proc p99",
        "per token",
        "total p50",
        "total p99",
        "up p50",
        "up p99"
    );
    for (streams, rounds) in [(1usize, 15usize), (16, 4), (64, 4)] {
        // one unmeasured round to warm connections
        let warm = |n: usize| {
            let registry = Arc::clone(&registry);
            let vault = Arc::clone(&vault);
            client_rt.block_on(async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let registry = Arc::clone(&registry);
                        let vault = Arc::clone(&vault);
                        tokio::spawn(async move { one_answer(&registry, &vault).await })
                    })
                    .collect();
                let mut samples = Vec::new();
                for t in tasks {
                    samples.push(t.await.unwrap());
                }
                samples
            })
        };
        warm(streams);
        up.take_durations();
        let cpu_before = client_cpu();
        let mut samples = Vec::new();
        for _ in 0..rounds {
            samples.extend(warm(streams));
        }
        let cpu = client_cpu()
            .zip(cpu_before)
            .map(|(after, before)| ms((after - before) / samples.len() as u32))
            .unwrap_or_else(|| "n/a".into());
        let mut upstream = up.take_durations();
        let mut processing: Vec<Duration> = samples.iter().map(|s| s.processing).collect();
        let mut total: Vec<Duration> = samples.iter().map(|s| s.total).collect();
        let p50 = percentile(&mut processing, 0.50);
        let p99 = percentile(&mut processing, 0.99);
        println!(
            "{:>7} {:>8} | {:>10} {:>10} {:>10}us {:>11} | {:>10} {:>10} {:>10} {:>10}",
            streams,
            samples.len(),
            ms(p50),
            ms(p99),
            format!("{:.1}", p50.as_secs_f64() * 1e6 / TOKENS as f64),
            cpu,
            ms(percentile(&mut total, 0.50)),
            ms(percentile(&mut total, 0.99)),
            ms(percentile(&mut upstream, 0.50)),
            ms(percentile(&mut upstream, 0.99)),
        );
    }
    let mut alone = isolated(&body, &vault, 2000);
    println!(
        "isolated parse + re-identify of one answer (no network, one thread): p50 {} ms, p99 {} ms",
        ms(percentile(&mut alone, 0.50)),
        ms(percentile(&mut alone, 0.99))
    );
    println!("(ms unless marked; proc = wall time inside the pipeline per answer, preemption included; cpu/answer = CPU of the client runtime threads per answer, HTTP client included; up = the upstream's own stream duration)");
    drop(client_rt);
    drop(up);
    drop(server_rt);
}
