//! Re-identification of a streamed answer, token by token.
//!
//! The model's answer arrives in pieces, and a surrogate ("Derek Holt", "(555) 014-2231") can be
//! cut anywhere, even inside a UTF-8 character when bytes are pushed. [`StreamingReidentifier`]
//! emits text as soon as it is certain of it and holds back only a suffix that could still be
//! (the start of) a surrogate, or a word whose end decides whether a surrogate matches.
//!
//! Exactness: the concatenated output equals `vault.reidentify(whole answer)`. The replacement
//! itself is done by [`Vault::reidentify`] on segments cut where the result cannot differ from
//! the whole: no possible match crosses the cut, and the characters around it make the vault's
//! word-boundary checks come out the same on both sides. Possible matches are found with an
//! Aho-Corasick automaton over the surrogates (ASCII case-insensitive, as the vault matches; for
//! the rare surrogate with non-ASCII characters its lower- and upper-case forms are added).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use medai_phi::Vault;
use std::borrow::Borrow;

/// Re-identifies one streamed answer. Borrows the vault (`&Vault`) or shares it (`Arc<Vault>`).
pub struct StreamingReidentifier<V: Borrow<Vault>> {
    vault: V,
    matcher: Option<AhoCorasick>,
    /// ASCII-lower-case patterns, sorted, for "is this suffix the start of a surrogate".
    prefixes: Vec<String>,
    max_len: usize,
    pending: String,
    partial_utf8: Vec<u8>,
    /// Whether the last character handed on (before re-identification) was a letter or digit.
    prev_alnum: bool,
    /// Scratch space reused between pushes.
    spans: Vec<(usize, usize)>,
}

impl<V: Borrow<Vault>> std::fmt::Debug for StreamingReidentifier<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingReidentifier")
            .field("surrogates", &self.prefixes.len())
            .field("held_bytes", &self.pending.len())
            .finish()
    }
}

impl<V: Borrow<Vault>> StreamingReidentifier<V> {
    /// A re-identifier for one answer, with a matcher built over the vault's surrogates.
    pub fn new(vault: V) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for s in vault.borrow().surrogates() {
            patterns.push(s.to_string());
            if !s.is_ascii() {
                for variant in [s.to_lowercase(), s.to_uppercase()] {
                    if variant.len() == s.len() {
                        patterns.push(variant);
                    }
                }
            }
        }
        patterns.retain(|p| !p.is_empty());
        let matcher = if patterns.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .ok()
        };
        let mut prefixes: Vec<String> = patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let max_len = prefixes.iter().map(String::len).max().unwrap_or(0);
        Self {
            vault,
            matcher,
            prefixes,
            max_len,
            pending: String::new(),
            partial_utf8: Vec::new(),
            prev_alnum: false,
            spans: Vec::new(),
        }
    }

    /// Bytes held back, waiting for what follows.
    pub fn held_back(&self) -> usize {
        self.pending.len() + self.partial_utf8.len()
    }

    /// Takes the next delta and returns the re-identified text that is now certain (may be
    /// empty).
    pub fn push(&mut self, delta: &str) -> String {
        if !self.partial_utf8.is_empty() {
            // a caller mixing bytes and text: the cut character cannot be completed any more
            self.partial_utf8.clear();
            self.pending.push(char::REPLACEMENT_CHARACTER);
        }
        self.pending.push_str(delta);
        self.drain(false)
    }

    /// As [`Self::push`] for raw bytes, which may end inside a UTF-8 character; invalid sequences
    /// become U+FFFD as in `String::from_utf8_lossy`.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.partial_utf8.extend_from_slice(bytes);
        let mut rest = std::mem::take(&mut self.partial_utf8);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&rest[start..]) {
                Ok(text) => {
                    self.pending.push_str(text);
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    if let Ok(text) = std::str::from_utf8(&rest[start..valid]) {
                        self.pending.push_str(text);
                    }
                    match e.error_len() {
                        Some(len) => {
                            self.pending.push(char::REPLACEMENT_CHARACTER);
                            start = valid + len;
                        }
                        None => {
                            rest.drain(..valid);
                            self.partial_utf8 = rest;
                            return self.drain(false);
                        }
                    }
                }
            }
        }
        self.drain(false)
    }

    /// The end of the answer: returns everything still held, re-identified.
    pub fn finish(&mut self) -> String {
        if !self.partial_utf8.is_empty() {
            self.partial_utf8.clear();
            self.pending.push(char::REPLACEMENT_CHARACTER);
        }
        self.drain(true)
    }

    fn drain(&mut self, end: bool) -> String {
        let mut out = String::new();
        loop {
            // The rest of a word already begun: no surrogate starts inside a word, and none that
            // began earlier reaches here (the cut before guaranteed it), so it passes unchanged.
            if self.prev_alnum {
                let run = self
                    .pending
                    .char_indices()
                    .find(|&(_, c)| !c.is_alphanumeric())
                    .map_or(self.pending.len(), |(i, _)| i);
                out.push_str(&self.pending[..run]);
                self.pending.drain(..run);
            }
            if self.pending.is_empty() {
                break;
            }
            let cut = if end {
                self.pending.len()
            } else {
                self.safe_cut()
            };
            if cut == 0 {
                break;
            }
            let segment = &self.pending[..cut];
            out.push_str(&self.vault.borrow().reidentify(segment));
            self.prev_alnum = segment
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            self.pending.drain(..cut);
        }
        out
    }

    /// The largest cut of `pending` after which re-identifying the two sides apart gives what
    /// re-identifying them together would; 0 when there is none yet.
    fn safe_cut(&mut self) -> usize {
        let text = self.pending.as_str();
        let n = text.len();
        let alnum_before = |i: usize| {
            if i == 0 {
                self.prev_alnum
            } else {
                text[..i]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric)
            }
        };
        let alnum_at = |i: usize| text[i..].chars().next().is_some_and(char::is_alphanumeric);
        // A surrogate that starts with a letter or digit cannot start inside a word.
        let can_start = |i: usize| !(alnum_at(i) && alnum_before(i));

        // Earliest place where the rest of the text could still grow into a surrogate.
        let mut limit = n;
        let lower_tail_from = n.saturating_sub(self.max_len.saturating_sub(1));
        for (i, _) in text.char_indices().filter(|&(i, _)| i >= lower_tail_from) {
            if can_start(i) && self.is_proper_prefix(&text[i..]) {
                limit = i;
                break;
            }
        }
        // Complete possible matches: a cut must not fall inside one, nor right after one whose
        // end is next to a letter or digit unless the next character is known to decide it.
        self.spans.clear();
        if let Some(matcher) = &self.matcher {
            for m in matcher.find_overlapping_iter(text) {
                let (s, e) = (m.start(), m.end());
                let ends_alnum = alnum_before(e);
                if !can_start(s) || (ends_alnum && e < n && alnum_at(e)) {
                    continue; // the vault's word-boundary checks would reject it
                }
                self.spans.push((s, e));
            }
        }
        let mut cut = limit;
        while cut > 0 {
            if text.is_char_boundary(cut) {
                let inside = self.spans.iter().any(|&(s, e)| s < cut && cut < e);
                let word_continues = alnum_before(cut) && (cut == n || alnum_at(cut));
                let ends_here = word_continues && self.spans.iter().any(|&(_, e)| e == cut);
                if !inside && !ends_here {
                    return cut;
                }
            }
            cut -= 1;
        }
        0
    }

    /// Whether `tail` is, ignoring ASCII case, the beginning of a longer surrogate (a binary
    /// search over the sorted lower-case surrogates, without allocating).
    fn is_proper_prefix(&self, tail: &str) -> bool {
        let tail = tail.as_bytes();
        let lowered = || tail.iter().map(u8::to_ascii_lowercase);
        let at = self
            .prefixes
            .partition_point(|p| p.bytes().cmp(lowered()) == std::cmp::Ordering::Less);
        self.prefixes[at..]
            .iter()
            .take(2)
            .any(|p| p.len() > tail.len() && p.as_bytes()[..tail.len()].eq_ignore_ascii_case(tail))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use medai_phi::Detector;
    use proptest::prelude::*;

    const NOTE: &str = "Pt John Smith (MRN 483920) seen 03/14/2023 at St. Mary's Hospital; call 555-867-5309 or john.smith@gmail.com. Mr. Smith reports chest pain.";

    fn vault() -> (Vault, String) {
        let mut vault = Vault::with_seed(11);
        let deid = vault.deidentify(&Detector::new(), NOTE);
        let text = deid.text.clone();
        (vault, text)
    }

    fn stream(vault: &Vault, pieces: &[&str]) -> (String, usize) {
        let mut r = StreamingReidentifier::new(vault);
        let mut out = String::new();
        let mut max_held = 0;
        for p in pieces {
            out.push_str(&r.push(p));
            max_held = max_held.max(r.held_back());
        }
        out.push_str(&r.finish());
        (out, max_held)
    }

    fn split_at(text: &str, cuts: &[usize]) -> Vec<String> {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|c| c % (text.len() + 1))
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        cuts.sort_unstable();
        let mut last = 0;
        let mut pieces = Vec::new();
        for c in cuts {
            pieces.push(text[last..c].to_string());
            last = c;
        }
        pieces.push(text[last..].to_string());
        pieces
    }

    #[test]
    fn a_surrogate_split_into_single_characters_comes_back_whole() {
        let (vault, deid) = vault();
        let pieces: Vec<String> = deid.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (out, _) = stream(&vault, &refs);
        assert_eq!(out, NOTE);
    }

    #[test]
    fn ordinary_words_are_not_held() {
        let (vault, _) = vault();
        let mut r = StreamingReidentifier::new(&vault);
        assert_eq!(r.push("The"), "The");
        assert_eq!(r.push(" patient"), " patient");
        assert_eq!(r.push(" is"), " is");
        assert_eq!(r.push(" stable."), " stable.");
        assert_eq!(r.held_back(), 0);
    }

    #[test]
    fn the_start_of_a_surrogate_is_held_until_decided() {
        let (vault, _) = vault();
        let surrogate = vault
            .surrogates()
            .find(|s| s.chars().all(char::is_alphabetic) && s.len() > 3)
            .unwrap()
            .to_string();
        let mut r = StreamingReidentifier::new(&vault);
        assert_eq!(r.push("Seen by "), "Seen by ");
        assert_eq!(r.push(&surrogate[..2]), "");
        assert_eq!(r.push(&surrogate[2..]), "", "the next character decides");
        let rest = r.push(" today");
        assert!(!rest.contains(&surrogate), "{rest}");
        let whole = format!("Seen by {surrogate} today");
        assert_eq!(
            format!("Seen by {rest}{}", r.finish()),
            vault.reidentify(&whole)
        );
    }

    #[test]
    fn bytes_split_inside_characters() {
        let (vault, deid) = vault();
        let text = format!("Ä {deid} – 😀 done");
        let bytes = text.as_bytes();
        let mut r = StreamingReidentifier::new(&vault);
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            out.push_str(&r.push_bytes(chunk));
        }
        out.push_str(&r.finish());
        assert_eq!(out, vault.reidentify(&text));
        let mut r = StreamingReidentifier::new(&vault);
        let mut out = r.push_bytes(&[b'a', 0xF0, 0x9F]);
        out.push_str(&r.push_bytes(&[b'b', 0xE2]));
        out.push_str(&r.finish());
        assert_eq!(
            out,
            String::from_utf8_lossy(&[b'a', 0xF0, 0x9F, b'b', 0xE2])
        );
    }

    fn answer_strategy() -> impl Strategy<Value = (Vec<usize>, Vec<u8>, Vec<usize>)> {
        (
            proptest::collection::vec(0usize..64, 1..12),
            proptest::collection::vec(0u8..6, 12),
            proptest::collection::vec(0usize..600, 0..40),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_chunking_gives_exactly_the_whole_text_reidentified((picks, styles, cuts) in answer_strategy()) {
            let (vault, deid) = vault();
            let surrogates: Vec<String> = vault.surrogates().map(String::from).collect();
            let fillers = [" ", ", ", "s ", "'s ", "x", "é ", "😀", "(", ")", " and ", "-", "\n", "Dr. ", "ä"];
            let mut answer = String::new();
            for (k, &p) in picks.iter().enumerate() {
                let s = &surrogates[p % surrogates.len()];
                let s = match styles[k % styles.len()] {
                    0 => s.to_uppercase(),
                    1 => s.to_lowercase(),
                    2 => s.chars().take(s.chars().count() / 2).collect(),
                    _ => s.clone(),
                };
                answer.push_str(&s);
                answer.push_str(fillers[(p + k) % fillers.len()]);
            }
            answer.push_str(&deid);
            let pieces = split_at(&answer, &cuts);
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let (out, max_held) = stream(&vault, &refs);
            prop_assert_eq!(out, vault.reidentify(&answer));
            prop_assert!(max_held <= answer.len());
        }

        #[test]
        fn any_byte_chunking_inside_characters_gives_the_same_text(
            cuts in proptest::collection::vec(0usize..400, 0..60),
        ) {
            let (vault, deid) = vault();
            let answer = format!("Ünïcode 😀 {deid} – 中文 {deid}");
            let bytes = answer.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut r = StreamingReidentifier::new(&vault);
            let mut out = String::new();
            let mut last = 0;
            for c in cuts {
                out.push_str(&r.push_bytes(&bytes[last..c]));
                last = c;
            }
            out.push_str(&r.push_bytes(&bytes[last..]));
            out.push_str(&r.finish());
            prop_assert_eq!(out, vault.reidentify(&answer));
        }
    }
}
