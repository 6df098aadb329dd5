//! The audit writer: the one place audit events are stored. Callers pass the connection of the
//! transaction that makes the change, so the event and the change commit or fail together.

use crate::StoreError;
use medai_core::audit::{AuditEvent, Outcome};
use sqlx::{AnyConnection, FromRow};

/// Appends an event; returns its sequence number.
pub async fn append(conn: &mut AnyConnection, e: &AuditEvent) -> Result<i64, StoreError> {
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_events (at, actor_id, actor_role, action, target_user_id, patient_id, \
         outcome, client_addr, request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING seq",
    )
    .bind(e.at)
    .bind(e.actor_id.as_deref())
    .bind(e.actor_role.as_deref())
    .bind(&e.action)
    .bind(e.target_user_id.as_deref())
    .bind(e.patient_id.as_deref())
    .bind(e.outcome.as_str())
    .bind(e.client_addr.as_deref())
    .bind(e.request_id.as_deref())
    .bind(e.detail.as_deref())
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

/// A stored event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log.
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
}

#[derive(FromRow)]
struct Row {
    seq: i64,
    at: i64,
    actor_id: Option<String>,
    actor_role: Option<String>,
    action: String,
    target_user_id: Option<String>,
    patient_id: Option<String>,
    outcome: String,
    client_addr: Option<String>,
    request_id: Option<String>,
    detail: Option<String>,
}

/// Filters for reading the log; all given filters must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events after this sequence number.
    pub after_seq: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor_id: Option<String>,
    /// Only this patient.
    pub patient_id: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// Events matching `f`, oldest first.
pub async fn list(conn: &mut AnyConnection, f: &Filter) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor_id, actor_role, action, target_user_id, patient_id, outcome, \
         client_addr, request_id, detail FROM audit_events \
         WHERE seq > $1 AND ($2 = '' OR action = $2) AND ($3 = '' OR actor_id = $3) \
         AND ($4 = '' OR patient_id = $4) ORDER BY seq LIMIT $5",
    )
    .bind(f.after_seq.unwrap_or(0))
    .bind(f.action.clone().unwrap_or_default())
    .bind(f.actor_id.clone().unwrap_or_default())
    .bind(f.patient_id.clone().unwrap_or_default())
    .bind(f.limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let outcome = match r.outcome.as_str() {
                "success" => Outcome::Success,
                "failure" => Outcome::Failure,
                "denied" => Outcome::Denied,
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "audit event {} has an unknown outcome",
                        r.seq
                    )))
                }
            };
            Ok(StoredEvent {
                seq: r.seq,
                event: AuditEvent {
                    at: r.at,
                    actor_id: r.actor_id,
                    actor_role: r.actor_role,
                    action: r.action,
                    target_user_id: r.target_user_id,
                    patient_id: r.patient_id,
                    outcome,
                    client_addr: r.client_addr,
                    request_id: r.request_id,
                    detail: r.detail,
                },
            })
        })
        .collect()
}
