//! Patients and their care-team assignment.
//!
//! Demographics are stored encrypted (AES-256-GCM under the current data key, bound to table,
//! column, row id and key version). MRN and date of birth are found through keyed blind indexes,
//! names through blind-index tokens of their 1- to 3-character grams; candidates are decrypted
//! and checked exactly before they are returned, then sorted and paged in memory (the database
//! cannot order ciphertext). Sex is kept in plaintext: it is not one of the HIPAA identifiers
//! and an index over three values would hide nothing.

use crate::phi_keys::PhiCipher;
use crate::StoreError;
use medai_core::patient::{Demographics, Sex};
use sqlx::{AnyConnection, FromRow};
use std::collections::{BTreeSet, HashMap};
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
    mrn_enc: Option<Vec<u8>>,
    given_name_enc: Option<Vec<u8>>,
    family_name_enc: Option<Vec<u8>>,
    date_of_birth_enc: Option<Vec<u8>>,
    sex: String,
    created_at: i64,
    updated_at: i64,
}

const TABLE: &str = "patients";

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
    /// Decrypts the row; any field that fails to open fails the whole row (no partial data).
    fn into_patient(
        self,
        phi: &PhiCipher,
        care_team_ids: Vec<String>,
    ) -> Result<Patient, StoreError> {
        let open = |column: &'static str, v: &Option<Vec<u8>>| -> Result<String, StoreError> {
            let sealed = v.as_deref().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "patient {} is not encrypted yet; run `medai migrate` (or start the server) to encrypt it",
                    self.id
                ))
            })?;
            Ok(phi
                .open(TABLE, column, &self.id, sealed)?
                .as_str()
                .to_owned())
        };
        let mrn = open("mrn", &self.mrn_enc)?;
        let given_name = open("given_name", &self.given_name_enc)?;
        let family_name = open("family_name", &self.family_name_enc)?;
        let dob = open("date_of_birth", &self.date_of_birth_enc)?;
        let corrupt = || StoreError::Corrupt(format!("patient {} has an invalid field", self.id));
        let date_of_birth = parse_date(&dob).ok_or_else(corrupt)?;
        let sex = Sex::parse(&self.sex).ok_or_else(corrupt)?;
        Ok(Patient {
            demographics: Demographics {
                mrn,
                given_name,
                family_name,
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

const COLUMNS: &str = "id, mrn_enc, given_name_enc, family_name_enc, date_of_birth_enc, sex, \
     created_at, updated_at";

/// The sealed columns and blind indexes of one patient, all computed before anything is written
/// (so a failure writes nothing).
struct Sealed {
    mrn: Vec<u8>,
    given_name: Vec<u8>,
    family_name: Vec<u8>,
    date_of_birth: Vec<u8>,
    mrn_index: String,
    date_of_birth_index: String,
    name_tokens: BTreeSet<String>,
    key_version: i64,
    index_version: i64,
}

fn seal(phi: &PhiCipher, id: &str, d: &Demographics) -> Result<Sealed, StoreError> {
    let given = d.given_name.trim();
    let family = d.family_name.trim();
    let dob = format_date(d.date_of_birth);
    let key_version = phi.write_version(TABLE)?;
    Ok(Sealed {
        mrn: phi.seal(TABLE, "mrn", id, &d.mrn)?,
        given_name: phi.seal(TABLE, "given_name", id, given)?,
        family_name: phi.seal(TABLE, "family_name", id, family)?,
        date_of_birth: phi.seal(TABLE, "date_of_birth", id, &dob)?,
        mrn_index: phi.index_token("mrn", &d.mrn),
        date_of_birth_index: phi.index_token("date_of_birth", &dob),
        name_tokens: name_grams(&full_name(given, family))
            .iter()
            .map(|g| phi.index_token("name", g))
            .collect(),
        key_version: i64::from(key_version),
        index_version: i64::from(phi.index_version()),
    })
}

/// While a blind-index rotation is under way, the MRN's UNIQUE index only compares tokens of
/// one version: refuse an MRN that another row holds under an older version.
async fn check_mrn_free(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
    mrn: &str,
) -> Result<(), StoreError> {
    let older: Vec<String> = phi.index_tokens("mrn", mrn).into_iter().skip(1).collect();
    if older.is_empty() {
        return Ok(());
    }
    let ps: Vec<String> = (0..older.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT COUNT(*) FROM patients WHERE id <> $1 AND mrn_index IN ({})",
        ps.join(", ")
    );
    let mut q = sqlx::query_as::<_, (i64,)>(&sql).bind(id);
    for t in older {
        q = q.bind(t);
    }
    let (n,) = q.fetch_one(&mut *conn).await?;
    if n > 0 {
        return Err(StoreError::Conflict("mrn"));
    }
    Ok(())
}

fn full_name(given: &str, family: &str) -> String {
    format!("{given} {family}").to_lowercase()
}

/// The 1-, 2- and 3-character grams of `s` (already lower-cased).
fn name_grams(s: &str) -> BTreeSet<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = BTreeSet::new();
    for n in 1..=3 {
        for w in chars.windows(n) {
            out.insert(w.iter().collect());
        }
    }
    out
}

/// The grams a name query must all match: its 3-grams, or the query itself when shorter.
fn query_grams(q: &str) -> BTreeSet<String> {
    let chars: Vec<char> = q.chars().collect();
    if chars.len() < 3 {
        return if chars.is_empty() {
            BTreeSet::new()
        } else {
            BTreeSet::from([q.to_owned()])
        };
    }
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// Writes the sealed columns (the plaintext columns keep placeholders: `mrn` takes the row id
/// so its UNIQUE constraint holds) and replaces the name tokens.
async fn write_sealed(
    conn: &mut AnyConnection,
    id: &str,
    sealed: &Sealed,
) -> Result<u64, StoreError> {
    let r = sqlx::query(
        "UPDATE patients SET mrn = $1, given_name = '', family_name = '', date_of_birth = '', \
         mrn_enc = $2, given_name_enc = $3, family_name_enc = $4, date_of_birth_enc = $5, \
         mrn_index = $6, date_of_birth_index = $7, key_version = $8, index_version = $9 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(sealed.mrn.clone())
    .bind(sealed.given_name.clone())
    .bind(sealed.family_name.clone())
    .bind(sealed.date_of_birth.clone())
    .bind(&sealed.mrn_index)
    .bind(&sealed.date_of_birth_index)
    .bind(sealed.key_version)
    .bind(sealed.index_version)
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::unique(e, "mrn"))?;
    if r.rows_affected() != 1 {
        return Ok(0);
    }
    write_name_tokens(conn, id, &sealed.name_tokens).await?;
    Ok(1)
}

/// Replaces a patient's name-search tokens.
async fn write_name_tokens(
    conn: &mut AnyConnection,
    id: &str,
    tokens: &BTreeSet<String>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM patient_name_index WHERE patient_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for t in tokens {
        sqlx::query("INSERT INTO patient_name_index (patient_id, token) VALUES ($1, $2)")
            .bind(id)
            .bind(t)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Registers a patient; demographics are stored encrypted, MRN and name searchable only
/// through blind indexes.
pub async fn insert(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
    d: &Demographics,
    now: i64,
) -> Result<(), StoreError> {
    let sealed = seal(phi, id, d)?;
    check_mrn_free(conn, phi, id, &d.mrn).await?;
    // One statement: a refused MRN leaves no row behind.
    sqlx::query(
        "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex, created_at, \
         updated_at, mrn_enc, given_name_enc, family_name_enc, date_of_birth_enc, mrn_index, \
         date_of_birth_index, key_version, index_version) \
         VALUES ($1, $1, '', '', '', $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(d.sex.as_str())
    .bind(now)
    .bind(sealed.mrn.clone())
    .bind(sealed.given_name.clone())
    .bind(sealed.family_name.clone())
    .bind(sealed.date_of_birth.clone())
    .bind(&sealed.mrn_index)
    .bind(&sealed.date_of_birth_index)
    .bind(sealed.key_version)
    .bind(sealed.index_version)
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::unique(e, "mrn"))?;
    write_name_tokens(conn, id, &sealed.name_tokens).await
}

/// Replaces a patient's demographics.
pub async fn update(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
    d: &Demographics,
    now: i64,
) -> Result<(), StoreError> {
    let sealed = seal(phi, id, d)?;
    check_mrn_free(conn, phi, id, &d.mrn).await?;
    // One statement: a refused MRN changes nothing.
    let r = sqlx::query(
        "UPDATE patients SET sex = $2, updated_at = $3, mrn = $1, given_name = '', \
         family_name = '', date_of_birth = '', mrn_enc = $4, given_name_enc = $5, \
         family_name_enc = $6, date_of_birth_enc = $7, mrn_index = $8, \
         date_of_birth_index = $9, key_version = $10, index_version = $11 WHERE id = $1",
    )
    .bind(id)
    .bind(d.sex.as_str())
    .bind(now)
    .bind(sealed.mrn.clone())
    .bind(sealed.given_name.clone())
    .bind(sealed.family_name.clone())
    .bind(sealed.date_of_birth.clone())
    .bind(&sealed.mrn_index)
    .bind(&sealed.date_of_birth_index)
    .bind(sealed.key_version)
    .bind(sealed.index_version)
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::unique(e, "mrn"))?;
    if r.rows_affected() != 1 {
        return Err(StoreError::NotFound("patient"));
    }
    write_name_tokens(conn, id, &sealed.name_tokens).await
}

/// Encrypts up to `batch` patient rows still held in plaintext (written before encryption at
/// rest), in the caller's transaction, and blanks their plaintext columns. Returns how many it
/// encrypted; call until it returns 0. Each batch commits on its own, so an interrupted run
/// resumes where it stopped.
pub async fn encrypt_plaintext(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    batch: i64,
) -> Result<u64, StoreError> {
    #[derive(FromRow)]
    struct Plain {
        id: String,
        mrn: String,
        given_name: String,
        family_name: String,
        date_of_birth: String,
        sex: String,
    }
    let rows: Vec<Plain> = sqlx::query_as(
        "SELECT id, mrn, given_name, family_name, date_of_birth, sex FROM patients \
         WHERE key_version IS NULL ORDER BY id LIMIT $1",
    )
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    let mut n = 0;
    for p in rows {
        let corrupt = || StoreError::Corrupt(format!("patient {} has an invalid field", p.id));
        let d = Demographics {
            mrn: p.mrn.clone(),
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            date_of_birth: parse_date(&p.date_of_birth).ok_or_else(corrupt)?,
            sex: Sex::parse(&p.sex).ok_or_else(corrupt)?,
        };
        let sealed = seal(phi, &p.id, &d)?;
        n += write_sealed(conn, &p.id, &sealed).await?;
    }
    Ok(n)
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
pub async fn get(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
) -> Result<Option<Patient>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM patients WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => {
            let teams = care_team_ids(conn, id).await?;
            Ok(Some(r.into_patient(phi, teams)?))
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

/// Whether the patient exists and, if so, whether the user is on one of the patient's care
/// teams: both in one query (authorisation runs on every PHI request).
pub async fn care_team_standing(
    conn: &mut AnyConnection,
    user_id: &str,
    patient_id: &str,
) -> Result<Option<bool>, StoreError> {
    let (exists, on_team): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM patients WHERE id = $1), \
         (SELECT COUNT(*) FROM patient_care_teams p JOIN care_team_members m \
          ON m.team_id = p.team_id WHERE p.patient_id = $1 AND m.user_id = $2)",
    )
    .bind(patient_id)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok((exists > 0).then_some(on_team > 0))
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

/// Patients matching `s`, by family name then given name.
pub async fn search(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    s: &Search,
) -> Result<Vec<Patient>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM patients WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mrn_tokens: Vec<String> = s
        .mrn
        .as_deref()
        .map(|m| phi.index_tokens("mrn", m))
        .unwrap_or_default();
    if !mrn_tokens.is_empty() {
        let ps: Vec<String> = mrn_tokens.iter().map(|_| next()).collect();
        sql += &format!(" AND mrn_index IN ({})", ps.join(", "));
    }
    let query = s.name.as_deref().map(str::to_lowercase);
    // Each row's name tokens are all of one blind-index version: it matches when every gram
    // matches under that version, so tokens of every loaded version are offered.
    let query_gram_set = query.as_deref().map(query_grams).unwrap_or_default();
    let grams: Vec<String> = query_gram_set
        .iter()
        .flat_map(|g| phi.index_tokens("name", g))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !grams.is_empty() {
        let ps: Vec<String> = grams.iter().map(|_| next()).collect();
        sql += &format!(
            " AND id IN (SELECT patient_id FROM patient_name_index WHERE token IN ({}) \
             GROUP BY patient_id HAVING COUNT(*) = {})",
            ps.join(", "),
            query_gram_set.len()
        );
    }
    let dob_tokens: Vec<String> = s
        .date_of_birth
        .map(|d| phi.index_tokens("date_of_birth", &format_date(d)))
        .unwrap_or_default();
    if !dob_tokens.is_empty() {
        let ps: Vec<String> = dob_tokens.iter().map(|_| next()).collect();
        sql += &format!(" AND date_of_birth_index IN ({})", ps.join(", "));
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
    let mut q = sqlx::query_as::<_, Row>(&sql);
    for t in &mrn_tokens {
        q = q.bind(t.clone());
    }
    for g in &grams {
        q = q.bind(g.clone());
    }
    for t in &dob_tokens {
        q = q.bind(t.clone());
    }
    if let Some(x) = s.sex {
        q = q.bind(x.as_str());
    }
    if let Some(u) = &s.care_team_member {
        q = q.bind(u.clone());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut found = Vec::with_capacity(rows.len());
    for r in rows {
        let p = r.into_patient(phi, Vec::new())?;
        let d = &p.demographics;
        let name_matches = query.as_deref().is_none_or(|q| {
            d.given_name.to_lowercase().contains(q)
                || d.family_name.to_lowercase().contains(q)
                || full_name(&d.given_name, &d.family_name).contains(q)
        });
        if name_matches {
            found.push(p);
        }
    }
    found.sort_by(|a, b| {
        (
            &a.demographics.family_name,
            &a.demographics.given_name,
            &a.id,
        )
            .cmp(&(
                &b.demographics.family_name,
                &b.demographics.given_name,
                &b.id,
            ))
    });
    let offset = usize::try_from(s.offset).unwrap_or(0);
    let limit = usize::try_from(s.limit).unwrap_or(0);
    let mut page: Vec<Patient> = found.into_iter().skip(offset).take(limit).collect();
    let mut teams = care_team_ids_of(conn, page.iter().map(|p| p.id.as_str())).await?;
    for p in &mut page {
        p.care_team_ids = teams.remove(&p.id).unwrap_or_default();
    }
    Ok(page)
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

/// Re-encrypts up to `batch` patient rows sealed under a data key older than `phi`'s current
/// one, in the caller's transaction. A row changed by someone else since it was read (the
/// server keeps serving) is left alone: that writer already used a current key, or the next
/// batch picks it up. Returns how many rows it re-encrypted; call until it returns 0. Each batch
/// commits on its own, so an interrupted run resumes where it stopped.
pub async fn reencrypt(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    batch: i64,
) -> Result<u64, StoreError> {
    let current = i64::from(phi.write_version(TABLE)?);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM patients WHERE key_version < $1 ORDER BY id LIMIT $2"
    ))
    .bind(current)
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    let mut n = 0;
    for r in rows {
        let seen = r.given_name_enc.clone().unwrap_or_default();
        let p = r.into_patient(phi, Vec::new())?;
        let sealed = seal(phi, &p.id, &p.demographics)?;
        let done = sqlx::query(
            "UPDATE patients SET mrn_enc = $2, given_name_enc = $3, family_name_enc = $4, \
             date_of_birth_enc = $5, key_version = $6 WHERE id = $1 AND given_name_enc = $7",
        )
        .bind(&p.id)
        .bind(sealed.mrn)
        .bind(sealed.given_name)
        .bind(sealed.family_name)
        .bind(sealed.date_of_birth)
        .bind(sealed.key_version)
        .bind(seen)
        .execute(&mut *conn)
        .await?;
        n += done.rows_affected();
    }
    Ok(n)
}

/// Re-indexes up to `batch` patient rows whose blind indexes (MRN, date of birth, name tokens)
/// were computed under a blind-index key older than `phi`'s newest, in the caller's
/// transaction. A row changed by someone else since it was read (the server keeps serving) is
/// left alone: that writer indexed it under the newest key, or the next batch picks it up.
/// Returns how many rows it re-indexed; call until it returns 0. Each batch commits on its own,
/// so an interrupted run resumes where it stopped.
pub async fn reindex(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    batch: i64,
) -> Result<u64, StoreError> {
    let newest = i64::from(phi.index_version());
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM patients WHERE key_version IS NOT NULL AND index_version < $1 \
         ORDER BY id LIMIT $2"
    ))
    .bind(newest)
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    let mut n = 0;
    for r in rows {
        let seen = r.given_name_enc.clone().unwrap_or_default();
        let p = r.into_patient(phi, Vec::new())?;
        let d = &p.demographics;
        let dob = format_date(d.date_of_birth);
        let tokens: BTreeSet<String> =
            name_grams(&full_name(d.given_name.trim(), d.family_name.trim()))
                .iter()
                .map(|g| phi.index_token("name", g))
                .collect();
        let done = sqlx::query(
            "UPDATE patients SET mrn_index = $2, date_of_birth_index = $3, index_version = $4 \
             WHERE id = $1 AND given_name_enc = $5 AND index_version < $4",
        )
        .bind(&p.id)
        .bind(phi.index_token("mrn", &d.mrn))
        .bind(phi.index_token("date_of_birth", &dob))
        .bind(newest)
        .bind(seen)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::unique(e, "mrn"))?;
        if done.rows_affected() == 1 {
            write_name_tokens(conn, &p.id, &tokens).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Patient rows indexed under a blind-index key older than `newest`.
pub async fn rows_under_older_index(
    conn: &mut AnyConnection,
    newest: u32,
) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM patients WHERE key_version IS NOT NULL AND index_version < $1",
    )
    .bind(i64::from(newest))
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// Patient rows still sealed under a data key older than `current`.
pub async fn rows_under_older_keys(
    conn: &mut AnyConnection,
    current: u32,
) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM patients WHERE key_version < $1")
        .bind(i64::from(current))
        .fetch_one(conn)
        .await?;
    Ok(n)
}
