//! Benchmark (a bench binary, not a timed test): detection throughput in MB/s on one core over a
//! mix of clinical text, p50/p99 latency of detection on a 2 KB note, and the cost of the
//! de-identify / re-identify round trip. `cargo bench -p medai-phi --bench phi`.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmark harness"
)]

use medai_phi::{Detector, Vault};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Clinical sentences: about a third carry PHI, the rest is the vocabulary that must not be
/// masked (doses, scores, eponyms, ages under 90, lab values).
const SENTENCES: &[&str] = &[
    "Pt is a 67-year-old male with HTN, T2DM (HbA1c 8.2%) and CKD stage 3, on metformin 500 mg BID and lisinopril 20 mg daily.",
    "Seen by Dr. Emily Hart at St. Mary's Hospital on April 12, 2023 for chest pain radiating to the left arm.",
    "ECG showed sinus rhythm at 78 bpm, QTc 452 ms, no ST elevation; troponin I 0.03 ng/mL, BNP 340 pg/mL.",
    "Family hx of Alzheimer's disease and Wilson's disease; positive Babinski sign on the right, Framingham risk score 18%.",
    "Contact: (555) 678-1234, email john.l@example.com, MRN: CLV-123456, insurance ID HP-987654.",
    "Assessment: acute on chronic systolic heart failure, NYHA class III, EF 35% on echo.",
    "Plan: start furosemide 40 mg IV twice daily, daily weights, strict I/O, fluid restriction 1.5 L/day.",
    "Mrs. L. Hernandez, 92 yo, was transferred from Cedars-Sinai Medical Center, Los Angeles, CA on 03/15/2022.",
    "CBC: WBC 11.2, Hgb 10.1, Plt 245; BMP: Na 134, K 5.1, Cr 1.8 (baseline 1.4), BUN 32.",
    "Discussed with the patient and his daughter Mary Johnson; questions answered, follow-up in 2 weeks at Lakeside Clinic.",
    "Imaging: CXR with bilateral pleural effusions and cephalization, no focal consolidation.",
    "Guidelines from the ACC/AHA recommend an SGLT2 inhibitor in HFrEF regardless of diabetes status.",
    "He lives at 123 Maple St, Springfield, IL 62704 with his wife; former smoker, 30 pack-years, quit in 2015.",
    "Allergies: penicillin (rash), sulfa (hives). Vaccinations up to date per the 2023 schedule.",
    "Labs drawn on Feb 21 showed INR 2.4 on warfarin 5 mg; target 2-3 for atrial fibrillation with CHA2DS2-VASc 4.",
];

fn note(seed: usize, target: usize) -> String {
    let mut out = String::with_capacity(target + 200);
    let mut k = seed;
    while out.len() < target {
        out.push_str(SENTENCES[k % SENTENCES.len()]);
        out.push(' ');
        k = k.wrapping_mul(7).wrapping_add(3);
    }
    out.truncate(out.floor_char_boundary_compat(target));
    out
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for String {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let detector = Detector::new();
    // throughput: 8 MB of notes, one thread
    let notes: Vec<String> = (0..4096).map(|i| note(i, 2048)).collect();
    let bytes: usize = notes.iter().map(String::len).sum();
    let mut spans = 0usize;
    let started = Instant::now();
    for n in &notes {
        spans += black_box(detector.detect(black_box(n))).len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "detect throughput: {:.1} MB/s ({} MB in {:.3} s, one core, {} spans)",
        bytes as f64 / secs / 1e6,
        bytes / 1_000_000,
        secs,
        spans
    );

    // latency on a 2 KB note
    let one = note(11, 2048);
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let t = Instant::now();
        black_box(detector.detect(black_box(&one)));
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "detect latency, {} B note: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        one.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    );

    // the round trip on the same note (fresh conversation each time)
    let mut samples = Vec::with_capacity(2000);
    for i in 0..2000 {
        let t = Instant::now();
        let mut vault = Vault::with_seed(i);
        let out = vault.deidentify(&detector, &one);
        let back = vault.reidentify(&out.text);
        samples.push(t.elapsed());
        assert_eq!(back, one);
    }
    samples.sort();
    println!(
        "de-identify + re-identify, {} B note: p50 {:.1} µs, p99 {:.1} µs",
        one.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
}
