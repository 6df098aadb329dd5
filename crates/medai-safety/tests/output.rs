//! The output check: unknown identifier-shaped values are masked and counted; the values the
//! request carried stay.

#![allow(clippy::unwrap_used, reason = "test code")]

use medai_phi::PhiType;
use medai_safety::mask_unknown_identifiers;
use proptest::prelude::*;

#[test]
fn unknown_identifiers_are_masked_and_counted() {
    let answer = "Call the clinic at (555) 201-7788 or write to j.smith@example.org; the chart MRN: 8834201 shows it.";
    let m = mask_unknown_identifiers(answer, &[]);
    println!("{}", m.text);
    assert_eq!(m.masked, 3, "{}", m.text);
    assert_eq!(m.by_type.get(&PhiType::PhoneNumber), Some(&1));
    assert_eq!(m.by_type.get(&PhiType::EmailAddress), Some(&1));
    assert_eq!(m.by_type.get(&PhiType::MedicalRecordNumber), Some(&1));
    assert!(m.text.contains("[REDACTED PHONE_NUMBER]"), "{}", m.text);
    assert!(m.text.contains("[REDACTED EMAIL_ADDRESS]"), "{}", m.text);
    assert!(
        m.text.contains("[REDACTED MEDICAL_RECORD_NUMBER]"),
        "{}",
        m.text
    );
    assert!(
        !m.text.contains("201-7788")
            && !m.text.contains("example.org")
            && !m.text.contains("8834201")
    );
    assert!(m.text.starts_with("Call the clinic at "));
}

#[test]
fn known_values_stay() {
    let answer =
        "Her MRN 8834201 is on file; reach her at (555) 201-7788. Another MRN 7712345 appeared.";
    let m = mask_unknown_identifiers(answer, &["8834201", "555-201-7788"]);
    assert_eq!(m.masked, 1, "{}", m.text);
    assert!(m.text.contains("8834201"));
    assert!(
        m.text.contains("(555) 201-7788"),
        "punctuation differences still match: {}",
        m.text
    );
    assert!(!m.text.contains("7712345"));
}

#[test]
fn ordinary_answers_are_unchanged() {
    let answer = "Start aspirin 325 mg, obtain an ECG within 10 minutes, and repeat troponin at 3 h (2021 AHA/ACC guideline). Dr. Smith's approach on 03/04 is reasonable.";
    let m = mask_unknown_identifiers(answer, &[]);
    assert_eq!(m.masked, 0, "{}", m.text);
    assert_eq!(m.text, answer);
    assert!(m.by_type.is_empty());
}

proptest! {
    #[test]
    fn never_panics_and_known_values_are_never_masked(text in "\\PC{0,300}") {
        let m = mask_unknown_identifiers(&text, &[]);
        prop_assert_eq!(m.masked, m.by_type.values().sum::<usize>());
        if m.masked == 0 {
            prop_assert_eq!(&m.text, &text);
        }
        // everything the detector found, declared known, stays as it was
        let detected: Vec<String> = medai_phi::Detector::new()
            .detect(&text)
            .iter()
            .map(|s| text[s.start..s.end].to_string())
            .collect();
        let known: Vec<&str> = detected.iter().map(String::as_str).collect();
        let m = mask_unknown_identifiers(&text, &known);
        prop_assert_eq!(m.masked, 0);
        prop_assert_eq!(&m.text, &text);
    }
}
