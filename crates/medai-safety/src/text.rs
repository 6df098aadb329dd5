//! Tokenisation for triage: words (with decimals and contractions kept whole), sentences and
//! comma-delimited clauses. One pass over the text, no backtracking.

/// One word of the text: `lower[start..end]` (byte offsets, on character boundaries; the
/// lower-case copy is aligned with the original because only ASCII is lower-cased).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub start: usize,
    pub end: usize,
    /// Index of the sentence (split at `.` `?` `!` `;` and line breaks).
    pub sentence: u32,
    /// Index of the clause (sentences further split at commas).
    pub clause: u32,
    /// The character right before the token is `/` ("120/80", "h/o").
    pub slash_before: bool,
}

/// A tokenised text.
pub(crate) struct Doc {
    pub lower: String,
    pub toks: Vec<Token>,
    /// Per token, its [`canon`] form where that differs from the word (only words with an
    /// apostrophe), computed once here rather than at every phrase comparison.
    canon: Vec<Option<Box<str>>>,
}

impl Doc {
    /// The lower-case text of token `i` ("" past the end).
    pub fn word(&self, i: usize) -> &str {
        self.toks
            .get(i)
            .map_or("", |t| self.lower.get(t.start..t.end).unwrap_or(""))
    }

    /// Token `i` in the form phrases are indexed and compared in (see [`canon`]).
    pub fn canon_word(&self, i: usize) -> &str {
        match self.canon.get(i) {
            Some(Some(c)) => c,
            _ => self.word(i),
        }
    }
}

/// The form a word is indexed and compared in: a curly apostrophe is a straight one, and a
/// negative contraction is the same with or without its apostrophe ("can't", "can\u{2019}t" and
/// "cant" are one word). Other apostrophes stay ("we'll" is not "well").
pub(crate) fn canon(word: &str) -> std::borrow::Cow<'_, str> {
    if !word.contains(['\'', '\u{2019}']) {
        return std::borrow::Cow::Borrowed(word);
    }
    let straight = word.replace('\u{2019}', "'");
    match straight.strip_suffix("n't") {
        Some(stem) if !stem.is_empty() && !stem.contains('\'') => {
            std::borrow::Cow::Owned(format!("{stem}nt"))
        }
        _ => std::borrow::Cow::Owned(straight),
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Splits `text` into tokens, sentences and clauses.
pub(crate) fn tokenize(text: &str) -> Doc {
    let lower = text.to_ascii_lowercase();
    let mut toks: Vec<Token> = Vec::with_capacity(text.len() / 5 + 1);
    let chars: Vec<(usize, char)> = lower.char_indices().collect();
    let mut sentence = 0u32;
    let mut clause = 0u32;
    // a break seen since the last token: 0 none, 1 clause, 2 sentence
    let mut pending = 0u8;
    let mut tok_start: Option<usize> = None;
    let mut slash_before = false;
    let mut k = 0usize;
    while k < chars.len() {
        let (i, c) = chars[k];
        let prev = if k > 0 { Some(chars[k - 1].1) } else { None };
        let next = chars.get(k + 1).map(|&(_, c)| c);
        let continues_word = tok_start.is_some()
            && match c {
                '.' | ',' => {
                    prev.is_some_and(|p| p.is_ascii_digit())
                        && next.is_some_and(|n| n.is_ascii_digit())
                }
                '\'' | '\u{2019}' => {
                    prev.is_some_and(char::is_alphabetic) && next.is_some_and(char::is_alphabetic)
                }
                _ => false,
            };
        if is_word(c) || continues_word {
            if tok_start.is_none() {
                tok_start = Some(i);
                slash_before = prev == Some('/');
            }
            k += 1;
            continue;
        }
        if let Some(s) = tok_start.take() {
            push(
                &mut toks,
                s,
                i,
                &mut sentence,
                &mut clause,
                &mut pending,
                slash_before,
            );
        }
        match c {
            '!' | '?' | ';' | '\n' => pending = 2,
            '.' => {
                let at_end = next.is_none_or(char::is_whitespace);
                let initial = toks.last().is_some_and(|t| {
                    let w = &lower[t.start..t.end];
                    t.end == i && w.chars().count() == 1 && w.chars().all(char::is_alphabetic)
                        || matches!(w, "dr" | "mr" | "mrs" | "ms" | "vs" | "approx" | "st")
                });
                if at_end && !initial {
                    pending = 2;
                }
            }
            ',' | '(' | ')' => pending = pending.max(1),
            _ => {}
        }
        k += 1;
    }
    if let Some(s) = tok_start.take() {
        push(
            &mut toks,
            s,
            lower.len(),
            &mut sentence,
            &mut clause,
            &mut pending,
            slash_before,
        );
    }
    let canon = toks
        .iter()
        .map(|t| match canon(lower.get(t.start..t.end).unwrap_or("")) {
            std::borrow::Cow::Owned(c) => Some(c.into_boxed_str()),
            std::borrow::Cow::Borrowed(_) => None,
        })
        .collect();
    Doc { lower, toks, canon }
}

fn push(
    toks: &mut Vec<Token>,
    start: usize,
    end: usize,
    sentence: &mut u32,
    clause: &mut u32,
    pending: &mut u8,
    slash_before: bool,
) {
    if !toks.is_empty() {
        if *pending >= 2 {
            *sentence += 1;
        }
        if *pending >= 1 {
            *clause += 1;
        }
    }
    *pending = 0;
    toks.push(Token {
        start,
        end,
        sentence: *sentence,
        clause: *clause,
        slash_before,
    });
}

/// A number at the start of a word and the letters after it: "38.5c" → (38.5, "c").
pub(crate) fn number(word: &str) -> Option<(f64, &str)> {
    let split = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(word.len());
    if split == 0 {
        return None;
    }
    let raw = &word[..split];
    // "38,7": a single comma followed by one or two digits is a decimal comma (European
    // writing); "1,000" keeps its thousands separator
    let decimal_comma = raw.matches(',').count() == 1
        && !raw.contains('.')
        && raw
            .rsplit(',')
            .next()
            .is_some_and(|d| (1..=2).contains(&d.len()));
    let digits: String = if decimal_comma {
        raw.replace(',', ".")
    } else {
        raw.chars().filter(|&c| c != ',').collect()
    };
    let value: f64 = digits.parse().ok()?;
    value.is_finite().then_some((value, &word[split..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(String, u32, u32)> {
        let d = tokenize(text);
        (0..d.toks.len())
            .map(|i| (d.word(i).to_string(), d.toks[i].sentence, d.toks[i].clause))
            .collect()
    }

    #[test]
    fn splits_words_sentences_and_clauses() {
        let w = words("Pt c/o CP, SOB. T 38.5C; Dr. Lee doesn't know.\nNext");
        let got: Vec<&str> = w.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(
            got,
            ["pt", "c", "o", "cp", "sob", "t", "38.5c", "dr", "lee", "doesn't", "know", "next"]
        );
        let sentences: Vec<u32> = w.iter().map(|t| t.1).collect();
        assert_eq!(sentences, [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3]);
        assert_eq!(w[3].2 + 1, w[4].2, "comma starts a clause");
    }

    #[test]
    fn slash_is_recorded() {
        let d = tokenize("BP 80/50 h/o");
        assert!(d.toks[2].slash_before);
        assert!(!d.toks[1].slash_before);
        assert!(d.toks[4].slash_before);
    }

    #[test]
    fn numbers_with_units() {
        assert_eq!(number("38.5c"), Some((38.5, "c")));
        assert_eq!(number("6wk"), Some((6.0, "wk")));
        assert_eq!(number("1,000"), Some((1000.0, "")));
        assert_eq!(number("38,7"), Some((38.7, "")));
        assert_eq!(number("38,75c"), Some((38.75, "c")));
        assert_eq!(number("12,500,000"), Some((12_500_000.0, "")));
        assert_eq!(number("wk"), None);
    }
}
