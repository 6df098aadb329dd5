//! From token ids to text deltas: incremental detokenisation that never splits a UTF-8
//! character, and a stop-sequence filter that never lets a stop string out, even when it is
//! split across tokens.

use tokenizers::Tokenizer;

/// Turns a growing list of token ids into text pieces.
pub(crate) struct Detokenizer {
    tokens: Vec<u32>,
    /// Start of the window decoded for context (byte-level decoders need the previous token to
    /// place spaces right).
    prefix: usize,
    /// Tokens before this have been emitted.
    read: usize,
}

impl Detokenizer {
    pub fn new() -> Self {
        Self {
            tokens: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds a token; returns the new text, if any is complete.
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> Result<Option<String>, String> {
        self.tokens.push(token);
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).map_err(|e| e.to_string());
        let before = decode(&self.tokens[self.prefix..self.read])?;
        let now = decode(&self.tokens[self.prefix..])?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            // Nothing new, or a character still incomplete: wait for the next token.
            return Ok(None);
        }
        let Some(delta) = now.get(before.len()..).filter(|_| now.starts_with(&before)) else {
            return Ok(None);
        };
        let delta = delta.to_string();
        self.prefix = self.read;
        self.read = self.tokens.len();
        Ok(Some(delta))
    }
}

/// Holds back text that could be the start of a stop string.
pub(crate) struct StopFilter {
    stops: Vec<String>,
    held: String,
}

/// What the filter lets out for one piece of text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Text safe to emit (maybe empty); generation goes on.
    Go(String),
    /// A stop string was found: emit this text (everything before it) and stop.
    Stop(String),
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Feeds newly generated text.
    pub fn push(&mut self, text: &str) -> Filtered {
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let mut out = std::mem::take(&mut self.held);
            out.truncate(at);
            return Filtered::Stop(out);
        }
        // Keep the longest tail of `held` that begins some stop string.
        let keep = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let tail = self.held.split_off(cut);
        Filtered::Go(std::mem::replace(&mut self.held, tail))
    }

    /// What is still held back when generation ends without a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on char boundaries).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut f = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match f.push(p) {
                Filtered::Go(t) => out.push_str(&t),
                Filtered::Stop(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn a_stop_split_across_pieces_is_never_emitted() {
        assert_eq!(
            run(&["END"], &["ab", "cE", "N", "Dxyz"]),
            ("abc".into(), true)
        );
        assert_eq!(run(&["END"], &["abEN", "x"]), ("abENx".into(), false));
        assert_eq!(
            run(&["\n\n", "##"], &["a\n", "#", "#b"]),
            ("a\n".into(), true)
        );
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
    }

    #[test]
    fn held_text_is_released_when_generation_ends() {
        assert_eq!(run(&["STOP"], &["x", "ST"]), ("xST".into(), false));
        assert_eq!(run(&[], &["x", "y"]), ("xy".into(), false));
    }
}
