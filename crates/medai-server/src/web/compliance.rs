//! Compliance officer pages: the audit log with filters and the log's verification status, the
//! break-glass grants to review, and safety overrides (answers marked unsafe). Reads go through
//! the JSON API's handlers, so each view is itself audited.

use super::page::{query_escape, render, short_time, Nav, PageResult, WebUser};
use crate::api::compliance::{self as api, AuditOut, AuditQuery, GrantQuery};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use medai_store::{users, StoreError};
use serde::Deserialize;
use std::collections::HashMap;

/// Usernames by user id, for showing who acted.
async fn usernames(st: &AppState) -> Result<HashMap<String, String>, ApiError> {
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    Ok(users::list(&mut conn)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect())
}

struct EventRow {
    seq: i64,
    at: String,
    actor: String,
    role: String,
    action: String,
    outcome: String,
    patient: String,
    detail: String,
    denied: bool,
}

fn row(e: AuditOut, names: &HashMap<String, String>) -> EventRow {
    let actor = e
        .actor_id
        .as_ref()
        .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
        .unwrap_or_else(|| "—".into());
    EventRow {
        seq: e.seq,
        at: short_time(&e.at),
        actor,
        role: e.actor_role.unwrap_or_default(),
        denied: e.outcome != "success",
        action: e.action,
        outcome: e.outcome,
        patient: e.patient_id.unwrap_or_default(),
        detail: e.detail.unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPageView {
    nav: Nav,
    f: Filters,
    events: Vec<EventRow>,
    next: Option<String>,
    tree_size: u64,
    pending: u64,
    checkpoint: Option<String>,
    verification: Option<String>,
    verified_ok: Option<bool>,
    outcomes: [&'static str; 3],
}

/// The audit filters, as the form sends them.
#[derive(Deserialize, Default, Clone)]
pub struct Filters {
    patient: Option<String>,
    user: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
}

/// A `datetime-local` value (`YYYY-MM-DDTHH:MM`, read as UTC) or RFC 3339, as RFC 3339.
fn to_rfc3339(v: Option<&String>) -> Option<String> {
    let v = v?.trim();
    if v.is_empty() {
        return None;
    }
    let b = v.as_bytes();
    if b.len() == 16 && b[10] == b'T' {
        Some(format!("{v}:00Z"))
    } else {
        Some(v.to_owned())
    }
}

fn opt(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl Filters {
    fn link(&self, cursor: i64) -> String {
        let mut q = format!("/compliance/audit?cursor={cursor}");
        for (k, v) in [
            ("patient", &self.patient),
            ("user", &self.user),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = opt(v.as_ref()) {
                q.push_str(&format!("&{k}={}", query_escape(&v)));
            }
        }
        q
    }

    fn value(v: &Option<String>) -> String {
        v.clone().unwrap_or_default()
    }

    /// The patient filter as typed.
    pub fn patient_v(&self) -> String {
        Self::value(&self.patient)
    }
    /// The user filter as typed.
    pub fn user_v(&self) -> String {
        Self::value(&self.user)
    }
    /// The action filter as typed.
    pub fn action_v(&self) -> String {
        Self::value(&self.action)
    }
    /// The outcome filter.
    pub fn outcome_v(&self) -> String {
        Self::value(&self.outcome)
    }
    /// The start time as typed.
    pub fn since_v(&self) -> String {
        Self::value(&self.since)
    }
    /// The end time as typed.
    pub fn until_v(&self) -> String {
        Self::value(&self.until)
    }
}

/// `GET /compliance/audit`: audit events (filtered by patient, user, action, outcome and time,
/// 100 a page), the log's size, last signed checkpoint and last verification.
pub async fn audit(
    State(st): State<AppState>,
    u: WebUser,
    q: Result<Query<Filters>, QueryRejection>,
) -> PageResult {
    let f = q
        .map(|Query(q)| q)
        .map_err(|_| ApiError::bad_request("invalid_query", "the filters could not be read"))?;
    let names = usernames(&st).await?;
    // A username in the user filter is looked up; an id is used as it is.
    let user = opt(f.user.as_ref()).map(|v| {
        names
            .iter()
            .find(|(_, n)| **n == v.to_lowercase())
            .map_or(v.clone(), |(id, _)| id.clone())
    });
    let query = AuditQuery {
        cursor: f.cursor,
        action: opt(f.action.as_ref()),
        user,
        patient: opt(f.patient.as_ref()),
        outcome: opt(f.outcome.as_ref()),
        since: to_rfc3339(f.since.as_ref()),
        until: to_rfc3339(f.until.as_ref()),
        limit: Some(100),
    };
    let Json(page) = api::list_audit(State(st.clone()), u.p.clone(), ApiQuery(query)).await?;
    let Json(status) = api::audit_status(State(st.clone()), u.p.clone()).await?;
    let view = AuditPageView {
        nav: u.nav(&st, "audit"),
        next: page.next_cursor.map(|c| f.link(c)),
        events: page.events.into_iter().map(|e| row(e, &names)).collect(),
        tree_size: status.tree_size,
        pending: status.pending,
        checkpoint: status.last_checkpoint.map(|c| {
            format!(
                "{} events, signed {}",
                c.tree_size,
                short_time(&c.signed_at)
            )
        }),
        verified_ok: status.last_verification.as_ref().map(|v| v.ok),
        verification: status.last_verification.map(|v| {
            let mut s = format!(
                "{} at {}: {} events checked up to size {}",
                if v.ok { "Verified" } else { "FAILED" },
                short_time(&v.at),
                v.events_checked,
                v.tree_size
            );
            if let Some(p) = v.first_problem {
                s.push_str(&format!("; first problem: {p}"));
            }
            s
        }),
        outcomes: ["success", "failure", "denied"],
        f,
    };
    Ok(render(StatusCode::OK, &view))
}

struct GrantRow {
    user: String,
    patient: String,
    reason: String,
    granted: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "grants.html")]
struct GrantsPage {
    nav: Nav,
    days: i64,
    grants: Vec<GrantRow>,
}

/// The review window.
#[derive(Deserialize, Default)]
pub struct DaysQuery {
    days: Option<i64>,
}

/// `GET /compliance/break-glass?days=`: break-glass grants of the last days, newest first.
pub async fn grants(
    State(st): State<AppState>,
    u: WebUser,
    q: Result<Query<DaysQuery>, QueryRejection>,
) -> PageResult {
    let days = q
        .map_err(|_| ApiError::bad_request("invalid_query", "days must be a whole number"))?
        .0
        .days
        .unwrap_or(30);
    let query = GrantQuery {
        days: Some(days),
        limit: Some(500),
    };
    let Json(list) = api::list_grants(State(st.clone()), u.p.clone(), ApiQuery(query)).await?;
    let names = usernames(&st).await?;
    let grants = list
        .into_iter()
        .map(|g| GrantRow {
            user: names.get(&g.user_id).cloned().unwrap_or(g.user_id),
            patient: g.patient_id,
            reason: g.reason,
            granted: short_time(&g.granted_at),
            expires: short_time(&g.expires_at),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &GrantsPage {
            nav: u.nav(&st, "grants"),
            days,
            grants,
        },
    ))
}

#[derive(Template)]
#[template(path = "overrides.html")]
struct OverridesPage {
    nav: Nav,
    events: Vec<EventRow>,
    next: Option<String>,
}

/// The overrides page's query.
#[derive(Deserialize, Default)]
pub struct CursorQuery {
    cursor: Option<i64>,
}

/// `GET /compliance/overrides`: answers clinicians marked unsafe (`safety.override` events).
pub async fn overrides(
    State(st): State<AppState>,
    u: WebUser,
    q: Result<Query<CursorQuery>, QueryRejection>,
) -> PageResult {
    let cursor = q
        .map_err(|_| ApiError::bad_request("invalid_query", "cursor must be a whole number"))?
        .0
        .cursor;
    let query = AuditQuery {
        cursor,
        action: Some("safety.override".into()),
        user: None,
        patient: None,
        outcome: None,
        since: None,
        until: None,
        limit: Some(100),
    };
    let Json(page) = api::list_audit(State(st.clone()), u.p.clone(), ApiQuery(query)).await?;
    let names = usernames(&st).await?;
    Ok(render(
        StatusCode::OK,
        &OverridesPage {
            nav: u.nav(&st, "overrides"),
            next: page
                .next_cursor
                .map(|c| format!("/compliance/overrides?cursor={c}")),
            events: page.events.into_iter().map(|e| row(e, &names)).collect(),
        },
    ))
}
