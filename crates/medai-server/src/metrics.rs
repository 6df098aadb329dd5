//! Prometheus metrics of one server instance. Each app owns its registry (no global state), so
//! tests run many apps in one process. Labels are low-cardinality: route templates, methods,
//! status codes, roles and outcomes, never a user or patient id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route template, e.g. `/api/v1/patients/{id}`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// An outcome label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success`, `failure` or `denied`.
    pub outcome: String,
}

/// A role label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// The role.
    pub role: String,
}

/// An action label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// The action refused.
    pub action: String,
}

/// Build information.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Crate version.
    pub version: String,
}

/// A pool state label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `in_use` or `idle`.
    pub state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request latency by route, method and status.
    pub http_duration: HistogramFamily<HttpLabels>,
    /// Login attempts (password and second factor) by outcome.
    pub logins: Family<OutcomeLabels, Counter>,
    /// Failed TOTP or recovery-code checks.
    pub mfa_failures: Counter,
    /// Lockouts started.
    pub lockouts: Counter,
    /// Requests refused by authorisation.
    pub access_denied: Family<ActionLabels, Counter>,
    /// Break-glass grants.
    pub break_glass_grants: Counter,
    /// Patient records read, by role.
    pub phi_reads: Family<RoleLabels, Counter>,
    /// Audit events that could not be written (the request failed with them).
    pub audit_append_failures: Counter,
    /// Database pool connections by state (set at scrape time).
    pub db_pool: Family<PoolLabels, Gauge>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("medai");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by matched route, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by matched route, method and status",
            http_duration.clone(),
        );
        let logins = Family::<OutcomeLabels, Counter>::default();
        registry.register("logins", "Login steps by outcome", logins.clone());
        let mfa_failures = Counter::default();
        registry.register(
            "mfa_failures",
            "Failed second-factor checks",
            mfa_failures.clone(),
        );
        let lockouts = Counter::default();
        registry.register(
            "lockouts",
            "Temporary lockouts started after repeated failures",
            lockouts.clone(),
        );
        let access_denied = Family::<ActionLabels, Counter>::default();
        registry.register(
            "access_denied",
            "Requests refused by authorisation, by action",
            access_denied.clone(),
        );
        let break_glass_grants = Counter::default();
        registry.register(
            "break_glass_grants",
            "Break-glass grants made",
            break_glass_grants.clone(),
        );
        let phi_reads = Family::<RoleLabels, Counter>::default();
        registry.register(
            "phi_reads",
            "Patient records read, by role",
            phi_reads.clone(),
        );
        let audit_append_failures = Counter::default();
        registry.register(
            "audit_append_failures",
            "Audit events that could not be written",
            audit_append_failures.clone(),
        );
        let db_pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            db_pool.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "Build information; always 1", build);
        Self {
            registry,
            http_requests,
            http_duration,
            logins,
            mfa_failures,
            lockouts,
            access_denied,
            break_glass_grants,
            phi_reads,
            audit_append_failures,
            db_pool,
        }
    }

    /// Counts a login step.
    pub fn login(&self, outcome: &str) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts patient records read by a role.
    pub fn phi_read(&self, role: &str, records: u64) {
        self.phi_reads
            .get_or_create(&RoleLabels {
                role: role.to_owned(),
            })
            .inc_by(records);
    }

    /// Counts a refusal.
    pub fn denied(&self, action: &str) {
        self.access_denied
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .inc();
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
