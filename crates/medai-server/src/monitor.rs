//! Monitoring that is not a simple counter: gauges refreshed when `/metrics` is scraped
//! (dependency pings, active sessions, key ages, the worst failing login source), the
//! background health probe of every model, and the configuration digest.
//!
//! Everything here is bounded: each ping and query at scrape time has a 1 s timeout, and the
//! per-source login failure table keeps at most [`SOURCE_CAPACITY`] addresses. No label carries
//! a user, patient or address.

use crate::state::{AppState, Shared};
use medai_core::config::Config;
use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// The `dependency` label of the database.
pub const DEPENDENCY_DATABASE: &str = "database";
/// The `dependency` label of the session store (Redis when `redis_url` is set, else in process).
pub const DEPENDENCY_SESSION_STORE: &str = "session_store";

/// Longest wait for one dependency ping or query made at scrape time.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most client addresses remembered for `medai_login_failures_max_per_source`.
pub const SOURCE_CAPACITY: usize = 10_000;

/// The `purpose` label of the newest PHI data key.
pub const PURPOSE_PHI_DATA: &str = "phi-data";
/// The `purpose` label of the PHI blind-index key.
pub const PURPOSE_PHI_BLIND_INDEX: &str = "phi-blind-index";
/// The `purpose` label of the audit checkpoint signing key.
pub const PURPOSE_AUDIT_SIGNING: &str = "audit-signing";

/// Failed logins per client address, as counted by the address throttle, kept in process so
/// the largest can be exported without labelling by address. Bounded: when full, expired
/// entries go first, then the one whose last failure is oldest.
#[derive(Debug)]
pub struct SourceFailures {
    entries: Mutex<HashMap<String, (u32, i64)>>,
    capacity: usize,
}

impl SourceFailures {
    /// An empty table holding at most `capacity` addresses.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Records that `source` has `count` failures in its throttle window, the latest at `now`.
    pub fn record(&self, source: &str, count: u32, now: i64, window_secs: u64) {
        let Ok(mut m) = self.entries.lock() else {
            return;
        };
        if !m.contains_key(source) && m.len() >= self.capacity {
            m.retain(|_, (_, last)| now.saturating_sub(*last) < window_secs as i64);
            if m.len() >= self.capacity {
                let oldest = m
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    m.remove(&k);
                }
            }
        }
        m.insert(source.to_owned(), (count, now));
    }

    /// The largest failure count of any address whose latest failure is within `window_secs`
    /// of `now`; older entries are dropped.
    pub fn max_within(&self, now: i64, window_secs: u64) -> u32 {
        let Ok(mut m) = self.entries.lock() else {
            return 0;
        };
        m.retain(|_, (_, last)| now.saturating_sub(*last) < window_secs as i64);
        m.values().map(|(n, _)| *n).max().unwrap_or(0)
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |m| m.len())
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for SourceFailures {
    fn default() -> Self {
        Self::new(SOURCE_CAPACITY)
    }
}

/// The first 16 hex digits of the SHA-256 of the configuration as `medai config check` prints
/// it (every secret masked), so two instances with the same digest run the same settings.
pub fn config_digest(config: &Config) -> String {
    let text = serde_json::to_string(config).unwrap_or_default();
    let mut digest = medai_core::identity::sha256_hex(text.as_bytes());
    digest.truncate(16);
    digest
}

/// Sets the gauges that depend only on configuration: the configuration digest and the key
/// rotation periods.
pub fn set_static(st: &AppState) {
    st.metrics
        .config_info
        .get_or_create(&crate::metrics::DigestLabels {
            digest: config_digest(&st.config),
        })
        .set(1);
    let period = i64::try_from(st.config.keys.rotation_period.as_secs()).unwrap_or(i64::MAX);
    for purpose in [
        PURPOSE_PHI_DATA,
        PURPOSE_PHI_BLIND_INDEX,
        PURPOSE_AUDIT_SIGNING,
    ] {
        st.metrics
            .key_rotation_period
            .get_or_create(&crate::metrics::PurposeLabels {
                purpose: purpose.to_owned(),
            })
            .set(period);
    }
    // Every configured model has its breaker and queue series from the start, so an alert on
    // them sees a value before the first request.
    if let Some(registry) = &st.assistant.registry {
        for m in registry.list() {
            let label = crate::metrics::LlmLabels {
                model: m.description.id.clone(),
            };
            let circuit = match m.circuit {
                medai_llm::CircuitState::Closed => 0,
                medai_llm::CircuitState::HalfOpen => 1,
                medai_llm::CircuitState::Open => 2,
            };
            st.metrics
                .llm
                .circuit_state
                .get_or_create(&label)
                .set(circuit);
            st.metrics
                .llm
                .queue_depth
                .get_or_create(&label)
                .set(i64::try_from(m.queue_depth).unwrap_or(i64::MAX));
        }
    }
}

fn set_key_age(st: &AppState, purpose: &str, age: i64) {
    st.metrics
        .key_age
        .get_or_create(&crate::metrics::PurposeLabels {
            purpose: purpose.to_owned(),
        })
        .set(age.max(0));
}

/// Refreshes the scrape-time gauges. Each dependency gets one ping bounded by
/// [`SCRAPE_TIMEOUT`]; a gauge whose source does not answer keeps its previous value, except
/// `medai_dependency_up`, which drops to 0.
pub async fn refresh(st: &AppState) {
    let (in_use, idle) = st.store.pool_usage();
    for (state, n) in [("in_use", in_use), ("idle", idle)] {
        st.metrics
            .db_pool
            .get_or_create(&crate::metrics::PoolLabels {
                state: state.into(),
            })
            .set(i64::from(n));
    }
    let now = st.now();
    let (db, sessions) = tokio::join!(
        tokio::time::timeout(SCRAPE_TIMEOUT, st.store.ping()),
        tokio::time::timeout(SCRAPE_TIMEOUT, st.ephemeral.ping()),
    );
    let db_up = matches!(db, Ok(Ok(())));
    let sessions_up = matches!(sessions, Ok(Ok(())));
    st.metrics.set_dependency_up(DEPENDENCY_DATABASE, db_up);
    st.metrics
        .set_dependency_up(DEPENDENCY_SESSION_STORE, sessions_up);
    if sessions_up {
        let idle_secs = st.config.auth.session_idle_timeout.as_secs();
        if let Ok(Ok(n)) =
            tokio::time::timeout(SCRAPE_TIMEOUT, st.ephemeral.active_sessions(now, idle_secs)).await
        {
            st.metrics
                .active_sessions
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    if db_up {
        let times = tokio::time::timeout(SCRAPE_TIMEOUT, async {
            let mut conn = st.store.pool().acquire().await?;
            medai_store::phi_keys::current_key_times(&mut conn).await
        })
        .await;
        if let Ok(Ok(rows)) = times {
            for (purpose, created_at) in rows {
                let label = match purpose.as_str() {
                    "data" => PURPOSE_PHI_DATA,
                    "blind-index" => PURPOSE_PHI_BLIND_INDEX,
                    _ => continue,
                };
                set_key_age(st, label, now.saturating_sub(created_at));
            }
        }
    }
    // The signing key file is written once, when the key is created.
    if let Ok(modified) = std::fs::metadata(st.config.audit_key_path()).and_then(|m| m.modified()) {
        if let Ok(since) = modified.duration_since(std::time::UNIX_EPOCH) {
            let created = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
            set_key_age(st, PURPOSE_AUDIT_SIGNING, now.saturating_sub(created));
        }
    }
    let window = st.config.auth.ip_throttle.window.as_secs();
    st.metrics
        .login_failures_max_per_source
        .set(i64::from(st.source_failures.max_within(now, window)));
}

/// Starts the background health probe of every configured model (none without `[llm]`): every
/// `llm.health_interval_secs`, starting now, it sets `medai_llm_upstream_up` and logs each
/// change. It stops once the application state is dropped.
pub fn spawn_upstream_probe(st: &AppState) {
    let Some(registry) = st.assistant.registry.clone() else {
        return;
    };
    let every = st.assistant.health_interval;
    let weak: Weak<Shared> = st.downgrade();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: HashMap<String, bool> = HashMap::new();
        loop {
            tick.tick().await;
            if weak.strong_count() == 0 {
                return;
            }
            let results = registry.health().await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            for (model, health) in results {
                shared.metrics.set_upstream_up(&model, health.ok);
                let before = last.insert(model.clone(), health.ok);
                if before != Some(health.ok) {
                    if health.ok {
                        tracing::info!(model = %model, "model upstream is up");
                    } else {
                        tracing::warn!(
                            model = %model,
                            reason = health.detail.as_deref().unwrap_or("unknown"),
                            "model upstream is down"
                        );
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_failures_keep_the_window_and_the_bound() {
        let t = SourceFailures::new(2);
        t.record("ip:a", 3, 100, 60);
        t.record("ip:b", 5, 110, 60);
        assert_eq!(t.max_within(120, 60), 5);
        // Full: the oldest (a) makes room.
        t.record("ip:c", 1, 120, 60);
        assert_eq!(t.len(), 2);
        assert_eq!(t.max_within(120, 60), 5);
        // b's last failure leaves the window.
        assert_eq!(t.max_within(171, 60), 1);
        assert_eq!(t.max_within(500, 60), 0);
        assert!(t.is_empty());
    }

    #[test]
    fn config_digest_changes_with_the_config_and_hides_secrets() {
        let a = Config::default();
        let b = Config {
            shutdown_grace: Duration::from_secs(3),
            ..Config::default()
        };
        assert_ne!(config_digest(&a), config_digest(&b));
        assert_eq!(config_digest(&a).len(), 16);
        let with_redis = |url: &str| Config {
            redis_url: Some(url.to_owned().into()),
            ..Config::default()
        };
        let (c, d) = (
            with_redis("redis://:pw1@host:6379"),
            with_redis("redis://:pw2@host:6379"),
        );
        assert_eq!(config_digest(&c), config_digest(&d));
    }
}
