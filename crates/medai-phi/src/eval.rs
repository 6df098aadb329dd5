//! Scoring detection against a labelled corpus in the ASQ-PHI format: blocks of `===QUERY===`,
//! the query text, `===PHI_TAGS===`, then one JSON object `{"identifier_type", "value"}` a line.
//! A tag covers every exact occurrence of its value in the query.
//!
//! Measures, overall and per type:
//! - value recall: share of tagged values whose every occurrence is fully covered by detected
//!   spans (of any type: a value masked as the wrong type is still masked);
//! - character recall: share of tagged characters covered;
//! - character precision: share of detected characters inside a tagged value (per type: of the
//!   characters detected as that type);
//! - over-redaction: share of queries without tags where anything was detected (per type: where
//!   something of that type was).

use crate::detect::Detector;
use crate::types::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One labelled query.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The query text.
    pub text: String,
    /// Its tags, in file order.
    pub tags: Vec<Tag>,
}

/// One tagged value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tag {
    /// The corpus's type name (e.g. `NAME`, `GEOGRAPHIC_LOCATION`).
    pub identifier_type: String,
    /// The exact string tagged.
    pub value: String,
}

/// A corpus that does not follow the format.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// No `===QUERY===` block at all.
    #[error("no ===QUERY=== block found")]
    Empty,
    /// A block without its `===PHI_TAGS===` line.
    #[error("block {block} (line {line}): missing ===PHI_TAGS===")]
    MissingTags {
        /// 1-based block number.
        block: usize,
        /// 1-based line of the block's start.
        line: usize,
    },
    /// A tag line that is not `{"identifier_type": "...", "value": "..."}`.
    #[error("line {line}: tag is not {{\"identifier_type\", \"value\"}} JSON: {reason}")]
    BadTag {
        /// 1-based line number.
        line: usize,
        /// What the JSON parser said.
        reason: String,
    },
    /// Text before the first block.
    #[error("line {line}: text before the first ===QUERY===")]
    Preamble {
        /// 1-based line number.
        line: usize,
    },
}

/// Parses an ASQ-PHI corpus.
pub fn parse_asq(input: &str) -> Result<Vec<Document>, ParseError> {
    enum State {
        Start,
        Query(usize),
        Tags,
    }
    let mut docs = Vec::new();
    let mut state = State::Start;
    let mut query: Vec<&str> = Vec::new();
    for (n, raw) in input.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim() == "===QUERY===" {
            if let State::Query(start) = state {
                return Err(ParseError::MissingTags {
                    block: docs.len() + 1,
                    line: start,
                });
            }
            state = State::Query(line_no);
            query.clear();
            continue;
        }
        match state {
            State::Start => {
                if !line.trim().is_empty() {
                    return Err(ParseError::Preamble { line: line_no });
                }
            }
            State::Query(_) => {
                if line.trim() == "===PHI_TAGS===" {
                    let text = query.join("\n").trim_matches('\n').to_string();
                    docs.push(Document {
                        text,
                        tags: Vec::new(),
                    });
                    state = State::Tags;
                } else {
                    query.push(line);
                }
            }
            State::Tags => {
                if line.trim().is_empty() {
                    continue;
                }
                let tag: Tag =
                    serde_json::from_str(line.trim()).map_err(|e| ParseError::BadTag {
                        line: line_no,
                        reason: e.to_string(),
                    })?;
                if let Some(doc) = docs.last_mut() {
                    doc.tags.push(tag);
                }
            }
        }
    }
    if let State::Query(start) = state {
        return Err(ParseError::MissingTags {
            block: docs.len() + 1,
            line: start,
        });
    }
    if docs.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(docs)
}

/// The four figures, each in 0..=1 (1 where there was nothing to measure).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Share of tagged values fully covered.
    pub value_recall: f64,
    /// Share of tagged characters covered.
    pub char_recall: f64,
    /// Share of detected characters inside tagged values.
    pub char_precision: f64,
    /// Share of queries without tags where something was detected.
    pub over_redaction: f64,
}

/// Raw counts behind [`Scores`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Tagged values.
    pub values: u64,
    /// Tagged values fully covered.
    pub values_covered: u64,
    /// Tagged characters.
    pub chars: u64,
    /// Tagged characters covered.
    pub chars_covered: u64,
    /// Detected characters.
    pub detected: u64,
    /// Detected characters inside tagged values.
    pub detected_correct: u64,
    /// Queries without tags.
    pub negatives: u64,
    /// Queries without tags with a detection.
    pub negatives_flagged: u64,
}

impl Counts {
    /// The ratios.
    pub fn scores(&self) -> Scores {
        let ratio = |a: u64, b: u64, empty: f64| if b == 0 { empty } else { a as f64 / b as f64 };
        Scores {
            value_recall: ratio(self.values_covered, self.values, 1.0),
            char_recall: ratio(self.chars_covered, self.chars, 1.0),
            char_precision: ratio(self.detected_correct, self.detected, 1.0),
            over_redaction: ratio(self.negatives_flagged, self.negatives, 0.0),
        }
    }
}

/// A missed or spurious detection, for error analysis (contains corpus text: never log it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Miss {
    /// Document index (0-based).
    pub document: usize,
    /// `missed` (a tagged value not fully covered) or `spurious` (detected text outside tags).
    pub kind: &'static str,
    /// The type: the tag's for a miss, the detection's for a spurious span.
    pub phi_type: String,
    /// The text concerned.
    pub text: String,
}

/// The result of scoring a corpus.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Over all types.
    pub overall: Counts,
    /// Per type name: tag types for recall, detected types for precision and over-redaction.
    pub by_type: BTreeMap<String, Counts>,
    /// Documents scored.
    pub documents: usize,
    /// Every miss and spurious span.
    pub misses: Vec<Miss>,
}

/// Scores `detector` on `docs`.
pub fn evaluate(detector: &Detector, docs: &[Document]) -> Report {
    let mut report = Report {
        documents: docs.len(),
        ..Report::default()
    };
    for (n, doc) in docs.iter().enumerate() {
        let spans = detector.detect(&doc.text);
        score_document(n, doc, &spans, &mut report);
    }
    report
}

fn occurrences<'a>(text: &'a str, value: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        if value.is_empty() {
            return None;
        }
        let at = text[from..].find(value)? + from;
        from = at + value.len();
        Some((at, at + value.len()))
    })
}

fn score_document(n: usize, doc: &Document, spans: &[Span], report: &mut Report) {
    let len = doc.text.len();
    let mut detected = vec![false; len];
    for s in spans {
        detected[s.start..s.end].iter_mut().for_each(|b| *b = true);
    }
    let mut tagged = vec![false; len];
    for tag in &doc.tags {
        let entry = report
            .by_type
            .entry(tag.identifier_type.clone())
            .or_default();
        let mut covered_all = true;
        let mut any = false;
        for (s, e) in occurrences(&doc.text, &tag.value) {
            any = true;
            let covered = detected[s..e].iter().filter(|b| **b).count() as u64;
            let chars = (e - s) as u64;
            entry.chars += chars;
            entry.chars_covered += covered;
            report.overall.chars += chars;
            report.overall.chars_covered += covered;
            covered_all &= covered == chars;
            tagged[s..e].iter_mut().for_each(|b| *b = true);
        }
        // a tag whose value does not occur in the query counts as missed
        let covered = any && covered_all;
        entry.values += 1;
        entry.values_covered += u64::from(covered);
        report.overall.values += 1;
        report.overall.values_covered += u64::from(covered);
        if !covered {
            report.misses.push(Miss {
                document: n,
                kind: "missed",
                phi_type: tag.identifier_type.clone(),
                text: tag.value.clone(),
            });
        }
    }
    let negative = doc.tags.is_empty();
    if negative {
        report.overall.negatives += 1;
        report.overall.negatives_flagged += u64::from(!spans.is_empty());
    }
    let mut flagged_types = std::collections::BTreeSet::new();
    for s in spans {
        let correct = tagged[s.start..s.end].iter().filter(|b| **b).count() as u64;
        let chars = (s.end - s.start) as u64;
        let entry = report
            .by_type
            .entry(s.phi_type.as_str().to_string())
            .or_default();
        entry.detected += chars;
        entry.detected_correct += correct;
        report.overall.detected += chars;
        report.overall.detected_correct += correct;
        if correct < chars {
            report.misses.push(Miss {
                document: n,
                kind: "spurious",
                phi_type: s.phi_type.as_str().to_string(),
                text: doc.text[s.start..s.end].to_string(),
            });
        }
        flagged_types.insert(s.phi_type.as_str());
    }
    if negative {
        for t in report.by_type.values_mut() {
            t.negatives += 1;
        }
        for t in flagged_types {
            report
                .by_type
                .entry(t.to_string())
                .or_default()
                .negatives_flagged += 1;
        }
    }
}

impl Report {
    /// The JSON summary `medai phi eval --json` prints.
    pub fn summary(&self, seconds: f64) -> serde_json::Value {
        let by_type: BTreeMap<&str, Scores> = self
            .by_type
            .iter()
            .map(|(k, v)| (k.as_str(), v.scores()))
            .collect();
        serde_json::json!({
            "overall": self.overall.scores(),
            "by_type": by_type,
            "documents": self.documents,
            "seconds": seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "===QUERY===\nJohn Smith seen on 2/21/23 at 9am.\n===PHI_TAGS===\n{\"identifier_type\": \"NAME\", \"value\": \"John Smith\"}\n{\"identifier_type\": \"DATE\", \"value\": \"2/21/23\"}\n\n===QUERY===\nDose of aspirin for a 55-year-old?\n===PHI_TAGS===\n";

    #[test]
    fn parses_blocks_and_tags() {
        let docs = parse_asq(SAMPLE).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].text, "John Smith seen on 2/21/23 at 9am.");
        assert_eq!(docs[0].tags[1].value, "2/21/23");
        assert!(docs[1].tags.is_empty());
    }

    #[test]
    fn rejects_malformed_corpora() {
        assert_eq!(parse_asq(""), Err(ParseError::Empty));
        assert_eq!(
            parse_asq("hello\n===QUERY===\nx\n===PHI_TAGS===\n"),
            Err(ParseError::Preamble { line: 1 })
        );
        assert!(matches!(
            parse_asq("===QUERY===\nx\n===QUERY===\ny\n===PHI_TAGS===\n"),
            Err(ParseError::MissingTags { block: 1, line: 1 })
        ));
        assert!(matches!(
            parse_asq("===QUERY===\nx\n===PHI_TAGS===\n{\"value\": 1}\n"),
            Err(ParseError::BadTag { line: 4, .. })
        ));
    }

    #[test]
    fn scores_count_characters_values_and_negatives() {
        let docs = parse_asq(SAMPLE).unwrap();
        let mut report = Report {
            documents: 2,
            ..Report::default()
        };
        // covers all of "John Smith" and only "2/21" of the date, plus 3 spurious chars "9am"
        let spans = [
            Span {
                start: 0,
                end: 10,
                phi_type: crate::PhiType::Name,
                confidence: 1.0,
            },
            Span {
                start: 19,
                end: 23,
                phi_type: crate::PhiType::Date,
                confidence: 1.0,
            },
            Span {
                start: 30,
                end: 33,
                phi_type: crate::PhiType::Date,
                confidence: 1.0,
            },
        ];
        score_document(0, &docs[0], &spans, &mut report);
        score_document(1, &docs[1], &[], &mut report);
        let s = report.overall.scores();
        assert_eq!(report.overall.values, 2);
        assert_eq!(s.value_recall, 0.5);
        assert_eq!(s.char_recall, 14.0 / 17.0);
        assert_eq!(s.char_precision, 14.0 / 17.0);
        assert_eq!(s.over_redaction, 0.0);
        assert_eq!(report.by_type["DATE"].scores().value_recall, 0.0);
        assert_eq!(
            report.misses.iter().filter(|m| m.kind == "missed").count(),
            1
        );
        let mut flagged = Report::default();
        score_document(1, &docs[1], &spans[..1], &mut flagged);
        assert_eq!(flagged.overall.scores().over_redaction, 1.0);
    }
}
