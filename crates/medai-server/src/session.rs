//! Session cookies and the login steps shared by the API (and later the web UI).

use crate::error::ApiError;
use crate::extract::{ClientInfo, SESSION_COOKIE};
use crate::state::AppState;
use axum::http::HeaderValue;
use medai_core::audit::{AuditEvent, Outcome};
use medai_core::identity::{random_token, sha256_hex};
use medai_core::throttle::ThrottleDecision;
use medai_store::audit;
use medai_store::ephemeral::SessionRecord;
use medai_store::users::User;

/// `Set-Cookie` for a new session token: `HttpOnly; SameSite=Strict; Path=/`, plus `Secure`
/// when served over TLS or behind an https public URL. No `Max-Age`: the server enforces the
/// idle and absolute timeouts, and the browser drops the cookie when closed.
pub fn set_cookie(st: &AppState, token: &str) -> Result<HeaderValue, ApiError> {
    let secure = if st.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(st: &AppState) -> HeaderValue {
    let secure = if st.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("medai_session=; Path=/; Max-Age=0"))
}

/// Creates a session and returns its token (the cookie value) and record. A fresh token is issued at each
/// step so that a token seen before login never becomes an authenticated session.
pub async fn create_session(
    st: &AppState,
    user: &User,
    mfa_pending: bool,
) -> Result<(String, SessionRecord), ApiError> {
    let token = random_token(32);
    let now = st.now();
    let record = SessionRecord {
        user_id: user.id.clone(),
        generation: user.session_generation,
        created_at: now,
        last_seen: now,
        mfa_pending,
    };
    st.ephemeral
        .put_session(
            &sha256_hex(token.as_bytes()),
            &record,
            store_ttl(st, &record, now),
            now,
        )
        .await?;
    Ok((token, record))
}

/// How long the store keeps a session record. A full session is kept until its absolute end,
/// not just its idle deadline, so a user returning after the idle timeout is told their session
/// ended and the automatic logoff is audited; the idle rule itself is enforced on each request.
pub fn store_ttl(st: &AppState, record: &SessionRecord, now: i64) -> u64 {
    let auth = &st.config.auth;
    if record.mfa_pending {
        return auth.mfa_step_timeout.as_secs();
    }
    let end = record.created_at + auth.session_max_lifetime.as_secs() as i64;
    u64::try_from(end - now).unwrap_or(1).max(1)
}

/// The throttle keys of a login attempt: the account (by normalised username, known or not, so
/// throttling does not reveal which accounts exist) and the client address.
pub fn throttle_keys(username: &str, client: &ClientInfo) -> (String, String) {
    (
        format!(
            "acct:{}",
            sha256_hex(username.trim().to_lowercase().as_bytes())
        ),
        format!("ip:{}", client.addr().unwrap_or_else(|| "unknown".into())),
    )
}

/// Refuses the attempt if either key is backing off or locked out.
pub async fn check_throttle(
    st: &AppState,
    keys: &(String, String),
    client: &ClientInfo,
) -> Result<(), ApiError> {
    let now = st.now();
    let auth = &st.config.auth;
    let acct = auth
        .account_throttle
        .decide(st.ephemeral.failures(&keys.0, now).await?, now);
    let ip = auth
        .ip_throttle
        .decide(st.ephemeral.failures(&keys.1, now).await?, now);
    let worst = [acct, ip]
        .into_iter()
        .filter_map(|d| match d {
            ThrottleDecision::Allow => None,
            ThrottleDecision::RetryAfter(s) => Some((s, "throttled")),
            ThrottleDecision::LockedOut(s) => Some((s, "locked_out")),
        })
        .max_by_key(|(s, _)| *s);
    match worst {
        None => Ok(()),
        Some((retry_after, code)) => {
            st.metrics.login("throttled");
            let e = client
                .stamp(AuditEvent::new(now, "auth.login", Outcome::Denied))
                .detail(&serde_json::json!({ "reason": code }));
            append_now(st, &e).await?;
            Err(ApiError::TooManyRequests { retry_after, code })
        }
    }
}

/// Counts a failed step on both keys; audits the start of a lockout.
pub async fn record_failure(
    st: &AppState,
    keys: &(String, String),
    client: &ClientInfo,
    user: Option<&User>,
) -> Result<(), ApiError> {
    let now = st.now();
    let auth = &st.config.auth;
    let a = st
        .ephemeral
        .record_failure(&keys.0, now, auth.account_throttle.retention_secs())
        .await?;
    let i = st
        .ephemeral
        .record_failure(&keys.1, now, auth.ip_throttle.retention_secs())
        .await?;
    st.source_failures
        .record(&keys.1, i.count, now, auth.ip_throttle.window.as_secs());
    let starts = [
        (auth.account_throttle.is_lockout_start(a.count), "account"),
        (auth.ip_throttle.is_lockout_start(i.count), "client_address"),
    ];
    for (_, scope) in starts.iter().filter(|(s, _)| *s) {
        st.metrics.lockouts.inc();
        let mut e = client
            .stamp(AuditEvent::new(now, "auth.lockout", Outcome::Denied))
            .detail(&serde_json::json!({ "scope": scope }));
        if let Some(u) = user {
            e = e.actor(&u.id, u.role.as_str());
        }
        append_now(st, &e).await?;
    }
    Ok(())
}

/// Appends one audit event in its own transaction; a failure fails the request.
pub async fn append_now(st: &AppState, e: &AuditEvent) -> Result<(), ApiError> {
    st.audit.append(e).await.map_err(|err| {
        st.metrics.audit_append_failures.inc();
        ApiError::Internal(format!("audit append failed: {err}"))
    })
}

/// Formats Unix seconds as RFC 3339.
pub fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Appends an audit event inside the caller's transaction, counting a failure in the
/// `medai_audit_append_failures_total` metric; the error fails the request (and so rolls back
/// the change the event describes).
pub async fn append_in(
    st: &AppState,
    conn: &mut medai_store::AnyConnection,
    e: &AuditEvent,
) -> Result<(), ApiError> {
    audit::append(conn, e).await.map(|_| ()).map_err(|err| {
        st.metrics.audit_append_failures.inc();
        ApiError::Internal(format!("audit append failed: {err}"))
    })
}
