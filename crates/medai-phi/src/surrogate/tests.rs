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

fn has_word(text: &str, word: &str) -> bool {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w == word)
}

fn name_span(text: &str, word: &str) -> Span {
    let start = text.find(word).unwrap();
    Span {
        start,
        end: start + word.len(),
        phi_type: PhiType::Name,
        confidence: 1.0,
    }
}

#[test]
fn no_surrogate_is_a_value_of_the_same_text() {
    // "Quimby" is on the surrogate list: as the stand-in for "Test" it would send the real
    // family name to the model.
    let text = "Patient name: Test Quimby\n";
    let spans = [name_span(text, "Test"), name_span(text, "Quimby")];
    for seed in 0..400 {
        let mut v = Vault::with_seed(seed);
        let out = v.deidentify_spans(text, &spans);
        for original in ["test", "quimby"] {
            assert!(!has_word(&out.text, original), "seed {seed}: {}", out.text);
        }
        assert_eq!(v.reidentify(&out.text), text);
    }
}

#[test]
fn no_surrogate_is_a_value_replaced_in_an_earlier_text() {
    let first = "Seen with Vance and Quimby.";
    let second = "Test called back.";
    for seed in 0..400 {
        let mut v = Vault::with_seed(seed);
        let a = v.deidentify_spans(
            first,
            &[name_span(first, "Vance"), name_span(first, "Quimby")],
        );
        let b = v.deidentify_spans(second, &[name_span(second, "Test")]);
        for original in ["vance", "quimby"] {
            assert!(!has_word(&b.text, original), "seed {seed}: {}", b.text);
        }
        assert_eq!(v.reidentify(&a.text), first);
        assert_eq!(v.reidentify(&b.text), second);
    }
}
