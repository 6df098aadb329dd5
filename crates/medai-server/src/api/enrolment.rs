//! Enrolment through a single-use link: the first administrator's setup link, a new user's
//! enrolment and re-enrolment after an MFA reset. Step one sets the password and issues a TOTP
//! seed; step two proves the authenticator works and returns the recovery codes, once.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ClientInfo};
use crate::state::AppState;
use axum::extract::State;
use medai_core::audit::{AuditEvent, Outcome};
use medai_core::identity::{
    generate_recovery_codes, hash_recovery_code, sha256_hex, validate_password, validate_username,
    TotpSecret,
};
use medai_store::enrolments::{self, Enrolment, Purpose};
use medai_store::{new_id, users, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Step one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolStart {
    /// The token from the link.
    pub token: String,
    /// The username to create (first-administrator setup only; ignored otherwise).
    pub username: Option<String>,
    /// The new password.
    pub password: String,
}

/// The TOTP seed to add to an authenticator app.
#[derive(Serialize, ToSchema)]
pub struct EnrolChallenge {
    /// The account's username.
    pub username: String,
    /// The seed in base32, for manual entry.
    pub totp_secret: String,
    /// The `otpauth://` URI to show as a QR code.
    pub otpauth_uri: String,
}

/// Step two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolFinish {
    /// The token from the link.
    pub token: String,
    /// A current code from the authenticator app.
    pub code: String,
}

/// The result of enrolment.
#[derive(Serialize, ToSchema)]
pub struct EnrolDone {
    /// The enrolled user's id.
    pub user_id: String,
    /// The username to sign in with.
    pub username: String,
    /// Ten single-use recovery codes, shown only now.
    pub recovery_codes: Vec<String>,
}

fn invalid_link() -> ApiError {
    ApiError::bad_request(
        "invalid_link",
        "this link is invalid, expired or already used",
    )
}

async fn live_link(st: &AppState, token: &str) -> Result<Enrolment, ApiError> {
    if token.is_empty() || token.len() > 100 {
        return Err(invalid_link());
    }
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let link = enrolments::get(&mut conn, &sha256_hex(token.as_bytes()))
        .await?
        .filter(|e| e.used_at.is_none() && e.expires_at > st.now())
        .ok_or_else(invalid_link)?;
    // A first-administrator link is moot once an administrator exists by any route (for
    // example `medai user add --role admin`): it must not create a second one.
    if link.purpose == Purpose::Setup
        && users::count_enabled_with_role(&mut conn, medai_core::Role::Admin).await? > 0
    {
        return Err(invalid_link());
    }
    Ok(link)
}

/// Step one: choose the password (and, for setup, the username); receive the TOTP seed.
#[utoipa::path(post, path = "/api/v1/enrolment/start", tag = "enrolment", request_body = EnrolStart,
    responses((status = 200, body = EnrolChallenge), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<EnrolStart>,
) -> Result<axum::Json<EnrolChallenge>, ApiError> {
    begin(&st, req).await.map(axum::Json)
}

/// Step one, shared by the JSON API and the setup page.
pub async fn begin(st: &AppState, req: EnrolStart) -> Result<EnrolChallenge, ApiError> {
    let link = live_link(st, &req.token).await?;
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let username = match (&link.purpose, &link.user_id) {
        (Purpose::Setup, _) => {
            let u = req
                .username
                .as_deref()
                .map(|u| u.trim().to_lowercase())
                .ok_or_else(|| ApiError::invalid("username_required", "choose a username"))?;
            validate_username(&u).map_err(|e| ApiError::invalid("bad_username", e.to_string()))?;
            if users::by_username(&mut conn, &u).await?.is_some() {
                return Err(ApiError::conflict(
                    "username_taken",
                    "that username is taken",
                ));
            }
            u
        }
        (Purpose::Enrol, Some(uid)) => {
            users::by_id(&mut conn, uid)
                .await?
                .filter(|u| u.disabled_at.is_none())
                .ok_or_else(invalid_link)?
                .username
        }
        (Purpose::Enrol, None) => return Err(invalid_link()),
    };
    drop(conn);
    validate_password(&req.password, &username, st.config.auth.password_min_length)
        .map_err(|e| ApiError::invalid("weak_password", e.to_string()))?;
    let hash = st.hash_password(req.password).await?;
    let secret = TotpSecret::generate();
    let sealed = st.key.seal(
        secret.as_bytes(),
        format!("enrol:{}", link.token_hash).as_bytes(),
    );
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    enrolments::set_pending(&mut conn, &link.token_hash, &username, &hash, &sealed).await?;
    Ok(EnrolChallenge {
        totp_secret: secret.base32(),
        otpauth_uri: secret.otpauth_uri("medai", &username),
        username,
    })
}

/// Whether the link is live, and for whom: `(is_first_admin_setup, username if known)`.
pub async fn inspect(st: &AppState, token: &str) -> Result<(bool, Option<String>), ApiError> {
    let link = live_link(st, token).await?;
    let username = match &link.user_id {
        Some(uid) => {
            let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
            users::by_id(&mut conn, uid).await?.map(|u| u.username)
        }
        None => None,
    };
    Ok((link.purpose == Purpose::Setup, username))
}

/// The first step's results on a live link: username, password hash and TOTP seed.
struct Pending {
    link: Enrolment,
    username: String,
    password_hash: String,
    secret: TotpSecret,
}

async fn pending(st: &AppState, token: &str) -> Result<Pending, ApiError> {
    let link = live_link(st, token).await?;
    let (Some(username), Some(password_hash), Some(sealed)) = (
        link.pending_username.clone(),
        link.pending_password_hash.clone(),
        link.pending_totp_secret.clone(),
    ) else {
        return Err(ApiError::bad_request(
            "enrolment_not_started",
            "set a password first (step one)",
        ));
    };
    let seed = st
        .key
        .open(&sealed, format!("enrol:{}", link.token_hash).as_bytes())
        .map_err(|e| ApiError::Internal(format!("cannot open pending TOTP seed: {e}")))?;
    Ok(Pending {
        link,
        username,
        password_hash,
        secret: TotpSecret::from_bytes(seed.to_vec()),
    })
}

/// The challenge of a link whose first step is done (to show the QR code again).
pub async fn pending_challenge(st: &AppState, token: &str) -> Result<EnrolChallenge, ApiError> {
    let p = pending(st, token).await?;
    Ok(EnrolChallenge {
        totp_secret: p.secret.base32(),
        otpauth_uri: p.secret.otpauth_uri("medai", &p.username),
        username: p.username,
    })
}

/// Step two: prove the authenticator with a current code; the account becomes usable and the
/// recovery codes are returned once.
#[utoipa::path(post, path = "/api/v1/enrolment/finish", tag = "enrolment", request_body = EnrolFinish,
    responses((status = 200, body = EnrolDone), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn finish(
    State(st): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<EnrolFinish>,
) -> Result<axum::Json<EnrolDone>, ApiError> {
    complete(&st, &client, req).await.map(axum::Json)
}

/// Step two, shared by the JSON API and the setup page.
pub async fn complete(
    st: &AppState,
    client: &ClientInfo,
    req: EnrolFinish,
) -> Result<EnrolDone, ApiError> {
    let Pending {
        link,
        username,
        password_hash: hash,
        secret,
    } = pending(st, &req.token).await?;
    let now = st.now();
    let step = match secret.verify(&req.code, now, None) {
        Ok(step) => step,
        Err(_) => {
            let e = client
                .stamp(AuditEvent::new(now, "user.enrol", Outcome::Failure))
                .detail(&serde_json::json!({ "reason": "invalid_code" }));
            crate::session::append_now(st, &e).await?;
            return Err(ApiError::unauthorized(
                "invalid_code",
                "the code is not valid; check the device clock",
            ));
        }
    };
    let codes = generate_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|c| hash_recovery_code(c)).collect();
    let mut tx = st.store.begin().await?;
    let user_id = match (&link.purpose, &link.user_id) {
        (Purpose::Enrol, Some(uid)) => uid.clone(),
        _ => {
            let uid = new_id();
            users::insert(&mut tx, &uid, &username, link.role, now)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        ApiError::conflict("username_taken", "that username is taken")
                    }
                    other => other.into(),
                })?;
            uid
        }
    };
    let sealed_final = st
        .key
        .seal(secret.as_bytes(), format!("totp:{user_id}").as_bytes());
    users::set_credentials(&mut tx, &user_id, &hash, &sealed_final, now).await?;
    users::consume_totp_step(&mut tx, &user_id, step).await?;
    users::replace_recovery_codes(&mut tx, &user_id, &hashes).await?;
    if !enrolments::mark_used(&mut tx, &link.token_hash, &user_id, now).await? {
        return Err(invalid_link());
    }
    let e = client
        .stamp(AuditEvent::new(now, "user.enrol", Outcome::Success).actor(&user_id, link.role.as_str()))
        .target_user(&user_id)
        .detail(&serde_json::json!({ "purpose": if link.purpose == Purpose::Setup { "setup" } else { "enrol" } }));
    crate::session::append_in(st, &mut tx, &e).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(EnrolDone {
        user_id,
        username,
        recovery_codes: codes,
    })
}
