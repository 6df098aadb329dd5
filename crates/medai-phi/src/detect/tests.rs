use super::*;

fn found(text: &str) -> Vec<(String, PhiType)> {
    Detector::new()
        .detect(text)
        .into_iter()
        .map(|s| (text[s.start..s.end].to_string(), s.phi_type))
        .collect()
}

#[test]
fn finds_the_common_identifiers() {
    let text = "Rec mgmt of 70yo M w/ CHF, seen by Dr. John L. at Mt. Sinai on Feb 21, 2023 (MRN: CLV-123456).";
    assert_eq!(
        found(text),
        [
            ("Dr. John L.".into(), PhiType::Name),
            ("Mt. Sinai".into(), PhiType::GeographicLocation),
            ("Feb 21, 2023".into(), PhiType::Date),
            ("CLV-123456".into(), PhiType::MedicalRecordNumber),
        ]
    );
}

#[test]
fn clinical_vocabulary_is_not_phi() {
    for text in [
        "Treatment of Rocky Mountain spotted fever in a 7-year-old.",
        "Use of the Glasgow Coma Scale and the Ottawa ankle rules in the ER.",
        "Is Zika a concern for travel to Brazil? Patient lives in Texas.",
        "Management of Bell palsy and Tommy John surgery rehab.",
        "Family history of Wilson's disease, Alzheimer's and Lou Gehrig's disease.",
        "A 55-year-old with HbA1c 7.2% on metformin 500 mg BID, BP 120/80, pain 7/10.",
        "High Framingham risk score; positive Babinski sign; Guillain-Barré syndrome.",
        "Guidelines from Mayo Clinic on statins for a patient in California.",
        "Platelets 150000 cells/uL, 10000 units of heparin, ICD-10 code, COVID-19.",
    ] {
        assert_eq!(found(text), [], "{text}");
    }
}

#[test]
fn written_forms_of_each_type() {
    let cases: &[(&str, &str, PhiType)] = &[
        (
            "Seen on 21st of February.",
            "21st of February",
            PhiType::Date,
        ),
        (
            "Admitted 17-Feb-2023 overnight.",
            "17-Feb-2023",
            PhiType::Date,
        ),
        ("Follow-up on 2/21 please.", "2/21", PhiType::Date),
        (
            "Labs from March 2023 were normal.",
            "March 2023",
            PhiType::Date,
        ),
        ("Discharged 2023-02-21.", "2023-02-21", PhiType::Date),
        ("She is a 92-year-old widow.", "92", PhiType::Age),
        (
            "Fax results to 650-123-4567 today.",
            "650-123-4567",
            PhiType::FaxNumber,
        ),
        (
            "Call +44 20 7946 0958 after six.",
            "+44 20 7946 0958",
            PhiType::PhoneNumber,
        ),
        (
            "Lives at 45 Oak Avenue, Apt 3B, Dayton, OH 45402.",
            "45 Oak Avenue, Apt 3B, Dayton, OH 45402",
            PhiType::GeographicLocation,
        ),
        (
            "Treated at St. Joseph's Hospital in Phoenix on arrival.",
            "St. Joseph's Hospital in Phoenix",
            PhiType::GeographicLocation,
        ),
        (
            "Transferred from our Dallas facility overnight.",
            "Dallas facility",
            PhiType::GeographicLocation,
        ),
        (
            "Portal: https://portal.example.org/p?id=7.",
            "https://portal.example.org/p?id=7",
            PhiType::Url,
        ),
        (
            "Logged from 192.168.10.4 at login.",
            "192.168.10.4",
            PhiType::IpAddress,
        ),
        (
            "DEA number AB1234563 on file.",
            "AB1234563",
            PhiType::CertificateLicenseNumber,
        ),
        (
            "Pacemaker serial no. PM-4432-XK checked.",
            "PM-4432-XK",
            PhiType::DeviceIdentifier,
        ),
        (
            "VIN 1HGCM82633A004352 of the car.",
            "1HGCM82633A004352",
            PhiType::VehicleIdentifier,
        ),
        (
            "Social security 123 45 6789 noted.",
            "123 45 6789",
            PhiType::SocialSecurityNumber,
        ),
        ("A patient named Emily was seen.", "Emily", PhiType::Name),
        (
            "Seen by Dr O'Brien-Smith today.",
            "Dr O'Brien-Smith",
            PhiType::Name,
        ),
    ];
    for (text, expected, t) in cases {
        let got = found(text);
        assert!(got.contains(&(expected.to_string(), *t)), "{text}: {got:?}");
    }
}
