//! Administration pages: users (create with a role and care team, disable, reset MFA), care
//! teams and their members, and service tokens (created tokens are shown once; revoke).
//! Every change goes through the JSON API's handler, so it is authorised and audited the same.

use super::page::{
    render, role_label, see_other, short_time, CsrfForm, Lenient, Nav, NoFields, PageResult,
    WebUser,
};
use crate::api::admin::{self as api, NewCareTeam, NewToken, NewUser};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use medai_core::Role;
use serde::Deserialize;

struct UserRow {
    id: String,
    username: String,
    role: &'static str,
    status: &'static str,
    teams: String,
    disabled: bool,
    interactive: bool,
    me: bool,
}

struct TeamView {
    id: String,
    name: String,
    members: Vec<(String, String)>,
}

struct RoleOption {
    value: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    nav: Nav,
    notice: Option<&'static str>,
    users: Vec<UserRow>,
    teams: Vec<TeamView>,
    /// Users that can be on a care team (clinicians and nurses), as (id, username).
    members: Vec<(String, String)>,
    roles: Vec<RoleOption>,
}

/// The confirmation shown after a change.
#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "disabled" => "The user is disabled and their sessions have ended.",
        "team" => "The care team was created.",
        "added" => "The user was added to the care team.",
        "removed" => "The user was removed from the care team.",
        "revoked" => "The token is revoked.",
        _ => return None,
    })
}

/// `GET /admin/users`: users with their roles, care teams and state; the forms that change them.
pub async fn users(
    State(st): State<AppState>,
    u: WebUser,
    Lenient(DoneQuery { done }): Lenient<DoneQuery>,
) -> PageResult {
    let Json(list) = api::list_users(State(st.clone()), u.p.clone()).await?;
    let Json(teams) = api::list_care_teams(State(st.clone()), u.p.clone()).await?;
    let name_of = |id: &str| {
        list.iter()
            .find(|x| x.id == id)
            .map_or_else(|| id.to_owned(), |x| x.username.clone())
    };
    let teams_view: Vec<TeamView> = teams
        .iter()
        .map(|t| TeamView {
            id: t.id.clone(),
            name: t.name.clone(),
            members: t
                .member_ids
                .iter()
                .map(|m| (m.clone(), name_of(m)))
                .collect(),
        })
        .collect();
    let users = list
        .iter()
        .map(|x| {
            let mut of: Vec<&str> = teams
                .iter()
                .filter(|t| t.member_ids.contains(&x.id))
                .map(|t| t.name.as_str())
                .collect();
            of.sort_unstable();
            UserRow {
                id: x.id.clone(),
                username: x.username.clone(),
                role: role_label(x.role),
                status: if x.disabled {
                    "disabled"
                } else if x.role.is_interactive() && !x.mfa_enrolled {
                    "awaiting enrolment"
                } else {
                    "active"
                },
                teams: of.join(", "),
                disabled: x.disabled,
                interactive: x.role.is_interactive(),
                me: x.id == u.p.user.id,
            }
        })
        .collect();
    let members = list
        .iter()
        .filter(|x| x.role.is_care_team_scoped() && !x.disabled)
        .map(|x| (x.id.clone(), x.username.clone()))
        .collect();
    Ok(render(
        StatusCode::OK,
        &UsersPage {
            nav: u.nav(&st, "users"),
            notice: notice(done.as_deref()),
            users,
            teams: teams_view,
            members,
            roles: Role::ALL
                .iter()
                .map(|r| RoleOption {
                    value: r.as_str(),
                    label: role_label(*r),
                })
                .collect(),
        },
    ))
}

#[derive(Template)]
#[template(path = "admin_link.html")]
struct LinkPage {
    nav: Nav,
    heading: String,
    link: Option<String>,
}

/// The new-user form.
#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
    team: Option<String>,
}

/// `POST /admin/users`: creates a user (on a care team when one is chosen) and shows their
/// single-use enrolment link once.
pub async fn create_user(
    State(st): State<AppState>,
    u: WebUser,
    CsrfForm(f): CsrfForm<NewUserForm>,
) -> PageResult {
    let role: Role = f
        .role
        .parse()
        .map_err(|_| ApiError::invalid("invalid_field", "choose a role"))?;
    let req = NewUser {
        username: f.username,
        role,
    };
    let (_, Json(created)) = api::create_user(State(st.clone()), u.p.clone(), ApiJson(req)).await?;
    if let Some(team) = f.team.filter(|t| !t.is_empty()) {
        api::add_member(
            State(st.clone()),
            u.p.clone(),
            ApiPath((team, created.id.clone())),
        )
        .await?;
    }
    Ok(render(
        StatusCode::CREATED,
        &LinkPage {
            nav: u.nav(&st, "users"),
            heading: "User created".into(),
            link: created.enrolment_url,
        },
    ))
}

/// `POST /admin/users/{id}/disable`: disables the user; their sessions end at once.
pub async fn disable_user(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> PageResult {
    api::disable_user(State(st), u.p, ApiPath(id)).await?;
    Ok(see_other("/admin/users?done=disabled"))
}

/// `POST /admin/users/{id}/reset-mfa`: removes the user's authenticator and recovery codes and
/// shows a new enrolment link once.
pub async fn reset_mfa(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> PageResult {
    let Json(link) = api::reset_mfa(State(st.clone()), u.p.clone(), ApiPath(id)).await?;
    Ok(render(
        StatusCode::OK,
        &LinkPage {
            nav: u.nav(&st, "users"),
            heading: "Authenticator reset".into(),
            link: Some(link.enrolment_url),
        },
    ))
}

/// The new-team form.
#[derive(Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    name: String,
}

/// `POST /admin/care-teams`: creates a care team.
pub async fn create_team(
    State(st): State<AppState>,
    u: WebUser,
    CsrfForm(f): CsrfForm<TeamForm>,
) -> PageResult {
    let _created =
        api::create_care_team(State(st), u.p, ApiJson(NewCareTeam { name: f.name })).await?;
    Ok(see_other("/admin/users?done=team"))
}

/// The add-member form.
#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    user_id: String,
}

/// `POST /admin/care-teams/{id}/members`: adds a user to a care team.
pub async fn add_member(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<MemberForm>,
) -> PageResult {
    api::add_member(State(st), u.p, ApiPath((id, f.user_id))).await?;
    Ok(see_other("/admin/users?done=added"))
}

/// `POST /admin/care-teams/{id}/members/{user_id}/remove`: removes a user from a care team.
pub async fn remove_member(
    State(st): State<AppState>,
    u: WebUser,
    Path((id, user_id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> PageResult {
    api::remove_member(State(st), u.p, ApiPath((id, user_id))).await?;
    Ok(see_other("/admin/users?done=removed"))
}

struct TokenRow {
    id: String,
    name: String,
    user: String,
    created: String,
    expires: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "admin_tokens.html")]
struct TokensPage {
    nav: Nav,
    notice: Option<&'static str>,
    tokens: Vec<TokenRow>,
    services: Vec<(String, String)>,
    created: Option<(String, String)>,
}

async fn tokens_page(
    st: &AppState,
    u: &WebUser,
    notice_key: Option<&str>,
    created: Option<(String, String)>,
    status: StatusCode,
) -> PageResult {
    let Json(list) = api::list_tokens(State(st.clone()), u.p.clone()).await?;
    let Json(users) = api::list_users(State(st.clone()), u.p.clone()).await?;
    let name_of = |id: &str| {
        users
            .iter()
            .find(|x| x.id == id)
            .map_or_else(|| id.to_owned(), |x| x.username.clone())
    };
    Ok(render(
        status,
        &TokensPage {
            nav: u.nav(st, "tokens"),
            notice: notice(notice_key),
            tokens: list
                .iter()
                .map(|t| TokenRow {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    user: name_of(&t.user_id),
                    created: short_time(&t.created_at),
                    expires: short_time(&t.expires_at),
                    revoked: t.revoked,
                })
                .collect(),
            services: users
                .iter()
                .filter(|x| x.role == Role::Service && !x.disabled)
                .map(|x| (x.id.clone(), x.username.clone()))
                .collect(),
            created,
        },
    ))
}

/// `GET /admin/tokens`: service tokens (never their secrets) and the form to create one.
pub async fn tokens(
    State(st): State<AppState>,
    u: WebUser,
    Lenient(DoneQuery { done }): Lenient<DoneQuery>,
) -> PageResult {
    tokens_page(&st, &u, done.as_deref(), None, StatusCode::OK).await
}

/// The new-token form.
#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    name: String,
    days: Option<String>,
}

/// `POST /admin/tokens`: creates a token and shows it once (it is stored only as a hash).
pub async fn create_token(
    State(st): State<AppState>,
    u: WebUser,
    CsrfForm(f): CsrfForm<TokenForm>,
) -> PageResult {
    let days = match f.days.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => Some(
            d.parse::<u32>()
                .map_err(|_| ApiError::invalid("invalid_field", "days must be a whole number"))?,
        ),
    };
    let req = NewToken {
        user_id: f.user_id,
        name: f.name.clone(),
        expires_in_days: days,
        scopes: None,
    };
    let (_, Json(t)) = api::create_token(State(st.clone()), u.p.clone(), ApiJson(req)).await?;
    tokens_page(&st, &u, None, Some((f.name, t.token)), StatusCode::CREATED).await
}

/// `POST /admin/tokens/{id}/revoke`: revokes a token.
pub async fn revoke_token(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> PageResult {
    api::revoke_token(State(st), u.p, ApiPath(id)).await?;
    Ok(see_other("/admin/tokens?done=revoked"))
}
