use thiserror::Error;

/// Errors of the storage layer. Messages name tables, constraints and keys, never values.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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
    /// Redis reported an error.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
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
            StoreError::Redis(_) => true,
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
