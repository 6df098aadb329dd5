//! A circuit breaker per model, with an injectable clock so tests never sleep.

use crate::config::BreakerConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where "now" comes from. Production uses [`SystemClock`]; tests use [`ManualClock`].
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (for tests of cool-downs).
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    offset_ms: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            offset_ms: Arc::default(),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// A limited number of probes are let through; their results decide.
    HalfOpen,
}

impl CircuitState {
    /// The metric value and label: closed 0, half-open 1, open 2.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    failures: u32,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// A per-model breaker: `failure_threshold` consecutive failures open it; after `cool_down` it
/// lets `half_open_probes` requests through; that many successes close it, one failure reopens it.
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Permission to make one request, given by [`CircuitBreaker::try_acquire`]. Report its outcome
/// with [`CircuitBreaker::record`]; a permit dropped unreported (the caller went away) counts
/// neither way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPermit {
    probe: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                failures: 0,
                opened_at: None,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state (an open breaker past its cool-down reads as half-open).
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.state {
            CircuitState::Open if self.cooled(&inner) => CircuitState::HalfOpen,
            s => s,
        }
    }

    fn cooled(&self, inner: &Inner) -> bool {
        inner
            .opened_at
            .is_none_or(|at| self.clock.now() >= at + self.config.cool_down)
    }

    /// Asks to make a request. `Err` carries the time until probes are let through. The second
    /// value is the new state if this call changed it.
    pub fn try_acquire(&self) -> (Result<BreakerPermit, Duration>, Option<CircuitState>) {
        let mut inner = self.lock();
        let mut changed = None;
        if inner.state == CircuitState::Open {
            if self.cooled(&inner) {
                inner.state = CircuitState::HalfOpen;
                inner.probes_in_flight = 0;
                inner.probe_successes = 0;
                changed = Some(CircuitState::HalfOpen);
            } else {
                let left = inner
                    .opened_at
                    .map(|at| {
                        (at + self.config.cool_down).saturating_duration_since(self.clock.now())
                    })
                    .unwrap_or_default();
                return (Err(left), None);
            }
        }
        match inner.state {
            CircuitState::HalfOpen => {
                if inner.probes_in_flight + inner.probe_successes >= self.config.half_open_probes {
                    return (Err(Duration::from_secs(1)), changed);
                }
                inner.probes_in_flight += 1;
                (Ok(BreakerPermit { probe: true }), changed)
            }
            _ => (Ok(BreakerPermit { probe: false }), changed),
        }
    }

    /// Reports the outcome of a permitted request; returns the new state if it changed.
    pub fn record(&self, permit: BreakerPermit, success: bool) -> Option<CircuitState> {
        let mut inner = self.lock();
        if permit.probe {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
        match (inner.state, success) {
            (CircuitState::Closed, true) => {
                inner.failures = 0;
                None
            }
            (CircuitState::Closed, false) => {
                inner.failures += 1;
                (inner.failures >= self.config.failure_threshold).then(|| self.open(&mut inner))
            }
            (CircuitState::HalfOpen, true) if permit.probe => {
                inner.probe_successes += 1;
                (inner.probe_successes >= self.config.half_open_probes).then(|| {
                    inner.state = CircuitState::Closed;
                    inner.failures = 0;
                    inner.opened_at = None;
                    CircuitState::Closed
                })
            }
            (CircuitState::HalfOpen, false) => Some(self.open(&mut inner)),
            _ => None,
        }
    }

    /// Gives back a permit whose request was abandoned (neither success nor failure).
    pub fn release(&self, permit: BreakerPermit) {
        if permit.probe {
            let mut inner = self.lock();
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
    }

    fn open(&self, inner: &mut Inner) -> CircuitState {
        inner.state = CircuitState::Open;
        inner.opened_at = Some(self.clock.now());
        inner.failures = 0;
        inner.probes_in_flight = 0;
        inner.probe_successes = 0;
        CircuitState::Open
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn breaker(threshold: u32, probes: u32) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::default();
        let config = BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_secs(10),
            half_open_probes: probes,
        };
        (CircuitBreaker::new(config, Arc::new(clock.clone())), clock)
    }

    fn fail(b: &CircuitBreaker) -> Option<CircuitState> {
        let p = b.try_acquire().0.unwrap();
        b.record(p, false)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, _) = breaker(3, 1);
        assert_eq!(fail(&b), None);
        assert_eq!(fail(&b), None);
        let p = b.try_acquire().0.unwrap();
        assert_eq!(b.record(p, true), None); // a success resets the count
        assert_eq!(fail(&b), None);
        assert_eq!(fail(&b), None);
        assert_eq!(fail(&b), Some(CircuitState::Open));
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.try_acquire().0, Err(Duration::from_secs(10)));
    }

    #[test]
    fn half_opens_after_cool_down_and_probes_decide() {
        let (b, clock) = breaker(1, 2);
        fail(&b);
        clock.advance(Duration::from_secs(4));
        assert_eq!(b.try_acquire().0, Err(Duration::from_secs(6)));
        clock.advance(Duration::from_secs(6));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let (p1, changed) = b.try_acquire();
        assert_eq!(changed, Some(CircuitState::HalfOpen));
        let p2 = b.try_acquire().0.unwrap();
        assert!(b.try_acquire().0.is_err(), "only two probes");
        assert_eq!(b.record(p1.unwrap(), true), None);
        assert_eq!(b.record(p2, true), Some(CircuitState::Closed));
        assert!(b.try_acquire().0.is_ok());
    }

    #[test]
    fn a_failed_probe_reopens_and_an_abandoned_one_frees_its_slot() {
        let (b, clock) = breaker(1, 1);
        fail(&b);
        clock.advance(Duration::from_secs(10));
        let p = b.try_acquire().0.unwrap();
        b.release(p);
        let p = b.try_acquire().0.unwrap();
        assert_eq!(b.record(p, false), Some(CircuitState::Open));
        assert_eq!(b.state(), CircuitState::Open);
    }
}
