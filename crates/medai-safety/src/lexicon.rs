//! Phrases (word sequences with prefix and wildcard words) and one index that finds all of them
//! in a tokenised text in a single pass: each word is looked up by its text and by its prefixes,
//! so the cost is linear in the text and does not grow with the number of phrases.

use crate::text::{canon, number, tokenize, Doc};
use rustc_hash::FxHashMap;

/// One word of a phrase.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WordPat {
    /// The word itself.
    Exact(Box<str>),
    /// Any word starting with this ("diaphore*").
    Prefix(Box<str>),
    /// Any one word ("*").
    Any,
    /// A year, 1900–2099 ("#year").
    Year,
    /// Any number, with or without a unit ("#num").
    Num,
}

impl WordPat {
    fn matches(&self, word: &str) -> bool {
        match self {
            WordPat::Exact(w) => word == &**w,
            WordPat::Prefix(p) => word.starts_with(&**p),
            WordPat::Any => !word.is_empty(),
            WordPat::Year => {
                word.len() == 4
                    && number(word)
                        .is_some_and(|(v, u)| u.is_empty() && (1900.0..2100.0).contains(&v))
            }
            WordPat::Num => number(word).is_some(),
        }
    }
}

/// Parses a phrase as written in the rule file: words separated by spaces, `/` or `-`; a word
/// may end in `*` (prefix, at least three letters), be `*` (any word), `#year` or `#num`.
pub(crate) fn parse_phrase(phrase: &str) -> Result<Vec<WordPat>, String> {
    let mut out = Vec::new();
    for piece in phrase
        .to_ascii_lowercase()
        .split(|c: char| c.is_whitespace() || c == '/' || c == '-')
        .filter(|p| !p.is_empty())
    {
        let pat = match piece {
            "*" => WordPat::Any,
            "#year" => WordPat::Year,
            "#num" => WordPat::Num,
            _ => {
                let (stem, prefix) = match piece.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (piece, false),
                };
                let doc = tokenize(stem);
                if doc.toks.len() != 1 || doc.word(0) != stem {
                    return Err(format!(
                        "{phrase:?}: {piece:?} is not one word (letters, digits, a decimal point or an apostrophe)"
                    ));
                }
                if prefix {
                    if stem.chars().count() < 3 {
                        return Err(format!(
                            "{phrase:?}: the prefix {piece:?} needs at least three letters before *"
                        ));
                    }
                    WordPat::Prefix(canon(stem).into())
                } else {
                    WordPat::Exact(canon(stem).into())
                }
            }
        };
        out.push(pat);
    }
    match out.first() {
        None => Err(format!("{phrase:?} has no words")),
        Some(WordPat::Any) => Err(format!("{phrase:?} cannot start with the wildcard *")),
        Some(_) => Ok(out),
    }
}

/// Where a phrase came from; the engine decides what a match means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// A term of `rule`'s term group `group`.
    Term { rule: u16, group: u16 },
    /// A phrase that stops `rule`'s terms matching on its words (a look-alike).
    Exclude { rule: u16 },
    /// A phrase that, affirmed, takes the term groups of `rule`'s suppressor `index` out of play.
    Suppress { rule: u16, index: u16 },
    /// A context cue.
    Cue(Cue),
}

/// The context cue kinds (see the `[cues]` table of the rule file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cue {
    NegationPre,
    NegationNear,
    NegationPost,
    Pseudo,
    HistoryPre,
    HistoryClause,
    HistoryPost,
    Hypothetical,
    Education,
    Scenario,
    PatientSpecific,
    Terminator,
    Resolved,
    NegationSentence,
}

/// A phrase found in a text: words `start..end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub start: usize,
    pub end: usize,
    pub tag: Tag,
}

/// All phrases, indexed by their first word.
#[derive(Debug, Default)]
pub(crate) struct Lexicon {
    phrases: Vec<(Vec<WordPat>, Tag)>,
    exact: FxHashMap<Box<str>, Vec<u32>>,
    prefix: FxHashMap<Box<str>, Vec<u32>>,
    prefix_lens: Vec<usize>,
    numeric: Vec<u32>,
}

impl Lexicon {
    pub fn add(&mut self, words: Vec<WordPat>, tag: Tag) {
        let id = u32::try_from(self.phrases.len()).unwrap_or(u32::MAX);
        match words.first() {
            Some(WordPat::Exact(w)) => self.exact.entry(w.clone()).or_default().push(id),
            Some(WordPat::Prefix(p)) => {
                let len = p.len();
                if !self.prefix_lens.contains(&len) {
                    self.prefix_lens.push(len);
                    self.prefix_lens.sort_unstable();
                }
                self.prefix.entry(p.clone()).or_default().push(id);
            }
            Some(WordPat::Year | WordPat::Num) => self.numeric.push(id),
            Some(WordPat::Any) | None => return,
        }
        self.phrases.push((words, tag));
    }

    /// Every phrase occurrence in `doc` (phrases never cross a sentence boundary), in order of
    /// their first word.
    pub fn find(&self, doc: &Doc) -> Vec<Found> {
        let mut out = Vec::new();
        for i in 0..doc.toks.len() {
            let word = doc.canon_word(i);
            let mut try_ids = |ids: &[u32]| {
                for &id in ids {
                    if let Some(len) = self.match_at(doc, i, id) {
                        out.push(Found {
                            start: i,
                            end: i + len,
                            tag: self.phrases[id as usize].1,
                        });
                    }
                }
            };
            if let Some(ids) = self.exact.get(word) {
                try_ids(ids);
            }
            for &len in &self.prefix_lens {
                if len > word.len() {
                    break;
                }
                if let Some(ids) = word.get(..len).and_then(|p| self.prefix.get(p)) {
                    try_ids(ids);
                }
            }
            if word.starts_with(|c: char| c.is_ascii_digit()) {
                try_ids(&self.numeric);
            }
        }
        out
    }

    fn match_at(&self, doc: &Doc, i: usize, id: u32) -> Option<usize> {
        let (words, _) = self.phrases.get(id as usize)?;
        let sentence = doc.toks.get(i)?.sentence;
        for (k, pat) in words.iter().enumerate() {
            let t = doc.toks.get(i + k)?;
            if t.sentence != sentence || !pat.matches(doc.canon_word(i + k)) {
                return None;
            }
        }
        Some(words.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_contractions_match_with_or_without_apostrophe() {
        let mut lex = Lexicon::default();
        let tag = Tag::Cue(Cue::Pseudo);
        lex.add(parse_phrase("can't move * leg").unwrap_or_default(), tag);
        lex.add(parse_phrase("dont").unwrap_or_default(), tag);
        lex.add(parse_phrase("we'll").unwrap_or_default(), tag);
        for text in [
            "cant move his leg",
            "can't move his leg",
            "can\u{2019}t move his leg",
        ] {
            assert_eq!(lex.find(&tokenize(text)).len(), 1, "{text}");
        }
        assert_eq!(lex.find(&tokenize("I don't know")).len(), 1);
        assert_eq!(lex.find(&tokenize("I don\u{2019}t know")).len(), 1);
        assert!(lex.find(&tokenize("feeling well")).is_empty());
        assert_eq!(lex.find(&tokenize("we\u{2019}ll see")).len(), 1);
        assert_eq!(canon("won't"), "wont");
        assert_eq!(canon("it\u{2019}s"), "it's");
        assert_eq!(canon("n't"), "n't");
    }

    #[test]
    fn parses_and_rejects_phrases() {
        assert_eq!(
            parse_phrase("h/o").unwrap(),
            [WordPat::Exact("h".into()), WordPat::Exact("o".into())]
        );
        assert_eq!(
            parse_phrase("Diaphore*").unwrap(),
            [WordPat::Prefix("diaphore".into())]
        );
        assert!(parse_phrase("").is_err());
        assert!(parse_phrase("* pain").is_err());
        assert!(parse_phrase("ab*").is_err());
        assert!(parse_phrase("chest+pain").is_err());
    }

    #[test]
    fn finds_exact_prefix_wildcard_and_year() {
        let mut lex = Lexicon::default();
        let t = |g| Tag::Term { rule: 0, group: g };
        lex.add(parse_phrase("chest pain").unwrap(), t(0));
        lex.add(parse_phrase("diaphore*").unwrap(), t(1));
        lex.add(parse_phrase("pain in * chest").unwrap(), t(2));
        lex.add(parse_phrase("in #year").unwrap(), t(3));
        let doc = tokenize("Chest pain, diaphoretic. Pain in the chest. MI in 2015. chest. pain");
        let found: Vec<(usize, usize)> = lex.find(&doc).iter().map(|f| (f.start, f.end)).collect();
        assert_eq!(found, [(0, 2), (2, 3), (3, 7), (8, 10)]);
    }
}
