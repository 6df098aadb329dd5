//! Compliance review: break-glass grants and the audit log. Reading them is itself audited.

use crate::authz::require;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, Principal};
use crate::session::rfc3339;
use crate::state::AppState;
use axum::extract::State;
use medai_core::audit::Outcome;
use medai_core::Action;
use medai_store::{audit, audit_log, break_glass, StoreError};
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
    /// Cursor: only events after this sequence number (`next_cursor` of the previous page).
    pub cursor: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this acting user (id).
    pub user: Option<String>,
    /// Only this patient (id).
    pub patient: Option<String>,
    /// Only this outcome: `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 200).
    pub limit: Option<i64>,
}

/// A page of audit events.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Events, oldest first.
    pub events: Vec<AuditOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

fn parse_time(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{field} must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"),
                )
            })
    })
    .transpose()
}

/// Audit events, oldest first, with cursor pagination. Reading is itself audited.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "compliance", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_audit(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    require(&st, &p, Action::AuditRead).await?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 1000",
        ));
    }
    let outcome = match q.outcome.as_deref() {
        None => None,
        Some(o) => Some(audit::parse_outcome(o).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "outcome must be success, failure or denied",
            )
        })?),
    };
    let f = audit::Filter {
        after_seq: q.cursor,
        action: q.action,
        actor_id: q.user,
        patient_id: q.patient,
        outcome,
        since: parse_time("since", q.since.as_deref())?,
        until: parse_time("until", q.until.as_deref())?,
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
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(axum::Json(AuditPage {
        events: events
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
        next_cursor,
    }))
}

/// The last signed checkpoint.
#[derive(Serialize, ToSchema)]
pub struct CheckpointOut {
    /// Events covered.
    pub tree_size: u64,
    /// RFC 3339.
    pub signed_at: String,
    /// The C2SP signed note (origin, size, base64 root, Ed25519 signature).
    pub note: String,
}

/// The last verification.
#[derive(Serialize, ToSchema)]
pub struct VerificationOut {
    /// RFC 3339.
    pub at: String,
    /// Whether the log verified.
    pub ok: bool,
    /// Events whose leaves were recomputed.
    pub events_checked: u64,
    /// Tree size reached.
    pub tree_size: u64,
    /// The first break found, if any.
    pub first_problem: Option<String>,
}

/// The state of the tamper-evident log.
#[derive(Serialize, ToSchema)]
pub struct AuditStatus {
    /// Events in the Merkle tree (the head).
    pub tree_size: u64,
    /// Events committed but not yet placed in the tree.
    pub pending: u64,
    /// The public key that verifies checkpoints (`<origin>+<id>+<base64>`).
    pub public_key: String,
    /// The newest signed checkpoint.
    pub last_checkpoint: Option<CheckpointOut>,
    /// The newest verification.
    pub last_verification: Option<VerificationOut>,
}

/// Head, last checkpoint and last verification of the audit log. Reading it is audited.
#[utoipa::path(get, path = "/api/v1/audit/status", tag = "compliance",
    responses((status = 200, body = AuditStatus), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn audit_status(
    State(st): State<AppState>,
    p: Principal,
) -> Result<axum::Json<AuditStatus>, ApiError> {
    require(&st, &p, Action::AuditRead).await?;
    let mut tx = st.store.begin().await?;
    let tree_size = audit_log::tree_size(&mut tx).await?;
    let pending = audit_log::pending_count(&mut tx).await?;
    let cp = audit_log::latest_checkpoint(&mut tx).await?;
    let v = audit_log::last_verification(&mut tx).await?;
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(st.now(), "audit.status.read", Outcome::Success),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(axum::Json(AuditStatus {
        tree_size,
        pending,
        public_key: st.audit.verifier_key().to_owned(),
        last_checkpoint: cp.map(|c| CheckpointOut {
            tree_size: c.tree_size,
            signed_at: rfc3339(c.created_at),
            note: c.note,
        }),
        last_verification: v.map(|v| VerificationOut {
            at: rfc3339(v.at),
            ok: v.ok,
            events_checked: v.events_checked,
            tree_size: v.tree_size,
            first_problem: v.first_problem,
        }),
    }))
}
