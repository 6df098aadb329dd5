//! `medai triage`: the safety rule set on files and pipes. `check` reads JSON lines
//! `{"id", "text"}` and writes `{"id", "flagged", "rules"}`; `eval` scores labelled cases.
//! Needs no configuration, database or key; never logs the text it reads.

use crate::cli::TriageCommand;
use crate::lines::{open, Lines};
use anyhow::Context as _;
use medai_safety::eval::{self, Confusion, Report};
use medai_safety::RuleSet;
use serde_json::{json, Value};
use std::io::{BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

pub fn run(cmd: TriageCommand) -> anyhow::Result<()> {
    match cmd {
        TriageCommand::Check { rules, input } => check(&load_rules(rules.as_deref())?, &input),
        TriageCommand::Eval {
            rules,
            cases,
            min_sensitivity,
            min_specificity,
            json,
        } => evaluate(
            &load_rules(rules.as_deref())?,
            cases,
            min_sensitivity,
            min_specificity,
            json,
        ),
    }
}

fn load_rules(path: Option<&Path>) -> anyhow::Result<RuleSet> {
    match path {
        Some(p) => {
            RuleSet::from_path(p).with_context(|| format!("rule file {} refused", p.display()))
        }
        None => RuleSet::builtin().context("the built-in rule set is invalid"),
    }
}

/// One input line: its id (a string or number) and text.
fn parse_line(line: &str) -> Result<(Value, String), String> {
    if line.trim().is_empty() {
        return Err("empty line (expected a JSON object {\"id\", \"text\"})".into());
    }
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object {\"id\", \"text\"}".into());
    };
    let id = match obj.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(_) => return Err("\"id\" is not a string or a number".into()),
        None => return Err("no \"id\" field".into()),
    };
    match obj.remove("text") {
        Some(Value::String(text)) => Ok((id, text)),
        Some(_) => Err("\"text\" is not a string".into()),
        None => Err("no \"text\" field".into()),
    }
}

fn check(rules: &RuleSet, input: &Path) -> anyhow::Result<()> {
    let mut lines = Lines::open(input)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut errors = 0usize;
    while let Some((n, line)) = lines.next_line()? {
        let parsed = line.map_err(str::to_string).and_then(parse_line);
        match parsed {
            Ok((id, text)) => {
                let result = rules.triage(&text);
                let ids: Vec<&str> = result.rule_ids().collect();
                writeln!(
                    out,
                    "{}",
                    json!({"id": id, "flagged": result.flagged, "rules": ids})
                )?;
            }
            Err(why) => {
                errors += 1;
                eprintln!("error: line {n}: {why}");
                writeln!(out, "{}", json!({"line": n, "error": why}))?;
            }
        }
    }
    out.flush()?;
    if errors > 0 {
        anyhow::bail!(
            "{errors} of {} input lines could not be read (see the error lines above)",
            lines.number
        );
    }
    Ok(())
}

fn evaluate(
    rules: &RuleSet,
    cases: Option<PathBuf>,
    min_sensitivity: f64,
    min_specificity: f64,
    as_json: bool,
) -> anyhow::Result<()> {
    let (name, text) = match &cases {
        Some(path) => {
            let mut text = String::new();
            open(path)?
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
            (path.display().to_string(), text)
        }
        None => (
            "built-in development cases".to_string(),
            eval::DEVELOPMENT_CASES.to_string(),
        ),
    };
    let cases = eval::parse_cases(&text, rules)
        .with_context(|| format!("{name} is not a triage case file"))?;
    if cases.is_empty() {
        anyhow::bail!("{name} has no cases");
    }
    let report = eval::evaluate(rules, &cases);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let met = report.overall.sensitivity() >= min_sensitivity
        && report.overall.specificity() >= min_specificity;
    if as_json {
        writeln!(
            out,
            "{}",
            json!({
                "rule_set": rules.version(),
                "cases": report.cases,
                "overall": scores(&report.overall),
                "by_rule": report.by_rule.iter().map(|(k, c)| (k.clone(), scores(c))).collect::<serde_json::Map<_, _>>(),
                "misses": report.misses,
                "goal_met": met,
            })
        )?;
    } else {
        table(&mut out, rules, &name, &report)?;
        writeln!(
            out,
            "goal: sensitivity >= {min_sensitivity:.2} and specificity >= {min_specificity:.2}: {}",
            if met { "met" } else { "NOT MET" }
        )?;
    }
    out.flush()?;
    if !met {
        anyhow::bail!(
            "{name}: sensitivity {:.3} / specificity {:.3} is below the goal {min_sensitivity:.2} / {min_specificity:.2}",
            report.overall.sensitivity(),
            report.overall.specificity()
        );
    }
    Ok(())
}

fn scores(c: &Confusion) -> Value {
    json!({
        "tp": c.tp, "fp": c.fp, "fn": c.fn_, "tn": c.tn,
        "sensitivity": c.sensitivity(), "specificity": c.specificity(),
    })
}

fn table(
    out: &mut impl Write,
    rules: &RuleSet,
    name: &str,
    report: &Report,
) -> std::io::Result<()> {
    let positives = report.overall.tp + report.overall.fn_;
    writeln!(
        out,
        "rule set {}: {} cases ({positives} positive, {} negative) from {name}",
        rules.version(),
        report.cases,
        report.cases - positives
    )?;
    writeln!(
        out,
        "{:<20} {:>5} {:>5} {:>5} {:>5} {:>12} {:>12}",
        "rule", "TP", "FP", "FN", "TN", "sensitivity", "specificity"
    )?;
    let row = |out: &mut dyn Write, name: &str, c: &Confusion| {
        writeln!(
            out,
            "{name:<20} {:>5} {:>5} {:>5} {:>5} {:>12.3} {:>12.3}",
            c.tp,
            c.fp,
            c.fn_,
            c.tn,
            c.sensitivity(),
            c.specificity()
        )
    };
    for (id, c) in &report.by_rule {
        row(out, id, c)?;
    }
    row(out, "OVERALL (any flag)", &report.overall)?;
    writeln!(out, "misclassified: {}", report.misses.len())?;
    for m in &report.misses {
        writeln!(
            out,
            "  {}: expected [{}] fired [{}]",
            m.id,
            m.expected.join(", "),
            m.fired.join(", ")
        )?;
    }
    Ok(())
}
