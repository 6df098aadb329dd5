//! Login throttling: exponential back-off and temporary lockout, per account and per client
//! address. The counters live elsewhere (in process or in Redis); the rule lives here.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How failed logins slow down and then lock out further attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottlePolicy {
    /// Failures allowed without any delay.
    pub free_attempts: u32,
    /// Delay after the first failure past the free ones; doubles with each further failure.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Longest back-off delay before lockout.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Failures after which the key is locked out.
    pub lockout_after: u32,
    /// How long a lockout lasts.
    #[serde(with = "humantime_serde")]
    pub lockout_duration: Duration,
    /// Failures older than this (counted from the last one) are forgotten.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            lockout_after: 10,
            lockout_duration: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Failures recorded for one key (an account or a client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Failures within the window.
    pub count: u32,
    /// Unix seconds of the latest failure.
    pub last_failure: i64,
}

/// What the policy says about the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead.
    Allow,
    /// Wait this many seconds (back-off).
    RetryAfter(u64),
    /// Locked out for this many more seconds.
    LockedOut(u64),
}

impl ThrottlePolicy {
    /// Decides whether an attempt at `now` may proceed given the recorded failures.
    pub fn decide(&self, record: Option<FailureRecord>, now: i64) -> ThrottleDecision {
        let Some(r) = record else {
            return ThrottleDecision::Allow;
        };
        let since = now.saturating_sub(r.last_failure).max(0) as u64;
        if since >= self.window.as_secs().max(self.lockout_duration.as_secs()) {
            return ThrottleDecision::Allow;
        }
        if r.count >= self.lockout_after {
            let lock = self.lockout_duration.as_secs();
            return if since < lock {
                ThrottleDecision::LockedOut(lock - since)
            } else {
                ThrottleDecision::Allow
            };
        }
        if r.count <= self.free_attempts {
            return ThrottleDecision::Allow;
        }
        let delay = self.delay_after(r.count);
        if since < delay {
            ThrottleDecision::RetryAfter(delay - since)
        } else {
            ThrottleDecision::Allow
        }
    }

    /// The back-off delay, in seconds, after `count` failures.
    fn delay_after(&self, count: u32) -> u64 {
        let exp = count.saturating_sub(self.free_attempts + 1).min(32);
        let d = self.base_delay.as_secs().max(1).saturating_mul(1u64 << exp);
        d.min(self.max_delay.as_secs())
    }

    /// Whether the failure that brought the count to `count` starts a lockout (for auditing it).
    pub fn is_lockout_start(&self, count: u32) -> bool {
        count == self.lockout_after
    }

    /// How long the counters must be kept, in seconds.
    pub fn retention_secs(&self) -> u64 {
        self.window.as_secs().max(self.lockout_duration.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(count: u32, last_failure: i64) -> Option<FailureRecord> {
        Some(FailureRecord {
            count,
            last_failure,
        })
    }

    #[test]
    fn free_attempts_then_doubling_delay_then_lockout() {
        let p = ThrottlePolicy::default();
        assert_eq!(p.decide(None, 100), ThrottleDecision::Allow);
        assert_eq!(p.decide(rec(3, 100), 100), ThrottleDecision::Allow);
        assert_eq!(p.decide(rec(4, 100), 100), ThrottleDecision::RetryAfter(1));
        assert_eq!(p.decide(rec(5, 100), 100), ThrottleDecision::RetryAfter(2));
        assert_eq!(p.decide(rec(6, 100), 101), ThrottleDecision::RetryAfter(3));
        assert_eq!(p.decide(rec(6, 100), 104), ThrottleDecision::Allow);
        assert_eq!(p.decide(rec(9, 100), 100), ThrottleDecision::RetryAfter(32));
        assert_eq!(
            p.decide(rec(10, 100), 100),
            ThrottleDecision::LockedOut(900)
        );
        assert_eq!(p.decide(rec(10, 100), 999), ThrottleDecision::LockedOut(1));
        assert_eq!(p.decide(rec(10, 100), 1000), ThrottleDecision::Allow);
    }

    #[test]
    fn delay_is_capped() {
        let p = ThrottlePolicy {
            lockout_after: 100,
            ..ThrottlePolicy::default()
        };
        assert_eq!(p.decide(rec(60, 0), 0), ThrottleDecision::RetryAfter(60));
    }

    #[test]
    fn old_failures_are_forgotten() {
        let p = ThrottlePolicy::default();
        assert_eq!(p.decide(rec(9, 0), 900), ThrottleDecision::Allow);
        assert!(p.is_lockout_start(10));
        assert!(!p.is_lockout_start(11));
    }
}
