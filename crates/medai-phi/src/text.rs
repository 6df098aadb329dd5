//! A single pass over the text that yields tokens with byte offsets: runs of letters and digits,
//! and single punctuation characters. Every rule works on these tokens, so detection is linear.

/// What a token is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Letters and digits (`Smith`, `2023`, `12th`, `H678934`).
    Word,
    /// One character that is neither a letter, a digit nor white space.
    Punct(char),
}

/// One token: `text[start..end]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    /// White space separates this token from the previous one (or it is the first).
    pub space_before: bool,
    /// Letters in the token.
    pub alpha: u16,
    /// ASCII digits in the token (other numeric characters count as letters).
    pub digits: u16,
    /// The first character is upper case.
    pub cap: bool,
    /// Every letter is upper case (and there is at least one).
    pub upper: bool,
}

impl Token {
    pub fn is_word(&self) -> bool {
        self.kind == Kind::Word
    }

    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }

    /// Only letters.
    pub fn is_alpha(&self) -> bool {
        self.kind == Kind::Word && self.digits == 0
    }

    /// Only digits.
    pub fn is_number(&self) -> bool {
        self.kind == Kind::Word && self.alpha == 0
    }

    /// A capitalised word of letters: `Smith`, `McDonald`, `UCLA`.
    pub fn is_cap_word(&self) -> bool {
        self.is_alpha() && self.cap
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

/// The number of ASCII digits `s` starts with (a byte count, so always a character boundary).
pub(crate) fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Apostrophes as people type them: straight and typographic.
pub(crate) fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{2018}')
}

/// Splits `text` into tokens.
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(text.len() / 4 + 1);
    let mut current: Option<Token> = None;
    let mut space = true;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            let tok = current.get_or_insert(Token {
                start: i,
                end: i,
                kind: Kind::Word,
                space_before: space,
                alpha: 0,
                digits: 0,
                cap: c.is_uppercase(),
                upper: true,
            });
            if c.is_ascii_digit() {
                tok.digits = tok.digits.saturating_add(1);
            } else {
                tok.alpha = tok.alpha.saturating_add(1);
                if !c.is_uppercase() {
                    tok.upper = false;
                }
            }
            tok.end = i + c.len_utf8();
            space = false;
            continue;
        }
        if let Some(mut tok) = current.take() {
            if tok.alpha == 0 {
                tok.upper = false;
            }
            out.push(tok);
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        out.push(Token {
            start: i,
            end: i + c.len_utf8(),
            kind: Kind::Punct(c),
            space_before: space,
            alpha: 0,
            digits: 0,
            cap: false,
            upper: false,
        });
        space = false;
    }
    if let Some(mut tok) = current.take() {
        if tok.alpha == 0 {
            tok.upper = false;
        }
        out.push(tok);
    }
    out
}

/// `text` in lower case with every byte offset unchanged: a character whose lower-case form has a
/// different UTF-8 length is kept as it is, so token offsets index both strings.
pub(crate) fn lower_aligned(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) if l.len_utf8() == c.len_utf8() => out.push(l),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_offsets_and_shape() {
        let text = "Dr. O’Brien, MRN#H678934 on 2/21.";
        let toks = tokenize(text);
        let words: Vec<&str> = toks.iter().map(|t| &text[t.start..t.end]).collect();
        assert_eq!(
            words,
            ["Dr", ".", "O", "’", "Brien", ",", "MRN", "#", "H678934", "on", "2", "/", "21", "."]
        );
        assert!(toks[0].is_cap_word() && toks[0].space_before);
        assert!(!toks[1].space_before);
        assert!(toks[6].upper && toks[6].is_alpha());
        assert_eq!((toks[8].alpha, toks[8].digits), (1, 6));
        assert!(toks[10].is_number() && toks[10].space_before);
        assert!(is_apostrophe('’'));
    }

    #[test]
    fn non_ascii_letters_are_words() {
        let text = "Zoë  Müller—ok";
        let toks = tokenize(text);
        let words: Vec<&str> = toks.iter().map(|t| &text[t.start..t.end]).collect();
        assert_eq!(words, ["Zoë", "Müller", "—", "ok"]);
        let upper = "MÜLLER İ x";
        let lower = lower_aligned(upper);
        assert_eq!(lower, "müller İ x");
        assert_eq!(lower.len(), upper.len());
    }
}
