//! Server-rendered pages for people: the setup link, sign-in, the clinician's patients and
//! conversations with the assistant, break-glass access, the compliance views and
//! administration. Pages are a second front over the JSON API's handlers (the same
//! authorisation, storage and audit), with CSRF tokens on every form, a strict
//! Content-Security-Policy and our own script and style files only. See `docs/web-ui.md`.

pub mod admin;
pub mod auth;
pub mod clinical;
pub mod compliance;
pub mod page;
pub mod setup;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;

/// The stylesheet, embedded in the binary.
const APP_CSS: &str = include_str!("../../static/app.css");
/// The script, embedded in the binary.
const APP_JS: &str = include_str!("../../static/app.js");

fn asset(content_type: &'static str, body: &'static str) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The page routes.
pub fn routes() -> Router<crate::state::AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/setup", get(setup::show).post(setup::password))
        .route("/setup/confirm", post(setup::confirm))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/", get(auth::home))
        .route("/login", get(auth::login_form).post(auth::login_submit))
        .route("/login/totp", get(auth::totp_form).post(auth::totp_submit))
        .route(
            "/login/recovery",
            get(auth::recovery_form).post(auth::recovery_submit),
        )
        .route("/logout", post(auth::logout))
        .route("/patients", get(clinical::patients))
        .route("/patients/{id}", get(clinical::patient))
        .route("/patients/{id}/break-glass", post(clinical::break_glass))
        .route(
            "/patients/{id}/conversations",
            post(clinical::new_conversation),
        )
        .route("/conversations/{id}", get(clinical::conversation))
        .route("/conversations/{id}/ask", post(clinical::ask))
        .route("/conversations/{id}/close", post(clinical::close))
        .route("/messages/{id}/feedback", post(clinical::feedback))
        .route("/compliance/audit", get(compliance::audit))
        .route("/compliance/break-glass", get(compliance::grants))
        .route("/compliance/overrides", get(compliance::overrides))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{id}/disable", post(admin::disable_user))
        .route("/admin/users/{id}/reset-mfa", post(admin::reset_mfa))
        .route("/admin/care-teams", post(admin::create_team))
        .route("/admin/care-teams/{id}/members", post(admin::add_member))
        .route(
            "/admin/care-teams/{id}/members/{user_id}/remove",
            post(admin::remove_member),
        )
        .route(
            "/admin/tokens",
            get(admin::tokens).post(admin::create_token),
        )
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
}

/// Whether a request path belongs to the JSON API (whose errors stay JSON).
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path == "/healthz" || path == "/readyz"
}
