//! Sign-in: password, then TOTP (or a recovery code); logout; the current session; password
//! change. Unknown user and wrong password get the same answer after the same work.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{session_cookie, ApiJson, AuthKind, ClientInfo, Principal};
use crate::session::{
    self, append_now, check_throttle, clear_cookie, record_failure, rfc3339, set_cookie,
    throttle_keys,
};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medai_core::audit::{AuditEvent, Outcome};
use medai_core::identity::{
    hash_recovery_code, sha256_hex, validate_password, TotpError, TotpSecret,
};
use medai_core::Role;
use medai_store::ephemeral::SessionRecord;
use medai_store::users::User;
use medai_store::{care_teams, users, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// First sign-in step.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// The answer to a correct password: the second factor is required.
#[derive(Serialize, ToSchema)]
pub struct LoginStep {
    /// Always true: every interactive account uses MFA.
    pub mfa_required: bool,
    /// Accepted second factors: `totp`, `recovery_code`.
    pub methods: Vec<String>,
    /// Seconds left to complete the second step.
    pub expires_in: u64,
}

/// Second sign-in step with a TOTP code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpRequest {
    /// The 6-digit code from the authenticator app.
    pub code: String,
}

/// Second sign-in step with a recovery code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// One of the recovery codes shown at enrolment.
    pub code: String,
}

/// The signed-in user and session.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// User id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Names of the user's care teams.
    pub care_teams: Vec<String>,
    /// How the request authenticated: `session` or `token`.
    pub auth: String,
    /// When the session ends if idle from now (RFC 3339); none for tokens.
    pub idle_expires_at: Option<String>,
    /// When the session ends regardless of activity (RFC 3339); none for tokens.
    pub absolute_expires_at: Option<String>,
    /// Unused recovery codes left (after a recovery-code login).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes_left: Option<i64>,
}

/// Password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub current_password: String,
    /// The new password (at least 12 characters, not containing the username).
    pub new_password: String,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "invalid username or password")
}

/// Password step: on success the session cookie is set in the MFA-pending state.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginStep), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(st): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let keys = throttle_keys(&req.username, &client);
    check_throttle(&st, &keys, &client).await?;
    let username = req.username.trim().to_lowercase();
    let user = if username.len() <= 64 {
        let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
        users::by_username(&mut conn, &username).await?
    } else {
        None
    };
    let phc = user.as_ref().and_then(|u| u.password_hash.clone());
    let password = if req.password.chars().count() <= medai_core::identity::MAX_PASSWORD_CHARS {
        req.password
    } else {
        String::new()
    };
    let ok = st.verify_password(password, phc).await?;
    let now = st.now();
    match user.as_ref().filter(|u| ok && u.can_log_in()) {
        Some(u) => {
            let (token, _) = session::create_session(&st, u, true).await?;
            st.metrics.login("password_ok");
            append_now(
                &st,
                &client.stamp(
                    AuditEvent::new(now, "auth.password", Outcome::Success)
                        .actor(&u.id, u.role.as_str()),
                ),
            )
            .await?;
            let body = LoginStep {
                mfa_required: true,
                methods: vec!["totp".into(), "recovery_code".into()],
                expires_in: st.config.auth.mfa_step_timeout.as_secs(),
            };
            Ok(([(SET_COOKIE, set_cookie(&st, &token)?)], axum::Json(body)).into_response())
        }
        None => {
            st.metrics.login("failure");
            record_failure(&st, &keys, &client, user.as_ref()).await?;
            let mut e = client.stamp(AuditEvent::new(now, "auth.login", Outcome::Failure));
            e = match &user {
                Some(u) => e
                    .actor(&u.id, u.role.as_str())
                    .detail(&serde_json::json!({ "reason": "bad_credentials_or_account_state" })),
                None => e.detail(&serde_json::json!({ "reason": "unknown_user" })),
            };
            append_now(&st, &e).await?;
            Err(invalid_credentials())
        }
    }
}

/// The user of the MFA-pending session in the request.
async fn pending_user(st: &AppState, headers: &HeaderMap) -> Result<(String, User), ApiError> {
    let no_pending =
        || ApiError::unauthorized("no_pending_login", "sign in with your password first");
    let token = session_cookie(headers).ok_or_else(no_pending)?;
    let id_hash = sha256_hex(token.as_bytes());
    let rec = st
        .ephemeral
        .get_session(&id_hash, st.now())
        .await?
        .filter(|r| r.mfa_pending)
        .ok_or_else(no_pending)?;
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let user = users::by_id(&mut conn, &rec.user_id)
        .await?
        .filter(|u| u.can_log_in() && u.session_generation == rec.generation)
        .ok_or_else(no_pending)?;
    Ok((id_hash, user))
}

enum SecondFactor {
    Totp(String),
    Recovery(String),
}

async fn second_factor(
    st: AppState,
    client: ClientInfo,
    headers: HeaderMap,
    factor: SecondFactor,
) -> Result<Response, ApiError> {
    let (pending_hash, user) = pending_user(&st, &headers).await?;
    let keys = throttle_keys(&user.username, &client);
    check_throttle(&st, &keys, &client).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let (method, verdict, left) = match &factor {
        SecondFactor::Totp(code) => {
            let sealed = user.totp_secret.as_deref().unwrap_or_default();
            let secret = st
                .key
                .open(sealed, format!("totp:{}", user.id).as_bytes())
                .map_err(|e| ApiError::Internal(format!("cannot open TOTP seed: {e}")))?;
            let verdict = match TotpSecret::from_bytes(secret.to_vec()).verify(
                code,
                now,
                user.totp_last_step,
            ) {
                Ok(step) if users::consume_totp_step(&mut tx, &user.id, step).await? => Ok(()),
                Ok(_) | Err(TotpError::Replayed) => Err("replayed"),
                Err(TotpError::Invalid) => Err("invalid"),
            };
            ("totp", verdict, None)
        }
        SecondFactor::Recovery(code) => {
            let used =
                users::use_recovery_code(&mut tx, &user.id, &hash_recovery_code(code), now).await?;
            let left = users::recovery_codes_left(&mut tx, &user.id).await?;
            (
                "recovery_code",
                if used { Ok(()) } else { Err("invalid") },
                Some(left),
            )
        }
    };
    let base = client.stamp(
        AuditEvent::new(now, "auth.mfa", Outcome::Success).actor(&user.id, user.role.as_str()),
    );
    if let Err(reason) = verdict {
        tx.rollback().await.map_err(StoreError::from)?;
        st.metrics.mfa_failures.inc();
        st.metrics.login("failure");
        record_failure(&st, &keys, &client, Some(&user)).await?;
        let mut e = base.detail(&serde_json::json!({ "method": method, "reason": reason }));
        e.outcome = Outcome::Failure;
        append_now(&st, &e).await?;
        return Err(if reason == "replayed" {
            ApiError::unauthorized(
                "code_already_used",
                "this code was already used; wait for the next one",
            )
        } else {
            ApiError::unauthorized("invalid_code", "the code is not valid")
        });
    }
    crate::session::append_in(
        &st,
        &mut tx,
        &base.detail(&serde_json::json!({ "method": method })),
    )
    .await?;
    let mut login = client.stamp(
        AuditEvent::new(now, "auth.login", Outcome::Success).actor(&user.id, user.role.as_str()),
    );
    login = login.detail(&serde_json::json!({ "method": method }));
    crate::session::append_in(&st, &mut tx, &login).await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.ephemeral.delete_session(&pending_hash).await?;
    st.ephemeral.clear_failures(&keys.0).await?;
    let (token, record) = session::create_session(&st, &user, false).await?;
    st.metrics.login("success");
    let mut info = session_info(&st, &user, Some(&record)).await?;
    info.recovery_codes_left = left;
    Ok(([(SET_COOKIE, set_cookie(&st, &token)?)], axum::Json(info)).into_response())
}

/// The session's deadlines are derived from the record: idle from the last request, absolute
/// from login. Token callers have none.
async fn session_info(
    st: &AppState,
    user: &User,
    session: Option<&SessionRecord>,
) -> Result<SessionInfo, ApiError> {
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let teams = care_teams::of_user(&mut conn, &user.id).await?;
    let auth = &st.config.auth;
    let idle = session.map(|r| rfc3339(r.last_seen + auth.session_idle_timeout.as_secs() as i64));
    let abs = session.map(|r| rfc3339(r.created_at + auth.session_max_lifetime.as_secs() as i64));
    Ok(SessionInfo {
        user_id: user.id.clone(),
        username: user.username.clone(),
        role: user.role,
        care_teams: teams.into_iter().map(|t| t.name).collect(),
        auth: if session.is_some() {
            "session"
        } else {
            "token"
        }
        .into(),
        idle_expires_at: idle,
        absolute_expires_at: abs,
        recovery_codes_left: None,
    })
}

/// TOTP step: completes sign-in and replaces the cookie with a new, full session.
#[utoipa::path(post, path = "/api/v1/auth/totp", tag = "auth", request_body = TotpRequest,
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn totp(
    State(st): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TotpRequest>,
) -> Result<Response, ApiError> {
    second_factor(st, client, headers, SecondFactor::Totp(req.code)).await
}

/// Recovery-code step: like the TOTP step, using one single-use recovery code.
#[utoipa::path(post, path = "/api/v1/auth/recovery", tag = "auth", request_body = RecoveryRequest,
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn recovery(
    State(st): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RecoveryRequest>,
) -> Result<Response, ApiError> {
    second_factor(st, client, headers, SecondFactor::Recovery(req.code)).await
}

/// Ends the session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("session" = [])))]
pub async fn logout(State(st): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let AuthKind::Session { id_hash, .. } = &p.auth else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "tokens are revoked, not logged out",
        ));
    };
    st.ephemeral.delete_session(id_hash).await?;
    let e = p
        .event(st.now(), "session.end", Outcome::Success)
        .detail(&serde_json::json!({ "reason": "logout" }));
    append_now(&st, &e).await?;
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear_cookie(&st))]).into_response())
}

/// The signed-in user and the session's deadlines (for the idle-logoff warning).
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth",
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn current(
    State(st): State<AppState>,
    p: Principal,
) -> Result<axum::Json<SessionInfo>, ApiError> {
    let record = match &p.auth {
        AuthKind::Session { record, .. } => Some(record),
        AuthKind::Token { .. } => None,
    };
    Ok(axum::Json(session_info(&st, &p.user, record).await?))
}

/// Changes the password and ends every session of the user, this one included.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = [])))]
pub async fn change_password(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let AuthKind::Session { id_hash, .. } = &p.auth else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "service accounts have no password",
        ));
    };
    if !st
        .verify_password(req.current_password, p.user.password_hash.clone())
        .await?
    {
        append_now(
            &st,
            &p.event(st.now(), "user.password_change", Outcome::Failure),
        )
        .await?;
        return Err(ApiError::unauthorized(
            "invalid_credentials",
            "the current password is wrong",
        ));
    }
    validate_password(
        &req.new_password,
        &p.user.username,
        st.config.auth.password_min_length,
    )
    .map_err(|e| ApiError::invalid("weak_password", e.to_string()))?;
    let hash = st.hash_password(req.new_password).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    users::set_password(&mut tx, &p.user.id, &hash, now).await?;
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(now, "user.password_change", Outcome::Success)
            .target_user(&p.user.id),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.ephemeral.delete_session(id_hash).await?;
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear_cookie(&st))]).into_response())
}
