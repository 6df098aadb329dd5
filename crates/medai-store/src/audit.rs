//! The audit writer: the one place audit events are stored. Callers pass the connection of the
//! transaction that makes the change, so the event, its Merkle leaf hash and the change commit or
//! fail together. Positions in the Merkle tree are assigned afterwards, in commit order, by the
//! integrator in [`crate::audit_log`]; events without a caller transaction go through the
//! group-committing [`crate::audit_log::Appender`].

use crate::StoreError;
use medai_core::audit::{AuditEvent, Outcome};
use sqlx::{AnyConnection, FromRow};

const COLUMNS: &str = "at, actor_id, actor_role, action, target_user_id, patient_id, outcome, \
                       client_addr, request_id, detail, leaf_hash";

/// Appends an event with its RFC 9162 leaf hash; returns its sequence number.
pub async fn append(conn: &mut AnyConnection, e: &AuditEvent) -> Result<i64, StoreError> {
    let leaf = medai_audit::leaf_hash(e);
    let (seq,): (i64,) = sqlx::query_as(&format!(
        "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         RETURNING seq"
    ))
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
    .bind(leaf.0.to_vec())
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

/// Rows per multi-row insert: 11 parameters each, well under both backends' limits.
pub(crate) const BATCH_ROWS: usize = 500;

/// Appends many events with one statement per 500 (the group commit of
/// [`crate::audit_log::Appender`]); their relative order in the log is not guaranteed.
pub async fn append_many(
    conn: &mut AnyConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    for chunk in events.chunks(BATCH_ROWS) {
        let mut sql = format!("INSERT INTO audit_events ({COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 11;
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for k in 1..=11 {
                if k > 1 {
                    sql.push(',');
                }
                sql.push('$');
                sql.push_str(&(b + k).to_string());
            }
            sql.push(')');
        }
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.at)
                .bind(e.actor_id.as_deref())
                .bind(e.actor_role.as_deref())
                .bind(e.action.as_str())
                .bind(e.target_user_id.as_deref())
                .bind(e.patient_id.as_deref())
                .bind(e.outcome.as_str())
                .bind(e.client_addr.as_deref())
                .bind(e.request_id.as_deref())
                .bind(e.detail.as_deref())
                .bind(medai_audit::leaf_hash(e).0.to_vec());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A stored event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the table (not the Merkle tree position).
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
}

#[derive(FromRow)]
pub(crate) struct Row {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) actor_id: Option<String>,
    pub(crate) actor_role: Option<String>,
    pub(crate) action: String,
    pub(crate) target_user_id: Option<String>,
    pub(crate) patient_id: Option<String>,
    pub(crate) outcome: String,
    pub(crate) client_addr: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) detail: Option<String>,
}

/// Parses a stored outcome name.
pub fn parse_outcome(s: &str) -> Option<Outcome> {
    match s {
        "success" => Some(Outcome::Success),
        "failure" => Some(Outcome::Failure),
        "denied" => Some(Outcome::Denied),
        _ => None,
    }
}

impl Row {
    pub(crate) fn into_stored(self) -> Result<StoredEvent, StoreError> {
        let outcome = parse_outcome(&self.outcome).ok_or_else(|| {
            StoreError::Corrupt(format!("audit event {} has an unknown outcome", self.seq))
        })?;
        Ok(StoredEvent {
            seq: self.seq,
            event: AuditEvent {
                at: self.at,
                actor_id: self.actor_id,
                actor_role: self.actor_role,
                action: self.action,
                target_user_id: self.target_user_id,
                patient_id: self.patient_id,
                outcome,
                client_addr: self.client_addr,
                request_id: self.request_id,
                detail: self.detail,
            },
        })
    }
}

/// Filters for reading the log; all given filters must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events after this sequence number (the cursor).
    pub after_seq: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor_id: Option<String>,
    /// Only this patient.
    pub patient_id: Option<String>,
    /// Only this outcome (`success`, `failure`, `denied`).
    pub outcome: Option<Outcome>,
    /// Only events at or after this Unix time.
    pub since: Option<i64>,
    /// Only events before this Unix time.
    pub until: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Events matching `f`, oldest first.
pub async fn list(conn: &mut AnyConnection, f: &Filter) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor_id, actor_role, action, target_user_id, patient_id, outcome, \
         client_addr, request_id, detail FROM audit_events \
         WHERE seq > $1 AND ($2 = '' OR action = $2) AND ($3 = '' OR actor_id = $3) \
         AND ($4 = '' OR patient_id = $4) AND ($5 = '' OR outcome = $5) \
         AND at >= $6 AND at < $7 ORDER BY seq LIMIT $8",
    )
    .bind(f.after_seq.unwrap_or(0))
    .bind(f.action.clone().unwrap_or_default())
    .bind(f.actor_id.clone().unwrap_or_default())
    .bind(f.patient_id.clone().unwrap_or_default())
    .bind(f.outcome.map(Outcome::as_str).unwrap_or_default())
    .bind(f.since.unwrap_or(i64::MIN))
    .bind(f.until.unwrap_or(i64::MAX))
    .bind(f.limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Row::into_stored).collect()
}
