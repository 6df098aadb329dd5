//! Single-use enrolment links: the first administrator's setup link, a new user's enrolment and
//! an MFA reset. Only the SHA-256 of the link's token is stored.

use crate::StoreError;
use medai_core::Role;
use sqlx::{AnyConnection, FromRow};

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// First administrator of an empty installation; the username is chosen through the link.
    Setup,
    /// An existing (credential-less or reset) user sets a password and enrols TOTP.
    Enrol,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Setup => "setup",
            Purpose::Enrol => "enrol",
        }
    }
}

/// A stored enrolment link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// SHA-256 of the token.
    pub token_hash: String,
    /// What it is for.
    pub purpose: Purpose,
    /// The user it enrols (none for setup until completed).
    pub user_id: Option<String>,
    /// The role the enrolled account has.
    pub role: Role,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it was used; a used link never works again.
    pub used_at: Option<i64>,
    /// Username chosen at the first step (setup links).
    pub pending_username: Option<String>,
    /// Password hash chosen at the first step.
    pub pending_password_hash: Option<String>,
    /// Sealed TOTP seed issued at the first step.
    pub pending_totp_secret: Option<Vec<u8>>,
}

#[derive(FromRow)]
struct Row {
    token_hash: String,
    purpose: String,
    user_id: Option<String>,
    role: String,
    expires_at: i64,
    used_at: Option<i64>,
    pending_username: Option<String>,
    pending_password_hash: Option<String>,
    pending_totp_secret: Option<Vec<u8>>,
}

/// Stores a new link. Earlier unused links of the same user stop working.
pub async fn create(
    conn: &mut AnyConnection,
    token_hash: &str,
    purpose: Purpose,
    user_id: Option<&str>,
    role: Role,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    match user_id {
        Some(uid) => {
            sqlx::query(
                "UPDATE enrolments SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(uid)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE enrolments SET used_at = $1 WHERE purpose = 'setup' AND used_at IS NULL",
            )
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO enrolments (token_hash, purpose, user_id, role, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .bind(user_id)
    .bind(role.as_str())
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The link with this token hash.
pub async fn get(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<Enrolment>, StoreError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT token_hash, purpose, user_id, role, expires_at, used_at, pending_username, \
         pending_password_hash, pending_totp_secret FROM enrolments WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let purpose = match r.purpose.as_str() {
            "setup" => Purpose::Setup,
            "enrol" => Purpose::Enrol,
            _ => return Err(StoreError::Corrupt("enrolment with unknown purpose".into())),
        };
        let role = r
            .role
            .parse()
            .map_err(|_| StoreError::Corrupt("enrolment with unknown role".into()))?;
        Ok(Enrolment {
            token_hash: r.token_hash,
            purpose,
            user_id: r.user_id,
            role,
            expires_at: r.expires_at,
            used_at: r.used_at,
            pending_username: r.pending_username,
            pending_password_hash: r.pending_password_hash,
            pending_totp_secret: r.pending_totp_secret,
        })
    })
    .transpose()
}

/// Records the first step (chosen username, password hash, issued TOTP seed).
pub async fn set_pending(
    conn: &mut AnyConnection,
    token_hash: &str,
    username: &str,
    password_hash: &str,
    sealed_totp: &[u8],
) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE enrolments SET pending_username = $1, pending_password_hash = $2, \
         pending_totp_secret = $3 WHERE token_hash = $4 AND used_at IS NULL",
    )
    .bind(username)
    .bind(password_hash)
    .bind(sealed_totp)
    .bind(token_hash)
    .execute(conn)
    .await?;
    if r.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound("enrolment"))
    }
}

/// Marks the link used; false if it was used already (two racing completions: one wins).
pub async fn mark_used(
    conn: &mut AnyConnection,
    token_hash: &str,
    user_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE enrolments SET used_at = $1, user_id = $2, pending_password_hash = NULL, \
         pending_totp_secret = NULL WHERE token_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(token_hash)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
