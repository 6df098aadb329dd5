//! Bearer API tokens of service accounts. Only the SHA-256 of a token is stored; the token is
//! shown once when created.

use crate::StoreError;
use sqlx::{AnyConnection, FromRow};

/// A stored token (without the secret).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ApiToken {
    /// Unique id (used to revoke).
    pub id: String,
    /// The service account.
    pub user_id: String,
    /// A label saying what it is for.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When revoked.
    pub revoked_at: Option<i64>,
    /// Actions granted beyond the account's role, space-separated (e.g. `audit.read`).
    pub scopes: String,
}

impl ApiToken {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.split_whitespace().any(|s| s == scope)
    }
}

/// Stores a token.
pub async fn insert(
    conn: &mut AnyConnection,
    t: &ApiToken,
    token_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at, scopes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.user_id)
    .bind(&t.name)
    .bind(token_hash)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(&t.scopes)
    .execute(conn)
    .await?;
    Ok(())
}

/// The token with this hash, whatever its state.
pub async fn by_hash(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<ApiToken>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, name, created_at, expires_at, revoked_at, scopes FROM api_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?)
}

/// Every token, newest first.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<ApiToken>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, name, created_at, expires_at, revoked_at, scopes FROM api_tokens ORDER BY created_at DESC, id",
    )
    .fetch_all(conn)
    .await?)
}

/// Revokes a token; returns its owner, or `None` if no unrevoked token has this id.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let owner: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM api_tokens WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    if owner.is_some() {
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await?;
    }
    Ok(owner.map(|(u,)| u))
}
