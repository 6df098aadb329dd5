//! Benchmark (a bench binary, not a timed test): triage throughput and per-note latency on 2 KB
//! clinical notes, with and without red flags, and the output check on a 2 KB answer.
//! `cargo bench -p medai-safety --bench triage`.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmark harness"
)]

use medai_safety::{mask_unknown_identifiers, RuleSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Clinical sentences: most are ordinary history, examination and plan; the negated and
/// historical ones exercise the context cues.
const QUIET: &[&str] = &[
    "67 y/o M with HTN, T2DM (HbA1c 8.2%) and CKD stage 3, on metformin 500 mg BID and lisinopril 20 mg daily.",
    "Denies chest pain, diaphoresis or SOB; no fever, chills or night sweats.",
    "PMH: MI in 2015, stable since; h/o stroke 2019 with residual left arm weakness.",
    "Prior anaphylaxis to penicillin as a child, now well; carries an EpiPen.",
    "Exam: alert and oriented x3, HR 78, BP 132/84, RR 16, SpO2 97% on RA, T 36.8.",
    "CBC: WBC 7.2, Hgb 13.1, Plt 245; BMP: Na 139, K 4.1, Cr 1.1.",
    "Plan: continue current medications, repeat labs in 3 months, follow up in clinic.",
    "Discussed return precautions for chest pain, facial droop or slurred speech.",
    "Mood good, denies SI/HI, sleeping well, enjoys gardening with his grandchildren.",
    "What are the warning signs of sepsis that I should teach the family?",
];
const FLAGGED: &[&str] = &[
    "Now c/o crushing chest pain radiating to the left arm with diaphoresis since 30 minutes.",
    "Woke up with sudden left facial droop and slurred speech, LKW 23:00.",
];

fn note(seed: usize, target: usize, with_flag: bool) -> String {
    let mut out = String::with_capacity(target + 200);
    let mut k = seed;
    if with_flag {
        out.push_str(FLAGGED[seed % FLAGGED.len()]);
        out.push(' ');
    }
    while out.len() < target {
        out.push_str(QUIET[k % QUIET.len()]);
        out.push(' ');
        k = k.wrapping_mul(7).wrapping_add(3);
    }
    // cut at a word boundary: a cut word ("warning si…") would be a different text
    while out.len() > target {
        out.pop();
    }
    while out.ends_with(|c: char| !c.is_whitespace()) {
        out.pop();
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn bench(name: &str, rules: &RuleSet, notes: &[String]) {
    for n in notes.iter().take(50) {
        black_box(rules.triage(n));
    }
    let mut lat = Vec::with_capacity(notes.len());
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut flagged = 0usize;
    for n in notes {
        let t = Instant::now();
        let r = black_box(rules.triage(black_box(n)));
        lat.push(t.elapsed());
        bytes += n.len();
        flagged += usize::from(r.flagged);
    }
    let total = started.elapsed();
    lat.sort();
    println!(
        "{name:<28} {:>7} notes  {:>8.1} notes/s  {:>7.2} MB/s  p50 {:>7.1} µs  p99 {:>7.1} µs  flagged {flagged}",
        notes.len(),
        notes.len() as f64 / total.as_secs_f64(),
        bytes as f64 / total.as_secs_f64() / 1e6,
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let t = Instant::now();
    let rules = RuleSet::builtin().unwrap();
    println!(
        "rule set {} ({} rules) compiled in {:.2} ms",
        rules.version(),
        rules.rules().len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let quiet: Vec<String> = (0..5000).map(|s| note(s, 2048, false)).collect();
    let flagged: Vec<String> = (0..5000).map(|s| note(s, 2048, true)).collect();
    bench("2 KB notes, no red flag", &rules, &quiet);
    bench("2 KB notes, one red flag", &rules, &flagged);

    let answer = note(1, 2048, false) + " Call 555-867-5309 or see https://example.org/p/123.";
    let known = ["555-867-5309"];
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(mask_unknown_identifiers(black_box(&answer), &known));
    }
    let per = t.elapsed() / n;
    println!(
        "output check, 2 KB answer    {:>7.1} µs per answer",
        per.as_secs_f64() * 1e6
    );
}
