//! The labelled case files scored as CI scores them: the development file meets the goals
//! (sensitivity ≥ 0.95, specificity ≥ 0.90); the held-out file is reported and must stay above
//! the floor CI enforces (0.92 / 0.94): a regression alarm, not the goal (see docs/triage.md).

#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "test code")]

use medai_safety::eval::{evaluate, parse_cases};
use medai_safety::RuleSet;

fn score(file: &str) -> medai_safety::eval::Report {
    let rules = RuleSet::builtin().unwrap();
    let path = format!("{}/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let cases = parse_cases(&text, &rules).unwrap();
    let report = evaluate(&rules, &cases);
    for m in &report.misses {
        println!(
            "{file}: {} expected {:?} fired {:?}",
            m.id, m.expected, m.fired
        );
    }
    println!(
        "{file}: {} cases, sensitivity {:.3}, specificity {:.3}, {:?}",
        report.cases,
        report.overall.sensitivity(),
        report.overall.specificity(),
        report.overall
    );
    report
}

#[test]
fn development_cases_meet_the_goals() {
    let r = score("triage-cases.jsonl");
    assert!(r.cases >= 4200);
    let positives = r.overall.tp + r.overall.fn_;
    // Blind sets bring about 54 % positives; negatives must stay a large share.
    assert!(
        (r.cases - positives) * 100 >= r.cases * 45,
        "at least 45 % negatives"
    );
    assert!(r.overall.sensitivity() >= 0.95, "{:?}", r.overall);
    assert!(r.overall.specificity() >= 0.90, "{:?}", r.overall);
}

#[test]
fn held_out_cases_stay_above_the_ci_floor() {
    let r = score("triage-heldout.jsonl");
    assert!(r.cases >= 600);
    assert!(r.overall.sensitivity() >= 0.92, "{:?}", r.overall);
    assert!(r.overall.specificity() >= 0.94, "{:?}", r.overall);
}
