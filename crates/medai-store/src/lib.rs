//! medai storage: repositories over SQLite (embedded default) and PostgreSQL (production), the
//! schema migrations of each, and the ephemeral store for sessions and login throttling
//! (in process, or Redis so replicas share them).
//!
//! One set of queries serves both databases through sqlx's `Any` driver: the SQL is written in
//! the common dialect (`$n` placeholders, integers for time, text ids), and the two backends
//! differ only in their migrations. Every function that changes data takes a connection, so the
//! caller runs it in the same transaction as the audit event that records it.
//!
//! This crate must never log PHI: errors name tables and constraints, never values.

pub mod audit;
pub mod audit_log;
mod audit_scan;
pub mod break_glass;
pub mod care_teams;
pub mod conversations;
pub mod enrolments;
pub mod ephemeral;
mod error;
pub mod patients;
pub mod phi_keys;
pub mod redis_tls;
mod schema;
pub mod testkit;
pub mod tokens;
pub mod users;

pub use error::StoreError;
pub use medai_core::config::DatabaseKind;
pub use schema::SchemaStatus;
pub use sqlx::{AnyConnection, Transaction};

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor as _};
use std::time::Duration;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: DatabaseKind,
    /// Kept for the readers that open their own connections (the audit verifier's scans); it may
    /// hold a password, so `Debug` leaves it out.
    url: std::sync::Arc<str>,
    /// SQLite: the background checkpointer, which runs until [`Store::close`] or until the last
    /// clone of the store is dropped (the sender with it).
    checkpointer: Option<std::sync::Arc<Checkpointer>>,
}

/// The handle on a SQLite store's checkpoint task.
struct Checkpointer {
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How often the SQLite checkpointer copies the write-ahead log into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed pages from the SQLite write-ahead log into the database file every
/// [`CHECKPOINT_EVERY`], on a connection of its own, until `stop` says so or its sender is
/// dropped.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 log pages and syncs
/// the database file there: that commit (and every request queued behind the one connection)
/// waited 6 to 11 ms under the answer benchmark. A passive checkpoint here takes no lock that
/// a writer needs, so commits stay at their usual fraction of a millisecond.
async fn checkpoint_loop(mut conn: AnyConnection, mut stop: tokio::sync::watch::Receiver<bool>) {
    use sqlx::Connection as _;
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            () = tokio::time::sleep(CHECKPOINT_EVERY) => {
                if let Err(e) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
                }
            }
        }
    }
    // A last pass so the database file is complete when the store goes away. After
    // `Store::close` no other connection of this process is open, so TRUNCATE also empties the
    // log: frames holding rows since rewritten (plaintext rows encrypted by `migrate`, say) do
    // not stay on disk.
    if let Err(e) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await {
        tracing::warn!(error = %e, "final SQLite checkpoint failed");
    }
    let _ = conn.close().await;
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A pooled connection idle for this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// A transaction on the store.
pub type Tx = Transaction<'static, Any>;

impl Store {
    /// Connects to `url` (`sqlite:` or `postgres://`). A SQLite file is created if missing and
    /// put in WAL mode.
    ///
    /// SQLite gets a single connection: it serialises writers anyway, and one connection rules
    /// out `SQLITE_BUSY` when a read transaction upgrades to a write. Scale-out is PostgreSQL's.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let kind = medai_core::config::database_kind(url).ok_or(StoreError::UnsupportedUrl)?;
        // A connection is pinged before use only when it has sat idle for a while (a database
        // restart or a dropped idle TCP connection shows there). sqlx's default pings on every
        // acquire: one more round trip per query outside a transaction and per transaction
        // begun, five of the answer path's 26. sqlx still pings each connection as it is
        // returned, so one that broke in use is closed then.
        let opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        use sqlx::Connection as _;
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        let pool = match kind {
            DatabaseKind::Sqlite => {
                opts.max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                                 PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; \
                                 PRAGMA wal_autocheckpoint = 0;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            DatabaseKind::Postgres => opts.max_connections(16).connect(url).await?,
        };
        let checkpointer = match kind {
            DatabaseKind::Sqlite => {
                use sqlx::Connection as _;
                // After the pool's first connection, so the file exists and is in WAL mode.
                let mut conn = AnyConnection::connect(url).await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                let (stop, rx) = tokio::sync::watch::channel(false);
                let task = tokio::spawn(checkpoint_loop(conn, rx));
                Some(std::sync::Arc::new(Checkpointer {
                    stop,
                    task: std::sync::Mutex::new(Some(task)),
                }))
            }
            DatabaseKind::Postgres => None,
        };
        Ok(Self {
            pool,
            kind,
            url: url.into(),
            checkpointer,
        })
    }

    /// Which database this is.
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The URL it was opened with (may hold a secret: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The connection pool, for reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned; on SQLite, then checkpoints the
    /// write-ahead log into the database file and empties it.
    pub async fn close(&self) {
        self.pool.close().await;
        // SQLite: then the checkpointer's last pass, with the pool's connections gone.
        if let Some(c) = &self.checkpointer {
            let _ = c.stop.send(true);
            let task = c.task.lock().ok().and_then(|mut t| t.take());
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    /// Connections in use and idle, for metrics.
    pub fn pool_usage(&self) -> (u32, u32) {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        (size.saturating_sub(idle), idle)
    }
}

/// A new random id (UUID v7: time-ordered, so indexes stay compact).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
