//! The typed configuration of medai. Loading (file, environment, flags) happens in the binary;
//! this module defines every key, its default and its validation.
//!
//! Secrets are [`SecretString`]s: their `Debug` is masked, and serializing the config (what
//! `medai config check` prints) writes them masked, so a printed config never leaks one.

use crate::identity::Argon2Cost;
use crate::throttle::ThrottlePolicy;
use ipnet::IpNet;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the public HTTP(S) listener.
    pub listen: SocketAddr,
    /// Address of the internal listener that serves `/metrics`; keep it off public networks.
    pub metrics_listen: SocketAddr,
    /// Directory for the SQLite database, the local key file and other state.
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL, `sqlite://…` for a SQLite file; unset means SQLite in
    /// `data_dir`.
    #[serde(serialize_with = "mask_url")]
    pub database_url: Option<SecretString>,
    /// `redis://…` (or `rediss://…` for TLS) to keep sessions and login throttling in Redis,
    /// shared by replicas; unset keeps them in this process. A `rediss://` server's certificate
    /// is checked against the public (Mozilla) roots built into medai, or `redis_ca_file`.
    #[serde(serialize_with = "mask_url")]
    pub redis_url: Option<SecretString>,
    /// PEM file of the CA certificates that sign the Redis server's certificate, for a private
    /// CA such as Memorystore's; it replaces the public roots for Redis. Only with `rediss://`.
    /// The file must exist and hold at least one certificate (checked at start).
    pub redis_ca_file: Option<PathBuf>,
    /// The URL users reach medai at (used in setup links and to decide `Secure` cookies);
    /// defaults to `http(s)://<listen>`.
    pub public_url: Option<String>,
    /// Log format: `json` (default) or `text`.
    pub log_format: LogFormat,
    /// Serve HTTPS directly with these certificate files (otherwise terminate TLS at the proxy).
    pub tls: Option<TlsConfig>,
    /// Proxies whose `X-Forwarded-For` is trusted for the client address (CIDRs).
    pub trusted_proxies: Vec<IpNet>,
    /// Authentication and session settings.
    pub auth: AuthConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Longest wait for in-flight requests at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The tamper-evident audit log: signed checkpoints and verification.
    pub audit: AuditConfig,
    /// The key provider that wraps the PHI data keys (the local key file by default).
    pub keys: KeysConfig,
    /// The models the assistant answers with (`[llm]`: `default_model` and `[[llm.models]]`).
    /// Its schema belongs to the model provider layer (`medai-llm`), which validates it at
    /// start-up with errors naming the key; unset, the assistant answers 503 `no_model`.
    /// Printed with every `api_key` masked.
    #[serde(serialize_with = "mask_secret_keys")]
    pub llm: Option<serde_json::Value>,
    /// OpenTelemetry traces (`[telemetry]`); off unless an OTLP endpoint is configured.
    pub telemetry: TelemetryConfig,
}

/// The `[telemetry]` section: where `medai serve` sends OpenTelemetry traces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`http://otel-collector:4318`; spans are posted as
    /// protobuf to `/v1/traces` under it), or the full traces URL ending in `/v1/traces`.
    /// Unset: the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is used if set, else no traces are
    /// exported. Credentials do not belong in it (it is printed by `medai config check`).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span (default `medai`).
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "medai".to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// The URL spans are posted to: `/v1/traces` is added to a base URL without a path.
    pub fn traces_url(endpoint: &str) -> String {
        let trimmed = endpoint.trim().trim_end_matches('/');
        if trimmed.ends_with("/v1/traces") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1/traces")
        }
    }
}

/// Which key provider wraps the PHI data keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProviderKind {
    /// The local key file in the data directory (`master.key`).
    #[default]
    LocalFile,
    /// AWS Key Management Service (`[keys.aws]`).
    AwsKms,
    /// Google Cloud KMS (`[keys.gcp]`).
    GcpKms,
    /// Azure Key Vault (`[keys.azure]`).
    AzureKeyVault,
}

impl KeyProviderKind {
    /// The name stored beside each wrapped key in `phi_keys.provider`.
    pub fn name(self) -> &'static str {
        match self {
            Self::LocalFile => "local-file",
            Self::AwsKms => "aws-kms",
            Self::GcpKms => "gcp-kms",
            Self::AzureKeyVault => "azure-key-vault",
        }
    }
}

/// The `[keys]` section: which provider wraps the PHI data keys, and its settings. The local
/// key file stays in use for TOTP seeds whatever the provider, and keeps unwrapping PHI keys it
/// wrapped until `medai keys rewrap` moves them to the configured provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `local-file` (default), `aws-kms`, `gcp-kms` or `azure-key-vault`.
    pub provider: KeyProviderKind,
    /// Longest wait for one call to the key provider (default 10 s); a provider that does not
    /// answer in time is an error naming it, never a hang.
    #[serde(with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// AWS KMS settings (`provider = "aws-kms"`).
    pub aws: Option<AwsKmsConfig>,
    /// Google Cloud KMS settings (`provider = "gcp-kms"`).
    pub gcp: Option<GcpKmsConfig>,
    /// Azure Key Vault settings (`provider = "azure-key-vault"`).
    pub azure: Option<AzureKeyVaultConfig>,
    /// How long a key may stay in use before it is due for rotation (default 90 days, 1 day to
    /// 10 years). Exported as `medai_key_rotation_period_seconds` for every key purpose, beside
    /// `medai_key_age_seconds`, so an alert fires when a key is older than its period.
    #[serde(with = "humantime_serde")]
    pub rotation_period: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            provider: KeyProviderKind::default(),
            timeout: None,
            aws: None,
            gcp: None,
            azure: None,
            rotation_period: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl KeysConfig {
    /// The timeout in force (10 s unless configured).
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(10))
    }
}

/// AWS KMS: a symmetric encryption key. Credentials and (unless set here) the region come from
/// the standard AWS sources: environment, shared config files, web identity (EKS), ECS or EC2
/// instance roles.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsKmsConfig {
    /// Key ARN, key id, alias ARN or `alias/name`.
    pub key_id: String,
    /// AWS region, e.g. `us-east-1`; unset uses `AWS_REGION` or the shared config.
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint, or a KMS-compatible server in tests).
    #[serde(serialize_with = "mask_plain_url")]
    pub endpoint: Option<String>,
}

/// Google Cloud KMS: a symmetric `ENCRYPT_DECRYPT` key.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcpKmsConfig {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub key_name: String,
    /// API base URL (default `https://cloudkms.googleapis.com`).
    #[serde(serialize_with = "mask_plain_url")]
    pub endpoint: Option<String>,
    /// A file holding the OAuth2 access token (re-read before each call, so an external
    /// refresher can rotate it). Takes precedence over `token_url`.
    pub token_file: Option<PathBuf>,
    /// The token endpoint, when no `token_file` is set: the metadata server by default
    /// (`http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`;
    /// on GKE, workload identity serves the pod's Google service account there).
    #[serde(serialize_with = "mask_plain_url")]
    pub token_url: Option<String>,
}

/// Azure Key Vault: an RSA key used with RSA-OAEP-256 wrap/unwrap.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureKeyVaultConfig {
    /// The vault, e.g. `https://myvault.vault.azure.net`.
    #[serde(serialize_with = "mask_vault_url")]
    pub vault_url: String,
    /// The key's name.
    pub key_name: String,
    /// The key version used for new wraps; unset uses the newest. The version that wrapped
    /// each key is stored with it, so unwrapping never depends on this.
    pub key_version: Option<String>,
    /// The managed identity's client id, when the host has more than one.
    pub client_id: Option<String>,
    /// A file holding the OAuth2 access token (re-read before each call, so an external
    /// refresher can rotate it). Takes precedence over `token_url`.
    pub token_file: Option<PathBuf>,
    /// The token endpoint, when no `token_file` is set: the managed-identity endpoint
    /// (IMDS, `http://169.254.169.254/metadata/identity/oauth2/token`) by default.
    #[serde(serialize_with = "mask_plain_url")]
    pub token_url: Option<String>,
}

/// Settings of the tamper-evident audit log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's name in signed checkpoints and the signing key's name, e.g.
    /// `medai.hospital.example/audit`; used when the signing key is created.
    pub origin: String,
    /// How often a checkpoint of the tree is signed (also at shutdown).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The directory checkpoint sink: a directory each signed checkpoint is written to (default
    /// `<data_dir>/audit-checkpoints`). Put it on storage the database administrators cannot
    /// rewrite (another host), or use an object-storage sink with a retention lock (`[audit.s3]`,
    /// `[audit.gcs]`).
    pub checkpoint_dir: Option<PathBuf>,
    /// Whether checkpoints are written to `checkpoint_dir` (default true). Set it to false when
    /// an object-storage sink replaces the directory; at least one sink must remain.
    pub directory_sink: bool,
    /// Amazon S3 checkpoint sink: each checkpoint an object under S3 Object Lock.
    pub s3: Option<S3SinkConfig>,
    /// Google Cloud Storage checkpoint sink: each checkpoint an object under a locked bucket
    /// retention policy or its own locked retention.
    pub gcs: Option<GcsSinkConfig>,
    /// How often the server re-verifies the whole log.
    #[serde(with = "humantime_serde")]
    pub verify_interval: Duration,
    /// Public key files of signing keys retired by a rotation: their checkpoints still verify.
    pub retired_public_keys: Vec<PathBuf>,
}

/// The S3 Object Lock retention mode of checkpoint objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionMode {
    /// No one, the account root included, can delete or shorten the retention before it ends.
    #[default]
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can delete early (for trials of the setup).
    Governance,
}

/// Days checkpoints are kept by default: six years, the HIPAA documentation retention period
/// (45 CFR 164.316(b)(2)), plus a few days.
pub const DEFAULT_RETENTION_DAYS: u32 = 2200;

/// `[audit.s3]`: an S3 bucket created with Object Lock enabled. Credentials come from the
/// standard AWS chain, like `[keys.aws]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3SinkConfig {
    /// The bucket; medai refuses to start if it does not have Object Lock enabled.
    pub bucket: String,
    /// Key prefix of the checkpoint objects (default `medai-audit/`).
    pub prefix: String,
    /// AWS region; unset uses `AWS_REGION` or the shared config.
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint or an S3-compatible server).
    #[serde(serialize_with = "mask_plain_url")]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), for S3-compatible servers.
    pub force_path_style: bool,
    /// `compliance` (default) or `governance`.
    pub retention_mode: RetentionMode,
    /// Each object is locked until now + this many days (default 2200).
    pub retention_days: u32,
}

impl Default for S3SinkConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "medai-audit/".into(),
            region: None,
            endpoint: None,
            force_path_style: false,
            retention_mode: RetentionMode::Compliance,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// `[audit.gcs]`: a Cloud Storage bucket through the JSON API, with an OAuth2 token from the
/// metadata server (workload identity on GKE) or a token file, like `[keys.gcp]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsSinkConfig {
    /// The bucket. Without `retention_days` it must have a locked retention policy (checked at
    /// start); with it, object retention must be enabled on the bucket.
    pub bucket: String,
    /// Object name prefix (default `medai-audit/`).
    pub prefix: String,
    /// Per-object retention: each object is locked (mode `Locked`) until now + this many days.
    /// Unset relies on the bucket's locked retention policy.
    pub retention_days: Option<u32>,
    /// API base URL (default `https://storage.googleapis.com`).
    #[serde(serialize_with = "mask_plain_url")]
    pub endpoint: Option<String>,
    /// A file holding the OAuth2 access token (re-read before each call).
    pub token_file: Option<PathBuf>,
    /// The token endpoint when no `token_file` is set (the metadata server by default).
    #[serde(serialize_with = "mask_plain_url")]
    pub token_url: Option<String>,
}

impl Default for GcsSinkConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "medai-audit/".into(),
            retention_days: None,
            endpoint: None,
            token_file: None,
            token_url: None,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: "medai.local/audit".into(),
            checkpoint_interval: Duration::from_secs(10),
            checkpoint_dir: None,
            directory_sink: true,
            s3: None,
            gcs: None,
            verify_interval: Duration::from_secs(3600),
            retired_public_keys: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            data_dir: PathBuf::from("./medai-data"),
            database_url: None,
            redis_url: None,
            redis_ca_file: None,
            public_url: None,
            log_format: LogFormat::Json,
            tls: None,
            trusted_proxies: Vec::new(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            audit: AuditConfig::default(),
            keys: KeysConfig::default(),
            llm: None,
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// TLS served by medai itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key.
    pub key_path: PathBuf,
    /// Lowest TLS version accepted: `1.3` (default) or `1.2`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

/// Authentication and session settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Automatic logoff after this long without a request (HIPAA 164.312(a)(2)(iii)).
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after login, however active.
    #[serde(with = "humantime_serde")]
    pub session_max_lifetime: Duration,
    /// Time allowed between the password step and the TOTP step.
    #[serde(with = "humantime_serde")]
    pub mfa_step_timeout: Duration,
    /// How long a break-glass grant lasts.
    #[serde(with = "humantime_serde")]
    pub break_glass_duration: Duration,
    /// Shortest reason accepted for break-glass access, in characters.
    pub break_glass_min_reason_chars: usize,
    /// How long a setup or enrolment link stays valid.
    #[serde(with = "humantime_serde")]
    pub enrolment_link_ttl: Duration,
    /// Minimum password length in characters (at least 12).
    pub password_min_length: usize,
    /// argon2id cost.
    pub argon2: Argon2Cost,
    /// Throttling of failed logins per account.
    pub account_throttle: ThrottlePolicy,
    /// Throttling of failed logins per client address.
    pub ip_throttle: ThrottlePolicy,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_timeout: Duration::from_secs(15 * 60),
            session_max_lifetime: Duration::from_secs(12 * 3600),
            mfa_step_timeout: Duration::from_secs(5 * 60),
            break_glass_duration: Duration::from_secs(3600),
            break_glass_min_reason_chars: 10,
            enrolment_link_ttl: Duration::from_secs(24 * 3600),
            password_min_length: 12,
            argon2: Argon2Cost::default(),
            account_throttle: ThrottlePolicy::default(),
            ip_throttle: ThrottlePolicy {
                free_attempts: 20,
                lockout_after: 100,
                ..ThrottlePolicy::default()
            },
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest time one request may take.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A configuration value that is out of range; names the key and says what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: `{key}` {problem}")]
pub struct ConfigError {
    /// The key, dotted (`auth.session_idle_timeout`).
    pub key: &'static str,
    /// What is wrong and what is allowed.
    pub problem: String,
}

fn err(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

fn within(key: &'static str, v: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(err(
            key,
            format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Classifies a database URL by its scheme.
pub fn database_kind(url: &str) -> Option<DatabaseKind> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(DatabaseKind::Postgres)
    } else if url.starts_with("sqlite:") {
        Some(DatabaseKind::Sqlite)
    } else {
        None
    }
}

impl Config {
    /// Checks every value; the first problem is returned naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        let min = Duration::from_secs(60);
        within(
            "auth.session_idle_timeout",
            a.session_idle_timeout,
            min,
            Duration::from_secs(24 * 3600),
        )?;
        within(
            "auth.session_max_lifetime",
            a.session_max_lifetime,
            a.session_idle_timeout,
            Duration::from_secs(7 * 24 * 3600),
        )?;
        within(
            "auth.mfa_step_timeout",
            a.mfa_step_timeout,
            Duration::from_secs(30),
            Duration::from_secs(3600),
        )?;
        within(
            "auth.break_glass_duration",
            a.break_glass_duration,
            min,
            Duration::from_secs(24 * 3600),
        )?;
        within(
            "auth.enrolment_link_ttl",
            a.enrolment_link_ttl,
            Duration::from_secs(300),
            Duration::from_secs(30 * 24 * 3600),
        )?;
        if !(1..=1000).contains(&a.break_glass_min_reason_chars) {
            return Err(err(
                "auth.break_glass_min_reason_chars",
                "must be between 1 and 1000",
            ));
        }
        if !(12..=128).contains(&a.password_min_length) {
            return Err(err(
                "auth.password_min_length",
                "must be between 12 and 128",
            ));
        }
        if a.argon2.memory_kib < 19_456 || a.argon2.iterations < 2 || a.argon2.parallelism < 1 {
            return Err(err(
                "auth.argon2",
                "must be at least memory_kib = 19456, iterations = 2, parallelism = 1 (OWASP minimum)",
            ));
        }
        for (key, t) in [
            ("auth.account_throttle", &a.account_throttle),
            ("auth.ip_throttle", &a.ip_throttle),
        ] {
            if t.lockout_after == 0 || t.lockout_after <= t.free_attempts {
                return Err(err(
                    key,
                    "needs lockout_after > free_attempts >= 0 and lockout_after >= 1",
                ));
            }
            if t.window.is_zero() || t.lockout_duration.is_zero() {
                return Err(err(key, "needs a non-zero window and lockout_duration"));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.limits.max_body_bytes) {
            return Err(err(
                "limits.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        within(
            "limits.request_timeout",
            self.limits.request_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        within(
            "shutdown_grace",
            self.shutdown_grace,
            Duration::ZERO,
            Duration::from_secs(600),
        )?;
        within(
            "audit.checkpoint_interval",
            self.audit.checkpoint_interval,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        within(
            "audit.verify_interval",
            self.audit.verify_interval,
            Duration::from_secs(60),
            Duration::from_secs(7 * 24 * 3600),
        )?;
        let o = &self.audit.origin;
        if o.is_empty() || o.len() > 200 || o.contains(|c: char| c.is_whitespace() || c == '+') {
            return Err(err(
                "audit.origin",
                "must be 1 to 200 characters without spaces or '+', e.g. medai.hospital.example/audit",
            ));
        }
        self.validate_sinks()?;
        if self.listen == self.metrics_listen && self.listen.port() != 0 {
            return Err(err(
                "metrics_listen",
                "must differ from `listen` so /metrics is never served publicly",
            ));
        }
        if let Some(url) = &self.database_url {
            if database_kind(url.expose_secret()).is_none() {
                return Err(err(
                    "database_url",
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        }
        if let Some(url) = &self.redis_url {
            let u = url.expose_secret();
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(err("redis_url", "must start with redis:// or rediss://"));
            }
        }
        if let Some(ca) = &self.redis_ca_file {
            // Whether the file exists and parses is checked where files are read (the binary
            // and the session store); this crate does no I/O.
            if ca.as_os_str().is_empty() {
                return Err(err("redis_ca_file", "must not be empty"));
            }
            let tls = self
                .redis_url
                .as_ref()
                .is_some_and(|u| u.expose_secret().starts_with("rediss://"));
            if !tls {
                return Err(err(
                    "redis_ca_file",
                    "needs a `redis_url` starting with rediss:// (TLS); a CA is only used over TLS",
                ));
            }
        }
        if let Some(p) = &self.public_url {
            if !(p.starts_with("http://") || p.starts_with("https://"))
                || p.contains(char::is_whitespace)
            {
                return Err(err("public_url", "must be an http:// or https:// URL"));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(err("data_dir", "must not be empty"));
        }
        if let Some(e) = &self.telemetry.otlp_endpoint {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
                || e.contains(char::is_whitespace)
                || e.contains('@')
                || e.contains('?')
            {
                return Err(err(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL without credentials or query, e.g. http://otel-collector:4318",
                ));
            }
        }
        let name = &self.telemetry.service_name;
        if name.is_empty()
            || name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(err(
                "telemetry.service_name",
                "must be 1 to 100 characters of letters, digits, '.', '_' or '-'",
            ));
        }
        self.validate_keys()
    }

    fn validate_sinks(&self) -> Result<(), ConfigError> {
        let a = &self.audit;
        if !a.directory_sink && a.s3.is_none() && a.gcs.is_none() {
            return Err(err(
                "audit.directory_sink",
                "may be false only when [audit.s3] or [audit.gcs] is configured (checkpoints need a sink)",
            ));
        }
        let bucket_ok = |b: &str| {
            (3..=63).contains(&b.len())
                && b.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_'
                })
                && b.starts_with(|c: char| c.is_ascii_alphanumeric())
                && b.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        let prefix_ok = |p: &str| {
            p.len() <= 512
                && !p.starts_with('/')
                && !p.split('/').any(|s| s == "..")
                && p.chars().all(|c| c.is_ascii_graphic())
        };
        let days_ok = |d: u32| (1..=36_500).contains(&d);
        let url_ok = |v: &str| {
            (v.starts_with("https://") || v.starts_with("http://"))
                && !v.contains(char::is_whitespace)
        };
        if let Some(s) = &a.s3 {
            if !bucket_ok(&s.bucket) {
                return Err(err(
                    "audit.s3.bucket",
                    "must be an S3 bucket name (3 to 63 lower-case letters, digits, '-' or '.')",
                ));
            }
            if !prefix_ok(&s.prefix) {
                return Err(err(
                    "audit.s3.prefix",
                    "must be printable ASCII without spaces, a leading '/' or '..'",
                ));
            }
            if !days_ok(s.retention_days) {
                return Err(err(
                    "audit.s3.retention_days",
                    "must be between 1 and 36500",
                ));
            }
            if let Some(r) = &s.region {
                if r.is_empty()
                    || !r
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(err("audit.s3.region", "must look like us-east-1"));
                }
            }
            if s.endpoint.as_deref().is_some_and(|e| !url_ok(e)) {
                return Err(err(
                    "audit.s3.endpoint",
                    "must be an https:// (or http://) URL",
                ));
            }
        }
        if let Some(g) = &a.gcs {
            if !bucket_ok(&g.bucket) {
                return Err(err(
                    "audit.gcs.bucket",
                    "must be a Cloud Storage bucket name (3 to 63 lower-case letters, digits, '-', '_' or '.')",
                ));
            }
            if !prefix_ok(&g.prefix) {
                return Err(err(
                    "audit.gcs.prefix",
                    "must be printable ASCII without spaces, a leading '/' or '..'",
                ));
            }
            if g.retention_days.is_some_and(|d| !days_ok(d)) {
                return Err(err(
                    "audit.gcs.retention_days",
                    "must be between 1 and 36500",
                ));
            }
            if g.endpoint.as_deref().is_some_and(|e| !url_ok(e)) {
                return Err(err(
                    "audit.gcs.endpoint",
                    "must be an https:// (or http://) URL",
                ));
            }
            if g.token_url.as_deref().is_some_and(|e| !url_ok(e)) {
                return Err(err(
                    "audit.gcs.token_url",
                    "must be an https:// (or http://) URL",
                ));
            }
            if g.token_file
                .as_ref()
                .is_some_and(|f| f.as_os_str().is_empty())
            {
                return Err(err("audit.gcs.token_file", "must not be empty"));
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), ConfigError> {
        let k = &self.keys;
        within(
            "keys.rotation_period",
            k.rotation_period,
            Duration::from_secs(24 * 3600),
            Duration::from_secs(3650 * 24 * 3600),
        )?;
        if let Some(t) = k.timeout {
            within(
                "keys.timeout",
                t,
                Duration::from_millis(100),
                Duration::from_secs(300),
            )?;
        }
        fn url(key: &'static str, v: &str) -> Result<(), ConfigError> {
            if !(v.starts_with("https://") || v.starts_with("http://"))
                || v.contains(char::is_whitespace)
            {
                return Err(err(key, "must be an https:// (or http://) URL"));
            }
            Ok(())
        }
        fn token(
            file_key: &'static str,
            url_key: &'static str,
            token_file: Option<&PathBuf>,
            token_url: Option<&String>,
        ) -> Result<(), ConfigError> {
            if token_file.is_some_and(|f| f.as_os_str().is_empty()) {
                return Err(err(file_key, "must not be empty"));
            }
            if let Some(u) = token_url {
                url(url_key, u)?;
            }
            Ok(())
        }
        match k.provider {
            KeyProviderKind::LocalFile => {}
            KeyProviderKind::AwsKms => {
                let Some(a) = &k.aws else {
                    return Err(err(
                        "keys.aws",
                        "is required with provider = \"aws-kms\" (at least keys.aws.key_id)",
                    ));
                };
                if a.key_id.trim().is_empty() || a.key_id.contains(char::is_whitespace) {
                    return Err(err(
                        "keys.aws.key_id",
                        "must be a key ARN, key id or alias (alias/NAME)",
                    ));
                }
                if let Some(r) = &a.region {
                    if r.is_empty()
                        || !r
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    {
                        return Err(err("keys.aws.region", "must look like us-east-1"));
                    }
                }
                if let Some(e) = &a.endpoint {
                    url("keys.aws.endpoint", e)?;
                }
            }
            KeyProviderKind::GcpKms => {
                let Some(g) = &k.gcp else {
                    return Err(err(
                        "keys.gcp",
                        "is required with provider = \"gcp-kms\" (at least keys.gcp.key_name)",
                    ));
                };
                let parts: Vec<&str> = g.key_name.split('/').collect();
                let shaped = parts.len() == 8
                    && parts[0] == "projects"
                    && parts[2] == "locations"
                    && parts[4] == "keyRings"
                    && parts[6] == "cryptoKeys"
                    && parts.iter().all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                if !shaped {
                    return Err(err(
                        "keys.gcp.key_name",
                        "must be projects/P/locations/L/keyRings/R/cryptoKeys/K",
                    ));
                }
                if let Some(e) = &g.endpoint {
                    url("keys.gcp.endpoint", e)?;
                }
                token(
                    "keys.gcp.token_file",
                    "keys.gcp.token_url",
                    g.token_file.as_ref(),
                    g.token_url.as_ref(),
                )?;
            }
            KeyProviderKind::AzureKeyVault => {
                let Some(a) = &k.azure else {
                    return Err(err(
                        "keys.azure",
                        "is required with provider = \"azure-key-vault\" (vault_url, key_name)",
                    ));
                };
                url("keys.azure.vault_url", &a.vault_url)?;
                let name_ok = |v: &str| {
                    !v.is_empty()
                        && v.len() <= 127
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                };
                if !name_ok(&a.key_name) {
                    return Err(err(
                        "keys.azure.key_name",
                        "must be 1 to 127 letters, digits or '-'",
                    ));
                }
                if a.key_version.as_deref().is_some_and(|v| !name_ok(v)) {
                    return Err(err(
                        "keys.azure.key_version",
                        "must be a key version id (letters and digits)",
                    ));
                }
                token(
                    "keys.azure.token_file",
                    "keys.azure.token_url",
                    a.token_file.as_ref(),
                    a.token_url.as_ref(),
                )?;
            }
        }
        Ok(())
    }

    /// The database URL in force: the configured one or SQLite in the data directory.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.expose_secret().to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("medai.db").display()
            ),
        }
    }

    /// The directory signed audit checkpoints are written to.
    pub fn effective_checkpoint_dir(&self) -> PathBuf {
        self.audit
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoints"))
    }

    /// The audit checkpoint signing key file (its public key is beside it, `.pub`).
    pub fn audit_key_path(&self) -> PathBuf {
        self.data_dir.join("audit-signing.key")
    }

    /// The public base URL, without a trailing slash.
    pub fn effective_public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    /// Whether session cookies get the `Secure` attribute: when medai serves TLS or is reached
    /// over https through a proxy.
    pub fn secure_cookies(&self) -> bool {
        self.tls.is_some() || self.effective_public_url().starts_with("https://")
    }
}

/// Writes a URL with its password replaced by `****`; anything unparseable is masked whole.
pub fn mask_url_str(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked_tail = mask_query_secrets(tail);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:****@{host}{masked_tail}")
            } else {
                format!("{scheme}://{user}@{host}{masked_tail}")
            }
        }
        None => format!("{scheme}://{authority}{}", mask_query_secrets(tail)),
    }
}

fn mask_query_secrets(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.to_ascii_lowercase().contains("pass") => format!("{k}=****"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

fn mask_plain_url<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&mask_url_str(u)),
        None => s.serialize_none(),
    }
}

fn mask_vault_url<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url_str(v))
}

/// Serializes a free-form section with the value of every key that names a secret masked.
fn mask_secret_keys<S: Serializer>(v: &Option<serde_json::Value>, s: S) -> Result<S::Ok, S::Error> {
    fn mask(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let secret = ["api_key", "token", "password", "secret"]
                            .iter()
                            .any(|w| k.to_ascii_lowercase().contains(w));
                        let v = if secret {
                            serde_json::Value::String("****".into())
                        } else if k == "endpoint" {
                            v.as_str().map_or_else(
                                || mask(v),
                                |u| serde_json::Value::String(mask_url_str(u)),
                            )
                        } else {
                            mask(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(mask).collect()),
            other => other.clone(),
        }
    }
    match v {
        Some(v) => s.serialize_some(&mask(v)),
        None => s.serialize_none(),
    }
}

fn mask_url<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_some(&mask_url_str(secret.expose_secret())),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.data_dir, PathBuf::from("./medai-data"));
        assert_eq!(c.auth.session_idle_timeout, Duration::from_secs(900));
        assert_eq!(c.auth.session_max_lifetime, Duration::from_secs(43_200));
        assert!(c
            .effective_database_url()
            .starts_with("sqlite://./medai-data/medai.db"));
        assert!(!c.secure_cookies());
    }

    #[test]
    fn llm_secrets_are_masked_when_printed() {
        let c = Config {
            llm: Some(serde_json::json!({
                "default_model": "m",
                "models": [{"id": "m", "endpoint": "https://u:pw@llm.example/v1",
                            "api_key": "sk-very-secret", "context_window": 8192}]
            })),
            ..Config::default()
        };
        let printed = serde_json::to_string(&c).unwrap();
        assert!(!printed.contains("sk-very-secret"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
        assert!(printed.contains("\"context_window\":8192"), "{printed}");
        assert!(printed.contains("llm.example"), "{printed}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let mut c = Config::default();
        c.auth.password_min_length = 8;
        assert_eq!(c.validate().unwrap_err().key, "auth.password_min_length");
        let mut c = Config::default();
        c.auth.session_idle_timeout = Duration::from_secs(5);
        assert_eq!(c.validate().unwrap_err().key, "auth.session_idle_timeout");
        let c = Config {
            database_url: Some(SecretString::from("mysql://x")),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "database_url");
        let c = Config {
            metrics_listen: Config::default().listen,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "metrics_listen");
        let mut c = Config::default();
        c.auth.argon2.memory_kib = 1024;
        assert_eq!(c.validate().unwrap_err().key, "auth.argon2");
    }

    #[test]
    fn redis_ca_file_needs_a_tls_redis_url() {
        let with = |url: Option<&str>, ca: &str| Config {
            redis_url: url.map(SecretString::from),
            redis_ca_file: Some(PathBuf::from(ca)),
            ..Config::default()
        };
        for url in [None, Some("redis://cache:6379")] {
            let e = with(url, "/etc/medai/redis-ca.pem").validate().unwrap_err();
            assert_eq!(e.key, "redis_ca_file");
            assert!(e.to_string().contains("rediss://"), "{e}");
        }
        let e = with(Some("rediss://cache:6378"), "")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "redis_ca_file");
        with(Some("rediss://:auth@cache:6378"), "/etc/medai/redis-ca.pem")
            .validate()
            .unwrap();
    }

    #[test]
    fn secrets_are_masked_when_serialized() {
        let c = Config {
            database_url: Some(SecretString::from(
                "postgres://medai:hunter2@db:5432/medai?password=x2&sslmode=require",
            )),
            redis_url: Some(SecretString::from("redis://:sekret@cache:6379")),
            ..Config::default()
        };
        let v = serde_json::to_string(&c).unwrap();
        assert!(
            !v.contains("hunter2") && !v.contains("sekret") && !v.contains("x2"),
            "{v}"
        );
        assert!(
            v.contains("postgres://medai:****@db:5432/medai?password=****&sslmode=require"),
            "{v}"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    fn keys(v: serde_json::Value) -> Result<Config, String> {
        let c: Config =
            serde_json::from_value(serde_json::json!({ "keys": v })).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn keys_section_selects_a_provider_and_each_problem_names_its_key() {
        let c = Config::default();
        assert_eq!(c.keys.provider, KeyProviderKind::LocalFile);
        assert_eq!(c.keys.effective_timeout(), Duration::from_secs(10));
        let c = keys(serde_json::json!({
            "provider": "aws-kms", "timeout": "3s",
            "aws": { "key_id": "alias/medai-phi", "region": "eu-west-1" }
        }))
        .unwrap();
        assert_eq!(c.keys.provider.name(), "aws-kms");
        assert_eq!(c.keys.effective_timeout(), Duration::from_secs(3));
        keys(serde_json::json!({
            "provider": "gcp-kms",
            "gcp": { "key_name": "projects/p/locations/global/keyRings/r/cryptoKeys/k" }
        }))
        .unwrap();
        keys(serde_json::json!({
            "provider": "azure-key-vault",
            "azure": { "vault_url": "https://v.vault.azure.net", "key_name": "phi-kek",
                       "token_file": "/run/secrets/azure-token" }
        }))
        .unwrap();
        for (v, key) in [
            (serde_json::json!({ "provider": "aws-kms" }), "keys.aws"),
            (
                serde_json::json!({ "provider": "aws-kms", "aws": { "key_id": "" } }),
                "keys.aws.key_id",
            ),
            (
                serde_json::json!({ "provider": "aws-kms", "aws": { "key_id": "k", "region": "US East" } }),
                "keys.aws.region",
            ),
            (
                serde_json::json!({ "provider": "aws-kms", "aws": { "key_id": "k", "endpoint": "kms.local" } }),
                "keys.aws.endpoint",
            ),
            (serde_json::json!({ "provider": "gcp-kms" }), "keys.gcp"),
            (
                serde_json::json!({ "provider": "gcp-kms", "gcp": { "key_name": "projects/p/cryptoKeys/k" } }),
                "keys.gcp.key_name",
            ),
            (
                serde_json::json!({ "provider": "gcp-kms", "gcp": {
                    "key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
                    "token_url": "metadata" } }),
                "keys.gcp.token_url",
            ),
            (
                serde_json::json!({ "provider": "azure-key-vault" }),
                "keys.azure",
            ),
            (
                serde_json::json!({ "provider": "azure-key-vault", "azure": {
                    "vault_url": "https://v.vault.azure.net", "key_name": "a/b" } }),
                "keys.azure.key_name",
            ),
            (
                serde_json::json!({ "provider": "azure-key-vault", "azure": {
                    "vault_url": "v.vault.azure.net", "key_name": "k" } }),
                "keys.azure.vault_url",
            ),
            (serde_json::json!({ "timeout": "1ms" }), "keys.timeout"),
        ] {
            let e = keys(v.clone()).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{v}: {e}");
        }
        // Unknown providers and fields are refused at parse time.
        assert!(keys(serde_json::json!({ "provider": "vault" })).is_err());
        assert!(keys(serde_json::json!({ "aws": { "key_id": "k", "secret": "x" } })).is_err());
    }

    fn audit(v: serde_json::Value) -> Result<Config, String> {
        let c: Config =
            serde_json::from_value(serde_json::json!({ "audit": v })).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn checkpoint_sinks_are_validated_and_their_endpoints_masked() {
        let c = audit(serde_json::json!({
            "directory_sink": false,
            "s3": { "bucket": "medai-audit", "retention_mode": "governance",
                    "endpoint": "https://u:s3cr3t@s3.internal" },
            "gcs": { "bucket": "medai_audit", "retention_days": 30,
                     "token_url": "http://meta/token?sig=abc" }
        }))
        .unwrap();
        let s3 = c.audit.s3.as_ref().unwrap();
        assert_eq!(s3.retention_mode, RetentionMode::Governance);
        assert_eq!(s3.retention_days, DEFAULT_RETENTION_DAYS);
        assert_eq!(s3.prefix, "medai-audit/");
        let printed = serde_json::to_string(&c).unwrap();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("https://u:****@s3.internal"), "{printed}");
        for (v, key) in [
            (
                serde_json::json!({ "directory_sink": false }),
                "audit.directory_sink",
            ),
            (
                serde_json::json!({ "s3": { "bucket": "A b" } }),
                "audit.s3.bucket",
            ),
            (
                serde_json::json!({ "s3": { "bucket": "ok-bucket", "prefix": "/x" } }),
                "audit.s3.prefix",
            ),
            (
                serde_json::json!({ "s3": { "bucket": "ok-bucket", "prefix": "a/../b" } }),
                "audit.s3.prefix",
            ),
            (
                serde_json::json!({ "s3": { "bucket": "ok-bucket", "retention_days": 0 } }),
                "audit.s3.retention_days",
            ),
            (
                serde_json::json!({ "s3": { "bucket": "ok-bucket", "endpoint": "s3.local" } }),
                "audit.s3.endpoint",
            ),
            (
                serde_json::json!({ "s3": { "bucket": "ok-bucket", "region": "EU" } }),
                "audit.s3.region",
            ),
            (
                serde_json::json!({ "gcs": { "bucket": "" } }),
                "audit.gcs.bucket",
            ),
            (
                serde_json::json!({ "gcs": { "bucket": "ok-bucket", "retention_days": 40000 } }),
                "audit.gcs.retention_days",
            ),
            (
                serde_json::json!({ "gcs": { "bucket": "ok-bucket", "token_url": "meta" } }),
                "audit.gcs.token_url",
            ),
        ] {
            let e = audit(v.clone()).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{v}: {e}");
        }
        assert!(
            audit(serde_json::json!({ "s3": { "bucket": "b", "retention_mode": "forever" } }))
                .is_err()
        );
    }

    #[test]
    fn key_provider_endpoints_are_masked_when_serialized() {
        let c = keys(serde_json::json!({
            "provider": "aws-kms",
            "aws": { "key_id": "k", "endpoint": "https://user:pa55@kms.internal" }
        }))
        .unwrap();
        let v = serde_json::to_string(&c).unwrap();
        assert!(
            !v.contains("pa55") && v.contains("https://user:****@kms.internal"),
            "{v}"
        );
    }

    #[test]
    fn mask_handles_odd_urls() {
        assert_eq!(mask_url_str("no scheme"), "****");
        assert_eq!(
            mask_url_str("sqlite://./x.db?mode=rwc"),
            "sqlite://./x.db?mode=rwc"
        );
        assert_eq!(mask_url_str("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(mask_url_str("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn https_public_url_means_secure_cookies() {
        let c = Config {
            public_url: Some("https://medai.example.org/".into()),
            ..Config::default()
        };
        assert!(c.secure_cookies());
        assert_eq!(c.effective_public_url(), "https://medai.example.org");
    }
}
