//! Compliance review: break-glass grants and the audit log. Reading them is itself audited.

use crate::authz::require;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, Principal};
use crate::session::rfc3339;
use crate::state::AppState;
use axum::extract::State;
use medai_core::audit::Outcome;
use medai_core::Action;
use medai_store::{audit, break_glass, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A grant for review.
#[derive(Serialize, ToSchema)]
pub struct GrantOut {
    /// Grant id.
    pub id: String,
    /// Who.
    pub user_id: String,
    /// Which patient.
    pub patient_id: String,
    /// The reason given.
    pub reason: String,
    /// RFC 3339.
    pub granted_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// Review window.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// Only grants in the last this many days (default 30, at most 366).
    pub days: Option<i64>,
    /// Page size, 1 to 1000 (default 200).
    pub limit: Option<i64>,
}

/// Break-glass grants to review, newest first.
#[utoipa::path(get, path = "/api/v1/break-glass", tag = "compliance", params(GrantQuery),
    responses((status = 200, body = [GrantOut]), (status = 403, body = ErrorBody)), security(("session" = [])))]
pub async fn list_grants(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<GrantQuery>,
) -> Result<axum::Json<Vec<GrantOut>>, ApiError> {
    require(&st, &p, Action::BreakGlassReview).await?;
    let days = q.days.unwrap_or(30);
    let limit = q.limit.unwrap_or(200);
    if !(1..=366).contains(&days) || !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "days must be 1 to 366 and limit 1 to 1000",
        ));
    }
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let grants = break_glass::list(&mut tx, now - days * 86_400, limit).await?;
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(now, "break_glass.review", Outcome::Success)
            .detail(&serde_json::json!({ "results": grants.len() })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(axum::Json(
        grants
            .into_iter()
            .map(|g| GrantOut {
                id: g.id,
                user_id: g.user_id,
                patient_id: g.patient_id,
                reason: g.reason,
                granted_at: rfc3339(g.granted_at),
                expires_at: rfc3339(g.expires_at),
            })
            .collect(),
    ))
}

/// An audit event.
#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    /// Sequence number.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// Acting user id.
    pub actor_id: Option<String>,
    /// Acting role.
    pub actor_role: Option<String>,
    /// Action.
    pub action: String,
    /// Target user id.
    pub target_user_id: Option<String>,
    /// Patient id.
    pub patient_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Client address.
    pub client_addr: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Extra facts (JSON object as text).
    pub detail: Option<String>,
}

/// Audit log filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events after this sequence number.
    pub after: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this acting user.
    pub actor_id: Option<String>,
    /// Only this patient.
    pub patient_id: Option<String>,
    /// Page size, 1 to 1000 (default 200).
    pub limit: Option<i64>,
}

/// Audit events, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "compliance", params(AuditQuery),
    responses((status = 200, body = [AuditOut]), (status = 403, body = ErrorBody)), security(("session" = [])))]
pub async fn list_audit(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Vec<AuditOut>>, ApiError> {
    require(&st, &p, Action::AuditRead).await?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 1000",
        ));
    }
    let f = audit::Filter {
        after_seq: q.after,
        action: q.action,
        actor_id: q.actor_id,
        patient_id: q.patient_id,
        limit,
    };
    let mut tx = st.store.begin().await?;
    let events = audit::list(&mut tx, &f).await?;
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(st.now(), "audit.read", Outcome::Success)
            .detail(&serde_json::json!({ "results": events.len() })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(axum::Json(
        events
            .into_iter()
            .map(|s| AuditOut {
                seq: s.seq,
                at: rfc3339(s.event.at),
                actor_id: s.event.actor_id,
                actor_role: s.event.actor_role,
                action: s.event.action,
                target_user_id: s.event.target_user_id,
                patient_id: s.event.patient_id,
                outcome: s.event.outcome.as_str().into(),
                client_addr: s.event.client_addr,
                request_id: s.event.request_id,
                detail: s.event.detail,
            })
            .collect(),
    ))
}
