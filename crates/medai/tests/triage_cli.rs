//! `medai triage` as a user runs it: `check` on JSON lines (results in input order, bad lines
//! reported by number with a non-zero exit), custom and invalid rule files, and `eval` on the
//! built-in, held-out and failing case files.

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

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../medai-safety/data")
        .join(file)
}

const MINIMAL_RULES: &str = r#"
[ruleset]
version = "test-1"
[cues]
negation_window = 5
negation_near_window = 2
negation_post_window = 3
history_window = 5
hypothetical_window = 8
negation_pre = ["no", "denies"]
negation_near = ["not"]
negation_post = ["denied"]
pseudo = ["no change"]
history_pre = ["history of"]
history_post = ["years ago"]
hypothetical = ["if"]
education = ["warning signs"]
patient_specific = ["pt"]
terminators = ["but"]

[[rule]]
id = "zebra"
version = 1
title = "Zebra"
notice = "Zebra sighted. This is decision support."
[rule.terms]
animal = ["zebra*"]
[[rule.pattern]]
groups = ["animal"]
"#;

#[test]
fn check_writes_one_result_per_line_in_order() {
    let input = concat!(
        r#"{"id": "q1", "text": "58M c/o substernal chest pain x 40 min, diaphoretic"}"#,
        "\n",
        r#"{"id": 2, "text": "Denies chest pain, diaphoresis or SOB."}"#,
        "\n",
        r#"{"id": "q3", "text": "What are the warning signs of stroke?", "expect": []}"#,
        "\n",
        r#"{"id": "q4", "text": "Woke up with L facial droop and slurred speech; endorses SI with a plan"}"#,
        "\n",
    );
    let o = medai(&["triage", "check"], input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines(&o);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0]["id"], "q1");
    assert_eq!(out[0]["flagged"], true);
    assert_eq!(out[0]["rules"], serde_json::json!(["acs"]));
    assert_eq!(out[1]["id"], 2);
    assert_eq!(out[1]["flagged"], false);
    assert_eq!(out[1]["rules"], serde_json::json!([]));
    assert_eq!(out[2]["flagged"], false);
    assert_eq!(
        out[3]["rules"],
        serde_json::json!(["stroke", "suicide_risk"])
    );
}

#[test]
fn check_reports_bad_lines_by_number_and_fails() {
    let input = concat!(
        r#"{"id": 1, "text": "c/o chest pain and SOB"}"#,
        "\n",
        "not json\n",
        r#"{"id": 3}"#,
        "\n",
        "\n",
        r#"{"id": 5, "text": 42}"#,
        "\n",
        r#"{"id": 6, "text": "no red flags here"}"#,
        "\n",
    );
    let o = medai(&["triage", "check", "--input", "-"], input);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for expected in [
        "line 2: not JSON",
        "line 3: no \"text\" field",
        "line 4: empty line",
        "line 5: \"text\" is not a string",
        "4 of 6 input lines",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from {err}");
    }
    let out = lines(&o);
    assert_eq!(
        out.len(),
        6,
        "one output line per input line, nothing skipped"
    );
    assert_eq!(out[0]["flagged"], true);
    assert_eq!(out[1]["line"], 2);
    assert_eq!(out[3]["line"], 4);
    assert_eq!(out[5]["id"], 6);
    assert_eq!(out[5]["flagged"], false);
}

#[test]
fn check_uses_a_rule_file_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rules.toml");
    std::fs::write(&good, MINIMAL_RULES).unwrap();
    let o = medai(
        &["triage", "check", "--rules", good.to_str().unwrap()],
        "{\"id\": 1, \"text\": \"pt saw zebras\"}\n{\"id\": 2, \"text\": \"chest pain and diaphoresis\"}\n{\"id\": 3, \"text\": \"denies zebras\"}\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines(&o);
    assert_eq!(out[0]["rules"], serde_json::json!(["zebra"]));
    assert_eq!(out[1]["flagged"], false, "only the file's rules apply");
    assert_eq!(out[2]["flagged"], false);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        MINIMAL_RULES.replace("This is decision support.", "Call someone."),
    )
    .unwrap();
    let o = medai(&["triage", "check", "--rules", bad.to_str().unwrap()], "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rule \"zebra\", field `notice`"), "{err}");

    let o = medai(
        &["triage", "check", "--rules", "/nonexistent/rules.toml"],
        "",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the rule file"));
}

#[test]
fn eval_on_the_built_in_cases_meets_the_goal() {
    let o = medai(&["triage", "eval"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("OVERALL"), "{text}");
    assert!(text.contains("misclassified:"), "{text}");
    assert!(text.contains(": met"), "{text}");
    for rule in [
        "acs",
        "stroke",
        "anaphylaxis",
        "suicide_risk",
        "sepsis",
        "severe_bleeding",
        "infant_fever",
    ] {
        assert!(text.contains(rule), "{rule} missing from {text}");
    }

    let o = medai(&["triage", "eval", "--json"], "");
    assert!(o.status.success());
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["cases"].as_u64().unwrap() >= 800);
    assert!(report["overall"]["sensitivity"].as_f64().unwrap() >= 0.95);
    assert!(report["overall"]["specificity"].as_f64().unwrap() >= 0.90);
    assert_eq!(report["goal_met"], true);
}

#[test]
fn eval_scores_the_held_out_file_against_the_ci_floor() {
    let path = data("triage-heldout.jsonl");
    let o = medai(
        &[
            "triage",
            "eval",
            "--cases",
            path.to_str().unwrap(),
            "--min-sensitivity",
            "0.92",
            "--min-specificity",
            "0.94",
            "--json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["cases"].as_u64().unwrap() >= 150);
}

#[test]
fn eval_fails_below_the_goal_and_names_the_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        concat!(
            r#"{"id": "fires", "text": "c/o chest pain with diaphoresis", "expect": ["acs"]}"#,
            "\n",
            r#"{"id": "silent-positive", "text": "feels a bit off today", "expect": ["stroke"]}"#,
            "\n",
            r#"{"id": "quiet", "text": "routine follow-up, no complaints", "expect": []}"#,
            "\n",
        ),
    )
    .unwrap();
    let o = medai(&["triage", "eval", "--cases", cases.to_str().unwrap()], "");
    assert!(!o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("silent-positive: expected [stroke] fired []"),
        "{text}"
    );
    assert!(text.contains("NOT MET"), "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("below the goal"));

    std::fs::write(
        &cases,
        "{\"id\": \"a\", \"text\": \"x\", \"expect\": []}\n{\"id\": \"b\", \"text\": \"x\", \"expect\": [\"no_such_rule\"]}\n",
    )
    .unwrap();
    let o = medai(&["triage", "eval", "--cases", cases.to_str().unwrap()], "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 2") && err.contains("no_such_rule"),
        "{err}"
    );

    let o = medai(&["triage", "eval", "--min-sensitivity", "1.5"], "");
    assert!(!o.status.success());
}
