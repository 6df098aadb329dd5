//! Helpers for tests that run against both backends: a fresh SQLite file, a fresh PostgreSQL
//! database per test (when `MEDAI_TEST_POSTGRES_URL` is set), and a fresh Redis key prefix
//! (when `MEDAI_TEST_REDIS_URL` is set). Nothing here is reachable from configuration.

use crate::{DatabaseKind, Store, StoreError};
use sqlx::{Connection as _, Executor as _};

/// A database created for one test; dropped with it (the SQLite directory is removed, the
/// PostgreSQL database dropped), so repeated runs leave nothing behind on the server.
pub struct TestDatabase {
    /// URL of the database.
    pub url: String,
    /// Which backend.
    pub kind: DatabaseKind,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = conn.execute(sql.as_str()).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// The backends to test against: SQLite always, PostgreSQL when `MEDAI_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<DatabaseKind> {
    let mut v = vec![DatabaseKind::Sqlite];
    if std::env::var("MEDAI_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        v.push(DatabaseKind::Postgres);
    }
    v
}

/// Creates an empty database of `kind`.
pub async fn fresh_database(kind: DatabaseKind) -> Result<TestDatabase, StoreError> {
    match kind {
        DatabaseKind::Sqlite => {
            let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            Ok(TestDatabase {
                url,
                kind,
                _dir: Some(dir),
                pg: None,
            })
        }
        DatabaseKind::Postgres => {
            let admin = std::env::var("MEDAI_TEST_POSTGRES_URL")
                .map_err(|_| StoreError::Schema("MEDAI_TEST_POSTGRES_URL is not set".into()))?;
            let name = format!("medai_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await?;
            conn.close().await?;
            let url = replace_database(&admin, &name);
            Ok(TestDatabase {
                url,
                kind,
                _dir: None,
                pg: Some((admin, name)),
            })
        }
    }
}

/// A migrated store on a fresh database of `kind`.
pub async fn migrated_store(kind: DatabaseKind) -> Result<(Store, TestDatabase), StoreError> {
    let db = fresh_database(kind).await?;
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;
    Ok((store, db))
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A Redis URL for tests, if `MEDAI_TEST_REDIS_URL` is set.
pub fn redis_url() -> Option<String> {
    std::env::var("MEDAI_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A key prefix unique to one test.
pub fn unique_prefix() -> String {
    format!("medai-test:{}:", uuid::Uuid::new_v4().simple())
}

/// Records a migration this binary does not know (as a newer release would).
pub async fn insert_fake_migration(
    conn: &mut crate::AnyConnection,
    version: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer release', TRUE, $2, 0)",
    )
    .bind(version)
    .bind(vec![0u8; 48])
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs one statement (tests that break the schema on purpose, e.g. to fail audit writes).
pub async fn execute(conn: &mut crate::AnyConnection, sql: &str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::replace_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
        assert_eq!(
            super::replace_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
