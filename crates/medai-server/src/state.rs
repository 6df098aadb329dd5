//! What every handler shares.

use crate::metrics::Metrics;
use medai_core::config::Config;
use medai_core::identity::PasswordHasher;
use medai_core::Clock;
use medai_crypto::MasterKey;
use medai_store::ephemeral::Ephemeral;
use medai_store::Store;
use std::ops::Deref;
use std::sync::Arc;

/// The application state: configuration, storage, keys, clock and metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The shared parts of [`AppState`].
pub struct Shared {
    /// Validated configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Sessions and login counters.
    pub ephemeral: Ephemeral,
    /// Password hashing.
    pub hasher: PasswordHasher,
    /// The key that seals TOTP seeds.
    pub key: MasterKey,
    /// The key provider that wraps the PHI data keys (`[keys]`; the local key file by default).
    pub kek: Arc<dyn medai_crypto::envelope::KeyProvider>,
    /// The PHI data keys and blind-index key (unwrapped at start, reloaded after a rotation).
    pub phi: medai_store::phi_keys::PhiKeyring,
    /// The clock every time rule reads.
    pub clock: Arc<dyn Clock>,
    /// This instance's metrics.
    pub metrics: Metrics,
    /// The tamper-evident audit log's appender, checkpointer and verifier.
    pub audit: crate::audit_log::AuditLog,
    /// The assistant: models, PHI detector and safety rules.
    pub assistant: crate::assistant::Assistant,
    /// Failed logins per client address, for `medai_login_failures_max_per_source`.
    pub source_failures: crate::monitor::SourceFailures,
}

impl AppState {
    /// Assembles the state.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// A reference that does not keep the state alive (for background tasks).
    pub fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.0)
    }

    /// Now, in Unix seconds, from the configured clock.
    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }

    /// Runs argon2 verification on a blocking thread.
    pub async fn verify_password(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, crate::ApiError> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || st.hasher.verify(&password, phc.as_deref()))
            .await
            .map_err(|e| {
                crate::ApiError::Internal(format!("password verification task failed: {e}"))
            })
    }

    /// Runs argon2 hashing on a blocking thread.
    pub async fn hash_password(&self, password: String) -> Result<String, crate::ApiError> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || st.hasher.hash(&password))
            .await
            .map_err(|e| crate::ApiError::Internal(format!("password hashing task failed: {e}")))?
            .map_err(|e| crate::ApiError::Internal(e.to_string()))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
