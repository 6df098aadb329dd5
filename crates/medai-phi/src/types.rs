//! The span and type vocabulary shared by detection, surrogates and evaluation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kinds of identifier medai removes, named as in the ASQ-PHI corpus where it has a name for
/// them (so evaluation needs no mapping), and after the Safe Harbor list otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhiType {
    /// Names of patients, relatives and clinicians.
    Name,
    /// Geographic units smaller than a state: street, city, county, ZIP, named facilities.
    GeographicLocation,
    /// Every element of a date except the year alone.
    Date,
    /// An age over 89.
    Age,
    /// Telephone numbers.
    PhoneNumber,
    /// Fax numbers.
    FaxNumber,
    /// Email addresses.
    EmailAddress,
    /// Social security numbers.
    SocialSecurityNumber,
    /// Medical record numbers.
    MedicalRecordNumber,
    /// Health plan, insurance and beneficiary numbers.
    HealthPlanBeneficiaryNumber,
    /// Account numbers.
    AccountNumber,
    /// Certificate and licence numbers (including DEA and NPI).
    CertificateLicenseNumber,
    /// Vehicle identifiers and serial numbers, including licence plates.
    VehicleIdentifier,
    /// Device identifiers and serial numbers.
    DeviceIdentifier,
    /// Web addresses.
    Url,
    /// IP addresses.
    IpAddress,
    /// Any other labelled identifying number or code.
    UniqueIdentifier,
}

impl PhiType {
    /// Every type, in declaration order.
    pub const ALL: [PhiType; 17] = [
        PhiType::Name,
        PhiType::GeographicLocation,
        PhiType::Date,
        PhiType::Age,
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

    /// The stable upper-case name used in JSON, the CLI and the evaluation corpus.
    pub fn as_str(self) -> &'static str {
        match self {
            PhiType::Name => "NAME",
            PhiType::GeographicLocation => "GEOGRAPHIC_LOCATION",
            PhiType::Date => "DATE",
            PhiType::Age => "AGE",
            PhiType::PhoneNumber => "PHONE_NUMBER",
            PhiType::FaxNumber => "FAX_NUMBER",
            PhiType::EmailAddress => "EMAIL_ADDRESS",
            PhiType::SocialSecurityNumber => "SOCIAL_SECURITY_NUMBER",
            PhiType::MedicalRecordNumber => "MEDICAL_RECORD_NUMBER",
            PhiType::HealthPlanBeneficiaryNumber => "HEALTH_PLAN_BENEFICIARY_NUMBER",
            PhiType::AccountNumber => "ACCOUNT_NUMBER",
            PhiType::CertificateLicenseNumber => "CERTIFICATE_LICENSE_NUMBER",
            PhiType::VehicleIdentifier => "VEHICLE_IDENTIFIER",
            PhiType::DeviceIdentifier => "DEVICE_IDENTIFIER",
            PhiType::Url => "URL",
            PhiType::IpAddress => "IP_ADDRESS",
            PhiType::UniqueIdentifier => "UNIQUE_IDENTIFIER",
        }
    }
}

impl fmt::Display for PhiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a type name that is not one of [`PhiType::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown PHI type {0:?}")]
pub struct UnknownPhiType(String);

impl FromStr for PhiType {
    type Err = UnknownPhiType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhiType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPhiType(s.chars().take(40).collect()))
    }
}

/// One identifier found in a text: `text[start..end]` (byte offsets, always on UTF-8 character
/// boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// What kind of identifier it is.
    #[serde(rename = "type")]
    pub phi_type: PhiType,
    /// How sure the rule that found it is, in 0..=1.
    pub confidence: f32,
}

impl Span {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty span (never produced by the detector).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in PhiType::ALL {
            assert_eq!(t.as_str().parse::<PhiType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!("PASSPORT".parse::<PhiType>().is_err());
    }
}
