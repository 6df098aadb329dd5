//! Break-glass grants: time-limited access to a patient outside one's care teams, with a reason.

use crate::StoreError;
use sqlx::{AnyConnection, FromRow};

/// A recorded grant.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Grant {
    /// Unique id.
    pub id: String,
    /// Who was granted access.
    pub user_id: String,
    /// To which patient.
    pub patient_id: String,
    /// The reason they gave (free text written by staff; shown only to compliance officers).
    pub reason: String,
    /// Unix seconds.
    pub granted_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Records a grant.
pub async fn insert(conn: &mut AnyConnection, g: &Grant) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO break_glass_grants (id, user_id, patient_id, reason, granted_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&g.id)
    .bind(&g.user_id)
    .bind(&g.patient_id)
    .bind(&g.reason)
    .bind(g.granted_at)
    .bind(g.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user's unexpired grant for the patient, the one lasting longest.
pub async fn active(
    conn: &mut AnyConnection,
    user_id: &str,
    patient_id: &str,
    now: i64,
) -> Result<Option<Grant>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, patient_id, reason, granted_at, expires_at FROM break_glass_grants \
         WHERE user_id = $1 AND patient_id = $2 AND expires_at > $3 ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(patient_id)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

/// Grants made at or after `since`, newest first.
pub async fn list(
    conn: &mut AnyConnection,
    since: i64,
    limit: i64,
) -> Result<Vec<Grant>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, patient_id, reason, granted_at, expires_at FROM break_glass_grants \
         WHERE granted_at >= $1 ORDER BY granted_at DESC, id DESC LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
