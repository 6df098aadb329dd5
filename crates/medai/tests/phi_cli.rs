//! `medai phi` as a user runs it: the detector's figures on the ASQ-PHI development corpus
//! (the goals of the PHI issue), JSON-lines detection with byte offsets, de-identification, and
//! bad input.

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use serde_json::Value;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn medai(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_medai"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/phi/asq-phi-dev.txt")
}

#[test]
fn eval_on_the_development_corpus_meets_the_goals() {
    let path = corpus();
    assert!(
        path.exists(),
        "the evaluation corpus {} is missing (../shared beside the checkout)",
        path.display()
    );
    let o = medai(
        &["phi", "eval", "--asq", path.to_str().unwrap(), "--json"],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let overall = &report["overall"];
    let num = |v: &Value| v.as_f64().unwrap();
    assert_eq!(report["documents"], 616);
    assert!(num(&overall["value_recall"]) >= 0.99, "{overall}");
    assert!(num(&overall["char_precision"]) >= 0.95, "{overall}");
    assert!(num(&overall["over_redaction"]) <= 0.05, "{overall}");
    assert!(num(&report["seconds"]) >= 0.0);
    // every type with at least ten tagged values reaches 0.98
    let text = std::fs::read_to_string(&path).unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("{\"identifier_type\""))
    {
        let tag: Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(tag["identifier_type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(counts.len() >= 10);
    for (t, n) in counts.iter().filter(|(_, n)| **n >= 10) {
        let scores = &report["by_type"][t];
        for key in [
            "value_recall",
            "char_recall",
            "char_precision",
            "over_redaction",
        ] {
            let v = num(&scores[key]);
            assert!((0.0..=1.0).contains(&v), "{t} {key} {v}");
        }
        if t == "EMAIL_ADDRESS" {
            // The corpus tags the plain word "email" once ("sent an email on May 5th"); that is
            // no address and is rightly left alone. Every tagged address is found (checked below).
            continue;
        }
        assert!(
            num(&scores["value_recall"]) >= 0.98,
            "{t} ({n} values): {scores}"
        );
    }
    let o = medai(
        &[
            "phi",
            "eval",
            "--asq",
            path.to_str().unwrap(),
            "--json",
            "--show-misses",
        ],
        "",
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let missed_addresses: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("\"missed\"") && l.contains("EMAIL_ADDRESS") && l.contains('@'))
        .collect();
    assert!(missed_addresses.is_empty(), "{missed_addresses:?}");
    let email_misses = out
        .lines()
        .filter(|l| l.contains("\"missed\"") && l.contains("EMAIL_ADDRESS"))
        .count();
    assert_eq!(email_misses, 1, "{out}");
    // the table form names every type and the overall line
    let o = medai(&["phi", "eval", "--asq", path.to_str().unwrap()], "");
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(
        table.contains("OVERALL") && table.contains("GEOGRAPHIC_LOCATION"),
        "{table}"
    );
}

#[test]
fn detect_reports_byte_offsets_of_utf8_text() {
    let input = concat!(
        r#"{"id": "n1", "text": "Zoë Müller’s visit: seen by Dr. Lee on 21st of February (MRN: CLV-123456)."}"#,
        "\n",
        r#"{"id": 2, "text": "A 55-year-old with HbA1c 7.2% on metformin 500 mg."}"#,
        "\n"
    );
    let o = medai(&["phi", "detect"], input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "n1");
    let text = "Zoë Müller’s visit: seen by Dr. Lee on 21st of February (MRN: CLV-123456).";
    let spans = lines[0]["spans"].as_array().unwrap();
    let found: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| {
            let (start, end) = (
                s["start"].as_u64().unwrap() as usize,
                s["end"].as_u64().unwrap() as usize,
            );
            assert_eq!(&text[start..end], s["text"].as_str().unwrap());
            (s["text"].as_str().unwrap(), s["type"].as_str().unwrap())
        })
        .collect();
    assert!(found.contains(&("Dr. Lee", "NAME")), "{found:?}");
    assert!(found.contains(&("21st of February", "DATE")), "{found:?}");
    assert!(
        found.contains(&("CLV-123456", "MEDICAL_RECORD_NUMBER")),
        "{found:?}"
    );
    assert_eq!(
        lines[1]["spans"],
        serde_json::json!([]),
        "a dose, a lab value and an age under 90 are not PHI"
    );
}

#[test]
fn bad_lines_are_reported_and_the_good_ones_still_processed() {
    let input = "{\"id\": 1, \"text\": \"Call John Smith at (555) 123-4567\"}\nnot json\n{\"id\": 3, \"text\": 5}\n{\"id\": 4}\n{\"id\": 5, \"text\": \"nothing\"}\n";
    let o = medai(&["phi", "detect"], input);
    assert!(!o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0]["spans"].as_array().unwrap().len(), 2);
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[2]["error"].as_str().unwrap().contains("not a string"));
    assert!(lines[3]["error"].as_str().unwrap().contains("no \"text\""));
    assert_eq!(lines[4]["id"], 5);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("3 of 5 input lines"), "{err}");
    assert!(!err.contains("John"), "errors never echo the text: {err}");
    // a missing corpus and a file that is not a corpus are clear errors
    let o = medai(&["phi", "eval", "--asq", "/nonexistent/corpus.txt"], "");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot open"));
    let o = medai(&["phi", "eval", "--asq", env!("CARGO_MANIFEST_DIR")], "");
    assert!(!o.status.success());
}

#[test]
fn deidentify_keeps_a_conversation_consistent_and_leaks_nothing() {
    let input =
        "John Smith was seen on 2/21/23 at Mt. Sinai.\nMr. Smith called (555) 123-4567 about it.\n";
    let o = medai(&["phi", "deidentify", "--conversation"], input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    for secret in ["John", "Smith", "2/21/23", "Sinai", "123-4567"] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    let surname = lines[0].split(' ').nth(1).unwrap();
    assert!(
        lines[1].starts_with(&format!("Mr. {surname} called (")),
        "{out}"
    );
    // JSON lines in, JSON lines out
    let o = medai(
        &["phi", "deidentify"],
        "{\"id\": 7, \"text\": \"Email sarah.p@medsite.com\"}\n",
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["id"], 7);
    assert!(!v["text"].as_str().unwrap().contains("sarah.p@medsite.com"));
}
