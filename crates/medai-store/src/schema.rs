//! Migrations per backend and the check that the schema matches this binary.

use crate::{DatabaseKind, Store, StoreError};
use sqlx::migrate::Migrator;
use sqlx::Row as _;
use std::collections::BTreeMap;

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// How the database schema compares with the migrations built into this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// No migrations were ever applied.
    Fresh,
    /// Every migration is applied and none is unknown.
    Current,
    /// Migrations are missing: run `medai migrate`.
    Behind {
        /// Versions not yet applied.
        pending: Vec<i64>,
    },
    /// The database has migrations this binary does not know: it was migrated by a newer medai.
    Ahead {
        /// Versions unknown to this binary.
        unknown: Vec<i64>,
    },
    /// An applied migration differs from the one built in, or failed half-way.
    Inconsistent {
        /// What is wrong.
        problem: String,
    },
}

impl SchemaStatus {
    /// The message an operator sees when `serve` refuses to start, naming the fix.
    pub fn advice(&self) -> Option<String> {
        match self {
            SchemaStatus::Fresh | SchemaStatus::Current => None,
            SchemaStatus::Behind { pending } => Some(format!(
                "database schema is behind this medai ({} migration(s) pending: {pending:?}); run `medai migrate`",
                pending.len()
            )),
            SchemaStatus::Ahead { unknown } => Some(format!(
                "database schema is ahead of this medai (unknown migration(s) {unknown:?}); run the newer medai release or restore a matching backup"
            )),
            SchemaStatus::Inconsistent { problem } => Some(format!(
                "database schema is inconsistent: {problem}; restore from backup or repair, then run `medai migrate`"
            )),
        }
    }
}

impl Store {
    fn migrator(&self) -> &'static Migrator {
        match self.kind() {
            DatabaseKind::Sqlite => &SQLITE,
            DatabaseKind::Postgres => &POSTGRES,
        }
    }

    /// The versions of the migrations built into this binary for this backend.
    pub fn known_migrations(&self) -> Vec<i64> {
        self.migrator().iter().map(|m| m.version).collect()
    }

    /// Compares the database with the built-in migrations.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let exists_sql = match self.kind() {
            DatabaseKind::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            DatabaseKind::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let n: i64 = sqlx::query(exists_sql)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        if n == 0 {
            return Ok(SchemaStatus::Fresh);
        }
        let rows = sqlx::query(
            "SELECT version, checksum, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) AS ok \
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(self.pool())
        .await?;
        let mut applied = BTreeMap::new();
        for r in rows {
            let version: i64 = r.try_get("version")?;
            let checksum: Vec<u8> = r.try_get("checksum")?;
            let success = r.try_get::<i64, _>("ok")? != 0;
            applied.insert(version, (checksum, success));
        }
        if applied.is_empty() {
            return Ok(SchemaStatus::Fresh);
        }
        let known: BTreeMap<i64, &[u8]> = self
            .migrator()
            .iter()
            .map(|m| (m.version, m.checksum.as_ref()))
            .collect();
        let unknown: Vec<i64> = applied
            .keys()
            .filter(|v| !known.contains_key(v))
            .copied()
            .collect();
        if !unknown.is_empty() {
            return Ok(SchemaStatus::Ahead { unknown });
        }
        for (v, (sum, ok)) in &applied {
            if !ok {
                return Ok(SchemaStatus::Inconsistent {
                    problem: format!("migration {v} failed part-way"),
                });
            }
            if known.get(v).is_some_and(|k| *k != sum.as_slice()) {
                return Ok(SchemaStatus::Inconsistent {
                    problem: format!("migration {v} differs from the one built into this binary"),
                });
            }
        }
        let pending: Vec<i64> = known
            .keys()
            .filter(|v| !applied.contains_key(v))
            .copied()
            .collect();
        if pending.is_empty() {
            Ok(SchemaStatus::Current)
        } else {
            Ok(SchemaStatus::Behind { pending })
        }
    }

    /// Applies every pending migration; returns the versions applied now.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let before = match self.schema_status().await? {
            status @ (SchemaStatus::Ahead { .. } | SchemaStatus::Inconsistent { .. }) => {
                return Err(StoreError::Schema(status.advice().unwrap_or_default()));
            }
            SchemaStatus::Fresh => self.known_migrations(),
            SchemaStatus::Behind { pending } => pending,
            SchemaStatus::Current => Vec::new(),
        };
        self.migrator().run(self.pool()).await?;
        Ok(before)
    }

    /// For `serve`: migrates a fresh database, accepts a current one, and refuses anything else
    /// with advice naming the command to run.
    pub async fn ensure_schema_for_serve(&self) -> Result<bool, StoreError> {
        match self.schema_status().await? {
            SchemaStatus::Fresh => {
                self.migrate().await?;
                Ok(true)
            }
            SchemaStatus::Current => Ok(false),
            other => Err(StoreError::Schema(other.advice().unwrap_or_default())),
        }
    }
}
