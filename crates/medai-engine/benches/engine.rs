//! The embedded engine on random-weight GGUF files of real model shapes: Qwen2.5-0.5B-Instruct
//! (Q8_0) and Qwen2.5-1.5B-Instruct (Q4_K_M-like: Q4_K matrices, Q6_K embedding). Random weights
//! cost the same arithmetic as trained ones, so the speeds carry over.
//!
//! For each shape it reports: the time to write the file, load time without and with warm-up,
//! and for a 128-token prompt the time to first token of the first request without warm-up, of
//! a later request that shares nothing with it, of the first request after a warm-up that kept
//! the system text it starts with, and of one that shares only half that text; prompt tokens
//! per second; decode tokens per second. Each line says how many prompt tokens were kept from
//! before and how many were run.
//!
//! `cargo bench -p medai-engine --bench engine`. `MEDAI_BENCH_SHAPES` picks shapes
//! (`0.5b,1.5b`, the default), `MEDAI_BENCH_DECODE` the tokens generated per request (64),
//! `MEDAI_BENCH_THREADS` the inference threads (every core). The fixture tokenizer has a
//! 259-symbol byte-level vocabulary, so sampling (not the model) is cheaper here than with the
//! real 151k vocabulary: well under a millisecond per token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    missing_docs,
    reason = "benchmark binary"
)]

use futures_util::StreamExt;
use medai_engine::fixture::{self, ModelShape};
use medai_engine::{Engine, EngineConfig};
use medai_llm::{ChatRequest, Message, ModelProvider, Role, SamplingParams, StreamEvent};
use std::path::Path;
use std::time::{Duration, Instant};

const PROMPT_TOKENS: usize = 128;

/// The system text the warm engine keeps: 80 bytes, so with the fixture's byte-level tokenizer
/// and the ChatML opening, the first 88 of the 128 prompt tokens. (medai's own system prompt is
/// about 115 tokens with Qwen's tokenizer, and its prompts are longer than 128 tokens: about 40
/// to 200 new tokens after the kept prefix, for the patient context and the question.)
const WARM_SYSTEM: &str =
    "You are a clinical decision support assistant for clinicians. Cite your basis.. ";

struct Run {
    ttft: Duration,
    decode_tokens: u32,
    decode_time: Duration,
    /// CPU time of the whole process (every thread) until the first token, and after it.
    ttft_cpu: f64,
    decode_cpu: f64,
    /// Prompt tokens found in the kept prefix, and run.
    reused: u64,
    ran: u64,
}

/// CPU seconds this process has used (user + system, all threads), from `/proc/self/stat`
/// (clock ticks of 1/100 s); 0 where that file does not exist.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A conversation with this system text whose rendered prompt is exactly [`PROMPT_TOKENS`]
/// tokens; `variant` changes the user's text from its first byte, so two variants share nothing
/// after the system turn.
fn prompt(engine: &Engine, system: &str, variant: usize) -> Vec<Message> {
    let system = Message::new(Role::System, system);
    let alphabet = b"abcdefghij klmnopqrstuvwxyz";
    let mut text = String::new();
    loop {
        let messages = vec![system.clone(), Message::new(Role::User, text.clone())];
        let n = engine.prompt_tokens(&messages).unwrap().len();
        if n >= PROMPT_TOKENS {
            assert_eq!(n, PROMPT_TOKENS, "the byte-level prompt overshot");
            return messages;
        }
        text.push(alphabet[(text.len() * 7 + variant * 5) % alphabet.len()] as char);
    }
}

async fn run(engine: &Engine, messages: Vec<Message>, decode: u32, seed: u64) -> Run {
    let req = ChatRequest {
        messages,
        params: SamplingParams {
            temperature: Some(0.8),
            seed: Some(seed),
            max_tokens: Some(decode),
            ..SamplingParams::default()
        },
    };
    let before = engine.stats();
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut stream = engine.chat_stream(&req).await.unwrap();
    let mut first = None;
    let mut first_cpu = None;
    let mut usage = None;
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            StreamEvent::Delta(_) => {
                first.get_or_insert_with(|| start.elapsed());
                first_cpu.get_or_insert_with(cpu_seconds);
            }
            StreamEvent::Done(c) => usage = c.usage,
        }
    }
    let total = start.elapsed();
    let cpu_end = cpu_seconds();
    let after = engine.stats();
    let first_cpu = first_cpu.unwrap_or(cpu_end);
    let generated = usage.unwrap().completion_tokens;
    let ttft = first.unwrap_or(total);
    Run {
        ttft,
        decode_tokens: generated.saturating_sub(1),
        decode_time: total.saturating_sub(ttft),
        ttft_cpu: first_cpu - cpu_start,
        decode_cpu: cpu_end - first_cpu,
        reused: after.cached_prompt_tokens - before.cached_prompt_tokens,
        ran: after.prompt_tokens - before.prompt_tokens,
    }
}

fn load(
    gguf: &Path,
    tokenizer: &Path,
    warmup: Option<&str>,
    threads: Option<usize>,
) -> (Engine, Duration) {
    let mut config = EngineConfig::new("bench", gguf.into(), tokenizer.into());
    config.warmup = warmup.is_some();
    config.warmup_system_prompt = warmup.map(str::to_string);
    config.threads = threads;
    let start = Instant::now();
    let engine = Engine::load(config).unwrap();
    (engine, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn first_token_line(label: &str, r: &Run) {
    println!(
        "    {:>6}  {label} ({} prompt tokens kept, {} run)",
        ms(r.ttft),
        r.reused,
        r.ran
    );
}

async fn bench(shape: ModelShape, decode: u32, threads: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let (gguf, tokenizer) = fixture::write_model(dir.path(), &shape, None).unwrap();
    let size = std::fs::metadata(&gguf).unwrap().len();
    println!(
        "\n{} — {:.0} MiB GGUF written in {}",
        shape.name,
        size as f64 / 1048576.0,
        ms(start.elapsed())
    );

    // No warm-up: the very first forward pass, then a prompt that shares nothing with it but
    // the template's opening of the system turn.
    let (engine, cold_load) = load(&gguf, &tokenizer, None, threads);
    let cold = run(
        &engine,
        prompt(&engine, "You are a clinical decision support assistant.", 1),
        4,
        1,
    )
    .await;
    let later = run(
        &engine,
        prompt(&engine, "Answer questions about one patient, briefly.", 2),
        decode,
        2,
    )
    .await;
    let prefill = {
        let s = engine.stats();
        s.prefill_seconds
    };
    drop(engine);
    let prompt_rate = later.ran as f64 / later.ttft.as_secs_f64();
    let decode_rate = f64::from(later.decode_tokens) / later.decode_time.as_secs_f64();

    // Warm-up keeps the system text most prompts start with.
    let (engine, warm_load) = load(&gguf, &tokenizer, Some(WARM_SYSTEM), threads);
    let kept = engine.prefix_tokens();
    let warmup = engine.warmup_time().unwrap_or_default();
    let after_warmup = run(
        &engine,
        prompt(&engine, &format!("{WARM_SYSTEM}Age 67."), 3),
        4,
        3,
    )
    .await;
    let half = run(
        &engine,
        prompt(&engine, &format!("{}Other text.", &WARM_SYSTEM[..40]), 4),
        4,
        4,
    )
    .await;
    drop(engine);

    println!("  load without warm-up     {}", ms(cold_load));
    println!(
        "  load with warm-up        {} (warm-up {}, {kept} tokens kept)",
        ms(warm_load),
        ms(warmup)
    );
    println!("  first token, 128-token prompt:");
    first_token_line("first request, no warm-up", &cold);
    first_token_line("later request, nothing shared", &later);
    first_token_line(
        "first request after warm-up, system text kept",
        &after_warmup,
    );
    first_token_line("later request, half the system text kept", &half);
    println!(
        "  prompt                   {prompt_rate:.0} tokens/s run (later request; {:.2} s of prefill in all)",
        prefill
    );
    println!(
        "  CPU time (all threads)   {:.2} s to the first token, {:.3} s per decoded token (later request): {:.0} prompt and {:.1} decode tokens per CPU-second",
        later.ttft_cpu,
        later.decode_cpu / f64::from(later.decode_tokens.max(1)),
        later.ran as f64 / later.ttft_cpu,
        f64::from(later.decode_tokens) / later.decode_cpu,
    );
    println!(
        "  decode                   {decode_rate:.1} tokens/s ({} tokens)",
        later.decode_tokens,
    );
}

fn main() {
    let shapes = std::env::var("MEDAI_BENCH_SHAPES").unwrap_or_else(|_| "0.5b,1.5b".into());
    let decode: u32 = std::env::var("MEDAI_BENCH_DECODE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let threads: Option<usize> = std::env::var("MEDAI_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "medai-engine bench: {cores} cores, threads {}, load average {}",
        threads.map_or("all".to_string(), |t| t.to_string()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for name in shapes.split(',') {
        let shape = match name.trim() {
            "0.5b" => ModelShape::qwen2_5_0_5b(),
            "1.5b" => ModelShape::qwen2_5_1_5b(),
            other => panic!("unknown shape {other} (0.5b or 1.5b)"),
        };
        rt.block_on(bench(shape, decode, threads));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
