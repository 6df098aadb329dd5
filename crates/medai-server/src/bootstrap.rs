//! First run and start-up: the data directory, the local key file, the database and its schema,
//! the first administrator's setup link, and the application state.

use crate::accounts::setup_link_if_needed;
use crate::metrics::Metrics;
use crate::state::{AppState, Shared};
use medai_core::config::Config;
use medai_core::identity::PasswordHasher;
use medai_core::Clock;
use medai_crypto::{CryptoError, MasterKey};
use medai_store::ephemeral::Ephemeral;
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
    /// Password hashing parameters were rejected.
    #[error("auth.argon2: {0}")]
    Hasher(String),
}

/// What start-up prepared.
pub struct Prepared {
    /// The database.
    pub store: Store,
    /// The master key.
    pub key: MasterKey,
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
    let store = Store::connect(&config.effective_database_url()).await?;
    let migrated = store.ensure_schema_for_serve().await?;
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let setup_url = setup_link_if_needed(&mut conn, config, now).await?;
    drop(conn);
    Ok(Prepared {
        store,
        key,
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
        Some(url) => Ephemeral::redis(url.expose_secret(), "medai:").await?,
        None => Ephemeral::memory(),
    };
    state_with(config, prepared.store, prepared.key, ephemeral, clock)
}

/// Builds the state from parts (tests choose their own session store and clock).
pub fn state_with(
    config: Config,
    store: Store,
    key: MasterKey,
    ephemeral: Ephemeral,
    clock: Arc<dyn Clock>,
) -> Result<AppState, BootError> {
    let hasher =
        PasswordHasher::new(config.auth.argon2).map_err(|e| BootError::Hasher(e.to_string()))?;
    Ok(AppState::new(Shared {
        config,
        store,
        ephemeral,
        hasher,
        key,
        clock,
        metrics: Metrics::new(),
    }))
}
