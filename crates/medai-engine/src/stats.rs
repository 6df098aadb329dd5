//! Counters and latency histograms of one engine, lock-free, for the serving mode's metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the time-to-first-token histogram (from the request entering the
/// queue to its first generated token).
pub const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds (seconds) of the inter-token latency histogram.
pub const INTER_TOKEN_BUCKETS: &[f64] = &[0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0];

/// A histogram as Prometheus exposes one: cumulative counts per upper bound, sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations (including those above the last bound).
    pub count: u64,
}

pub(crate) struct AtomicHistogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            if let Some(c) = self.counts.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Histogram {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                running += c.load(Ordering::Relaxed);
                (*b, running)
            })
            .collect();
        Histogram {
            buckets,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// The live counters, shared by the engine handle and its worker thread.
pub(crate) struct Counters {
    pub queue_depth: AtomicUsize,
    pub running: AtomicUsize,
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub prefill_micros: AtomicU64,
    pub decode_micros: AtomicU64,
    pub first_token: AtomicHistogram,
    pub inter_token: AtomicHistogram,
}

impl Counters {
    pub fn new() -> Self {
        Self {
            queue_depth: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            cached_prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            prefill_micros: AtomicU64::new(0),
            decode_micros: AtomicU64::new(0),
            first_token: AtomicHistogram::new(TIME_TO_FIRST_TOKEN_BUCKETS),
            inter_token: AtomicHistogram::new(INTER_TOKEN_BUCKETS),
        }
    }

    pub fn add_micros(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self, queue_capacity: usize) -> EngineStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EngineStats {
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            queue_capacity,
            running: self.running.load(Ordering::Relaxed),
            max_running: 1,
            requests_started: load(&self.started),
            requests_completed: load(&self.completed),
            requests_cancelled: load(&self.cancelled),
            requests_failed: load(&self.failed),
            requests_rejected: load(&self.rejected),
            prompt_tokens: load(&self.prompt_tokens),
            cached_prompt_tokens: load(&self.cached_prompt_tokens),
            generated_tokens: load(&self.generated_tokens),
            prefill_seconds: load(&self.prefill_micros) as f64 / 1e6,
            decode_seconds: load(&self.decode_micros) as f64 / 1e6,
            time_to_first_token: self.first_token.snapshot(),
            inter_token: self.inter_token.snapshot(),
        }
    }
}

/// A snapshot of one engine's state and counters since load. Counters only grow, so the
/// serving mode can export them as Prometheus counters and histograms as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStats {
    /// Requests waiting in the queue.
    pub queue_depth: usize,
    /// Requests the queue holds at most (one more is refused).
    pub queue_capacity: usize,
    /// Requests generating now (0 or 1).
    pub running: usize,
    /// Requests generated at once: always 1 (one generation at a time per model).
    pub max_running: usize,
    /// Requests that started generating.
    pub requests_started: u64,
    /// Requests that finished (stop, length or end of text).
    pub requests_completed: u64,
    /// Requests cancelled because the caller went away.
    pub requests_cancelled: u64,
    /// Requests that failed inside the model.
    pub requests_failed: u64,
    /// Requests refused because the queue was full.
    pub requests_rejected: u64,
    /// Prompt tokens run through the model (those found in the cache are not counted here).
    pub prompt_tokens: u64,
    /// Prompt tokens whose keys and values were already cached (a shared prefix: the warmed-up
    /// system prompt, or the same conversation one turn earlier), so were not run again.
    pub cached_prompt_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Time spent processing prompts (prompt tokens / this = prompt tokens per second).
    pub prefill_seconds: f64,
    /// Time spent generating after the first token (generated tokens beyond each request's
    /// first / this = decode tokens per second).
    pub decode_seconds: f64,
    /// From entering the queue to the first generated token.
    pub time_to_first_token: Histogram,
    /// Between consecutive generated tokens.
    pub inter_token: Histogram,
}
