//! Administration: users, care teams and service tokens. Administrators manage accounts but
//! never read clinical content (the permission table has no patient read for them).

use crate::accounts;
use crate::authz::require;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, Principal};
use crate::session::rfc3339;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use medai_core::audit::Outcome;
use medai_core::{Action, Role};
use medai_store::{care_teams, new_id, tokens, users, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as listed.
#[derive(Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Whether the user has completed enrolment (password and TOTP).
    pub mfa_enrolled: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl From<users::User> for UserOut {
    fn from(u: users::User) -> Self {
        Self {
            mfa_enrolled: u.totp_secret.is_some(),
            disabled: u.disabled_at.is_some(),
            id: u.id,
            username: u.username,
            role: u.role,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = [UserOut]), (status = 403, body = ErrorBody)), security(("session" = [])))]
pub async fn list_users(
    State(st): State<AppState>,
    p: Principal,
) -> Result<axum::Json<Vec<UserOut>>, ApiError> {
    require(&st, &p, Action::UserRead).await?;
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let all = users::list(&mut conn).await?;
    Ok(axum::Json(all.into_iter().map(UserOut::from).collect()))
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Username: 3 to 64 lowercase letters, digits, `.`, `_` or `-`.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// A created user.
#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    /// Id.
    pub id: String,
    /// The single-use link the user enrols through (interactive roles); hand it over securely.
    pub enrolment_url: Option<String>,
}

/// Creates a user; interactive users get a single-use enrolment link.
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = NewUser,
    responses((status = 201, body = CreatedUser), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_user(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<(StatusCode, axum::Json<CreatedUser>), ApiError> {
    require(&st, &p, Action::UserManage).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let base = p.event(now, "user.create", Outcome::Success);
    let created =
        accounts::create_user(&mut tx, &st.config, &base, &req.username, req.role, now).await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("user_created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedUser {
            id: created.user_id,
            enrolment_url: created.enrolment_url,
        }),
    ))
}

/// Disables a user and ends their sessions.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "admin", params(("id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("session" = [])))]
pub async fn disable_user(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require(&st, &p, Action::UserManage).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    accounts::disable_user(
        &mut tx,
        &p.event(now, "user.disable", Outcome::Success),
        &id,
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("user_disabled");
    Ok(StatusCode::NO_CONTENT)
}

/// A new enrolment link.
#[derive(Serialize, ToSchema)]
pub struct EnrolmentLink {
    /// The single-use link.
    pub enrolment_url: String,
}

/// Removes a user's TOTP and recovery codes, ends their sessions and issues a new enrolment link.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-mfa", tag = "admin", params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = EnrolmentLink), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn reset_mfa(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<EnrolmentLink>, ApiError> {
    require(&st, &p, Action::UserManage).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let url = accounts::reset_mfa(
        &mut tx,
        &st.config,
        &p.event(now, "user.reset_mfa", Outcome::Success),
        &id,
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("mfa_reset");
    Ok(axum::Json(EnrolmentLink { enrolment_url: url }))
}

/// A care team.
#[derive(Serialize, ToSchema)]
pub struct CareTeamOut {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Member user ids.
    pub member_ids: Vec<String>,
}

/// Every care team with its members.
#[utoipa::path(get, path = "/api/v1/care-teams", tag = "admin",
    responses((status = 200, body = [CareTeamOut]), (status = 403, body = ErrorBody)), security(("session" = [])))]
pub async fn list_care_teams(
    State(st): State<AppState>,
    p: Principal,
) -> Result<axum::Json<Vec<CareTeamOut>>, ApiError> {
    require(&st, &p, Action::CareTeamManage).await?;
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let mut members: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for (team, user) in care_teams::all_members(&mut conn).await? {
        members.entry(team).or_default().push(user);
    }
    let out = care_teams::list(&mut conn)
        .await?
        .into_iter()
        .map(|t| CareTeamOut {
            member_ids: members.remove(&t.id).unwrap_or_default(),
            id: t.id,
            name: t.name,
        })
        .collect();
    Ok(axum::Json(out))
}

/// A new care team.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCareTeam {
    /// Unique name, 1 to 100 characters.
    pub name: String,
}

/// Creates a care team.
#[utoipa::path(post, path = "/api/v1/care-teams", tag = "admin", request_body = NewCareTeam,
    responses((status = 201, body = CareTeamOut), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_care_team(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<NewCareTeam>,
) -> Result<(StatusCode, axum::Json<CareTeamOut>), ApiError> {
    require(&st, &p, Action::CareTeamManage).await?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_field",
            "name must be 1 to 100 characters",
        ));
    }
    let now = st.now();
    let id = new_id();
    let mut tx = st.store.begin().await?;
    care_teams::insert(&mut tx, &id, name, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict("name_taken", "a care team with this name exists")
            }
            other => other.into(),
        })?;
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(now, "care_team.create", Outcome::Success)
            .detail(&serde_json::json!({ "care_team_id": id })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("care_team_created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CareTeamOut {
            id,
            name: name.to_owned(),
            member_ids: Vec::new(),
        }),
    ))
}

async fn change_membership(
    st: &AppState,
    p: &Principal,
    team_id: &str,
    user_id: &str,
    add: bool,
) -> Result<StatusCode, ApiError> {
    require(st, p, Action::CareTeamManage).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    if care_teams::find(&mut tx, team_id)
        .await?
        .filter(|t| t.id == team_id)
        .is_none()
    {
        return Err(ApiError::NotFound("care team"));
    }
    let user = users::by_id(&mut tx, user_id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if add {
        if !user.role.is_care_team_scoped() {
            return Err(ApiError::invalid(
                "invalid_member",
                "only clinicians and nurses join care teams",
            ));
        }
        care_teams::add_member(&mut tx, team_id, user_id).await?;
    } else if !care_teams::remove_member(&mut tx, team_id, user_id).await? {
        return Err(ApiError::NotFound("membership"));
    }
    let action = if add {
        "care_team.add_member"
    } else {
        "care_team.remove_member"
    };
    crate::session::append_in(
        st,
        &mut tx,
        &p.event(now, action, Outcome::Success)
            .target_user(user_id)
            .detail(&serde_json::json!({ "care_team_id": team_id })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change(if add {
        "care_team_member_added"
    } else {
        "care_team_member_removed"
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a clinician or nurse to a care team.
#[utoipa::path(put, path = "/api/v1/care-teams/{id}/members/{user_id}", tag = "admin",
    params(("id" = String, Path, description = "Care team id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn add_member(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((id, user_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    change_membership(&st, &p, &id, &user_id, true).await
}

/// Removes a user from a care team.
#[utoipa::path(delete, path = "/api/v1/care-teams/{id}/members/{user_id}", tag = "admin",
    params(("id" = String, Path, description = "Care team id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = [])))]
pub async fn remove_member(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((id, user_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    change_membership(&st, &p, &id, &user_id, false).await
}

/// A token as listed (never the secret).
#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    /// Id.
    pub id: String,
    /// The service account.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Every service token.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    responses((status = 200, body = [TokenOut]), (status = 403, body = ErrorBody)), security(("session" = [])))]
pub async fn list_tokens(
    State(st): State<AppState>,
    p: Principal,
) -> Result<axum::Json<Vec<TokenOut>>, ApiError> {
    require(&st, &p, Action::TokenManage).await?;
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let all = tokens::list(&mut conn).await?;
    Ok(axum::Json(
        all.into_iter()
            .map(|t| TokenOut {
                revoked: t.revoked_at.is_some(),
                id: t.id,
                user_id: t.user_id,
                name: t.name,
                created_at: rfc3339(t.created_at),
                expires_at: rfc3339(t.expires_at),
            })
            .collect(),
    ))
}

/// A new token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The service account's id.
    pub user_id: String,
    /// What the token is for.
    pub name: String,
    /// Lifetime in days, 1 to 366 (default 90).
    pub expires_in_days: Option<u32>,
    /// Actions granted beyond the service role: `audit.read` (read the audit log).
    pub scopes: Option<Vec<String>>,
}

/// A created token: the secret is shown only now.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// Id (to revoke).
    pub id: String,
    /// The bearer secret; store it now, it cannot be shown again.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// Creates a bearer token for a service account.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    require(&st, &p, Action::TokenManage).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let base = p.event(now, "token.create", Outcome::Success);
    let (t, secret) = accounts::create_token(
        &mut tx,
        &base,
        &req.user_id,
        &req.name,
        req.expires_in_days.unwrap_or(90),
        &req.scopes.unwrap_or_default(),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("token_created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            id: t.id,
            token: secret,
            expires_at: rfc3339(t.expires_at),
        }),
    ))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin", params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = [])))]
pub async fn revoke_token(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require(&st, &p, Action::TokenManage).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    accounts::revoke_token(
        &mut tx,
        &p.event(now, "token.revoke", Outcome::Success),
        &id,
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("token_revoked");
    Ok(StatusCode::NO_CONTENT)
}
