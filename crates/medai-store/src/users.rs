//! Users, their credentials and recovery codes.

use crate::StoreError;
use medai_core::Role;
use sqlx::{AnyConnection, FromRow};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Unique id.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// argon2id PHC string; none until enrolment completes (and always for service accounts).
    pub password_hash: Option<String>,
    /// TOTP seed sealed with the master key; none until enrolment completes.
    pub totp_secret: Option<Vec<u8>>,
    /// Last TOTP step used (each code works once).
    pub totp_last_step: Option<i64>,
    /// Bumped to revoke every session of the user.
    pub session_generation: i64,
    /// When the account was disabled.
    pub disabled_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl User {
    /// Whether the user can sign in interactively: enabled, with a password and TOTP.
    pub fn can_log_in(&self) -> bool {
        self.disabled_at.is_none()
            && self.role.is_interactive()
            && self.password_hash.is_some()
            && self.totp_secret.is_some()
    }
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    username: String,
    role: String,
    password_hash: Option<String>,
    totp_secret: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
    session_generation: i64,
    disabled_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        let role = r
            .role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("user {} has an unknown role", r.id)))?;
        Ok(User {
            id: r.id,
            username: r.username,
            role,
            password_hash: r.password_hash,
            totp_secret: r.totp_secret,
            totp_last_step: r.totp_last_step,
            session_generation: r.session_generation,
            disabled_at: r.disabled_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const COLUMNS: &str = "id, username, role, password_hash, totp_secret, totp_last_step, \
                       session_generation, disabled_at, created_at, updated_at";

/// Creates a user with no credentials yet.
pub async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    username: &str,
    role: Role,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, username, role, session_generation, created_at, updated_at) \
         VALUES ($1, $2, $3, 0, $4, $4)",
    )
    .bind(id)
    .bind(username)
    .bind(role.as_str())
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| StoreError::unique(e, "username"))?;
    Ok(())
}

/// The user with this id.
pub async fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(User::try_from).transpose()
}

/// The user with this username.
pub async fn by_username(
    conn: &mut AnyConnection,
    username: &str,
) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(conn)
            .await?;
    row.map(User::try_from).transpose()
}

/// Every user, by username.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<User>, StoreError> {
    let rows: Vec<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
            .fetch_all(conn)
            .await?;
    rows.into_iter().map(User::try_from).collect()
}

/// Number of enabled users with a role.
pub async fn count_enabled_with_role(
    conn: &mut AnyConnection,
    role: Role,
) -> Result<i64, StoreError> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM users WHERE role = $1 AND disabled_at IS NULL")
            .bind(role.as_str())
            .fetch_one(conn)
            .await?;
    Ok(n)
}

fn expect_one(rows: u64, what: &'static str) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(what))
    }
}

/// Sets password and TOTP seed (completing enrolment), resets the TOTP replay marker and
/// revokes every existing session.
pub async fn set_credentials(
    conn: &mut AnyConnection,
    id: &str,
    password_hash: &str,
    sealed_totp: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE users SET password_hash = $1, totp_secret = $2, totp_last_step = NULL, \
         session_generation = session_generation + 1, updated_at = $3 WHERE id = $4",
    )
    .bind(password_hash)
    .bind(sealed_totp)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    expect_one(r.rows_affected(), "user")
}

/// Changes the password and revokes every session.
pub async fn set_password(
    conn: &mut AnyConnection,
    id: &str,
    password_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE users SET password_hash = $1, session_generation = session_generation + 1, \
         updated_at = $2 WHERE id = $3",
    )
    .bind(password_hash)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    expect_one(r.rows_affected(), "user")
}

/// Records that TOTP step `step` was used; false if that step (or a later one) was already used,
/// which makes replay impossible even with concurrent logins.
pub async fn consume_totp_step(
    conn: &mut AnyConnection,
    id: &str,
    step: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE users SET totp_last_step = $1 WHERE id = $2 \
         AND (totp_last_step IS NULL OR totp_last_step < $1)",
    )
    .bind(step)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Disables the account and revokes its sessions.
pub async fn disable(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE users SET disabled_at = $1, session_generation = session_generation + 1, \
         updated_at = $1 WHERE id = $2 AND disabled_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    expect_one(r.rows_affected(), "enabled user")
}

/// Removes the TOTP seed and recovery codes and revokes every session; the user must enrol
/// again through a new link.
pub async fn reset_mfa(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE users SET totp_secret = NULL, totp_last_step = NULL, \
         session_generation = session_generation + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    expect_one(r.rows_affected(), "user")?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every session of the user (logout everywhere).
pub async fn revoke_sessions(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE users SET session_generation = session_generation + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    expect_one(r.rows_affected(), "user")
}

/// Replaces the user's recovery codes with these hashes.
pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    id: &str,
    hashes: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for h in hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(id)
            .bind(h)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Uses one recovery code; false if it does not exist or was used before.
pub async fn use_recovery_code(
    conn: &mut AnyConnection,
    id: &str,
    hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Unused recovery codes left.
pub async fn recovery_codes_left(conn: &mut AnyConnection, id: &str) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}
