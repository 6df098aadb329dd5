//! Patients and their care-team assignment.

use crate::StoreError;
use medai_core::patient::{Demographics, Sex};
use sqlx::{AnyConnection, FromRow};
use std::collections::HashMap;
use time::Date;

/// A stored patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    /// Unique id (opaque; the only patient identifier that may appear in logs).
    pub id: String,
    /// Demographics.
    pub demographics: Demographics,
    /// Ids of the care teams the patient is assigned to.
    pub care_team_ids: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

#[derive(FromRow)]
struct Row {
    id: String,
    mrn: String,
    given_name: String,
    family_name: String,
    date_of_birth: String,
    sex: String,
    created_at: i64,
    updated_at: i64,
}

const DATE_FMT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Formats a date as stored (`YYYY-MM-DD`).
pub fn format_date(d: Date) -> String {
    d.format(DATE_FMT).unwrap_or_default()
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, DATE_FMT).ok()
}

impl Row {
    fn into_patient(self, care_team_ids: Vec<String>) -> Result<Patient, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("patient {} has an invalid field", self.id));
        let date_of_birth = parse_date(&self.date_of_birth).ok_or_else(corrupt)?;
        let sex = Sex::parse(&self.sex).ok_or_else(corrupt)?;
        Ok(Patient {
            demographics: Demographics {
                mrn: self.mrn,
                given_name: self.given_name,
                family_name: self.family_name,
                date_of_birth,
                sex,
            },
            id: self.id,
            care_team_ids,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str =
    "id, mrn, given_name, family_name, date_of_birth, sex, created_at, updated_at";

/// Registers a patient.
pub async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    d: &Demographics,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(id)
    .bind(&d.mrn)
    .bind(d.given_name.trim())
    .bind(d.family_name.trim())
    .bind(format_date(d.date_of_birth))
    .bind(d.sex.as_str())
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| StoreError::unique(e, "mrn"))?;
    Ok(())
}

/// Replaces a patient's demographics.
pub async fn update(
    conn: &mut AnyConnection,
    id: &str,
    d: &Demographics,
    now: i64,
) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE patients SET mrn = $1, given_name = $2, family_name = $3, date_of_birth = $4, \
         sex = $5, updated_at = $6 WHERE id = $7",
    )
    .bind(&d.mrn)
    .bind(d.given_name.trim())
    .bind(d.family_name.trim())
    .bind(format_date(d.date_of_birth))
    .bind(d.sex.as_str())
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .map_err(|e| StoreError::unique(e, "mrn"))?;
    if r.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound("patient"))
    }
}

/// Whether a patient with this id exists.
pub async fn exists(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM patients WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// The patient with this id.
pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Patient>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM patients WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => {
            let teams = care_team_ids(conn, id).await?;
            Ok(Some(r.into_patient(teams)?))
        }
        None => Ok(None),
    }
}

/// Ids of the teams a patient is assigned to.
pub async fn care_team_ids(
    conn: &mut AnyConnection,
    patient_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT team_id FROM patient_care_teams WHERE patient_id = $1 ORDER BY team_id",
    )
    .bind(patient_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// Replaces the patient's care teams.
pub async fn set_care_teams(
    conn: &mut AnyConnection,
    patient_id: &str,
    team_ids: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM patient_care_teams WHERE patient_id = $1")
        .bind(patient_id)
        .execute(&mut *conn)
        .await?;
    for t in team_ids {
        sqlx::query("INSERT INTO patient_care_teams (patient_id, team_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(patient_id)
            .bind(t)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether the patient is on one of the user's care teams.
pub async fn on_users_care_team(
    conn: &mut AnyConnection,
    user_id: &str,
    patient_id: &str,
) -> Result<bool, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM patient_care_teams p JOIN care_team_members m ON m.team_id = p.team_id \
         WHERE p.patient_id = $1 AND m.user_id = $2",
    )
    .bind(patient_id)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Search criteria; all given criteria must match.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Exact MRN.
    pub mrn: Option<String>,
    /// Substring of the given or family name, any case.
    pub name: Option<String>,
    /// Exact date of birth.
    pub date_of_birth: Option<Date>,
    /// Exact sex.
    pub sex: Option<Sex>,
    /// Only patients on this user's care teams (none: every patient).
    pub care_team_member: Option<String>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

fn like_pattern(s: &str) -> String {
    let escaped = s
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Patients matching `s`, by family name then given name.
pub async fn search(conn: &mut AnyConnection, s: &Search) -> Result<Vec<Patient>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM patients WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if s.mrn.is_some() {
        sql += &format!(" AND mrn = {}", next());
    }
    if s.name.is_some() {
        let p = next();
        sql += &format!(
            " AND (LOWER(given_name) LIKE {p} ESCAPE '\\' OR LOWER(family_name) LIKE {p} ESCAPE '\\' \
             OR LOWER(given_name || ' ' || family_name) LIKE {p} ESCAPE '\\')"
        );
    }
    if s.date_of_birth.is_some() {
        sql += &format!(" AND date_of_birth = {}", next());
    }
    if s.sex.is_some() {
        sql += &format!(" AND sex = {}", next());
    }
    if s.care_team_member.is_some() {
        sql += &format!(
            " AND id IN (SELECT p.patient_id FROM patient_care_teams p JOIN care_team_members m \
             ON m.team_id = p.team_id WHERE m.user_id = {})",
            next()
        );
    }
    sql += &format!(
        " ORDER BY family_name, given_name, id LIMIT {} OFFSET {}",
        next(),
        next()
    );
    let mut q = sqlx::query_as::<_, Row>(&sql);
    if let Some(m) = &s.mrn {
        q = q.bind(m.clone());
    }
    if let Some(name) = &s.name {
        q = q.bind(like_pattern(name));
    }
    if let Some(d) = s.date_of_birth {
        q = q.bind(format_date(d));
    }
    if let Some(x) = s.sex {
        q = q.bind(x.as_str());
    }
    if let Some(u) = &s.care_team_member {
        q = q.bind(u.clone());
    }
    let rows = q.bind(s.limit).bind(s.offset).fetch_all(&mut *conn).await?;
    let mut teams = care_team_ids_of(conn, rows.iter().map(|r| r.id.as_str())).await?;
    rows.into_iter()
        .map(|r| {
            let t = teams.remove(&r.id).unwrap_or_default();
            r.into_patient(t)
        })
        .collect()
}

/// Care-team ids of several patients in one query (a page of search results).
async fn care_team_ids_of<'a>(
    conn: &mut AnyConnection,
    patient_ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let ids: Vec<&str> = patient_ids.collect();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT patient_id, team_id FROM patient_care_teams WHERE patient_id IN ({}) \
         ORDER BY patient_id, team_id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query_as::<_, (String, String)>(&sql);
    for id in ids {
        q = q.bind(id);
    }
    for (patient, team) in q.fetch_all(conn).await? {
        out.entry(patient).or_default().push(team);
    }
    Ok(out)
}
