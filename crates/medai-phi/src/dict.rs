//! Dictionaries: public-domain name lists, a gazetteer, and the hand-written vocabularies the
//! rules use (titles, facility words, identifier labels, words that look like names but are not).
//! Provenance and licences of the data files are in `data/README.md`.

use crate::text::{Kind, Token};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::LazyLock;

fn lines(data: &'static str) -> impl Iterator<Item = &'static str> {
    data.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn set(data: &'static str) -> FxHashSet<&'static str> {
    lines(data).collect()
}

/// Lower-case first names (US Census 1990).
pub(crate) static FIRST_NAMES: LazyLock<FxHashSet<&'static str>> =
    LazyLock::new(|| set(include_str!("../data/first_names.txt")));

/// Lower-case surnames, the 20,000 most frequent (US Census 1990).
pub(crate) static SURNAMES: LazyLock<FxHashSet<&'static str>> =
    LazyLock::new(|| set(include_str!("../data/surnames.txt")));

/// Multi-word phrases matched token by token, case-insensitively.
pub(crate) struct Phrases {
    by_first: FxHashMap<String, Vec<Vec<String>>>,
}

impl Phrases {
    pub fn new<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        let mut by_first: FxHashMap<String, Vec<Vec<String>>> = FxHashMap::default();
        for item in items {
            let words: Vec<String> = item
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            if let Some(first) = words.first() {
                by_first.entry(first.clone()).or_default().push(words);
            }
        }
        for list in by_first.values_mut() {
            list.sort_by_key(|w| std::cmp::Reverse(w.len()));
            list.dedup();
        }
        Self { by_first }
    }

    /// The longest phrase starting at word token `i`: the index one past its last token.
    /// Between words only `.`, `-` and apostrophes may appear (`St. Louis`, `Winston-Salem`).
    pub fn longest_at(&self, lower: &str, toks: &[Token], i: usize) -> Option<usize> {
        let first = toks.get(i)?;
        if !first.is_word() {
            return None;
        }
        let candidates = self.by_first.get(&lower[first.start..first.end])?;
        'phrase: for words in candidates {
            let mut j = i + 1;
            for word in &words[1..] {
                while let Some(t) = toks.get(j) {
                    match t.kind {
                        Kind::Punct(c)
                            if c == '.'
                                || c == '-'
                                || c == '&'
                                || crate::text::is_apostrophe(c) =>
                        {
                            j += 1
                        }
                        _ => break,
                    }
                }
                let Some(t) = toks.get(j) else {
                    continue 'phrase;
                };
                if !t.is_word() || &lower[t.start..t.end] != word {
                    continue 'phrase;
                }
                j += 1;
            }
            return Some(j);
        }
        None
    }
}

/// Cities: US places with 5,000+ inhabitants, world cities with 1,000,000+ (GeoNames), and the
/// abbreviations people write for large US cities.
pub(crate) static CITIES: LazyLock<Phrases> = LazyLock::new(|| {
    Phrases::new(
        lines(include_str!("../data/us_cities.txt"))
            .chain(lines(include_str!("../data/world_cities.txt")))
            .chain(CITY_ABBREVIATIONS.iter().copied()),
    )
});

const CITY_ABBREVIATIONS: &[&str] = &[
    "NYC",
    "SF",
    "Philly",
    "NOLA",
    "Washington DC",
    "Washington D.C.",
    "St Louis",
    "Saint Louis",
    "St Paul",
    "Saint Paul",
    "Ft Lauderdale",
    "Ft Worth",
    "Fort Worth",
    "New York",
    "San Fran",
    "Bronx",
    "the Bronx",
    "Brooklyn",
    "Queens",
    "Manhattan",
    "Staten Island",
    "Harlem",
];

/// US county names without "County" (Census, via GeoNames).
pub(crate) static COUNTIES: LazyLock<Phrases> =
    LazyLock::new(|| Phrases::new(lines(include_str!("../data/us_counties.txt"))));

/// Country names: not PHI, and never a city even where a US town shares the name.
pub(crate) static COUNTRIES: LazyLock<Phrases> =
    LazyLock::new(|| Phrases::new(lines(include_str!("../data/countries.txt"))));

/// US state names and postal codes.
pub(crate) static STATES: LazyLock<(FxHashSet<&'static str>, Phrases)> = LazyLock::new(|| {
    let mut codes = FxHashSet::default();
    let mut names = Vec::new();
    for line in lines(include_str!("../data/us_states.txt")) {
        if let Some((code, name)) = line.split_once('\t') {
            codes.insert(code);
            names.push(name);
        }
    }
    (codes, Phrases::new(names))
});

/// Health systems and hospitals that people name without a word like "Hospital"; names that end
/// with a facility word are found by the facility rule and need no entry.
pub(crate) static INSTITUTIONS: LazyLock<Phrases> =
    LazyLock::new(|| Phrases::new(lines(include_str!("../data/institutions.txt"))));

/// Words that end the name of a facility (`... Hospital`, `... Medical Center`).
pub(crate) static FACILITY_HEADS: LazyLock<Phrases> =
    LazyLock::new(|| Phrases::new(lines(include_str!("../data/facility_words.txt"))));

/// Facility words that, written in lower case after a place name, make it a facility
/// ("our Dallas facility", "the Boston clinic").
pub(crate) const LOWER_FACILITY_WORDS: &[&str] = &[
    "hospital", "clinic", "facility", "office", "practice", "center", "centre", "er", "medical",
    "health", "campus", "location", "branch", "site",
];

/// Words that begin a facility name before the capitalised words ("St. Mary's", "Mount Carmel").
pub(crate) const FACILITY_PREFIXES: &[&str] = &[
    "st",
    "saint",
    "mt",
    "mount",
    "san",
    "santa",
    "ft",
    "fort",
    "county",
    "university",
    "regional",
    "community",
    "memorial",
    "veterans",
    "va",
];

/// Street types after a house number and street name.
pub(crate) static STREET_SUFFIXES: LazyLock<FxHashSet<&'static str>> = LazyLock::new(|| {
    [
        "street",
        "st",
        "avenue",
        "ave",
        "av",
        "road",
        "rd",
        "boulevard",
        "blvd",
        "lane",
        "ln",
        "drive",
        "dr",
        "way",
        "court",
        "ct",
        "place",
        "pl",
        "terrace",
        "ter",
        "parkway",
        "pkwy",
        "highway",
        "hwy",
        "circle",
        "cir",
        "square",
        "sq",
        "trail",
        "trl",
        "alley",
        "plaza",
        "route",
        "rte",
        "pike",
        "turnpike",
    ]
    .into_iter()
    .collect()
});

/// Personal titles that introduce a name.
pub(crate) static TITLES: LazyLock<FxHashSet<&'static str>> = LazyLock::new(|| {
    [
        "dr",
        "doctor",
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "prof",
        "professor",
        "mister",
        "madam",
        "sister",
        "nurse",
        "rev",
        "fr",
        "capt",
        "sgt",
    ]
    .into_iter()
    .collect()
});

/// Capitalised words that never begin or continue a person's name even when the census lists
/// them: function words, clinical vocabulary, months, days and facility words.
pub(crate) static NOT_NAME: LazyLock<FxHashSet<&'static str>> =
    LazyLock::new(|| set(include_str!("../data/not_names.txt")));

/// Words after a name that show it is an eponym, not a person ("Wilson's disease").
pub(crate) const EPONYM_NOUNS: &[&str] = &[
    "surgery",
    "repair",
    "graft",
    "rules",
    "ankle",
    "knee",
    "virus",
    "fever",
    "spotted",
    "disease",
    "syndrome",
    "sign",
    "signs",
    "reflex",
    "test",
    "criteria",
    "score",
    "scale",
    "classification",
    "stage",
    "staging",
    "maneuver",
    "manoeuvre",
    "procedure",
    "operation",
    "palsy",
    "esophagus",
    "oesophagus",
    "angina",
    "lymphoma",
    "sarcoma",
    "tumor",
    "tumour",
    "ulcer",
    "phenomenon",
    "law",
    "rule",
    "rules",
    "index",
    "formula",
    "equation",
    "method",
    "technique",
    "triad",
    "point",
    "node",
    "nodes",
    "cell",
    "cells",
    "body",
    "bodies",
    "fracture",
    "contracture",
    "cyst",
    "hernia",
    "anomaly",
    "deformity",
    "disorder",
    "encephalopathy",
    "dementia",
    "chorea",
    "ataxia",
    "dystrophy",
    "neuralgia",
    "arthritis",
    "thyroiditis",
    "granulomatosis",
    "purpura",
    "diverticulum",
    "murmur",
    "solution",
    "block",
    "questionnaire",
    "inventory",
    "protocol",
    "regimen",
    "catheter",
    "tube",
    "line",
    "position",
];

/// Month names and abbreviations, lower case, with their month number.
pub(crate) fn month(word: &str) -> Option<u8> {
    Some(match word {
        "january" | "jan" => 1,
        "february" | "feb" | "febr" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    #[test]
    fn dictionaries_load() {
        assert!(FIRST_NAMES.contains("mary") && FIRST_NAMES.len() > 5000);
        assert!(SURNAMES.contains("smith") && SURNAMES.len() >= 20000);
        assert!(STATES.0.contains("CA"));
        assert_eq!(month("sept"), Some(9));
    }

    #[test]
    fn phrases_match_longest_across_punctuation() {
        let text = "seen in St. Louis and Winston-Salem";
        let toks = tokenize(text);
        let lower = crate::text::lower_aligned(text);
        let end = CITIES.longest_at(&lower, &toks, 2).unwrap();
        assert_eq!(&text[toks[2].start..toks[end - 1].end], "St. Louis");
        let ws = toks
            .iter()
            .position(|t| &text[t.start..t.end] == "Winston")
            .unwrap();
        let end = CITIES.longest_at(&lower, &toks, ws).unwrap();
        assert_eq!(&text[toks[ws].start..toks[end - 1].end], "Winston-Salem");
        assert!(CITIES.longest_at(&lower, &toks, 0).is_none());
    }
}
