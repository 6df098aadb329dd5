//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, run with `cargo fuzz`), shared with
//! the seeded property test that CI runs on stable Rust. Each panics on a broken invariant.

#![allow(
    clippy::panic,
    reason = "a fuzz body reports a broken invariant by panicking"
)]

use medai_phi::{Detector, Vault};

/// Detection on any bytes: spans sorted, disjoint, non-empty, on character boundaries.
pub fn detect(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let spans = Detector::new().detect(&text);
    let mut last = 0;
    for s in &spans {
        assert!(
            s.start >= last && s.start < s.end && s.end <= text.len(),
            "bad span {s:?}"
        );
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        assert!((0.0..=1.0).contains(&s.confidence));
        last = s.end;
    }
}

/// De-identify then re-identify any bytes gives the text back; the first eight bytes seed the
/// vault.
pub fn round_trip(data: &[u8]) {
    let (seed, rest) = data.split_at(data.len().min(8));
    let mut seed_bytes = [0u8; 8];
    seed_bytes[..seed.len()].copy_from_slice(seed);
    let text = String::from_utf8_lossy(rest);
    let mut vault = Vault::with_seed(u64::from_le_bytes(seed_bytes));
    let detector = Detector::new();
    let out = vault.deidentify(&detector, &text);
    let back = vault.reidentify(&out.text);
    if back != text {
        let originals: Vec<(&str, medai_phi::PhiType)> = detector
            .detect(&text)
            .iter()
            .map(|s| (&text[s.start..s.end], s.phi_type))
            .collect();
        let surrogates: Vec<&str> = out
            .spans
            .iter()
            .map(|s| &out.text[s.start..s.end])
            .collect();
        panic!("round trip changed the text\n spans: {originals:?}\n surrogates: {surrogates:?}");
    }
}
