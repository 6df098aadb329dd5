//! Patients: demographics and the rules that keep them valid.

use serde::{Deserialize, Serialize};
use time::Date;

/// Administrative sex as recorded at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Other.
    Other,
    /// Not known or not recorded.
    Unknown,
}

impl Sex {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Sex::Female, Sex::Male, Sex::Other, Sex::Unknown]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Why patient data is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatientError {
    /// The MRN is empty, too long or has characters outside `A-Z a-z 0-9 -`.
    #[error("mrn must be 1 to 32 characters of letters, digits or '-'")]
    BadMrn,
    /// A name is empty or too long.
    #[error("{0} must be 1 to 100 characters with no control characters")]
    BadName(&'static str),
    /// The date of birth is in the future or before 1880.
    #[error("date_of_birth must be between 1880-01-01 and today")]
    BadBirthDate,
}

/// Checks a medical record number.
pub fn validate_mrn(mrn: &str) -> Result<(), PatientError> {
    let ok = (1..=32).contains(&mrn.len())
        && mrn.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PatientError::BadMrn)
    }
}

/// Checks a given or family name.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), PatientError> {
    let n = name.trim().chars().count();
    if (1..=100).contains(&n) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(PatientError::BadName(field))
    }
}

/// Checks a date of birth against `today`.
pub fn validate_birth_date(dob: Date, today: Date) -> Result<(), PatientError> {
    if dob.year() >= 1880 && dob <= today {
        Ok(())
    } else {
        Err(PatientError::BadBirthDate)
    }
}

/// Demographics of a patient, as given when registering or updating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demographics {
    /// Medical record number, unique within the organisation.
    pub mrn: String,
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Date of birth.
    pub date_of_birth: Date,
    /// Administrative sex.
    pub sex: Sex,
}

impl Demographics {
    /// Validates every field; `today` bounds the date of birth.
    pub fn validate(&self, today: Date) -> Result<(), PatientError> {
        validate_mrn(&self.mrn)?;
        validate_name("given_name", &self.given_name)?;
        validate_name("family_name", &self.family_name)?;
        validate_birth_date(self.date_of_birth, today)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn validation() {
        let today = date!(2026 - 11 - 23);
        let good = Demographics {
            mrn: "MRN-001".into(),
            given_name: "Ana".into(),
            family_name: "García".into(),
            date_of_birth: date!(1950 - 02 - 01),
            sex: Sex::Female,
        };
        assert_eq!(good.validate(today), Ok(()));
        let mut bad = good.clone();
        bad.mrn = "MRN 001".into();
        assert_eq!(bad.validate(today), Err(PatientError::BadMrn));
        let mut bad = good.clone();
        bad.given_name = "  ".into();
        assert_eq!(
            bad.validate(today),
            Err(PatientError::BadName("given_name"))
        );
        let mut bad = good.clone();
        bad.family_name = "a\u{0}b".into();
        assert_eq!(
            bad.validate(today),
            Err(PatientError::BadName("family_name"))
        );
        let mut bad = good;
        bad.date_of_birth = date!(2026 - 11 - 24);
        assert_eq!(bad.validate(today), Err(PatientError::BadBirthDate));
    }

    #[test]
    fn sex_names_round_trip() {
        for s in [Sex::Female, Sex::Male, Sex::Other, Sex::Unknown] {
            assert_eq!(Sex::parse(s.as_str()), Some(s));
        }
        assert_eq!(Sex::parse("F"), None);
    }
}
