//! Reversible surrogates for one conversation.
//!
//! [`Vault::deidentify`] replaces each detected identifier with a surrogate of the same shape:
//! a name becomes another name (each name word is mapped on its own, so "Mr. Smith" and "John
//! Smith" stay linked), an MRN another plausible MRN, a phone number another phone number; every
//! date moves by one random offset chosen when the vault is created; ages over 89 become "90+".
//! [`Vault::reidentify`] turns the surrogates in a model's answer back into the real values,
//! also when the model writes only part of a name, a possessive, or another letter case.
//!
//! A surrogate is never a string that occurs elsewhere in the text it replaces, so re-identifying
//! a de-identified text gives back exactly the original. The vault lives in memory only, its
//! strings are zeroised when it is dropped, and its `Debug` shows counts only.

mod dates;

use crate::detect::Detector;
use crate::dict::{FIRST_NAMES, NOT_NAME, SURNAMES, TITLES};
use crate::types::{PhiType, Span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt;
use zeroize::Zeroize;

/// The result of de-identifying one text.
#[derive(Clone, PartialEq)]
pub struct Deidentified {
    /// The text with every identifier replaced.
    pub text: String,
    /// Where the surrogates are in `text`, with the type of what they replaced.
    pub spans: Vec<Span>,
}

impl fmt::Debug for Deidentified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deidentified")
            .field("len", &self.text.len())
            .field("spans", &self.spans.len())
            .finish()
    }
}

impl Drop for Deidentified {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

/// One real value and its surrogate.
struct Entry {
    original: String,
    surrogate: String,
}

/// The surrogate map of one conversation.
pub struct Vault {
    rng: StdRng,
    date_shift: i64,
    entries: Vec<Entry>,
    /// (type, exact original) -> entry, for whole values.
    values: FxHashMap<(PhiType, String), usize>,
    /// lower-case name word -> entries with that word in different spellings.
    words: FxHashMap<String, Vec<usize>>,
    /// lower-case surrogates in use (each maps back to exactly one entry).
    taken: FxHashMap<String, usize>,
    /// lower-case originals replaced so far: none may become a surrogate, or a real value of
    /// one text would reach the model as the stand-in for another in a later text.
    originals: FxHashSet<String>,
    /// lead of a surrogate (see [`lead`]) -> entries, longest surrogate first.
    by_lead: FxHashMap<String, Vec<usize>>,
    fallback_counter: u32,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        for e in &mut self.entries {
            e.original.zeroize();
            e.surrogate.zeroize();
        }
        for (mut k, _) in self.values.drain() {
            k.1.zeroize();
        }
        for (mut k, _) in self.words.drain() {
            k.zeroize();
        }
        for (mut k, _) in self.taken.drain() {
            k.zeroize();
        }
        for mut k in self.originals.drain() {
            k.zeroize();
        }
        for (mut k, _) in self.by_lead.drain() {
            k.zeroize();
        }
    }
}

impl Default for Vault {
    fn default() -> Self {
        Self::new()
    }
}

/// How a word is capitalised.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    Upper,
    Lower,
    Other,
}

fn case_of(s: &str) -> Case {
    let letters = s.chars().filter(|c| c.is_alphabetic()).count();
    if letters > 1 && !s.chars().any(char::is_lowercase) {
        Case::Upper
    } else if letters > 0 && !s.chars().any(char::is_uppercase) {
        Case::Lower
    } else {
        Case::Other
    }
}

fn apply_case(s: &str, case: Case) -> String {
    match case {
        Case::Upper => s.to_uppercase(),
        Case::Lower => s.to_lowercase(),
        Case::Other => s.to_string(),
    }
}

/// Invented place stems for location surrogates.
const PLACES: &[&str] = &[
    "Oakridge",
    "Brookfield",
    "Maplewood",
    "Lakeview",
    "Pinecrest",
    "Fairhaven",
    "Cedarbrook",
    "Westbury",
    "Elmhurst",
    "Ashford",
    "Briarwood",
    "Clearwater",
    "Millbrook",
    "Northfield",
    "Riverbend",
    "Stonebridge",
    "Willowdale",
    "Greenfield",
    "Hillcrest",
    "Kingsbury",
    "Harborview",
    "Meadowbrook",
    "Silverton",
    "Foxborough",
    "Glenwood",
    "Redwood",
    "Sunnyvale",
    "Bayside",
    "Woodhaven",
    "Crestview",
    "Eastwick",
    "Lynnfield",
    "Ridgemont",
    "Springdale",
    "Whitmore",
];

const STREETS: &[&str] = &[
    "Oak", "Maple", "Cedar", "Pine", "Elm", "Birch", "Willow", "Chestnut", "Walnut", "Spruce",
    "Hickory", "Laurel",
];

const EMAIL_DOMAINS: &[&str] = &["example.org", "example.net", "example.com"];

impl Vault {
    /// A vault with a random date shift and random surrogates.
    pub fn new() -> Self {
        Self::from_rng(StdRng::from_entropy())
    }

    /// A reproducible vault (tests and benchmarks only: surrogates must be unpredictable in
    /// production).
    pub fn with_seed(seed: u64) -> Self {
        Self::from_rng(StdRng::seed_from_u64(seed))
    }

    fn from_rng(mut rng: StdRng) -> Self {
        let magnitude = rng.gen_range(30..=365);
        let date_shift = if rng.gen_bool(0.5) {
            magnitude
        } else {
            -magnitude
        };
        Self {
            rng,
            date_shift,
            entries: Vec::new(),
            values: FxHashMap::default(),
            words: FxHashMap::default(),
            taken: FxHashMap::default(),
            originals: FxHashSet::default(),
            by_lead: FxHashMap::default(),
            fallback_counter: 0,
        }
    }

    /// How many values the vault holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True before anything was de-identified.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every surrogate in use (never the originals), for a streaming re-identifier that must
    /// recognise the start of a surrogate before the rest of it has arrived.
    pub fn surrogates(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.surrogate.as_str())
    }

    /// Detects PHI in `text` and replaces it.
    pub fn deidentify(&mut self, detector: &Detector, text: &str) -> Deidentified {
        let spans = detector.detect(text);
        self.deidentify_spans(text, &spans)
    }

    /// Replaces the given spans of `text` (sorted, non-overlapping, on character boundaries;
    /// others are skipped).
    pub fn deidentify_spans(&mut self, text: &str, spans: &[Span]) -> Deidentified {
        let mut last = 0;
        let valid: Vec<&Span> = spans
            .iter()
            .filter(|s| {
                let ok = s.start >= last
                    && s.start < s.end
                    && s.end <= text.len()
                    && text.is_char_boundary(s.start)
                    && text.is_char_boundary(s.end);
                if ok {
                    last = s.end;
                }
                ok
            })
            .collect();
        // No surrogate may occur anywhere in the text: outside the spans re-identification
        // would turn it into the original, and inside them it is a real value (a surrogate
        // "Quimby" for "Test" in "Test Quimby" would send the family name to the model).
        let skeleton = Skeleton::new(text.to_lowercase());

        let mut out = String::with_capacity(text.len() + 16);
        let mut out_spans = Vec::with_capacity(valid.len());
        last = 0;
        for s in valid {
            out.push_str(&text[last..s.start]);
            let original = &text[s.start..s.end];
            let before = text[..s.start].chars().next_back();
            let after = text[s.end..].chars().next();
            let surrogate = self.surrogate_for(s.phi_type, original, &skeleton, before, after);
            let start = out.len();
            out.push_str(&surrogate);
            out_spans.push(Span {
                start,
                end: out.len(),
                phi_type: s.phi_type,
                confidence: s.confidence,
            });
            last = s.end;
        }
        out.push_str(&text[last..]);
        drop(skeleton);
        Deidentified {
            text: out,
            spans: out_spans,
        }
    }

    /// The surrogate of one value, creating it (and its name-word entries) on first sight.
    fn surrogate_for(
        &mut self,
        t: PhiType,
        original: &str,
        skeleton: &Skeleton,
        before: Option<char>,
        after: Option<char>,
    ) -> String {
        if let Some(&e) = self.values.get(&(t, original.to_string())) {
            return self.entries[e].surrogate.clone();
        }
        // A name of whole words needs no entry of its own: each word maps back by itself.
        // With an initial ("Anna S.") the whole name is kept, so the initial maps back too.
        let has_initial = original
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w.chars().count() == 1);
        if t == PhiType::Name && !has_initial {
            return self.name(original, skeleton);
        }
        let mut attempt = 0;
        let surrogate = loop {
            let candidate = if attempt < 12 {
                self.generate(t, original, skeleton, attempt)
            } else {
                None
            };
            let candidate = match candidate {
                Some(c) => c,
                None => {
                    self.fallback_counter += 1;
                    format!("[{} {}]", t.as_str(), self.fallback_counter)
                }
            };
            attempt += 1;
            // next to a letter or digit of the text, a surrogate must not start (or end) with
            // one, or re-identification could not see where it begins (or ends)
            let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
            let clash_before = alnum(before) && alnum(candidate.chars().next());
            let clash_after = alnum(after) && alnum(candidate.chars().next_back());
            let edges_ok = !clash_before && !clash_after;
            // re-identification finds a surrogate by its lead: one without is unusable
            let findable = lead(&candidate.to_lowercase(), 0).is_some();
            if findable && self.usable(&candidate, skeleton) && edges_ok && candidate != original {
                break candidate;
            }
            // after twelve tries the bracketed form with a fresh number is used; some number
            // is always free, so the loop ends
        };
        let e = self.add(original.to_string(), surrogate.clone());
        self.values.insert((t, original.to_string()), e);
        surrogate
    }

    /// A surrogate may be used when no other value has it and it does not occur in the text
    /// where [`Vault::reidentify`] would find it.
    fn usable(&self, candidate: &str, skeleton: &Skeleton) -> bool {
        let lower = candidate.to_lowercase();
        !candidate.is_empty()
            && !self.taken.contains_key(&lower)
            && !self.originals.contains(&lower)
            && !skeleton.contains(&lower)
    }

    fn add(&mut self, original: String, surrogate: String) -> usize {
        let e = self.entries.len();
        let lower = surrogate.to_lowercase();
        if let Some(key) = lead(&lower, 0) {
            let list = self.by_lead.entry(key.to_string()).or_default();
            let entries = &self.entries;
            let at = list.partition_point(|&k| entries[k].surrogate.len() >= surrogate.len());
            list.insert(at, e);
        }
        self.taken.insert(lower, e);
        self.originals.insert(original.to_lowercase());
        self.entries.push(Entry {
            original,
            surrogate,
        });
        e
    }

    fn pick<'a>(&mut self, list: &'a [&'a str]) -> &'a str {
        list[self.rng.gen_range(0..list.len())]
    }

    /// A candidate surrogate for `original` (`attempt` counts rejected candidates).
    fn generate(
        &mut self,
        t: PhiType,
        original: &str,
        skeleton: &Skeleton,
        attempt: u32,
    ) -> Option<String> {
        Some(match t {
            PhiType::Name => self.name(original, skeleton),
            PhiType::Date => {
                if attempt > 0 {
                    return None;
                }
                dates::shift_date(original, self.date_shift)?
            }
            PhiType::Age => ["90+", "90 or older", "over 89", "ninety or older"]
                .get(attempt as usize)?
                .to_string(),
            PhiType::GeographicLocation => self.place(original),
            PhiType::EmailAddress => {
                let first = self.fake_word(true);
                let last = self.fake_word(false);
                let domain = self.pick(EMAIL_DOMAINS);
                apply_case(
                    &format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase()),
                    case_of(original),
                )
            }
            PhiType::Url => {
                let scheme = if original.to_lowercase().starts_with("http://") {
                    "http://"
                } else {
                    "https://"
                };
                let path: String = (0..8)
                    .map(|_| char::from(b'a' + self.rng.gen_range(0..26u8)))
                    .collect();
                format!("{scheme}example.org/{path}")
            }
            PhiType::IpAddress => {
                if original.contains(':') {
                    format!("2001:db8::{:x}", self.rng.gen_range(1..0xffffu32))
                } else {
                    format!(
                        "10.{}.{}.{}",
                        self.rng.gen_range(0..256u32),
                        self.rng.gen_range(0..256u32),
                        self.rng.gen_range(1..255u32)
                    )
                }
            }
            _ => self.same_shape(original),
        })
    }

    /// Every letter and digit replaced by a random one of the same kind and case; separators kept.
    fn same_shape(&mut self, original: &str) -> String {
        let mut first_digit = true;
        original
            .chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    let low = if first_digit && c != '0' { 1 } else { 0 };
                    first_digit = false;
                    char::from(b'0' + self.rng.gen_range(low..10u8))
                } else if c.is_ascii_uppercase() {
                    char::from(b'A' + self.rng.gen_range(0..26u8))
                } else if c.is_ascii_lowercase() {
                    char::from(b'a' + self.rng.gen_range(0..26u8))
                } else if c.is_alphanumeric() {
                    'X'
                } else {
                    c
                }
            })
            .collect()
    }

    /// A common first name or surname from the census lists that reads as nothing else.
    fn fake_word(&mut self, first: bool) -> String {
        loop {
            let w = if first {
                FAKE_FIRST[self.rng.gen_range(0..FAKE_FIRST.len())]
            } else {
                FAKE_LAST[self.rng.gen_range(0..FAKE_LAST.len())]
            };
            if !NOT_NAME.contains(w) {
                let mut c = w.chars();
                return c
                    .next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default();
            }
        }
    }

    /// A name: titles kept, each word mapped through the word map, initials replaced.
    fn name(&mut self, original: &str, skeleton: &Skeleton) -> String {
        let mut out = String::with_capacity(original.len() + 4);
        let mut word = String::new();
        let mut words_seen = 0;
        let total_words = original
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() > 1)
            .count();
        let flush =
            |this: &mut Self, word: &mut String, out: &mut String, words_seen: &mut usize| {
                if word.is_empty() {
                    return;
                }
                let lower = word.to_lowercase();
                if word.chars().count() == 1 {
                    // an initial: another letter in the same case
                    let letter = char::from(b'A' + this.rng.gen_range(0..26u8));
                    out.push(if word.chars().all(char::is_lowercase) {
                        letter.to_ascii_lowercase()
                    } else {
                        letter
                    });
                } else if TITLES.contains(lower.as_str()) {
                    out.push_str(word);
                } else {
                    *words_seen += 1;
                    let as_first = *words_seen == 1 && total_words > 1
                        || (FIRST_NAMES.contains(lower.as_str())
                            && !SURNAMES.contains(lower.as_str()));
                    out.push_str(&this.name_word(word, as_first, skeleton));
                }
                word.clear();
            };
        for c in original.chars() {
            if c.is_alphanumeric() {
                word.push(c);
            } else {
                flush(self, &mut word, &mut out, &mut words_seen);
                out.push(c);
            }
        }
        flush(self, &mut word, &mut out, &mut words_seen);
        out
    }

    /// The surrogate of one name word, consistent across the conversation.
    fn name_word(&mut self, word: &str, as_first: bool, skeleton: &Skeleton) -> String {
        let lower = word.to_lowercase();
        let case = case_of(word);
        if let Some(list) = self.words.get(&lower) {
            for &e in list {
                let entry = &self.entries[e];
                let fits = match case {
                    Case::Other => entry.original == word,
                    _ => apply_case(&entry.original, case) == word,
                };
                if fits {
                    return apply_case(&entry.surrogate, case);
                }
            }
            // an upper- or lower-case spelling seen first: adopt this spelling as the original
            if case == Case::Other {
                if let Some(&e) = list.iter().find(|&&e| {
                    case_of(&self.entries[e].original) != Case::Other
                        && apply_case(word, case_of(&self.entries[e].original))
                            == self.entries[e].original
                }) {
                    self.entries[e].original = word.to_string();
                    return self.entries[e].surrogate.clone();
                }
            }
        }
        let mut tries = 0;
        let surrogate = loop {
            tries += 1;
            let candidate = if tries < 30 {
                self.fake_word(as_first)
            } else {
                format!("{}{}", self.fake_word(as_first), tries)
            };
            if self.usable(&candidate, skeleton) && candidate.to_lowercase() != lower {
                break candidate;
            }
        };
        let e = self.add(word.to_string(), surrogate.clone());
        self.words.entry(lower).or_default().push(e);
        apply_case(&surrogate, case)
    }

    /// A place of the same kind: "St. Mary's Hospital" -> "Oakridge Hospital", "123 Elm St" ->
    /// "481 Maple St", "Chicago" -> "Brookfield".
    fn place(&mut self, original: &str) -> String {
        let stem = self.pick(PLACES).to_string();
        let trimmed = original.trim_start();
        if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
            let number: String = trimmed.chars().take_while(char::is_ascii_digit).collect();
            let number = self.same_shape(&number);
            let street = self.pick(STREETS);
            let suffix = original
                .split_whitespace()
                .find(|w| {
                    crate::dict::STREET_SUFFIXES
                        .contains(w.trim_end_matches(['.', ',']).to_lowercase().as_str())
                })
                .unwrap_or("Street");
            return format!("{number} {street} {}", suffix.trim_end_matches(','));
        }
        // keep the facility words at the end of the name ("Medical Center")
        let lower = original.to_lowercase();
        for head in [
            "medical center",
            "health center",
            "hospital",
            "clinic",
            "medical",
            "health",
            "center",
            "institute",
            "county",
            "general",
        ] {
            if let Some(at) = lower.rfind(head) {
                let tail = &original[at..at + head.len()];
                return apply_case(&format!("{stem} {tail}"), case_of(original));
            }
        }
        apply_case(&stem, case_of(original))
    }

    /// `text` with every surrogate of this vault replaced by its real value. Matching ignores
    /// letter case (the value comes back in the case the model used: all capitals, all lower
    /// case, or as originally written) and needs a word boundary wherever the surrogate begins
    /// or ends with a letter or digit, so "Paul" is restored in "Paul's" but not in "Pauline".
    pub fn reidentify(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut copied = 0;
        while i < bytes.len() {
            if !text.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let prev_alnum = text[..i]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            let starts_word = bytes[i].is_ascii_alphanumeric()
                || text[i..].chars().next().is_some_and(char::is_alphanumeric);
            // only where a surrogate could begin: a word start, or a symbol
            let key = if starts_word && prev_alnum || bytes[i].is_ascii_whitespace() {
                None
            } else {
                lead(&text[i..], 0).map(str::to_lowercase)
            };
            if let Some(list) = key.as_ref().and_then(|k| self.by_lead.get(k)) {
                let hit = list.iter().find_map(|&e| {
                    let s = &self.entries[e].surrogate;
                    let end = i + s.len();
                    if end > bytes.len() || !text.is_char_boundary(end) {
                        return None;
                    }
                    let found = &text[i..end];
                    if !found.eq_ignore_ascii_case(s) && found.to_lowercase() != s.to_lowercase() {
                        return None;
                    }
                    let starts_alnum = s.chars().next().is_some_and(char::is_alphanumeric);
                    let ends_alnum = s.chars().next_back().is_some_and(char::is_alphanumeric);
                    let next_alnum = text[end..]
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric);
                    if (starts_alnum && prev_alnum) || (ends_alnum && next_alnum) {
                        return None;
                    }
                    Some((e, end, found))
                });
                if let Some((e, end, found)) = hit {
                    let entry = &self.entries[e];
                    out.push_str(&text[copied..i]);
                    if found == entry.surrogate {
                        out.push_str(&entry.original);
                    } else {
                        out.push_str(&apply_case(&entry.original, case_of(found)));
                    }
                    i = end;
                    copied = end;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// The lead of `s` at byte `i`: the characters up to the end of the first word (letters and
/// digits), after at most a few non-space symbols ("(555", "#ab", "[name", "kate"). Every
/// surrogate has one; re-identification looks surrogates up by it.
fn lead(s: &str, i: usize) -> Option<&str> {
    let rest = s.get(i..)?;
    let mut chars = rest.char_indices();
    let mut word_started = false;
    for (k, c) in chars.by_ref() {
        if c.is_alphanumeric() {
            word_started = true;
        } else if word_started {
            return Some(&rest[..k]);
        } else if c.is_whitespace() || k > 8 {
            return None;
        }
    }
    word_started.then_some(rest)
}

/// The lower-cased text outside the spans, indexed by word, to test in time proportional to the
/// matches whether a candidate surrogate occurs in it.
struct Skeleton {
    lower: String,
    words: FxHashMap<String, Vec<usize>>,
}

impl Skeleton {
    fn new(lower: String) -> Self {
        let mut words: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        let mut start = None;
        for (i, c) in lower
            .char_indices()
            .chain(std::iter::once((lower.len(), ' ')))
        {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    words.entry(lower[s..i].to_string()).or_default().push(s);
                    start = None;
                }
                _ => {}
            }
        }
        Self { lower, words }
    }

    /// Whether `candidate` (lower case) occurs where re-identification would match it.
    fn contains(&self, candidate: &str) -> bool {
        // anchor on the candidate's rarest word
        let mut best: Option<(usize, &[usize])> = None;
        let mut offset = None;
        for (i, c) in candidate
            .char_indices()
            .chain(std::iter::once((candidate.len(), ' ')))
        {
            match (c.is_alphanumeric(), offset) {
                (true, None) => offset = Some(i),
                (false, Some(s)) => {
                    let positions = self
                        .words
                        .get(&candidate[s..i])
                        .map_or(&[][..], Vec::as_slice);
                    if best.is_none_or(|(_, p)| positions.len() < p.len()) {
                        best = Some((s, positions));
                    }
                    offset = None;
                }
                _ => {}
            }
        }
        let Some((word_offset, positions)) = best else {
            return self.lower.contains(candidate);
        };
        let starts_alnum = candidate.chars().next().is_some_and(char::is_alphanumeric);
        let ends_alnum = candidate
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        positions.iter().any(|&p| {
            let Some(start) = p.checked_sub(word_offset) else {
                return false;
            };
            let end = start + candidate.len();
            if self.lower.get(start..end) != Some(candidate) {
                return false;
            }
            let prev_alnum = self.lower[..start]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            let next_alnum = self.lower[end..]
                .chars()
                .next()
                .is_some_and(char::is_alphanumeric);
            !((starts_alnum && prev_alnum) || (ends_alnum && next_alnum))
        })
    }
}

impl Drop for Skeleton {
    fn drop(&mut self) {
        self.lower.zeroize();
        for (mut k, _) in self.words.drain() {
            k.zeroize();
        }
    }
}

/// First names for surrogates: common, unambiguous census names.
const FAKE_FIRST: &[&str] = &[
    "alice",
    "brian",
    "carla",
    "derek",
    "elena",
    "felix",
    "gloria",
    "harold",
    "irene",
    "julian",
    "karen",
    "leon",
    "marta",
    "nolan",
    "olga",
    "pablo",
    "rita",
    "simon",
    "tessa",
    "victor",
    "wendy",
    "xavier",
    "yvonne",
    "zachary",
    "agnes",
    "bernard",
    "cecilia",
    "dennis",
    "edith",
    "franklin",
    "greta",
    "hector",
    "ingrid",
    "jasper",
    "lydia",
    "morris",
    "nadia",
    "oscar",
    "priscilla",
    "quentin",
    "rosalind",
    "stanley",
    "thelma",
    "ulysses",
    "vera",
    "walter",
];

/// Surnames for surrogates.
const FAKE_LAST: &[&str] = &[
    "abbott",
    "barlow",
    "caldwell",
    "dalton",
    "ellison",
    "fairbanks",
    "galloway",
    "hartley",
    "ingram",
    "jennings",
    "kendall",
    "langley",
    "merritt",
    "norwood",
    "oakley",
    "prescott",
    "quimby",
    "radcliffe",
    "sheldon",
    "thornton",
    "underwood",
    "vance",
    "whitaker",
    "yardley",
    "ashby",
    "brennan",
    "crowley",
    "donovan",
    "emerson",
    "fenwick",
    "granger",
    "holloway",
    "irving",
    "jarvis",
    "kirkland",
    "lowell",
    "mercer",
    "nash",
    "osborne",
    "pembroke",
];

#[cfg(test)]
mod tests;
