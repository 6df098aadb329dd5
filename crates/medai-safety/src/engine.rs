//! The triage engine: tokenise, find every phrase and measured feature, mark the words that a
//! context cue takes out of the present tense (negated, past history, hypothetical, teaching
//! material), then fire each rule whose term groups are affirmed close together.

use crate::features;
use crate::lexicon::{Cue, Found, Tag};
use crate::rules::{Pattern, RuleSet, Within};
use crate::text::{tokenize, Doc};
use rustc_hash::FxHashSet;
use serde::Serialize;

const NEGATED: u8 = 1;
const HISTORY: u8 = 2;
const HYPOTHETICAL: u8 = 4;
const EDUCATION: u8 = 8;

/// The outcome of triage on one text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Triage {
    /// True when at least one rule fired: the answer must carry the escalation notices.
    pub flagged: bool,
    /// The rules that fired, in rule-file order, each once.
    pub hits: Vec<Hit>,
    /// The version of the rule set that produced this result (for provenance).
    pub rule_set_version: String,
}

impl Triage {
    /// The fired rule ids, in rule-file order (for metrics and audit details).
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.hits.iter().map(|h| h.rule_id.as_str())
    }
}

/// One fired rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The rule id: the `rule` label of `medai_safety_escalations_total`.
    pub rule_id: String,
    /// The rule's version.
    pub rule_version: u32,
    /// The rule's title.
    pub title: String,
    /// The escalation notice for the clinician.
    pub notice: String,
    /// Byte ranges of the input that made the rule fire (offsets, never the text itself, so a
    /// result can be logged without carrying PHI).
    pub evidence: Vec<Evidence>,
}

/// A byte range of the triaged text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// An affirmed term occurrence: words `start..end` of group `group` of rule `rule`.
#[derive(Debug, Clone, Copy)]
struct Occurrence {
    rule: u16,
    group: u16,
    start: usize,
    end: usize,
}

impl RuleSet {
    /// Triage one text (a question, with the patient context it is asked about). Linear in the
    /// length of the text; never panics.
    pub fn triage(&self, text: &str) -> Triage {
        let doc = tokenize(text);
        let found = self.lexicon.find(&doc);
        let flags = self.context_flags(&doc, &found);
        let mut occurrences: Vec<Occurrence> = Vec::new();
        // (rule, word) pairs covered by one of the rule's look-alike phrases
        let mut excluded_words: FxHashSet<(u16, usize)> = FxHashSet::default();
        for f in &found {
            if let Tag::Exclude { rule } = f.tag {
                excluded_words.extend((f.start..f.end).map(|i| (rule, i)));
            }
        }
        let excluded = |rule: u16, i: usize| excluded_words.contains(&(rule, i));
        // (rule, group) pairs that an affirmed suppressing finding takes out of play; a
        // suppressor counts unless negated or hypothetical ("confirmed IUP on scan last week")
        let mut suppressed: FxHashSet<(u16, u16)> = FxHashSet::default();
        for f in &found {
            if let Tag::Suppress { rule, index } = f.tag {
                // "no IUP confirmed": "no iup" is a pseudo-negation for the ectopic terms, but
                // a suppressor right after a negation word does not hold
                let negated_before = f.start.checked_sub(1).is_some_and(|j| {
                    matches!(doc.word(j), "no" | "not" | "nor" | "without" | "never")
                });
                if flags[f.start] & (NEGATED | HYPOTHETICAL) != 0 || negated_before {
                    continue;
                }
                let groups = self
                    .rules
                    .get(usize::from(rule))
                    .and_then(|r| r.suppress.get(usize::from(index)));
                for &g in groups.into_iter().flatten() {
                    suppressed.insert((rule, g));
                }
            }
        }
        for f in &found {
            if let Tag::Term { rule, group } = f.tag {
                if flags[f.start] == 0
                    && !excluded(rule, f.start)
                    && !suppressed.contains(&(rule, group))
                {
                    occurrences.push(Occurrence {
                        rule,
                        group,
                        start: f.start,
                        end: f.end,
                    });
                }
            }
        }
        if !self.features.is_empty() {
            for (i, feature) in features::find(&doc) {
                if flags.get(i).copied().unwrap_or(0) != 0 {
                    continue;
                }
                for &(f, rule, group) in &self.features {
                    // a look-alike phrase takes its numbers out too ("mum's temp 38.4")
                    if f == feature && !suppressed.contains(&(rule, group)) && !excluded(rule, i) {
                        occurrences.push(Occurrence {
                            rule,
                            group,
                            start: i,
                            end: i + 1,
                        });
                    }
                }
            }
        }
        occurrences.sort_by_key(|o| (o.rule, o.start));
        let mut hits = Vec::new();
        let mut rest = occurrences.as_slice();
        while let Some(first) = rest.first() {
            let rule_idx = first.rule;
            let n = rest.iter().take_while(|o| o.rule == rule_idx).count();
            let (mine, tail) = rest.split_at(n);
            rest = tail;
            let Some(rule) = self.rules.get(usize::from(rule_idx)) else {
                continue;
            };
            if let Some(evidence) = rule.patterns.iter().find_map(|p| satisfied(p, mine, &doc)) {
                hits.push(Hit {
                    rule_id: rule.id().to_string(),
                    rule_version: rule.version(),
                    title: rule.title().to_string(),
                    notice: rule.notice().to_string(),
                    evidence,
                });
            }
        }
        Triage {
            flagged: !hits.is_empty(),
            hits,
            rule_set_version: self.version().to_string(),
        }
    }

    /// For each word, the context flags that cues put on it.
    fn context_flags(&self, doc: &Doc, found: &[Found]) -> Vec<u8> {
        let n = doc.toks.len();
        let mut flags = vec![0u8; n];
        let mut pseudo = vec![false; n];
        let mut terminator = vec![false; n];
        let sentences = doc.toks.last().map_or(0, |t| t.sentence as usize + 1);
        let mut education = vec![false; sentences];
        let mut patient = vec![false; sentences];
        // the first sentence of an exam question, simulation script or vignette
        let mut scenario_from: Option<usize> = None;
        // pseudo cues first: a word inside one starts no cue of any kind ("weak as a kitten" is
        // an idiom, not a vet note)
        for f in found {
            if let Tag::Cue(Cue::Pseudo) = f.tag {
                pseudo[f.start..f.end].iter_mut().for_each(|p| *p = true);
            }
        }
        for f in found {
            if matches!(f.tag, Tag::Cue(Cue::Education | Cue::Scenario)) && pseudo[f.start] {
                continue;
            }
            match f.tag {
                Tag::Cue(Cue::Pseudo) => {}
                Tag::Cue(Cue::Terminator) => terminator[f.start] = true,
                Tag::Cue(Cue::Education) => education[doc.toks[f.start].sentence as usize] = true,
                Tag::Cue(Cue::PatientSpecific) => {
                    patient[doc.toks[f.start].sentence as usize] = true;
                }
                Tag::Cue(Cue::Scenario) => {
                    let s = doc.toks[f.start].sentence as usize;
                    scenario_from = Some(scenario_from.map_or(s, |from| from.min(s)));
                }
                _ => {}
            }
        }
        // for each word, the end of the longest term (of any rule) that starts there
        let mut term_end = vec![0usize; n];
        for f in found {
            if let Tag::Term { .. } = f.tag {
                if let Some(e) = term_end.get_mut(f.start) {
                    *e = (*e).max(f.end);
                }
            }
        }
        let w = self.windows;
        for f in found {
            let Tag::Cue(cue) = f.tag else { continue };
            if pseudo[f.start] {
                continue;
            }
            match cue {
                Cue::NegationPre => {
                    forward(doc, &terminator, &mut flags, f.end, w.negation, NEGATED)
                }
                // "not" negates within its own clause: "AF not anticoagulated, sudden vision
                // loss" leaves "sudden" affirmed
                Cue::NegationNear => {
                    forward_in_clause(doc, &terminator, &mut flags, f.end, w.near, NEGATED);
                }
                Cue::NegationPost => {
                    backward(doc, &terminator, &mut flags, f.start, w.post, NEGATED)
                }
                Cue::HistoryPre => forward(doc, &terminator, &mut flags, f.end, w.history, HISTORY),
                Cue::HistoryClause => {
                    known_reach(doc, &terminator, &term_end, &mut flags, f.end, w.history);
                }
                Cue::HistoryPost => {
                    backward(doc, &terminator, &mut flags, f.start, w.history, HISTORY)
                }
                Cue::Hypothetical if conditional_on_present_patient(doc, f) => {}
                Cue::Hypothetical => {
                    forward(
                        doc,
                        &terminator,
                        &mut flags,
                        f.end,
                        w.hypothetical,
                        HYPOTHETICAL,
                    );
                }
                Cue::Resolved => {
                    backward_in_sentence(doc, &terminator, &mut flags, f.start, HISTORY)
                }
                Cue::NegationSentence => {
                    backward_in_sentence(doc, &terminator, &mut flags, f.start, NEGATED);
                }
                Cue::Pseudo
                | Cue::Education
                | Cue::Scenario
                | Cue::PatientSpecific
                | Cue::Terminator => {}
            }
        }
        negative_answers(doc, &mut flags);
        unchecked_boxes(doc, &mut flags);
        for (i, t) in doc.toks.iter().enumerate() {
            let s = t.sentence as usize;
            if education[s] && !patient[s] || scenario_from.is_some_and(|from| s >= from) {
                flags[i] |= EDUCATION;
            }
        }
        flags
    }
}

/// "if my pt has chest pain …": a bare "if" that introduces the clinician's own patient in the
/// present ("if my/this/our pt/patient has/is/presents/reports/complains/…") states a fact to act
/// on, not a hypothetical. "if my pt develops …" and "what if …" stay hypothetical.
fn conditional_on_present_patient(doc: &Doc, f: &Found) -> bool {
    let word = |i: usize| doc.toks.get(i).and_then(|t| doc.lower.get(t.start..t.end));
    f.end == f.start + 1
        && word(f.start) == Some("if")
        && matches!(word(f.end), Some("my" | "this" | "our"))
        && matches!(word(f.end + 1), Some("pt" | "patient"))
        && matches!(
            word(f.end + 2),
            Some(
                "has"
                    | "is"
                    | "presents"
                    | "presented"
                    | "reports"
                    | "complains"
                    | "c"
                    | "now"
                    | "currently"
                    | "with"
                    | "already"
            )
        )
}

/// Flags up to `window` words from `from` on, within the sentence, until a terminator.
fn forward(doc: &Doc, terminator: &[bool], flags: &mut [u8], from: usize, window: usize, flag: u8) {
    let Some(sentence) = from
        .checked_sub(1)
        .and_then(|i| doc.toks.get(i))
        .map(|t| t.sentence)
    else {
        return;
    };
    for k in from..(from + window).min(doc.toks.len()) {
        if doc.toks[k].sentence != sentence || terminator[k] {
            break;
        }
        flags[k] |= flag;
    }
}

/// The clause of the cue that ends just before word `from`.
fn cue_clause(doc: &Doc, from: usize) -> Option<u32> {
    from.checked_sub(1)
        .and_then(|i| doc.toks.get(i))
        .map(|t| t.clause)
}

/// Flags up to `window` words from `from` on, within the clause, until a terminator.
fn forward_in_clause(
    doc: &Doc,
    terminator: &[bool],
    flags: &mut [u8],
    from: usize,
    window: usize,
    flag: u8,
) {
    let Some(clause) = cue_clause(doc, from) else {
        return;
    };
    for k in from..(from + window).min(doc.toks.len()) {
        if doc.toks[k].clause != clause || terminator[k] {
            break;
        }
        flags[k] |= flag;
    }
}

/// The reach of a clause-bound history cue ("known", "chronic"): forward within the clause like
/// `forward_in_clause`, but only over the condition it names: it ends after the first term,
/// unless "and", "or" or "with" joins another to it. "known varices vomiting bright red blood"
/// and "known latex sensitivity developed hives" leave the new finding affirmed; "chronic L
/// weakness and slurred speech" stays history as a whole.
fn known_reach(
    doc: &Doc,
    terminator: &[bool],
    term_end: &[usize],
    flags: &mut [u8],
    from: usize,
    window: usize,
) {
    let Some(clause) = cue_clause(doc, from) else {
        return;
    };
    let limit = (from + window).min(doc.toks.len());
    let mut k = from;
    // true once a term has been covered: a term joined to it by "and" stays part of it
    let mut joined = false;
    while k < limit {
        if doc.toks[k].clause != clause || terminator[k] {
            return;
        }
        let end = term_end.get(k).copied().unwrap_or(0);
        // a finding told with a verb after the condition's name starts a new finding: "known
        // lung ca coughing up fresh blood", "known TB coughed up 300 mL"
        if end > k && k > from && !joined && participle(doc.word(k)) {
            return;
        }
        if end > k {
            joined = true;
            for f in flags.iter_mut().take(end).skip(k) {
                *f |= HISTORY;
            }
            if !matches!(doc.word(end), "and" | "or" | "with") {
                return;
            }
            k = end;
            continue;
        }
        flags[k] |= HISTORY;
        k += 1;
    }
}

/// A verb form that tells an event ("coughing", "coughed", "vomited"), not a condition's name.
fn participle(word: &str) -> bool {
    // "L-sided weakness" is the condition's name: "sided" is not a verb
    word.len() > 5 && word.ends_with("ing")
        || word.len() > 6 && word.ends_with("ed") && !word.ends_with("sided")
}

/// Flags up to `window` words before `from`, within the clause, back to and including a
/// terminator.
fn backward(
    doc: &Doc,
    terminator: &[bool],
    flags: &mut [u8],
    from: usize,
    window: usize,
    flag: u8,
) {
    let Some(clause) = doc.toks.get(from).map(|t| t.clause) else {
        return;
    };
    for k in (from.saturating_sub(window)..from).rev() {
        if doc.toks[k].clause != clause {
            break;
        }
        // A terminator ends the reach, but the word itself is part of what is looked back on
        // ("took his own life last year": "took" begins the phrase the cue covers).
        flags[k] |= flag;
        if terminator[k] {
            break;
        }
    }
}

/// Flags the words before `from` in its sentence, back to a contrast terminator ("but", "now",
/// "returns"…), which ends the reach and is not flagged. A time of day ("this morning", "today")
/// does not end it: "hives and wheeze after hair dye this morning, …, sent home" is one episode.
fn backward_in_sentence(doc: &Doc, terminator: &[bool], flags: &mut [u8], from: usize, flag: u8) {
    let Some(sentence) = doc.toks.get(from).map(|t| t.sentence) else {
        return;
    };
    for k in (0..from).rev() {
        if doc.toks[k].sentence != sentence {
            break;
        }
        let time_of_day = matches!(doc.word(k), "today" | "tonight" | "yesterday")
            || doc.word(k) == "this"
                && matches!(doc.word(k + 1), "morning" | "afternoon" | "evening");
        if terminator[k] && !time_of_day {
            break;
        }
        flags[k] |= flag;
    }
}

/// Words that answer a question in the negative.
const NO_ANSWERS: &[&str] = &["no", "nope", "nah", "none", "neither", "negative", "never"];

/// "Face droop? No." and "Nurse: slurred speech? / Pt: no": a question answered by a negative
/// reply (optionally after a speaker label such as "Pt:") is negated as a whole.
fn negative_answers(doc: &Doc, flags: &mut [u8]) {
    let gap = |a: usize, b: usize| -> &str {
        match (doc.toks.get(a), doc.toks.get(b)) {
            (Some(x), Some(y)) => doc.lower.get(x.end..y.start).unwrap_or(""),
            _ => "",
        }
    };
    for i in 1..doc.toks.len() {
        if doc.toks[i].sentence == doc.toks[i - 1].sentence || !gap(i - 1, i).contains('?') {
            continue;
        }
        let labelled = gap(i, i + 1).trim_start().starts_with(':')
            && doc
                .toks
                .get(i + 1)
                .is_some_and(|t| t.sentence == doc.toks[i].sentence);
        let answer = if labelled { i + 1 } else { i };
        if !NO_ANSWERS.contains(&doc.word(answer)) {
            continue;
        }
        let question = doc.toks[i - 1].sentence;
        for k in (0..i).rev() {
            if doc.toks[k].sentence != question {
                break;
            }
            flags[k] |= NEGATED;
        }
    }
}

/// "[ ] hypotension", "☐ IUP confirmed on scan": an unticked box at the start of a line
/// negates the line (a form or checklist item that was not found).
fn unchecked_boxes(doc: &Doc, flags: &mut [u8]) {
    for i in 0..doc.toks.len() {
        let first = i == 0 || doc.toks[i].sentence != doc.toks[i - 1].sentence;
        if !first {
            continue;
        }
        let from = i.checked_sub(1).map_or(0, |j| doc.toks[j].end);
        let gap = doc.lower.get(from..doc.toks[i].start).unwrap_or("");
        // only what stands on the item's own line
        let line = gap.rsplit('\n').next().unwrap_or("");
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if !(squeezed.contains("[]") || squeezed.contains('\u{2610}')) {
            continue;
        }
        let sentence = doc.toks[i].sentence;
        for (k, t) in doc.toks.iter().enumerate().skip(i) {
            if t.sentence != sentence {
                break;
            }
            flags[k] |= NEGATED;
        }
    }
}

/// Whether `pattern` holds over a rule's affirmed occurrences (sorted by start); the evidence
/// if so.
fn satisfied(pattern: &Pattern, occ: &[Occurrence], doc: &Doc) -> Option<Vec<Evidence>> {
    // events: (key, element, occurrence), sorted by key
    let mut events: Vec<(usize, usize, usize)> = Vec::new();
    for (k, o) in occ.iter().enumerate() {
        for (e, union) in pattern.elements.iter().enumerate() {
            if union.contains(&o.group) {
                let key = match pattern.within {
                    Within::Words(_) => o.start,
                    Within::Sentence => doc.toks.get(o.start).map_or(0, |t| t.sentence as usize),
                };
                events.push((key, e, k));
            }
        }
    }
    let span = match pattern.within {
        Within::Words(n) => n,
        Within::Sentence => 0,
    };
    let mut counts = vec![0usize; pattern.elements.len()];
    let mut distinct = 0usize;
    let mut left = 0usize;
    for right in 0..events.len() {
        let (key, e, _) = events[right];
        if counts[e] == 0 {
            distinct += 1;
        }
        counts[e] += 1;
        while events[left].0 + span < key {
            let le = events[left].1;
            counts[le] -= 1;
            if counts[le] == 0 {
                distinct -= 1;
            }
            left += 1;
        }
        if distinct >= pattern.min {
            let mut evidence: Vec<Evidence> = events[left..=right]
                .iter()
                .filter_map(|&(_, _, k)| {
                    let o = occ.get(k)?;
                    Some(Evidence {
                        start: doc.toks.get(o.start)?.start,
                        end: doc.toks.get(o.end.checked_sub(1)?)?.end,
                    })
                })
                .collect();
            evidence.sort_by_key(|e| (e.start, e.end));
            evidence.dedup();
            return Some(evidence);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    #[test]
    fn unticked_boxes_negate_their_line_only() {
        let doc = tokenize("Checklist:\n[ ] wheeze\n[x] sneezing\nwheeze [ ]\nstridor");
        let mut flags = vec![0u8; doc.toks.len()];
        unchecked_boxes(&doc, &mut flags);
        let negated: Vec<&str> = (0..doc.toks.len())
            .filter(|&i| flags[i] & NEGATED != 0)
            .map(|i| doc.word(i))
            .collect();
        assert_eq!(negated, ["wheeze"]);
    }

    /// The flags `known_reach` sets on `text` for a cue at word 0, given the terms as (start,
    /// end) word ranges.
    fn known_flags(text: &str, terms: &[(usize, usize)]) -> Vec<u8> {
        let doc = tokenize(text);
        let terminator = vec![false; doc.toks.len()];
        let mut term_end = vec![0usize; doc.toks.len()];
        for &(start, end) in terms {
            term_end[start] = end;
        }
        let mut flags = vec![0u8; doc.toks.len()];
        known_reach(&doc, &terminator, &term_end, &mut flags, 1, 6);
        flags
    }

    #[test]
    fn known_reaches_over_the_condition_and_joined_terms() {
        // "known varices vomiting blood": the term "varices" (words 1..2) ends the reach
        assert_eq!(
            known_flags("known varices vomiting blood", &[(1, 2), (2, 4)]),
            [0, HISTORY, 0, 0]
        );
        // "chronic weakness and slurring": "and" joins the next term
        assert_eq!(
            known_flags("chronic weakness and slurring today", &[(1, 2), (3, 4)]),
            [0, HISTORY, HISTORY, HISTORY, 0]
        );
        // "known lung ca coughing up blood": the verb begins a new finding
        assert_eq!(
            known_flags("known lung ca coughing up blood", &[(3, 6)]),
            [0, HISTORY, HISTORY, 0, 0, 0]
        );
        // "known bleeding disorder": the first word is the condition itself
        assert_eq!(
            known_flags("known bleeding disorder", &[(1, 2)]),
            [0, HISTORY, 0]
        );
        assert!(participle("coughed") && participle("vomiting"));
        assert!(!participle("sided") && !participle("left-sided") && !participle("ring"));
    }

    #[test]
    fn a_pseudo_cue_masks_teaching_and_scenario_cues_inside_it() {
        let Ok(rules) = crate::RuleSet::builtin() else {
            panic!("builtin rules load");
        };
        let ids = |text: &str| -> Vec<String> {
            rules
                .triage(text)
                .hits
                .iter()
                .map(|h| h.rule_id.to_string())
                .collect()
        };
        // "weak as a kitten" is an idiom: the scenario cue "kitten" inside it does not hold
        assert_eq!(
            ids("Her face has gone droopy and her left arm's gone weak as a kitten in the last hour."),
            ["stroke"]
        );
        // a real kitten still sets the text aside
        assert!(ids("The kitten has a droopy face and a weak arm since this morning.").is_empty());
    }
}
