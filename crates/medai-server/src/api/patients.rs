//! Patients: search, register, read, update, care-team assignment and break-glass access.
//! Every read and write of patient data is audited in the same transaction.

use crate::authz::{require, require_patient};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use crate::session::rfc3339;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use medai_core::audit::Outcome;
use medai_core::authz::PatientAccess;
use medai_core::patient::{Demographics, Sex};
use medai_core::Action;
use medai_crypto::envelope::FieldError;
use medai_store::patients::{self, format_date, parse_date, Patient, Search};
use medai_store::{break_glass, care_teams, new_id, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Maps a repository error. A PHI key the key provider cannot unwrap is counted
/// (`phi_key_unwrap_failures`), audited as `phi.key_unwrap_failed` and answered with a 500. A PHI field that failed to decrypt (corrupted ciphertext, wrong key,
/// missing key version) is counted, audited as `phi.decrypt_failed` and logged with opaque ids
/// only, and answered with a generic 500: nothing is returned in place of the data. Call it
/// after the request's transaction is dropped (rolled back): the audit event commits on its own.
pub(crate) async fn phi_fault(st: &AppState, p: &Principal, e: StoreError) -> ApiError {
    if let StoreError::KeyUnwrap {
        purpose,
        version,
        detail,
    } = &e
    {
        // The key provider failed while reloading keys after a rotation (a KMS that timed out
        // or refused): counted, audited, logged without key material, a generic 500.
        st.metrics.phi_key_unwrap_failure(st.kek.name());
        let event = p
            .event(st.now(), "phi.key_unwrap_failed", Outcome::Failure)
            .detail(&serde_json::json!({
                "purpose": purpose,
                "version": version,
                "provider": st.kek.name(),
            }));
        if let Err(err) = st.audit.append(&event).await {
            st.metrics.audit_append_failures.inc();
            tracing::error!(target: "security", error = %err, "audit append of a key unwrap failure failed");
        }
        tracing::error!(target: "security", error = %detail, purpose = %purpose, version = *version, "PHI key unwrap failed");
        return ApiError::Internal(format!(
            "PHI key {purpose} version {version} cannot be unwrapped"
        ));
    }
    let StoreError::Decrypt {
        table,
        column,
        row_id,
        source,
    } = e
    else {
        return e.into();
    };
    let reason = match source {
        FieldError::Malformed => "malformed",
        FieldError::Open => "authentication",
        FieldError::MissingKeyVersion(_) => "missing_key_version",
    };
    st.metrics.phi_decrypt_failure(reason);
    let event = p
        .event(st.now(), "phi.decrypt_failed", Outcome::Failure)
        .patient(&row_id)
        .detail(&serde_json::json!({ "table": table, "column": column, "reason": reason }));
    if let Err(err) = st.audit.append(&event).await {
        st.metrics.audit_append_failures.inc();
        tracing::error!(target: "security", error = %err, "audit append of a decrypt failure failed");
    }
    ApiError::Internal(format!(
        "cannot decrypt {table}.{column} of patient {row_id}: {reason}"
    ))
}

/// A patient as returned by the API.
#[derive(Serialize, ToSchema)]
pub struct PatientOut {
    /// Opaque id.
    pub id: String,
    /// Medical record number.
    pub mrn: String,
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Administrative sex.
    pub sex: Sex,
    /// Ids of the care teams the patient is assigned to.
    pub care_team_ids: Vec<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Patient> for PatientOut {
    fn from(p: Patient) -> Self {
        Self {
            id: p.id,
            mrn: p.demographics.mrn,
            given_name: p.demographics.given_name,
            family_name: p.demographics.family_name,
            date_of_birth: format_date(p.demographics.date_of_birth),
            sex: p.demographics.sex,
            care_team_ids: p.care_team_ids,
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// Demographics in a request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientIn {
    /// Medical record number: 1 to 32 letters, digits or `-`.
    pub mrn: String,
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Administrative sex.
    pub sex: Sex,
    /// Care teams to assign at registration (default: all of the registering clinician's teams).
    #[serde(default)]
    pub care_team_ids: Option<Vec<String>>,
}

impl PatientIn {
    fn demographics(&self, st: &AppState) -> Result<Demographics, ApiError> {
        let dob = parse_date(&self.date_of_birth).ok_or_else(|| {
            ApiError::invalid("invalid_field", "date_of_birth must be YYYY-MM-DD")
        })?;
        let d = Demographics {
            mrn: self.mrn.trim().to_owned(),
            given_name: self.given_name.trim().to_owned(),
            family_name: self.family_name.trim().to_owned(),
            date_of_birth: dob,
            sex: self.sex,
        };
        let today = time::OffsetDateTime::from_unix_timestamp(st.now())
            .map(|t| t.date())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        d.validate(today)
            .map_err(|e| ApiError::invalid("invalid_field", e.to_string()))?;
        Ok(d)
    }
}

/// Search parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PatientQuery {
    /// Exact MRN.
    pub mrn: Option<String>,
    /// Part of the given or family name, any case.
    pub name: Option<String>,
    /// Exact date of birth, `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    /// Exact sex.
    pub sex: Option<Sex>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
}

/// Searches the patients the caller may see.
#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", params(PatientQuery),
    responses((status = 200, body = [PatientOut]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<PatientQuery>,
) -> Result<axum::Json<Vec<PatientOut>>, ApiError> {
    require(&st, &p, Action::PatientList).await?;
    let limit = q.limit.unwrap_or(50);
    let offset = q.offset.unwrap_or(0);
    if !(1..=100).contains(&limit) || offset < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 100 and offset at least 0",
        ));
    }
    let date_of_birth = match &q.date_of_birth {
        Some(d) => Some(parse_date(d).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "date_of_birth must be YYYY-MM-DD")
        })?),
        None => None,
    };
    if q.name.as_ref().is_some_and(|n| n.chars().count() > 100)
        || q.mrn.as_ref().is_some_and(|m| m.len() > 32)
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "search terms are too long",
        ));
    }
    let search = Search {
        mrn: q.mrn.clone(),
        name: q
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_owned()),
        date_of_birth,
        sex: q.sex,
        care_team_member: p.user.role.is_care_team_scoped().then(|| p.user.id.clone()),
        limit,
        offset,
    };
    let mut tx = st.store.begin().await?;
    let phi = match st.phi.current(&mut tx, &*st.kek, st.now()).await {
        Ok(phi) => phi,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    let found = match patients::search(&mut tx, &phi, &search).await {
        Ok(found) => found,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    let ids: Vec<&str> = found.iter().map(|x| x.id.as_str()).collect();
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(st.now(), "patient.search", Outcome::Success)
            .detail(&serde_json::json!({ "results": ids.len(), "patient_ids": ids })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics
        .phi_read(p.user.role.as_str(), found.len() as u64);
    Ok(axum::Json(
        found.into_iter().map(PatientOut::from).collect(),
    ))
}

/// Registers a patient on care teams.
#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", request_body = PatientIn,
    responses((status = 201, body = PatientOut), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<PatientIn>,
) -> Result<(StatusCode, axum::Json<PatientOut>), ApiError> {
    require(&st, &p, Action::PatientCreate).await?;
    let d = req.demographics(&st)?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = match st.phi.current(&mut tx, &*st.kek, st.now()).await {
        Ok(phi) => phi,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    let teams = resolve_teams(&mut tx, &p, req.care_team_ids.as_deref()).await?;
    let id = new_id();
    patients::insert(&mut tx, &phi, &id, &d, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict("mrn_taken", "a patient with this MRN exists")
            }
            other => other.into(),
        })?;
    patients::set_care_teams(&mut tx, &id, &teams).await?;
    crate::session::append_in(
        &st,
        &mut tx,
        &p.event(now, "patient.create", Outcome::Success)
            .patient(&id),
    )
    .await?;
    let created = patients::get(&mut tx, &phi, &id)
        .await?
        .ok_or(ApiError::NotFound("patient"))?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

/// The teams a new patient goes on: the requested ones (which a clinician must belong to) or
/// all of the clinician's teams.
async fn resolve_teams(
    conn: &mut medai_store::AnyConnection,
    p: &Principal,
    requested: Option<&[String]>,
) -> Result<Vec<String>, ApiError> {
    let all = care_teams::list(conn).await?;
    let mine: Vec<String> = if p.user.role.is_care_team_scoped() {
        care_teams::of_user(conn, &p.user.id)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect()
    } else {
        all.iter().map(|t| t.id.clone()).collect()
    };
    match requested {
        None if p.user.role.is_care_team_scoped() => {
            if mine.is_empty() {
                return Err(ApiError::invalid(
                    "no_care_team",
                    "you belong to no care team; ask an administrator to add you to one",
                ));
            }
            Ok(mine)
        }
        None => Ok(Vec::new()),
        Some(ids) => {
            if ids.len() > 50 {
                return Err(ApiError::invalid("invalid_field", "at most 50 care teams"));
            }
            for id in ids {
                if !all.iter().any(|t| &t.id == id) {
                    return Err(ApiError::invalid(
                        "unknown_care_team",
                        "care_team_ids names a team that does not exist",
                    ));
                }
                if !mine.contains(id) {
                    return Err(ApiError::forbidden(
                        "not_your_care_team",
                        "you can only register patients on your own care teams",
                    ));
                }
            }
            Ok(ids.to_vec())
        }
    }
}

/// Reads one patient (audited; access through break-glass is flagged).
#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "patients", params(("id" = String, Path, description = "Patient id")),
    responses((status = 200, body = PatientOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = [])))]
pub async fn get(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<PatientOut>, ApiError> {
    let access = require_patient(&st, &p, Action::PatientRead, &id).await?;
    let mut tx = st.store.begin().await?;
    let phi = match st.phi.current(&mut tx, &*st.kek, st.now()).await {
        Ok(phi) => phi,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    let patient = match patients::get(&mut tx, &phi, &id).await {
        Ok(found) => found.ok_or(ApiError::NotFound("patient"))?,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    let e = p
        .event(st.now(), "patient.read", Outcome::Success)
        .patient(&id)
        .detail(
            &serde_json::json!({ "break_glass": access == PatientAccess::AllowedByBreakGlass }),
        );
    crate::session::append_in(&st, &mut tx, &e).await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.phi_read(p.user.role.as_str(), 1);
    Ok(axum::Json(patient.into()))
}

/// Replaces a patient's demographics.
#[utoipa::path(put, path = "/api/v1/patients/{id}", tag = "patients", params(("id" = String, Path, description = "Patient id")),
    request_body = PatientIn,
    responses((status = 200, body = PatientOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn update(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PatientIn>,
) -> Result<axum::Json<PatientOut>, ApiError> {
    let access = require_patient(&st, &p, Action::PatientUpdate, &id).await?;
    if req.care_team_ids.is_some() {
        return Err(ApiError::invalid(
            "invalid_field",
            "care teams are changed with PUT /api/v1/patients/{id}/care-teams",
        ));
    }
    let d = req.demographics(&st)?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = match st.phi.current(&mut tx, &*st.kek, st.now()).await {
        Ok(phi) => phi,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    patients::update(&mut tx, &phi, &id, &d, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict("mrn_taken", "a patient with this MRN exists")
            }
            other => other.into(),
        })?;
    let e = p
        .event(now, "patient.update", Outcome::Success)
        .patient(&id)
        .detail(
            &serde_json::json!({ "break_glass": access == PatientAccess::AllowedByBreakGlass }),
        );
    crate::session::append_in(&st, &mut tx, &e).await?;
    let updated = match patients::get(&mut tx, &phi, &id).await {
        Ok(found) => found.ok_or(ApiError::NotFound("patient"))?,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    tx.commit().await.map_err(StoreError::from)?;
    Ok(axum::Json(updated.into()))
}

/// The care teams of a patient.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CareTeamAssignment {
    /// Ids of the teams; replaces the current assignment.
    pub care_team_ids: Vec<String>,
}

/// Sets which care teams a patient is on (administrators and integrations).
#[utoipa::path(put, path = "/api/v1/patients/{id}/care-teams", tag = "patients", params(("id" = String, Path, description = "Patient id")),
    request_body = CareTeamAssignment,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn set_care_teams(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CareTeamAssignment>,
) -> Result<StatusCode, ApiError> {
    require_patient(&st, &p, Action::PatientAssignCareTeam, &id).await?;
    let mut tx = st.store.begin().await?;
    let all = care_teams::list(&mut tx).await?;
    if req.care_team_ids.len() > 50
        || req
            .care_team_ids
            .iter()
            .any(|t| !all.iter().any(|a| &a.id == t))
    {
        return Err(ApiError::invalid(
            "unknown_care_team",
            "care_team_ids must name existing teams (at most 50)",
        ));
    }
    patients::set_care_teams(&mut tx, &id, &req.care_team_ids).await?;
    let e = p
        .event(st.now(), "patient.assign_care_team", Outcome::Success)
        .patient(&id)
        .detail(&serde_json::json!({ "care_team_ids": req.care_team_ids }));
    crate::session::append_in(&st, &mut tx, &e).await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.admin_change("patient_care_teams_changed");
    Ok(StatusCode::NO_CONTENT)
}

/// A break-glass request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// Why access is needed now; recorded and reviewed by compliance.
    pub reason: String,
}

/// A granted break-glass access.
#[derive(Serialize, ToSchema)]
pub struct BreakGlassGrant {
    /// Grant id.
    pub id: String,
    /// The patient.
    pub patient_id: String,
    /// RFC 3339.
    pub granted_at: String,
    /// RFC 3339: access ends then.
    pub expires_at: String,
    /// Seconds of access left.
    pub expires_in: i64,
    /// What the user is told.
    pub notice: String,
}

/// Opens a patient outside the caller's care teams for a limited time, with a reason. The grant
/// is audited, counted and listed for compliance review.
#[utoipa::path(post, path = "/api/v1/patients/{id}/break-glass", tag = "patients", params(("id" = String, Path, description = "Patient id")),
    request_body = BreakGlassRequest,
    responses((status = 201, body = BreakGlassGrant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn break_glass(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<BreakGlassRequest>,
) -> Result<(StatusCode, axum::Json<BreakGlassGrant>), ApiError> {
    require(&st, &p, Action::BreakGlass).await?;
    let reason = req.reason.trim();
    let min = st.config.auth.break_glass_min_reason_chars;
    let n = reason.chars().count();
    if n < min || n > 1000 || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::invalid(
            "reason_required",
            format!("give a reason of {min} to 1000 characters"),
        ));
    }
    let now = st.now();
    let mut tx = st.store.begin().await?;
    if !patients::exists(&mut tx, &id).await? {
        return Err(ApiError::NotFound("patient"));
    }
    if patients::on_users_care_team(&mut tx, &p.user.id, &id).await? {
        return Err(ApiError::conflict(
            "not_needed",
            "this patient is on your care team; no break-glass access is needed",
        ));
    }
    let secs = st.config.auth.break_glass_duration.as_secs() as i64;
    let g = break_glass::Grant {
        id: new_id(),
        user_id: p.user.id.clone(),
        patient_id: id.clone(),
        reason: reason.to_owned(),
        granted_at: now,
        expires_at: now + secs,
    };
    break_glass::insert(&mut tx, &g).await?;
    let e = p
        .event(now, "patient.break_glass", Outcome::Success)
        .patient(&id)
        .detail(&serde_json::json!({ "grant_id": g.id, "expires_at": g.expires_at }));
    crate::session::append_in(&st, &mut tx, &e).await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.break_glass_grants.inc();
    tracing::warn!(target: "medai::security", grant_id = %g.id, user_id = %p.user.id, patient_id = %id, "break-glass access granted");
    Ok((
        StatusCode::CREATED,
        axum::Json(BreakGlassGrant {
            notice: format!(
                "Emergency access granted for {} minutes. This access and your reason are recorded and will be reviewed.",
                secs / 60
            ),
            id: g.id,
            patient_id: id,
            granted_at: rfc3339(g.granted_at),
            expires_at: rfc3339(g.expires_at),
            expires_in: secs,
        }),
    ))
}
