//! The model's own thread: takes one job at a time from the bounded queue and streams its tokens.

use crate::model::LoadedModel;
use crate::sample::Sampler;
use crate::stats::Counters;
use crate::text::{Detokenizer, Filtered, StopFilter};
use medai_llm::{Completion, LlmError, SamplingParams, StreamEvent, Timing, Usage};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenizers::Tokenizer;
use tokio::sync::mpsc::Sender;

/// One request, ready to run.
pub(crate) struct Job {
    pub prompt: Vec<u32>,
    /// The parameters after defaults, as recorded in the provenance.
    pub params: SamplingParams,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub enqueued: Instant,
    pub events: Sender<Result<StreamEvent, LlmError>>,
}

/// What the worker needs besides the model.
pub(crate) struct WorkerContext {
    pub model_id: String,
    pub upstream_model: Option<String>,
    pub tokenizer: Arc<Tokenizer>,
    pub vocab_size: usize,
    pub end_tokens: Vec<u32>,
    pub counters: Arc<Counters>,
}

enum Outcome {
    Finished,
    Cancelled,
}

/// Runs jobs until every sender of the queue is gone (the engine was dropped).
pub(crate) fn run(mut model: LoadedModel, ctx: WorkerContext, jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        ctx.counters.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            // The caller left while the job waited.
            ctx.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        ctx.counters.running.fetch_add(1, Ordering::Relaxed);
        ctx.counters.started.fetch_add(1, Ordering::Relaxed);
        // The model keeps the sequence's keys and values: the next prompt that starts the same
        // way (the same conversation one turn later) runs only what is new.
        let result = generate(&mut model, &ctx, &job);
        ctx.counters.running.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(Outcome::Finished) => {
                ctx.counters.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Outcome::Cancelled) => {
                ctx.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(model = %ctx.model_id, "generation cancelled: the caller went away");
            }
            Err(e) => {
                ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(model = %ctx.model_id, error = %e, "generation failed");
                let _ = job.events.blocking_send(Err(e));
            }
        }
    }
}

fn generate(model: &mut LoadedModel, ctx: &WorkerContext, job: &Job) -> Result<Outcome, LlmError> {
    let inference = |e: crate::error::EngineError| LlmError::Protocol(e.to_string());
    let started = Instant::now();
    let (mut logits, reused) = model.prefill(&job.prompt).map_err(inference)?;
    let prefill = started.elapsed();
    Counters::add_micros(&ctx.counters.prefill_micros, prefill);
    ctx.counters
        .prompt_tokens
        .fetch_add((job.prompt.len() - reused) as u64, Ordering::Relaxed);
    ctx.counters
        .cached_prompt_tokens
        .fetch_add(reused as u64, Ordering::Relaxed);

    let mut sampler = Sampler::new(job.seed, job.temperature, job.top_p, ctx.vocab_size);
    let mut detok = Detokenizer::new();
    let mut stops = StopFilter::new(job.params.stop.clone());
    let mut generated = 0usize;
    let mut first_token_at: Option<Duration> = None;
    let mut last_token = Instant::now();
    let send = |text: String| -> bool {
        text.is_empty()
            || job
                .events
                .blocking_send(Ok(StreamEvent::Delta(text)))
                .is_ok()
    };
    let finish = loop {
        if job.events.is_closed() {
            return Ok(Outcome::Cancelled);
        }
        let token = sampler
            .sample(&logits)
            .ok_or_else(|| LlmError::Protocol("the model produced no finite logits".into()))?;
        generated += 1;
        let now = Instant::now();
        if first_token_at.is_none() {
            let ttft = job.enqueued.elapsed();
            first_token_at = Some(ttft);
            ctx.counters.first_token.observe(ttft);
        } else {
            ctx.counters.inter_token.observe(now - last_token);
            Counters::add_micros(&ctx.counters.decode_micros, now - last_token);
        }
        last_token = now;
        ctx.counters
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        if ctx.end_tokens.contains(&token) {
            break "stop";
        }
        let piece = detok
            .push(&ctx.tokenizer, token)
            .map_err(|e| LlmError::Protocol(format!("detokenisation failed: {e}")))?;
        if let Some(piece) = piece {
            match stops.push(&piece) {
                Filtered::Go(text) => {
                    if !send(text) {
                        return Ok(Outcome::Cancelled);
                    }
                }
                Filtered::Stop(text) => {
                    if !send(text) {
                        return Ok(Outcome::Cancelled);
                    }
                    break "stop";
                }
            }
        }
        if generated >= job.max_tokens {
            break "length";
        }
        logits = model.step(token).map_err(inference)?;
    };
    // Text held back as a possible stop string that never completed.
    let rest = stops.finish();
    if !send(rest) {
        return Ok(Outcome::Cancelled);
    }
    let completion = Completion {
        model_id: ctx.model_id.clone(),
        provider: "embedded".into(),
        upstream_model: ctx.upstream_model.clone(),
        params: job.params.clone(),
        usage: Some(Usage {
            prompt_tokens: u32::try_from(job.prompt.len()).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(generated).unwrap_or(u32::MAX),
        }),
        finish_reason: Some(finish.to_string()),
        timing: Timing {
            first_token: first_token_at.unwrap_or_default(),
            total: job.enqueued.elapsed(),
        },
        attempts: 1,
        failover: false,
    };
    if job
        .events
        .blocking_send(Ok(StreamEvent::Done(Box::new(completion))))
        .is_err()
    {
        return Ok(Outcome::Cancelled);
    }
    Ok(Outcome::Finished)
}
