//! First run and start-up: the data directory, the local key file, the database and its schema,
//! the first administrator's setup link, and the application state.

use crate::accounts::setup_link_if_needed;
use crate::audit_log::{AuditLog, Intervals, Sinks};
use crate::metrics::Metrics;
use crate::state::{AppState, Shared};
use medai_core::config::Config;
use medai_core::identity::PasswordHasher;
use medai_core::Clock;
use medai_crypto::envelope::KeyProvider;
use medai_crypto::{CryptoError, MasterKey};
use medai_store::ephemeral::Ephemeral;
use medai_store::phi_keys::PhiCipher;
use medai_store::redis_tls::RedisCa;
use medai_store::{SchemaStatus, Store, StoreError};
use secrecy::ExposeSecret as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why start-up failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The data directory could not be created or is not a directory.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file failed.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// The database failed or its schema does not match.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit checkpoint signing key failed.
    #[error(transparent)]
    AuditKey(#[from] medai_audit::AuditError),
    /// Password hashing parameters were rejected.
    #[error("auth.argon2: {0}")]
    Hasher(String),
    /// An object-storage checkpoint sink is unreachable or its bucket has no retention lock.
    #[error(transparent)]
    Sink(#[from] medai_kms::sink::SinkError),
    /// The assistant's models or rules could not be set up.
    #[error(transparent)]
    Assistant(#[from] crate::assistant::AssistantError),
}

/// The keys start-up loaded: the local key file, the configured PHI key provider and the PHI
/// keys it unwrapped from the database.
pub struct Keys {
    /// The key file's key: seals TOTP seeds (and wraps the PHI keys with the default provider).
    pub master: MasterKey,
    /// The provider `[keys]` configures (the local key file by default): wraps PHI data keys.
    pub provider: Arc<dyn KeyProvider>,
    /// The unwrapped PHI data keys and blind-index key.
    pub phi: PhiCipher,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("provider", &self.provider.name())
            .finish_non_exhaustive()
    }
}

/// The PHI key provider `[keys]` selects, built over the local key file (which stays the
/// provider by default, and unwraps keys it wrapped before a move to a KMS).
pub async fn key_provider(config: &Config) -> Result<Arc<dyn KeyProvider>, BootError> {
    let local = MasterKey::load(&key_path(config))?;
    let p = medai_kms::ConfiguredProvider::from_config(&config.keys, local).await?;
    Ok(Arc::new(p))
}

/// Patient rows encrypted per transaction by [`encrypt_plaintext_patients`].
const ENCRYPT_BATCH: i64 = 500;

/// Encrypts every patient row still held in plaintext (rows written before encryption at rest),
/// one committed batch at a time, so an interrupted run resumes where it stopped. Returns how
/// many rows it encrypted.
pub async fn encrypt_plaintext_patients(store: &Store, phi: &PhiCipher) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let mut tx = store.begin().await?;
        let n = medai_store::patients::encrypt_plaintext(&mut tx, phi, ENCRYPT_BATCH).await?;
        tx.commit().await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Loads (on first run: creates) the PHI keys, wrapped by `provider`, and encrypts any plaintext
/// patient rows. The database must be migrated.
pub async fn load_phi_keys(
    store: &Store,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<(PhiCipher, u64), StoreError> {
    let mut conn = store.pool().acquire().await?;
    let phi = match medai_store::phi_keys::load_or_init(&mut conn, provider, now).await {
        Ok(phi) => phi,
        Err(e) => {
            if let StoreError::KeyUnwrap {
                purpose, version, ..
            } = &e
            {
                // The wrong key file (or a tampered key row): recorded before refusing to start.
                let event = medai_core::audit::AuditEvent::new(
                    now,
                    "phi.key_unwrap_failed",
                    medai_core::audit::Outcome::Failure,
                )
                .detail(&serde_json::json!({
                    "purpose": purpose,
                    "version": version,
                    "provider": provider.name(),
                }));
                if let Err(err) = medai_store::audit::append(&mut conn, &event).await {
                    tracing::error!(target: "security", error = %err, "audit append of a key unwrap failure failed");
                }
            }
            return Err(e);
        }
    };
    drop(conn);
    let encrypted = encrypt_plaintext_patients(store, &phi).await?;
    Ok((phi, encrypted))
}

/// What start-up prepared.
pub struct Prepared {
    /// The database.
    pub store: Store,
    /// The key file's key and the PHI keys.
    pub key: Keys,
    /// Whether the key file was created now.
    pub key_created: bool,
    /// Whether migrations were applied now (fresh database).
    pub migrated: bool,
    /// A new setup link, if no administrator exists yet. Printed once; only its hash is stored.
    pub setup_url: Option<String>,
}

/// The key file's path in the data directory.
pub fn key_path(config: &Config) -> PathBuf {
    config.data_dir.join("master.key")
}

fn ensure_data_dir(dir: &Path) -> Result<(), BootError> {
    let err = |source| BootError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(err(std::io::Error::other("exists and is not a directory")));
        }
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir).map_err(err)
}

/// Prepares the data directory, key and database (migrating only a fresh one, refusing a schema
/// that is behind or ahead), and issues a setup link on an installation with no administrator.
/// `serve` and `init` both start here.
pub async fn prepare(config: &Config, now: i64) -> Result<Prepared, BootError> {
    ensure_data_dir(&config.data_dir)?;
    let (key, key_created) = MasterKey::load_or_create(&key_path(config))?;
    let provider = key_provider(config).await?;
    medai_audit::CheckpointSigner::load_or_create(&config.audit_key_path(), &config.audit.origin)?;
    let store = Store::connect(&config.effective_database_url()).await?;
    let migrated = store.ensure_schema_for_serve().await?;
    let (phi, _) = load_phi_keys(&store, &*provider, now).await?;
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let setup_url = setup_link_if_needed(&mut conn, config, now).await?;
    drop(conn);
    Ok(Prepared {
        store,
        key: Keys {
            master: key,
            provider,
            phi,
        },
        key_created,
        migrated,
        setup_url,
    })
}

/// Connects to the database without touching the schema (for `migrate` and operations).
pub async fn connect(config: &Config) -> Result<Store, BootError> {
    ensure_data_dir(&config.data_dir)?;
    Ok(Store::connect(&config.effective_database_url()).await?)
}

/// Connects and requires a current schema (for CLI commands that change data).
pub async fn connect_current(config: &Config) -> Result<Store, BootError> {
    let store = connect(config).await?;
    match store.schema_status().await? {
        SchemaStatus::Current => Ok(store),
        SchemaStatus::Fresh => {
            Err(StoreError::Schema("the database is empty; run `medai init` first".into()).into())
        }
        other => Err(StoreError::Schema(other.advice().unwrap_or_default()).into()),
    }
}

/// Builds the application state; connects to Redis when `redis_url` is set.
pub async fn state(
    config: Config,
    prepared: Prepared,
    clock: Arc<dyn Clock>,
) -> Result<AppState, BootError> {
    let ephemeral = match &config.redis_url {
        Some(url) => {
            let ca = match &config.redis_ca_file {
                Some(path) => Some(RedisCa::load(path)?),
                None => None,
            };
            Ephemeral::redis(url.expose_secret(), ca.as_ref(), "medai:").await?
        }
        None => Ephemeral::memory(),
    };
    let objects = medai_kms::sink::connect(&config.audit, config.keys.effective_timeout()).await?;
    let sinks = Sinks::new(
        config.effective_checkpoint_dir(),
        config.audit.directory_sink,
        objects,
    );
    state_with_sinks(
        config,
        prepared.store,
        prepared.key,
        ephemeral,
        clock,
        sinks,
    )
}

/// Builds the state from parts (tests choose their own session store and clock) and starts the
/// audit log's background tasks, with the checkpoint directory as the only sink; call it inside
/// the runtime.
pub fn state_with(
    config: Config,
    store: Store,
    key: Keys,
    ephemeral: Ephemeral,
    clock: Arc<dyn Clock>,
) -> Result<AppState, BootError> {
    let sinks = Sinks::directory_only(config.effective_checkpoint_dir());
    state_with_sinks(config, store, key, ephemeral, clock, sinks)
}

/// [`state_with`] with the given checkpoint sinks (connected and checked by the caller).
pub fn state_with_sinks(
    config: Config,
    store: Store,
    key: Keys,
    ephemeral: Ephemeral,
    clock: Arc<dyn Clock>,
    sinks: Sinks,
) -> Result<AppState, BootError> {
    let hasher =
        PasswordHasher::new(config.auth.argon2).map_err(|e| BootError::Hasher(e.to_string()))?;
    let (signer, _) = medai_audit::CheckpointSigner::load_or_create(
        &config.audit_key_path(),
        &config.audit.origin,
    )?;
    let mut retired = Vec::new();
    for path in &config.audit.retired_public_keys {
        let text = std::fs::read_to_string(path).map_err(|e| medai_audit::AuditError::KeyFile {
            path: path.clone(),
            problem: format!("audit.retired_public_keys: {e}"),
        })?;
        medai_audit::CheckpointVerifier::new(&text)?;
        retired.push(text.trim().to_owned());
    }
    let metrics = Metrics::new();
    let audit = AuditLog::start(
        store.clone(),
        signer,
        retired,
        sinks,
        clock.clone(),
        metrics.audit.clone(),
        Intervals {
            checkpoint: config.audit.checkpoint_interval,
            verify: config.audit.verify_interval,
        },
    );
    let assistant = crate::assistant::Assistant::new(config.llm.as_ref(), &metrics.llm)?;
    let state = AppState::new(Shared {
        assistant,
        config,
        store,
        ephemeral,
        hasher,
        key: key.master,
        kek: key.provider,
        phi: medai_store::phi_keys::PhiKeyring::new(key.phi),
        clock,
        metrics,
        audit,
        source_failures: crate::monitor::SourceFailures::default(),
    });
    crate::monitor::set_static(&state);
    crate::monitor::spawn_upstream_probe(&state);
    Ok(state)
}
