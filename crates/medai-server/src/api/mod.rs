//! The HTTP API: routes, their OpenAPI description, and the middleware stack.

pub mod admin;
pub mod assistant;
pub mod auth;
pub mod compliance;
pub mod enrolment;
pub mod health;
pub mod patients;

use crate::error::ErrorBody;
use crate::middleware::{method_not_allowed, no_route, observe};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "medai API", description = "medai: self-hosted medical AI assistant. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}`."),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Sign-in with password and TOTP, sessions"),
        (name = "enrolment", description = "Single-use setup and enrolment links"),
        (name = "patients", description = "Patients, care teams and break-glass access"),
        (name = "assistant", description = "Conversations with the assistant, feedback and clinical notes"),
        (name = "admin", description = "Users, care teams and service tokens"),
        (name = "compliance", description = "Audit log and break-glass review"),
        (name = "ops", description = "Health and readiness"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::extract::SESSION_COOKIE,
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and their OpenAPI document, generated from the same list so they cannot drift.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::login))
        .routes(routes!(auth::totp))
        .routes(routes!(auth::recovery))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::current))
        .routes(routes!(auth::change_password))
        .routes(routes!(enrolment::start))
        .routes(routes!(enrolment::finish))
        .routes(routes!(patients::list, patients::create))
        .routes(routes!(patients::get, patients::update))
        .routes(routes!(patients::set_care_teams))
        .routes(routes!(patients::break_glass))
        .routes(routes!(
            assistant::list_conversations,
            assistant::create_conversation
        ))
        .routes(routes!(assistant::get_conversation))
        .routes(routes!(assistant::close_conversation))
        .routes(routes!(assistant::ask))
        .routes(routes!(assistant::put_feedback))
        .routes(routes!(assistant::list_notes, assistant::create_note))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::disable_user))
        .routes(routes!(admin::reset_mfa))
        .routes(routes!(admin::list_care_teams, admin::create_care_team))
        .routes(routes!(admin::add_member, admin::remove_member))
        .routes(routes!(admin::list_tokens, admin::create_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(compliance::list_grants))
        .routes(routes!(compliance::list_audit))
        .routes(routes!(compliance::audit_status))
        .split_for_parts()
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The public application: API routes, `/api/v1/openapi.json`, JSON fallbacks, limits,
/// request ids, metrics and security headers.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));
    let cfg = &state.config;
    let hsts = if cfg.secure_cookies() {
        Some(HeaderValue::from_static(
            "max-age=63072000; includeSubDomains",
        ))
    } else {
        None
    };
    let x_request_id = HeaderName::from_static("x-request-id");
    router
        .merge(crate::web::routes())
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(cfg.limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            hsts,
        ))
        .with_state(state)
}

/// The internal metrics application (served on `metrics_listen` only).
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(st): axum::extract::State<AppState>| async move {
                    crate::monitor::refresh(&st).await;
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        st.metrics.encode(),
                    )
                },
            ),
        )
        .with_state(state)
}
