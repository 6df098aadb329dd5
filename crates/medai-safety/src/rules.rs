//! The rule file (TOML) and its validation. A rule set is data reviewed like code: every
//! mistake a reviewer could miss (an unknown group, a malformed term, a notice that does not say
//! it is decision support) is refused with an error naming the rule and the field.

use crate::features::Feature;
use crate::lexicon::{parse_phrase, Cue, Lexicon, Tag};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The rule set shipped with medai (`rules/triage-v1.toml`).
pub const BUILTIN_RULES: &str = include_str!("../rules/triage-v1.toml");

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file could not be read.
    #[error("cannot read the rule file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Not TOML, or a key that the format does not have, or a value of the wrong type.
    #[error("the rule file is not a valid rule set: {0}")]
    Syntax(String),
    /// A well-formed file whose content breaks a rule of the format.
    #[error("rule {rule:?}, field `{field}`: {reason}")]
    Invalid {
        /// The rule id ("(ruleset)" or "(cues)" for the file's other tables).
        rule: String,
        /// The field, as written in the file.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

fn invalid(rule: &str, field: impl Into<String>, reason: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        rule: rule.to_string(),
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    ruleset: MetaDef,
    cues: CuesDef,
    #[serde(rename = "rule", default)]
    rules: Vec<RuleDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaDef {
    version: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CuesDef {
    negation_window: usize,
    negation_near_window: usize,
    negation_post_window: usize,
    history_window: usize,
    hypothetical_window: usize,
    negation_pre: Vec<String>,
    negation_near: Vec<String>,
    negation_post: Vec<String>,
    pseudo: Vec<String>,
    history_pre: Vec<String>,
    /// History cues that reach forward only within their clause ("known fibroids, heavy
    /// bleeding now": "known" covers "fibroids" only).
    #[serde(default)]
    history_clause: Vec<String>,
    history_post: Vec<String>,
    hypothetical: Vec<String>,
    education: Vec<String>,
    /// Exam questions, simulation scripts, case vignettes: everything from the cue on is
    /// teaching material, whatever patient words it contains.
    #[serde(default)]
    scenario: Vec<String>,
    patient_specific: Vec<String>,
    terminators: Vec<String>,
    /// An episode that is over ("discharged well", "responded to fluids", "now home"): the
    /// findings before it in its sentence are history, back to a contrast ("but", "now").
    #[serde(default)]
    resolved: Vec<String>,
    /// An answer that denies everything asked before it in the sentence ("asked about self-harm
    /// and thoughts of ending her life - says never").
    #[serde(default)]
    negation_sentence: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    version: u32,
    title: String,
    notice: String,
    terms: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(rename = "pattern", default)]
    patterns: Vec<PatternDef>,
    /// Findings that take some of the rule's term groups out of play ("confirmed IUP" for the
    /// pregnancy of an ectopic, "including the forehead" for a facial weakness).
    #[serde(default)]
    suppress: Vec<SuppressDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressDef {
    groups: Vec<String>,
    phrases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternDef {
    groups: Vec<String>,
    min: Option<usize>,
    within: Option<WithinDef>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WithinDef {
    Words(i64),
    Scope(String),
}

/// How close the terms of a pattern must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Within {
    /// First words at most this many words apart.
    Words(usize),
    /// In one sentence.
    Sentence,
}

/// One way a rule fires: at least `min` of `elements` (each a union of term groups) matched,
/// close together.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub elements: Vec<Vec<u16>>,
    pub min: usize,
    pub within: Within,
}

/// One red flag: what it recognises and what the clinician is told.
#[derive(Debug)]
pub struct Rule {
    id: String,
    version: u32,
    title: String,
    notice: String,
    pub(crate) patterns: Vec<Pattern>,
    /// For each `[[rule.suppress]]`, the term groups an affirmed phrase of it takes out of play.
    pub(crate) suppress: Vec<Vec<u16>>,
}

impl Rule {
    /// Stable identifier (lower-case, digits and `_`); the `rule` label of
    /// `medai_safety_escalations_total`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The rule's own version, bumped whenever its terms, patterns or notice change.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// A short name for people ("Possible acute coronary syndrome").
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The escalation notice shown to the clinician ahead of the answer.
    pub fn notice(&self) -> &str {
        &self.notice
    }
}

/// Context windows, in words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub negation: usize,
    pub near: usize,
    pub post: usize,
    pub history: usize,
    pub hypothetical: usize,
}

/// A validated, compiled rule set. Build it once (at startup) and share it: triage takes `&self`.
#[derive(Debug)]
pub struct RuleSet {
    version: String,
    description: String,
    pub(crate) rules: Vec<Rule>,
    pub(crate) lexicon: Lexicon,
    /// Which (rule, group) each measured feature belongs to.
    pub(crate) features: Vec<(Feature, u16, u16)>,
    pub(crate) windows: Windows,
}

impl RuleSet {
    /// The rule set shipped with this build (`rules/triage-v1.toml`). A unit test proves it
    /// loads; callers still get the error rather than a panic, so a server can refuse to start.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        Self::from_toml(BUILTIN_RULES)
    }

    /// Reads and validates the rule file at `path` (the only I/O this crate does).
    pub fn from_path(path: &Path) -> Result<RuleSet, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuleError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates a rule file.
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleError> {
        let file: FileDef = toml::from_str(text).map_err(|e| RuleError::Syntax(e.to_string()))?;
        compile(file)
    }

    /// The rule set's version (`[ruleset] version`), recorded with every triage result.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The rule set's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

fn check_id(rule: &str, field: &str, id: &str) -> Result<(), RuleError> {
    if id.is_empty()
        || id.len() > 40
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || !id.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(invalid(
            rule,
            field,
            format!("{id:?} must be 1–40 characters: a lower-case letter, then lower-case letters, digits or _"),
        ));
    }
    Ok(())
}

fn compile(file: FileDef) -> Result<RuleSet, RuleError> {
    let meta = file.ruleset;
    let version = meta.version.trim().to_string();
    if version.is_empty()
        || version.len() > 40
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    {
        return Err(invalid(
            "(ruleset)",
            "version",
            "must be a non-empty version such as \"1.0.0\" (letters, digits, . - +)",
        ));
    }
    let mut lexicon = Lexicon::default();
    let cues = &file.cues;
    let windows = Windows {
        negation: window("negation_window", cues.negation_window)?,
        near: window("negation_near_window", cues.negation_near_window)?,
        post: window("negation_post_window", cues.negation_post_window)?,
        history: window("history_window", cues.history_window)?,
        hypothetical: window("hypothetical_window", cues.hypothetical_window)?,
    };
    for (field, phrases, cue) in [
        ("scenario", &cues.scenario, Cue::Scenario),
        ("history_clause", &cues.history_clause, Cue::HistoryClause),
        ("resolved", &cues.resolved, Cue::Resolved),
        (
            "negation_sentence",
            &cues.negation_sentence,
            Cue::NegationSentence,
        ),
    ] {
        for p in phrases {
            let words = parse_phrase(p).map_err(|e| invalid("(cues)", field, e))?;
            lexicon.add(words, Tag::Cue(cue));
        }
    }
    let lists: [(&str, &Vec<String>, Cue); 10] = [
        ("negation_pre", &cues.negation_pre, Cue::NegationPre),
        ("negation_near", &cues.negation_near, Cue::NegationNear),
        ("negation_post", &cues.negation_post, Cue::NegationPost),
        ("pseudo", &cues.pseudo, Cue::Pseudo),
        ("history_pre", &cues.history_pre, Cue::HistoryPre),
        ("history_post", &cues.history_post, Cue::HistoryPost),
        ("hypothetical", &cues.hypothetical, Cue::Hypothetical),
        ("education", &cues.education, Cue::Education),
        (
            "patient_specific",
            &cues.patient_specific,
            Cue::PatientSpecific,
        ),
        ("terminators", &cues.terminators, Cue::Terminator),
    ];
    for (field, phrases, cue) in lists {
        if phrases.is_empty() {
            return Err(invalid("(cues)", field, "must list at least one phrase"));
        }
        for p in phrases {
            let words = parse_phrase(p).map_err(|e| invalid("(cues)", field, e))?;
            lexicon.add(words, Tag::Cue(cue));
        }
    }
    if file.rules.is_empty() {
        return Err(invalid("(ruleset)", "rule", "the rule set has no rules"));
    }
    if file.rules.len() > usize::from(u16::MAX) {
        return Err(invalid("(ruleset)", "rule", "too many rules"));
    }
    let mut seen = HashSet::new();
    let mut rules = Vec::with_capacity(file.rules.len());
    let mut features = Vec::new();
    for (r, def) in file.rules.into_iter().enumerate() {
        let r16 = u16::try_from(r).unwrap_or(u16::MAX);
        let rid = def.id.clone();
        check_id(&rid, "id", &def.id)?;
        if !seen.insert(def.id.clone()) {
            return Err(invalid(&rid, "id", "another rule has the same id"));
        }
        if def.version == 0 {
            return Err(invalid(&rid, "version", "must be 1 or more"));
        }
        if def.title.trim().is_empty() || def.title.len() > 120 {
            return Err(invalid(&rid, "title", "must be 1–120 characters"));
        }
        let notice = def.notice.trim();
        if notice.is_empty() || notice.len() > 1000 {
            return Err(invalid(&rid, "notice", "must be 1–1000 characters"));
        }
        if !notice.to_lowercase().contains("decision support") {
            return Err(invalid(
                &rid,
                "notice",
                "must say that it is decision support (contain the words \"decision support\")",
            ));
        }
        if def.terms.is_empty() {
            return Err(invalid(
                &rid,
                "terms",
                "must define at least one term group",
            ));
        }
        let names: Vec<&String> = def.terms.keys().collect();
        for (g, (name, terms)) in def.terms.iter().enumerate() {
            let g16 = u16::try_from(g).unwrap_or(u16::MAX);
            let field = format!("terms.{name}");
            check_id(&rid, &field, name)?;
            if terms.is_empty() {
                return Err(invalid(&rid, &field, "must list at least one term"));
            }
            let mut listed = std::collections::HashSet::new();
            if let Some(twice) = terms.iter().find(|t| !listed.insert(t.as_str())) {
                return Err(invalid(&rid, &field, format!("{twice:?} is listed twice")));
            }
            for term in terms {
                if term.starts_with('@') {
                    let f = Feature::parse(term).ok_or_else(|| {
                        let known: Vec<&str> = Feature::ALL.iter().map(|(_, n)| *n).collect();
                        invalid(
                            &rid,
                            &field,
                            format!(
                                "unknown measured feature {term:?}; known: {}",
                                known.join(", ")
                            ),
                        )
                    })?;
                    features.push((f, r16, g16));
                } else {
                    let words = parse_phrase(term).map_err(|e| invalid(&rid, &field, e))?;
                    lexicon.add(
                        words,
                        Tag::Term {
                            rule: r16,
                            group: g16,
                        },
                    );
                }
            }
        }
        for p in &def.exclude {
            let words = parse_phrase(p).map_err(|e| invalid(&rid, "exclude", e))?;
            lexicon.add(words, Tag::Exclude { rule: r16 });
        }
        if def.patterns.is_empty() {
            return Err(invalid(
                &rid,
                "pattern",
                "must have at least one [[rule.pattern]]",
            ));
        }
        let mut used = vec![false; names.len()];
        let mut patterns = Vec::with_capacity(def.patterns.len());
        for (p, pat) in def.patterns.iter().enumerate() {
            let field = format!("pattern[{p}]");
            if pat.groups.is_empty() {
                return Err(invalid(
                    &rid,
                    format!("{field}.groups"),
                    "must name at least one term group",
                ));
            }
            let mut elements = Vec::with_capacity(pat.groups.len());
            for element in &pat.groups {
                let mut union = Vec::new();
                for name in element.split('|').map(str::trim) {
                    let g = names
                        .iter()
                        .position(|n| n.as_str() == name)
                        .ok_or_else(|| {
                            invalid(
                                &rid,
                                format!("{field}.groups"),
                                format!(
                                    "{name:?} is not a term group of this rule (groups: {})",
                                    names
                                        .iter()
                                        .map(|n| n.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                    used[g] = true;
                    union.push(u16::try_from(g).unwrap_or(u16::MAX));
                }
                elements.push(union);
            }
            let min = pat.min.unwrap_or(elements.len());
            if min == 0 || min > elements.len() {
                return Err(invalid(
                    &rid,
                    format!("{field}.min"),
                    format!(
                        "must be between 1 and the number of groups ({})",
                        elements.len()
                    ),
                ));
            }
            let within = match &pat.within {
                None if min == 1 => Within::Sentence,
                None => {
                    return Err(invalid(
                        &rid,
                        format!("{field}.within"),
                        "a pattern that combines groups needs `within` (a number of words, 1–200, or \"sentence\")",
                    ))
                }
                Some(WithinDef::Words(n)) if (1..=200).contains(n) => {
                    Within::Words(usize::try_from(*n).unwrap_or(200))
                }
                Some(WithinDef::Scope(s)) if s == "sentence" => Within::Sentence,
                Some(_) => {
                    return Err(invalid(
                        &rid,
                        format!("{field}.within"),
                        "must be a number of words (1–200) or \"sentence\"",
                    ))
                }
            };
            patterns.push(Pattern {
                elements,
                min,
                within,
            });
        }
        let mut suppress = Vec::with_capacity(def.suppress.len());
        for (k, sup) in def.suppress.iter().enumerate() {
            let field = format!("suppress[{k}]");
            if sup.groups.is_empty() || sup.phrases.is_empty() {
                return Err(invalid(
                    &rid,
                    &field,
                    "must name at least one term group and list at least one phrase",
                ));
            }
            let mut groups = Vec::with_capacity(sup.groups.len());
            for name in &sup.groups {
                let g = names.iter().position(|n| n == &name).ok_or_else(|| {
                    invalid(
                        &rid,
                        format!("{field}.groups"),
                        format!("{name:?} is not a term group of this rule"),
                    )
                })?;
                groups.push(u16::try_from(g).unwrap_or(u16::MAX));
            }
            let idx = u16::try_from(k).unwrap_or(u16::MAX);
            for p in &sup.phrases {
                let words =
                    parse_phrase(p).map_err(|e| invalid(&rid, format!("{field}.phrases"), e))?;
                lexicon.add(
                    words,
                    Tag::Suppress {
                        rule: r16,
                        index: idx,
                    },
                );
            }
            suppress.push(groups);
        }
        if let Some(g) = used.iter().position(|u| !u) {
            return Err(invalid(
                &rid,
                format!("terms.{}", names[g]),
                "this term group is used by no pattern; use it or remove it",
            ));
        }
        rules.push(Rule {
            id: def.id,
            version: def.version,
            title: def.title.trim().to_string(),
            notice: notice.to_string(),
            patterns,
            suppress,
        });
    }
    Ok(RuleSet {
        version,
        description: meta.description.trim().to_string(),
        rules,
        lexicon,
        features,
        windows,
    })
}

fn window(field: &str, n: usize) -> Result<usize, RuleError> {
    if (1..=50).contains(&n) {
        Ok(n)
    } else {
        Err(invalid("(cues)", field, "must be between 1 and 50 words"))
    }
}
