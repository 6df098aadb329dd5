//! Liveness and readiness.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use medai_store::SchemaStatus;
use serde::Serialize;
use utoipa::ToSchema;

/// Health answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Per-dependency results (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

/// Readiness checks.
#[derive(Serialize, ToSchema)]
pub struct Checks {
    /// `ok` or why not.
    pub database: String,
    /// `current`, or what is wrong with the schema.
    pub migrations: String,
    /// `ok` or why not (memory or Redis).
    pub sessions: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        checks: None,
    })
}

/// Ready to serve: the database answers, its schema is current, the session store answers.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let database = match st.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(_) => "unreachable".to_owned(),
    };
    let migrations = match st.store.schema_status().await {
        Ok(SchemaStatus::Current) => "current".to_owned(),
        Ok(SchemaStatus::Fresh) => "not migrated".to_owned(),
        Ok(SchemaStatus::Behind { .. }) => "behind: run `medai migrate`".to_owned(),
        Ok(SchemaStatus::Ahead { .. }) => "ahead of this binary".to_owned(),
        Ok(SchemaStatus::Inconsistent { .. }) => "inconsistent".to_owned(),
        Err(_) => "unknown".to_owned(),
    };
    let sessions = match st.ephemeral.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(_) => "unreachable".to_owned(),
    };
    let ready = database == "ok" && migrations == "current" && sessions == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Health {
            status: if ready { "ready" } else { "not_ready" }.into(),
            checks: Some(Checks {
                database,
                migrations,
                sessions,
            }),
        }),
    )
}
