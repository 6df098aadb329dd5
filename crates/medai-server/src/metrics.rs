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

/// Why a PHI field could not be decrypted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecryptLabels {
    /// `malformed`, `authentication` (wrong key or tampering) or `missing_key_version`.
    pub reason: String,
}

/// Labels of key provider metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// `local-file`, `aws-kms`, `gcp-kms` or `azure-key-vault`.
    pub provider: String,
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

/// A model label: the configured model id and the version (or weights digest) that answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Configured model id.
    pub model: String,
    /// Model version or weights digest.
    pub version: String,
}

/// Feedback labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedbackLabels {
    /// Configured model id.
    pub model: String,
    /// Model version or weights digest.
    pub version: String,
    /// `helpful`, `not_helpful`, `correct`, `incorrect` or `unsafe`.
    pub judgement: String,
}

/// A safety rule label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The triage rule id.
    pub rule: String,
}

/// A configured model id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    /// Configured model id.
    pub model: String,
}

/// A model id with a fixed kind (outcome, error kind or token direction).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmKindLabels {
    /// Configured model id.
    pub model: String,
    /// The kind.
    pub kind: String,
}

/// A dependency label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    /// `database` or `session_store` (Redis when `redis_url` is set, else in process).
    pub dependency: String,
}

/// A key purpose label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurposeLabels {
    /// `phi-data`, `phi-blind-index` or `audit-signing`.
    pub purpose: String,
}

/// Why sealing a PHI field failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncryptLabels {
    /// `no_data_key` (the key ring holds no data key) or `cipher` (the cipher refused).
    pub reason: String,
}

/// A configuration digest label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DigestLabels {
    /// First 16 hex digits of the SHA-256 of the effective configuration, secrets masked.
    pub digest: String,
}

/// An administrative change label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind of change (see `docs/metrics.md`).
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0,
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
    /// PHI fields that failed to decrypt, by reason.
    pub phi_decrypt_failures: Family<DecryptLabels, Counter>,
    /// PHI keys the key provider failed to unwrap while serving, by provider.
    pub phi_key_unwrap_failures: Family<ProviderLabels, Counter>,
    /// Database pool connections by state (set at scrape time).
    pub db_pool: Family<PoolLabels, Gauge>,
    /// The audit log's metrics (shared with its background tasks).
    pub audit: AuditMetrics,
    /// Clinician feedback on answers, by model version and judgement.
    pub feedback: Family<FeedbackLabels, Counter>,
    /// Share of judged answers marked correct over the rolling window, by model version.
    pub model_accuracy: Family<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Answers a clinician marked unsafe, by model version.
    pub safety_overrides: Family<ModelLabels, Counter>,
    /// Escalation notices put ahead of answers, by triage rule.
    pub safety_escalations: Family<RuleLabels, Counter>,
    /// The model layer's metrics (shared with its observer).
    pub llm: LlmMetrics,
    /// Signed-in sessions not idle (set at scrape time).
    pub active_sessions: Gauge,
    /// Seconds since the current key of each purpose was created (set at scrape time).
    pub key_age: Family<PurposeLabels, Gauge>,
    /// The configured rotation period of each key purpose, in seconds.
    pub key_rotation_period: Family<PurposeLabels, Gauge>,
    /// PHI fields that could not be sealed, by reason.
    pub phi_encrypt_failures: Family<EncryptLabels, Counter>,
    /// 1 when a dependency answered a bounded ping at the last scrape, else 0.
    pub dependency_up: Family<DependencyLabels, Gauge>,
    /// 1 when a model answered its last health probe, else 0 (background probe).
    pub llm_upstream_up: Family<LlmLabels, Gauge>,
    /// 1 for each model version that has answered since start.
    pub model_version_info: Family<ModelLabels, Gauge>,
    /// 1, labelled with the digest of the effective configuration.
    pub config_info: Family<DigestLabels, Gauge>,
    /// Administrative changes made through this server, by kind.
    pub admin_changes: Family<KindLabels, Counter>,
    /// Most failed logins from any one client address within the address throttle's window
    /// (set at scrape time).
    pub login_failures_max_per_source: Gauge,
}

/// Metrics of the model provider layer, labelled by configured model id only.
#[derive(Clone)]
pub struct LlmMetrics {
    /// Model requests finished, by outcome (`ok` or an error kind).
    pub requests: Family<LlmKindLabels, Counter>,
    /// Seconds to the first token.
    pub first_token: HistogramFamily<LlmLabels>,
    /// Seconds to the whole answer.
    pub duration: HistogramFamily<LlmLabels>,
    /// Tokens by direction (`prompt`, `completion`).
    pub tokens: Family<LlmKindLabels, Counter>,
    /// Failed attempts by error kind.
    pub upstream_errors: Family<LlmKindLabels, Counter>,
    /// Circuit state: 0 closed, 1 half-open, 2 open.
    pub circuit_state: Family<LlmLabels, Gauge>,
    /// Requests waiting for a slot.
    pub queue_depth: Family<LlmLabels, Gauge>,
    /// Identifier-shaped text in answers that was not in the re-identification map (masked).
    pub phi_leak_suspected: Family<LlmLabels, Counter>,
}

/// Metrics of the tamper-evident audit log; cheap to clone into background tasks.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    /// Events placed in the Merkle tree.
    pub events_appended: Counter,
    /// Events in the Merkle tree.
    pub tree_size: Gauge,
    /// Checkpoints signed.
    pub checkpoints: Counter,
    /// Integration, checkpoint or sink errors.
    pub log_errors: Counter,
    /// 1 when the last verification passed, 0 when it found a break, -1 before the first.
    pub verification_ok: Gauge,
    /// Unix time of the last verification.
    pub last_verification: Gauge,
    /// Seconds the last verification took.
    pub verification_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
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
        let phi_decrypt_failures = Family::<DecryptLabels, Counter>::default();
        registry.register(
            "phi_decrypt_failures",
            "PHI fields that failed to decrypt (corrupted ciphertext, wrong key, missing key version)",
            phi_decrypt_failures.clone(),
        );
        let phi_key_unwrap_failures = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "phi_key_unwrap_failures",
            "PHI keys the key provider failed to unwrap while serving (KMS timeout, denial, wrong key), by provider",
            phi_key_unwrap_failures.clone(),
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
        let audit = AuditMetrics::default();
        audit.verification_ok.set(-1);
        registry.register(
            "audit_events_appended",
            "Audit events appended to the Merkle log",
            audit.events_appended.clone(),
        );
        registry.register(
            "audit_tree_size",
            "Events in the audit Merkle tree",
            audit.tree_size.clone(),
        );
        registry.register(
            "audit_checkpoints",
            "Signed audit checkpoints written",
            audit.checkpoints.clone(),
        );
        registry.register(
            "audit_log_errors",
            "Audit log integration, checkpoint or checkpoint-sink errors",
            audit.log_errors.clone(),
        );
        registry.register(
            "audit_verification_ok",
            "1 if the last audit log verification passed, 0 if it found a break, -1 before the first",
            audit.verification_ok.clone(),
        );
        registry.register(
            "audit_last_verification_timestamp_seconds",
            "Unix time of the last audit log verification",
            audit.last_verification.clone(),
        );
        registry.register(
            "audit_verification_duration_seconds",
            "Seconds the last audit log verification took",
            audit.verification_seconds.clone(),
        );
        let feedback = Family::<FeedbackLabels, Counter>::default();
        registry.register(
            "assistant_feedback",
            "Clinician feedback on answers, by model version and judgement",
            feedback.clone(),
        );
        let model_accuracy =
            Family::<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "model_accuracy_ratio",
            "Share of judged answers marked correct over the last 7 days, by model version",
            model_accuracy.clone(),
        );
        let safety_overrides = Family::<ModelLabels, Counter>::default();
        registry.register(
            "safety_overrides",
            "Answers a clinician marked unsafe, by model version",
            safety_overrides.clone(),
        );
        let safety_escalations = Family::<RuleLabels, Counter>::default();
        registry.register(
            "safety_escalations",
            "Escalation notices put ahead of answers, by triage rule",
            safety_escalations.clone(),
        );
        let llm = LlmMetrics {
            requests: Family::default(),
            first_token: Family::new_with_constructor(latency_histogram),
            duration: Family::new_with_constructor(latency_histogram),
            tokens: Family::default(),
            upstream_errors: Family::default(),
            circuit_state: Family::default(),
            queue_depth: Family::default(),
            phi_leak_suspected: Family::default(),
        };
        registry.register(
            "llm_requests",
            "Model requests finished, by model and outcome (ok or error kind)",
            llm.requests.clone(),
        );
        registry.register(
            "llm_time_to_first_token_seconds",
            "Seconds from the model call to its first token, by model",
            llm.first_token.clone(),
        );
        registry.register(
            "llm_request_duration_seconds",
            "Seconds from the model call to the end of the answer, by model",
            llm.duration.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens by model and direction (prompt, completion)",
            llm.tokens.clone(),
        );
        registry.register(
            "llm_upstream_errors",
            "Failed model attempts by model and error kind",
            llm.upstream_errors.clone(),
        );
        registry.register(
            "llm_circuit_state",
            "Circuit breaker state by model: 0 closed, 1 half-open, 2 open",
            llm.circuit_state.clone(),
        );
        registry.register(
            "llm_queue_depth",
            "Requests waiting for a model slot, by model",
            llm.queue_depth.clone(),
        );
        registry.register(
            "phi_leak_suspected",
            "Identifier-shaped text in answers that was not in the re-identification map (masked), by model",
            llm.phi_leak_suspected.clone(),
        );
        let active_sessions = Gauge::default();
        registry.register(
            "active_sessions",
            "Signed-in sessions that are not idle (second factor done, used within the idle timeout)",
            active_sessions.clone(),
        );
        let key_age = Family::<PurposeLabels, Gauge>::default();
        registry.register(
            "key_age_seconds",
            "Seconds since the current key of each purpose was created",
            key_age.clone(),
        );
        let key_rotation_period = Family::<PurposeLabels, Gauge>::default();
        registry.register(
            "key_rotation_period_seconds",
            "Configured rotation period of each key purpose (keys.rotation_period)",
            key_rotation_period.clone(),
        );
        let phi_encrypt_failures = Family::<EncryptLabels, Counter>::default();
        registry.register(
            "phi_encrypt_failures",
            "PHI fields that could not be encrypted, by reason",
            phi_encrypt_failures.clone(),
        );
        let dependency_up = Family::<DependencyLabels, Gauge>::default();
        registry.register(
            "dependency_up",
            "1 if the dependency answered a ping (1 s timeout) at the last scrape, else 0",
            dependency_up.clone(),
        );
        let llm_upstream_up = Family::<LlmLabels, Gauge>::default();
        registry.register(
            "llm_upstream_up",
            "1 if the model answered its last background health probe, else 0",
            llm_upstream_up.clone(),
        );
        let model_version_info = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_version_info",
            "1 for each model version that has answered since this instance started",
            model_version_info.clone(),
        );
        let config_info = Family::<DigestLabels, Gauge>::default();
        registry.register(
            "config_info",
            "Digest of the effective configuration (secrets masked); always 1",
            config_info.clone(),
        );
        let admin_changes = Family::<KindLabels, Counter>::default();
        registry.register(
            "admin_changes",
            "Administrative changes made through this server, by kind",
            admin_changes.clone(),
        );
        let login_failures_max_per_source = Gauge::default();
        registry.register(
            "login_failures_max_per_source",
            "Most failed logins from any one client address within the address throttle window",
            login_failures_max_per_source.clone(),
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
            phi_decrypt_failures,
            phi_key_unwrap_failures,
            audit_append_failures,
            db_pool,
            audit,
            feedback,
            model_accuracy,
            safety_overrides,
            safety_escalations,
            llm,
            active_sessions,
            key_age,
            key_rotation_period,
            phi_encrypt_failures,
            dependency_up,
            llm_upstream_up,
            model_version_info,
            config_info,
            admin_changes,
            login_failures_max_per_source,
        }
    }

    /// Counts an administrative change.
    pub fn admin_change(&self, kind: &str) {
        self.admin_changes
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts a PHI field that could not be sealed.
    pub fn phi_encrypt_failure(&self, reason: &str) {
        self.phi_encrypt_failures
            .get_or_create(&EncryptLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets a dependency's up gauge.
    pub fn set_dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up
            .get_or_create(&DependencyLabels {
                dependency: dependency.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Sets a model's upstream gauge.
    pub fn set_upstream_up(&self, model: &str, up: bool) {
        self.llm_upstream_up
            .get_or_create(&LlmLabels {
                model: model.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Marks a model version as having answered.
    pub fn model_version_seen(&self, model: &str, version: &str) {
        self.model_version_info
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
                version: version.to_owned(),
            })
            .set(1);
    }

    /// Counts a login step.
    pub fn login(&self, outcome: &str) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a PHI key the key provider failed to unwrap.
    pub fn phi_key_unwrap_failure(&self, provider: &str) {
        self.phi_key_unwrap_failures
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
    }

    /// Counts a PHI field that failed to decrypt.
    pub fn phi_decrypt_failure(&self, reason: &str) {
        self.phi_decrypt_failures
            .get_or_create(&DecryptLabels {
                reason: reason.to_owned(),
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
