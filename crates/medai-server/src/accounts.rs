//! Account administration shared by the API and the CLI: creating users with an enrolment link,
//! disabling them, resetting MFA, and service tokens. Each operation writes its audit event in
//! the caller's transaction; `base` carries the actor and origin (an admin's request, or the CLI).

use medai_core::audit::{AuditEvent, Outcome};
use medai_core::config::Config;
use medai_core::identity::{generate_api_token, random_token, sha256_hex, validate_username};
use medai_core::Role;
use medai_store::enrolments::{self, Purpose};
use medai_store::tokens::{self, ApiToken};
use medai_store::{audit, new_id, users, AnyConnection, StoreError};

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Invalid input; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The username is taken.
    #[error("username {0:?} is taken")]
    UsernameTaken(String),
    /// No such user or token.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Disabling the last enabled administrator would lock everyone out of administration.
    #[error("refusing to disable the last enabled administrator")]
    LastAdmin,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(w) => AccountError::NotFound(w),
            other => AccountError::Store(other),
        }
    }
}

impl From<AccountError> for crate::ApiError {
    fn from(e: AccountError) -> Self {
        use crate::ApiError;
        match e {
            AccountError::Invalid(m) => ApiError::invalid("invalid_account", m),
            AccountError::UsernameTaken(_) => ApiError::conflict("username_taken", e.to_string()),
            AccountError::NotFound(w) => ApiError::NotFound(w),
            AccountError::LastAdmin => ApiError::conflict("last_admin", e.to_string()),
            AccountError::Store(s) => s.into(),
        }
    }
}

/// The URL of an enrolment link.
pub fn enrolment_url(config: &Config, token: &str) -> String {
    format!("{}/setup?token={token}", config.effective_public_url())
}

/// Issues a link (earlier unused links of the same user, or earlier setup links, stop working)
/// and returns its URL. Only the token's hash is stored.
pub async fn issue_link(
    conn: &mut AnyConnection,
    config: &Config,
    purpose: Purpose,
    user_id: Option<&str>,
    role: Role,
    now: i64,
) -> Result<String, StoreError> {
    let token = random_token(32);
    let expires = now + config.auth.enrolment_link_ttl.as_secs() as i64;
    enrolments::create(
        conn,
        &sha256_hex(token.as_bytes()),
        purpose,
        user_id,
        role,
        now,
        expires,
    )
    .await?;
    Ok(enrolment_url(config, &token))
}

/// Issues the first administrator's setup link if no enabled administrator exists.
pub async fn setup_link_if_needed(
    conn: &mut AnyConnection,
    config: &Config,
    now: i64,
) -> Result<Option<String>, StoreError> {
    if users::count_enabled_with_role(conn, Role::Admin).await? > 0 {
        return Ok(None);
    }
    let url = issue_link(conn, config, Purpose::Setup, None, Role::Admin, now).await?;
    audit::append(
        conn,
        &AuditEvent::new(now, "setup.link_issued", Outcome::Success)
            .detail(&serde_json::json!({"by": "system"})),
    )
    .await?;
    Ok(Some(url))
}

/// A created user and, for interactive roles, the enrolment link to hand to them.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    /// The new user's id.
    pub user_id: String,
    /// Enrolment link (none for service accounts, which use tokens).
    pub enrolment_url: Option<String>,
}

/// Creates a user; interactive users get an enrolment link to set their password and TOTP.
pub async fn create_user(
    conn: &mut AnyConnection,
    config: &Config,
    base: &AuditEvent,
    username: &str,
    role: Role,
    now: i64,
) -> Result<CreatedUser, AccountError> {
    let username = username.trim().to_lowercase();
    validate_username(&username).map_err(|e| AccountError::Invalid(e.to_string()))?;
    let id = new_id();
    users::insert(conn, &id, &username, role, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AccountError::UsernameTaken(username.clone()),
            other => other.into(),
        })?;
    let url = if role.is_interactive() {
        Some(issue_link(conn, config, Purpose::Enrol, Some(&id), role, now).await?)
    } else {
        None
    };
    let mut e = base.clone();
    e.action = "user.create".into();
    e.outcome = Outcome::Success;
    audit::append(
        conn,
        &e.target_user(&id)
            .detail(&serde_json::json!({ "role": role.as_str() })),
    )
    .await?;
    Ok(CreatedUser {
        user_id: id,
        enrolment_url: url,
    })
}

/// Finds a user by id or username.
pub async fn find_user(
    conn: &mut AnyConnection,
    id_or_name: &str,
) -> Result<users::User, AccountError> {
    if let Some(u) = users::by_id(conn, id_or_name).await? {
        return Ok(u);
    }
    users::by_username(conn, &id_or_name.trim().to_lowercase())
        .await?
        .ok_or(AccountError::NotFound("user"))
}

/// Disables a user and ends their sessions; refuses the last enabled administrator.
pub async fn disable_user(
    conn: &mut AnyConnection,
    base: &AuditEvent,
    user_id: &str,
    now: i64,
) -> Result<(), AccountError> {
    let u = users::by_id(conn, user_id)
        .await?
        .ok_or(AccountError::NotFound("user"))?;
    if u.disabled_at.is_some() {
        return Err(AccountError::Invalid("the user is already disabled".into()));
    }
    if u.role == Role::Admin && users::count_enabled_with_role(conn, Role::Admin).await? <= 1 {
        return Err(AccountError::LastAdmin);
    }
    users::disable(conn, user_id, now).await?;
    let mut e = base.clone();
    e.action = "user.disable".into();
    audit::append(conn, &e.target_user(user_id)).await?;
    Ok(())
}

/// Removes the user's TOTP and recovery codes, ends their sessions and returns a new enrolment
/// link.
pub async fn reset_mfa(
    conn: &mut AnyConnection,
    config: &Config,
    base: &AuditEvent,
    user_id: &str,
    now: i64,
) -> Result<String, AccountError> {
    let u = users::by_id(conn, user_id)
        .await?
        .ok_or(AccountError::NotFound("user"))?;
    if !u.role.is_interactive() {
        return Err(AccountError::Invalid(
            "service accounts have no MFA; revoke their tokens instead".into(),
        ));
    }
    if u.disabled_at.is_some() {
        return Err(AccountError::Invalid("the user is disabled".into()));
    }
    users::reset_mfa(conn, user_id, now).await?;
    let url = issue_link(conn, config, Purpose::Enrol, Some(user_id), u.role, now).await?;
    let mut e = base.clone();
    e.action = "user.reset_mfa".into();
    audit::append(conn, &e.target_user(user_id)).await?;
    Ok(url)
}

/// Longest token lifetime accepted, in days.
pub const MAX_TOKEN_DAYS: u32 = 366;

/// Scopes a service token may carry: actions beyond the service role, granted per token.
pub const TOKEN_SCOPES: &[&str] = &["audit.read"];

/// Creates a bearer token for a service account; returns the stored token and the secret, which
/// is shown once and never stored.
/// `scopes` each come from [`TOKEN_SCOPES`].
pub async fn create_token(
    conn: &mut AnyConnection,
    base: &AuditEvent,
    user_id: &str,
    name: &str,
    days: u32,
    scopes: &[String],
    now: i64,
) -> Result<(ApiToken, String), AccountError> {
    for s in scopes {
        if !TOKEN_SCOPES.contains(&s.as_str()) {
            return Err(AccountError::Invalid(format!(
                "unknown token scope; allowed: {}",
                TOKEN_SCOPES.join(", ")
            )));
        }
    }
    let u = users::by_id(conn, user_id)
        .await?
        .ok_or(AccountError::NotFound("user"))?;
    if u.role != Role::Service {
        return Err(AccountError::Invalid(
            "tokens are for service accounts (role service) only".into(),
        ));
    }
    if u.disabled_at.is_some() {
        return Err(AccountError::Invalid(
            "the service account is disabled".into(),
        ));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AccountError::Invalid(
            "name must be 1 to 100 characters".into(),
        ));
    }
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(AccountError::Invalid(format!(
            "expiry must be 1 to {MAX_TOKEN_DAYS} days"
        )));
    }
    let secret = generate_api_token();
    let t = ApiToken {
        id: new_id(),
        user_id: user_id.to_owned(),
        name: name.to_owned(),
        created_at: now,
        expires_at: now + i64::from(days) * 86_400,
        revoked_at: None,
        scopes: scopes.join(" "),
    };
    tokens::insert(conn, &t, &sha256_hex(secret.as_bytes())).await?;
    let mut e = base.clone();
    e.action = "token.create".into();
    audit::append(
        conn,
        &e.target_user(user_id)
            .detail(&serde_json::json!({ "token_id": t.id, "scopes": t.scopes })),
    )
    .await?;
    Ok((t, secret))
}

/// Revokes a token.
pub async fn revoke_token(
    conn: &mut AnyConnection,
    base: &AuditEvent,
    token_id: &str,
    now: i64,
) -> Result<(), AccountError> {
    let owner = tokens::revoke(conn, token_id, now)
        .await?
        .ok_or(AccountError::NotFound("token"))?;
    let mut e = base.clone();
    e.action = "token.revoke".into();
    audit::append(
        conn,
        &e.target_user(&owner)
            .detail(&serde_json::json!({ "token_id": token_id })),
    )
    .await?;
    Ok(())
}
