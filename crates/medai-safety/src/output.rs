//! The output check: an answer should only contain identifiers the clinician's own request
//! carried (the originals in the re-identification map). Anything else shaped like an
//! identifier — a record number, phone number, e-mail, web address — may be a leak from the
//! model's training data or another patient, so it is masked and counted.
//!
//! Only identifier-shaped types are checked. Names, places, dates and ages are not: a model's
//! answer legitimately names drugs, eponyms, guideline bodies and years, and masking those would
//! destroy the answer while catching little (names of other patients are the province of the
//! de-identification on the way in).

use medai_phi::{Detector, PhiType};
use serde::Serialize;
use std::collections::BTreeMap;

/// The types the output check masks by default.
pub const CHECKED_TYPES: [PhiType; 13] = [
    PhiType::PhoneNumber,
    PhiType::FaxNumber,
    PhiType::EmailAddress,
    PhiType::SocialSecurityNumber,
    PhiType::MedicalRecordNumber,
    PhiType::HealthPlanBeneficiaryNumber,
    PhiType::AccountNumber,
    PhiType::CertificateLicenseNumber,
    PhiType::VehicleIdentifier,
    PhiType::DeviceIdentifier,
    PhiType::Url,
    PhiType::IpAddress,
    PhiType::UniqueIdentifier,
];

/// An answer after the output check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Masked {
    /// The answer with every unknown identifier replaced by `[REDACTED <TYPE>]`.
    pub text: String,
    /// How many identifiers were masked (the increment of `medai_phi_leak_suspected_total`).
    pub masked: usize,
    /// The masked identifiers by type.
    pub by_type: BTreeMap<PhiType, usize>,
}

/// Masks every identifier-shaped span of `answer` (see [`CHECKED_TYPES`]) that is not one of
/// the `known` values. A span counts as known when, ignoring case and punctuation, it equals a
/// known value, is part of one ("12345" of "MRN 12345"), or contains one and no other digits
/// ("MRN: 12345" for "12345").
pub fn mask_unknown_identifiers(answer: &str, known: &[&str]) -> Masked {
    mask_with(&Detector::new(), &CHECKED_TYPES, answer, known)
}

/// [`mask_unknown_identifiers`] with a given detector and set of checked types.
pub fn mask_with(detector: &Detector, types: &[PhiType], answer: &str, known: &[&str]) -> Masked {
    let known: Vec<(String, String)> = known
        .iter()
        .map(|k| (normalise(k), digits(k)))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    let mut text = String::with_capacity(answer.len());
    let mut by_type: BTreeMap<PhiType, usize> = BTreeMap::new();
    let mut masked = 0usize;
    let mut last = 0usize;
    for span in detector.detect(answer) {
        if !types.contains(&span.phi_type) {
            continue;
        }
        let Some(value) = answer.get(span.start..span.end) else {
            continue;
        };
        if is_known(value, &known) {
            continue;
        }
        text.push_str(answer.get(last..span.start).unwrap_or(""));
        text.push_str("[REDACTED ");
        text.push_str(span.phi_type.as_str());
        text.push(']');
        last = span.end;
        masked += 1;
        *by_type.entry(span.phi_type).or_default() += 1;
    }
    text.push_str(answer.get(last..).unwrap_or(""));
    Masked {
        text,
        masked,
        by_type,
    }
}

fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn is_known(value: &str, known: &[(String, String)]) -> bool {
    let v = normalise(value);
    if v.is_empty() {
        return true;
    }
    let d = digits(value);
    known.iter().any(|(k, kd)| {
        *k == v || k.contains(&v) || (v.contains(k.as_str()) && d == *kd && !kd.is_empty())
    })
}
