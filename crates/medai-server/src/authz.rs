//! Server-side authorisation: the domain's permission table applied to a principal, with every
//! refusal audited and counted. Handlers call these first, before touching data.

use crate::error::ApiError;
use crate::extract::Principal;
use crate::state::AppState;
use medai_core::audit::Outcome;
use medai_core::authz::{patient_access, PatientAccess, PatientRelation};
use medai_core::Action;
use medai_store::{break_glass, patients, StoreError};

/// Records a refusal (audit event and metric) and returns the 403 to send.
async fn deny(
    st: &AppState,
    p: &Principal,
    action: Action,
    patient_id: Option<&str>,
    reason: &str,
) -> ApiError {
    st.metrics.denied(action.as_str());
    let mut e = p
        .event(st.now(), "access.denied", Outcome::Denied)
        .detail(&serde_json::json!({ "action": action.as_str(), "reason": reason }));
    if let Some(pid) = patient_id {
        e = e.patient(pid);
    }
    let written = st.audit.append(&e).await;
    match written {
        Ok(_) => match reason {
            "out_of_scope_break_glass_possible" => ApiError::forbidden(
                "outside_care_team",
                "this patient is not on your care team; request break-glass access with a reason",
            ),
            "out_of_scope" => {
                ApiError::forbidden("outside_care_team", "this patient is not on your care team")
            }
            "not_owner" => ApiError::forbidden(
                "not_your_conversation",
                "only the clinician who started this conversation may continue or close it",
            ),
            _ => ApiError::forbidden("forbidden", "your role does not allow this"),
        },
        Err(err) => {
            st.metrics.audit_append_failures.inc();
            ApiError::Internal(format!("audit append failed: {err}"))
        }
    }
}

/// Requires that the principal started the conversation it acts on (refusals are audited and
/// counted like any other).
pub async fn require_owner(
    st: &AppState,
    p: &Principal,
    action: Action,
    patient_id: &str,
    owner_id: &str,
) -> Result<(), ApiError> {
    if p.user.id == owner_id {
        Ok(())
    } else {
        Err(deny(st, p, action, Some(patient_id), "not_owner").await)
    }
}

/// Requires that the principal's role permits `action`.
pub async fn require(st: &AppState, p: &Principal, action: Action) -> Result<(), ApiError> {
    let scoped = match &p.auth {
        crate::extract::AuthKind::Token { scopes, .. } => {
            crate::accounts::TOKEN_SCOPES.contains(&action.as_str())
                && scopes.iter().any(|s| s == action.as_str())
        }
        crate::extract::AuthKind::Session { .. } => false,
    };
    if p.user.role.permits(action) || scoped {
        Ok(())
    } else {
        Err(deny(st, p, action, None, "role").await)
    }
}

/// Requires that the principal may perform `action` on patient `patient_id`, which must exist.
/// Returns how access was granted (break-glass access is flagged in the audit event).
pub async fn require_patient(
    st: &AppState,
    p: &Principal,
    action: Action,
    patient_id: &str,
) -> Result<PatientAccess, ApiError> {
    if !p.user.role.permits(action) {
        return Err(deny(st, p, action, Some(patient_id), "role").await);
    }
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let mut relation = PatientRelation::default();
    if p.user.role.is_care_team_scoped() {
        relation.on_care_team = patients::care_team_standing(&mut conn, &p.user.id, patient_id)
            .await?
            .ok_or(ApiError::NotFound("patient"))?;
        if !relation.on_care_team {
            relation.break_glass = break_glass::active(&mut conn, &p.user.id, patient_id, st.now())
                .await?
                .is_some();
        }
    } else if !patients::exists(&mut conn, patient_id).await? {
        return Err(ApiError::NotFound("patient"));
    }
    drop(conn);
    let access = patient_access(p.user.role, action, relation);
    match access {
        PatientAccess::Allowed | PatientAccess::AllowedByBreakGlass => Ok(access),
        PatientAccess::RoleDenied => Err(deny(st, p, action, Some(patient_id), "role").await),
        PatientAccess::OutOfScopeBreakGlassPossible => Err(deny(
            st,
            p,
            action,
            Some(patient_id),
            "out_of_scope_break_glass_possible",
        )
        .await),
        PatientAccess::OutOfScope => {
            Err(deny(st, p, action, Some(patient_id), "out_of_scope").await)
        }
    }
}
