use thiserror::Error;

/// Errors of the storage layer. Messages name tables, constraints and keys, never values.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite reported an error on a connection of the audit verifier's own.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A unique constraint refused the write; names the field.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A row the operation needs does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A stored value could not be understood (for example an unknown role name).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database URL's scheme is not supported.
    #[error("database URL must start with sqlite:, postgres:// or postgresql://")]
    UnsupportedUrl,
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The schema is not the one this binary expects.
    #[error("{0}")]
    Schema(String),
    /// A PHI field could not be decrypted (corrupted ciphertext, wrong key, missing key
    /// version); names the field and the row id, never the value.
    #[error("cannot decrypt {table}.{column} of row {row_id}: {source}")]
    Decrypt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's opaque id.
        row_id: String,
        /// What failed.
        source: medai_crypto::envelope::FieldError,
    },
    /// A PHI field could not be encrypted (no data key in the key ring, or the cipher refused);
    /// names the field, never the value.
    #[error("cannot encrypt {table}.{column}: {source}")]
    Encrypt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What failed.
        source: medai_crypto::envelope::FieldError,
    },
    /// A stored PHI key could not be unwrapped (or wrapped) by the key provider: the wrong key
    /// file, or a tampered key row.
    #[error("the key provider cannot unwrap the {purpose} key version {version}: {detail}")]
    KeyUnwrap {
        /// `data` or `blind-index`.
        purpose: String,
        /// The key version.
        version: u32,
        /// The provider's error (never key material).
        detail: String,
    },
    /// Redis reported an error.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis could not be reached or refused the TLS handshake at start; names the server
    /// (without credentials) and, for certificate problems, what to configure.
    #[error("cannot connect to Redis at {target}: {source}{hint}")]
    RedisConnect {
        /// `host:port` of the server.
        target: String,
        /// What the redis client reported.
        source: redis::RedisError,
        /// Advice for the operator, empty when there is none.
        hint: &'static str,
    },
    /// The `redis_ca_file` cannot be used.
    #[error("`redis_ca_file` {}: {problem}", path.display())]
    RedisCaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS crypto provider could not be set up.
    #[error("TLS crypto provider: {0}")]
    CryptoProvider(String),
}

impl StoreError {
    /// Whether the database or Redis could not be reached (as opposed to refusing the operation).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            ),
            StoreError::Redis(_) | StoreError::RedisConnect { .. } => true,
            _ => false,
        }
    }

    /// Maps a unique violation to [`StoreError::Conflict`] naming `field`.
    pub(crate) fn unique(e: sqlx::Error, field: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(field),
            _ => StoreError::Database(e),
        }
    }
}
