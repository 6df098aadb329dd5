use super::*;

fn vault() -> (Detector, Vault) {
    (Detector::new(), Vault::with_seed(7))
}

#[test]
fn round_trip_of_a_clinical_note() {
    let (d, mut v) = vault();
    let text = "Rec mgmt of 92yo M, seen by Dr. John L. at Mt. Sinai on Feb 21, 2023 (MRN: CLV-123456, phone (555) 678-1234, john.l@example.com). Mr. Smith and John Smith agree.";
    let out = v.deidentify(&d, text);
    for needle in [
        "John",
        "Sinai",
        "Feb 21",
        "CLV-123456",
        "678-1234",
        "john.l@",
        "Smith",
        "92",
    ] {
        assert!(
            !out.text.contains(needle),
            "{needle} leaked into {}",
            out.text
        );
    }
    assert!(out.text.contains("90+"));
    assert_eq!(v.reidentify(&out.text), text);
}

#[test]
fn surrogates_lists_each_replacement_and_no_original() {
    let (d, mut v) = vault();
    assert_eq!(v.surrogates().count(), 0);
    let text = "John Smith, MRN 483920, called 555-867-5309.";
    let out = v.deidentify(&d, text);
    let surrogates: Vec<&str> = v.surrogates().collect();
    assert_eq!(surrogates.len(), v.len());
    for s in &surrogates {
        assert!(out.text.contains(s), "{s} not in the de-identified text");
        assert!(!text.contains(s), "{s} is an original");
    }
    for original in ["John", "Smith", "483920", "555-867-5309"] {
        assert!(!surrogates.contains(&original));
    }
}
