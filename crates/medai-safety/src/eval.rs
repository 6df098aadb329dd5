//! Scoring a rule set on labelled cases: JSON lines `{"id", "text", "expect": [rule ids]}`.
//! A case with an empty `expect` is a negative (nothing may fire).

use crate::rules::RuleSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The development cases shipped with the rule set (`data/triage-cases.jsonl`), which the rule
/// set was written against; `data/triage-heldout.jsonl` was written after it was frozen.
pub const DEVELOPMENT_CASES: &str = include_str!("../data/triage-cases.jsonl");

/// One labelled case.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique id within the file.
    pub id: String,
    /// The question and context, as triage sees them.
    pub text: String,
    /// The rule ids that must fire (empty: none may).
    pub expect: Vec<String>,
}

/// Why a case file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A line that is not a case.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A case naming a rule the rule set does not have.
    #[error("line {line}: case {id:?} expects unknown rule {rule:?}")]
    UnknownRule {
        /// 1-based line number.
        line: usize,
        /// The case id.
        id: String,
        /// The unknown rule id.
        rule: String,
    },
}

/// Parses a case file (blank lines and lines starting with `#` are skipped) and checks ids are
/// unique and every expected rule exists in `rules`.
pub fn parse_cases(text: &str, rules: &RuleSet) -> Result<Vec<Case>, CaseError> {
    let mut cases = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let case: Case = serde_json::from_str(trimmed).map_err(|e| CaseError::Line {
            line: line_no,
            reason: format!("not a case {{\"id\", \"text\", \"expect\"}}: {e}"),
        })?;
        if !ids.insert(case.id.clone()) {
            return Err(CaseError::Line {
                line: line_no,
                reason: format!("duplicate id {:?}", case.id),
            });
        }
        if let Some(rule) = case
            .expect
            .iter()
            .find(|r| !rules.rules().iter().any(|x| x.id() == r.as_str()))
        {
            return Err(CaseError::UnknownRule {
                line: line_no,
                id: case.id.clone(),
                rule: rule.clone(),
            });
        }
        cases.push(case);
    }
    Ok(cases)
}

/// A confusion matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Expected and fired.
    pub tp: usize,
    /// Fired, not expected.
    pub fp: usize,
    /// Expected, not fired.
    pub fn_: usize,
    /// Neither.
    pub tn: usize,
}

impl Confusion {
    fn add(&mut self, expected: bool, fired: bool) {
        match (expected, fired) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// TP / (TP + FN); 1 when there are no positives.
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// TN / (TN + FP); 1 when there are no negatives.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// A case whose fired rules differ from its expected rules.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    /// The case id.
    pub id: String,
    /// Expected rule ids.
    pub expected: Vec<String>,
    /// Fired rule ids.
    pub fired: Vec<String>,
}

/// Scores of a rule set on a case file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Case level: a positive case (any expected rule) is a true positive when anything fires.
    pub overall: Confusion,
    /// Per rule, over every case: expected this rule vs fired this rule.
    pub by_rule: BTreeMap<String, Confusion>,
    /// Cases whose fired set differs from the expected set.
    pub misses: Vec<Miss>,
    /// Number of cases.
    pub cases: usize,
}

/// Runs triage on every case and scores it.
pub fn evaluate(rules: &RuleSet, cases: &[Case]) -> Report {
    let mut overall = Confusion::default();
    let mut by_rule: BTreeMap<String, Confusion> = rules
        .rules()
        .iter()
        .map(|r| (r.id().to_string(), Confusion::default()))
        .collect();
    let mut misses = Vec::new();
    for case in cases {
        let result = rules.triage(&case.text);
        let fired: Vec<String> = result.rule_ids().map(str::to_string).collect();
        overall.add(!case.expect.is_empty(), result.flagged);
        for (id, c) in &mut by_rule {
            c.add(case.expect.contains(id), fired.contains(id));
        }
        let mut expected = case.expect.clone();
        expected.sort();
        let mut got = fired.clone();
        got.sort();
        if expected != got {
            misses.push(Miss {
                id: case.id.clone(),
                expected: case.expect.clone(),
                fired,
            });
        }
    }
    Report {
        overall,
        by_rule,
        misses,
        cases: cases.len(),
    }
}
