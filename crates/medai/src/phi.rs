//! `medai phi`: the PHI detector on files and pipes. Reads JSON lines `{"id", "text"}` or plain
//! text (one input per line), writes one JSON line per input; `eval` scores a labelled corpus.
//! Needs no configuration, database or key; never logs the text it reads.

use crate::cli::{PhiCommand, PhiInput};
use crate::lines::{open, Lines};
use anyhow::Context as _;
use medai_phi::{eval, Detector, Vault};
use serde_json::{json, Value};
use std::io::{BufWriter, Read, Write};
use std::path::Path;

pub fn run(cmd: PhiCommand) -> anyhow::Result<()> {
    match cmd {
        PhiCommand::Detect { input } => per_line(&input, Mode::Detect),
        PhiCommand::Deidentify {
            input,
            conversation,
        } => per_line(&input, Mode::Deidentify { conversation }),
        PhiCommand::Eval {
            asq,
            json,
            show_misses,
        } => evaluate(&asq, json, show_misses),
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Detect,
    Deidentify { conversation: bool },
}

/// One input: its id (a JSON value, or the line number for plain text) and text.
fn parse_line(line: &str, n: usize, jsonl: bool) -> Result<(Value, String), String> {
    if !jsonl {
        return Ok((json!(n), line.to_string()));
    }
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({})", e.classify_name()))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".into());
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    match obj.remove("text") {
        Some(Value::String(text)) => Ok((id, text)),
        Some(_) => Err("\"text\" is not a string".into()),
        None => Err("no \"text\" field".into()),
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong types",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

fn per_line(input: &PhiInput, mode: Mode) -> anyhow::Result<()> {
    let detector = Detector::new();
    let mut lines = Lines::open(&input.input)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut shared = Vault::new();
    let mut jsonl: Option<bool> = match input.format.as_str() {
        "jsonl" => Some(true),
        "text" => Some(false),
        _ => None,
    };
    let mut errors = 0usize;
    while let Some((n, line)) = lines.next_line()? {
        let line = match line {
            Ok(line) => line,
            Err(why) => {
                errors += 1;
                eprintln!("error: line {n}: {why}");
                writeln!(out, "{}", json!({"line": n, "error": why}))?;
                continue;
            }
        };
        let is_json = *jsonl.get_or_insert_with(|| line.trim_start().starts_with('{'));
        if is_json && line.trim().is_empty() {
            continue;
        }
        let (id, text) = match parse_line(line, n, is_json) {
            Ok(v) => v,
            Err(why) => {
                errors += 1;
                eprintln!("error: line {n}: {why}");
                writeln!(out, "{}", json!({"line": n, "error": why}))?;
                continue;
            }
        };
        match mode {
            Mode::Detect => {
                let spans: Vec<Value> = detector
                    .detect(&text)
                    .iter()
                    .map(|s| json!({"start": s.start, "end": s.end, "type": s.phi_type, "text": &text[s.start..s.end], "confidence": (f64::from(s.confidence) * 100.0).round() / 100.0}))
                    .collect();
                writeln!(out, "{}", json!({"id": id, "spans": spans}))?;
            }
            Mode::Deidentify { conversation } => {
                let mut own = Vault::new();
                let vault = if conversation { &mut shared } else { &mut own };
                let result = vault.deidentify(&detector, &text);
                if is_json {
                    writeln!(out, "{}", json!({"id": id, "text": result.text}))?;
                } else {
                    writeln!(out, "{}", result.text)?;
                }
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

fn evaluate(path: &Path, as_json: bool, show_misses: bool) -> anyhow::Result<()> {
    let mut text = String::new();
    open(path)?
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    let docs = eval::parse_asq(&text)
        .with_context(|| format!("{} is not an ASQ-PHI corpus", path.display()))?;
    let detector = Detector::new();
    let started = std::time::Instant::now();
    let report = eval::evaluate(&detector, &docs);
    let seconds = started.elapsed().as_secs_f64();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if show_misses {
        for m in &report.misses {
            writeln!(
                out,
                "{}",
                json!({"document": m.document, "kind": m.kind, "type": m.phi_type, "text": m.text})
            )?;
        }
    }
    if as_json {
        writeln!(out, "{}", report.summary(seconds))?;
    } else {
        writeln!(
            out,
            "{:<32} {:>7} {:>12} {:>11} {:>14} {:>14}",
            "type", "values", "value_recall", "char_recall", "char_precision", "over_redaction"
        )?;
        let row = |out: &mut BufWriter<_>, name: &str, c: &eval::Counts| -> std::io::Result<()> {
            let s = c.scores();
            writeln!(
                out,
                "{name:<32} {:>7} {:>12.4} {:>11.4} {:>14.4} {:>14.4}",
                c.values, s.value_recall, s.char_recall, s.char_precision, s.over_redaction
            )
        };
        for (name, counts) in &report.by_type {
            row(&mut out, name, counts)?;
        }
        row(&mut out, "OVERALL", &report.overall)?;
        writeln!(
            out,
            "{} documents ({} without PHI) in {seconds:.3} s",
            report.documents, report.overall.negatives
        )?;
    }
    out.flush()?;
    Ok(())
}
