//! A concurrency limit per model with a bounded queue: a request either gets a slot, waits in a
//! queue of bounded length for at most `queue_timeout`, or is refused at once with
//! [`LlmError::QueueFull`] (HTTP 429 with `Retry-After`).

use crate::config::LimitConfig;
use crate::error::LlmError;
use crate::observer::LlmObserver;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limit of one model.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    waiting: AtomicUsize,
    config: LimitConfig,
}

/// Decrements the queue depth however the wait ends (slot, timeout, or the caller going away).
struct Waiting<'a> {
    limit: &'a ConcurrencyLimit,
    model: &'a str,
    observer: &'a dyn LlmObserver,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let depth = self.limit.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        self.observer.queue_depth(self.model, depth);
    }
}

impl ConcurrencyLimit {
    /// A limit with `config.max_concurrent` slots.
    pub fn new(config: LimitConfig) -> Self {
        let max_concurrent = usize::try_from(config.max_concurrent).unwrap_or(1).max(1);
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            waiting: AtomicUsize::new(0),
            config,
        }
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Requests holding a slot.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent - self.slots.available_permits()
    }

    /// Waits for a slot. The slot is held until the permit is dropped.
    pub async fn acquire(
        &self,
        model: &str,
        observer: &dyn LlmObserver,
    ) -> Result<OwnedSemaphorePermit, LlmError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        let full = || LlmError::QueueFull {
            model: model.to_string(),
            retry_after: self.config.retry_after,
        };
        let max_queue = usize::try_from(self.config.max_queue).unwrap_or(usize::MAX);
        let entered = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < max_queue).then_some(w + 1)
            });
        let depth = match entered {
            Ok(before) => before + 1,
            Err(_) => return Err(full()),
        };
        observer.queue_depth(model, depth);
        let _waiting = Waiting {
            limit: self,
            model,
            observer,
        };
        match tokio::time::timeout(
            self.config.queue_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(full()),
        }
    }
}
