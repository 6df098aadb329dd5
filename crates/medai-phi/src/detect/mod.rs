//! Detection: independent rules each propose candidate spans; overlapping candidates are merged,
//! the type coming from the most specific rule.
//!
//! Every rule walks the token list once and looks at a bounded window around each token, so the
//! cost is linear in the input whatever it contains.

mod contact;
mod dates;
mod ids;
mod names;
mod places;

use crate::text::{lower_aligned, tokenize, Token};
use crate::types::{PhiType, Span};

/// Finds PHI in free text. Cheap to create after the first one (the dictionaries are shared and
/// built once); safe to share between threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detector {
    _private: (),
}

impl Detector {
    /// A detector with every rule enabled. The first call builds the dictionaries (a few
    /// milliseconds); call it at startup so the first request does not pay for it.
    pub fn new() -> Self {
        std::sync::LazyLock::force(&crate::dict::FIRST_NAMES);
        std::sync::LazyLock::force(&crate::dict::SURNAMES);
        std::sync::LazyLock::force(&crate::dict::CITIES);
        std::sync::LazyLock::force(&crate::dict::INSTITUTIONS);
        std::sync::LazyLock::force(&crate::dict::COUNTIES);
        std::sync::LazyLock::force(&crate::dict::STATES);
        std::sync::LazyLock::force(&crate::dict::FACILITY_HEADS);
        std::sync::LazyLock::force(&crate::dict::NOT_NAME);
        std::sync::LazyLock::force(&ids::LABELS);
        Self { _private: () }
    }

    /// The PHI spans of `text`, sorted by start, never overlapping, each on character
    /// boundaries.
    pub fn detect(&self, text: &str) -> Vec<Span> {
        let mut ctx = Ctx::new(text);
        contact::find(&mut ctx);
        ids::find(&mut ctx);
        dates::find(&mut ctx);
        places::find(&mut ctx);
        names::find(&mut ctx);
        ctx.merge()
    }
}

/// One rule's proposal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    start: usize,
    end: usize,
    phi_type: PhiType,
    confidence: f32,
    /// Which rule wins the type when candidates overlap: higher is more specific.
    priority: u8,
}

/// The text, its tokens, and the candidates found so far.
pub(crate) struct Ctx<'a> {
    pub text: &'a str,
    pub lower: String,
    pub toks: Vec<Token>,
    candidates: Vec<Candidate>,
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            lower: lower_aligned(text),
            toks: tokenize(text),
            candidates: Vec::new(),
        }
    }

    /// The original text of token `i` ("" past the end).
    pub fn word(&self, i: usize) -> &str {
        self.toks.get(i).map_or("", |t| &self.text[t.start..t.end])
    }

    /// The lower-case text of token `i` ("" past the end).
    pub fn lw(&self, i: usize) -> &str {
        self.toks.get(i).map_or("", |t| &self.lower[t.start..t.end])
    }

    /// Token `i` is punctuation `c`.
    pub fn is_punct(&self, i: usize, c: char) -> bool {
        self.toks.get(i).is_some_and(|t| t.is_punct(c))
    }

    /// Token `i` is attached to the previous token (no white space between).
    pub fn joined(&self, i: usize) -> bool {
        self.toks.get(i).is_some_and(|t| !t.space_before)
    }

    /// Lower-case word before token `i`, skipping nothing ("" at the start).
    pub fn lw_before(&self, i: usize, back: usize) -> &str {
        i.checked_sub(back).map_or("", |j| self.lw(j))
    }

    /// Proposes `text[start..end]`.
    pub fn push(
        &mut self,
        start: usize,
        end: usize,
        phi_type: PhiType,
        confidence: f32,
        priority: u8,
    ) {
        if start < end && end <= self.text.len() {
            self.candidates.push(Candidate {
                start,
                end,
                phi_type,
                confidence,
                priority,
            });
        }
    }

    /// Proposes tokens `i..j` (exclusive).
    pub fn push_tokens(
        &mut self,
        i: usize,
        j: usize,
        phi_type: PhiType,
        confidence: f32,
        priority: u8,
    ) {
        if i < j && j <= self.toks.len() {
            let (start, end) = (self.toks[i].start, self.toks[j - 1].end);
            self.push(start, end, phi_type, confidence, priority);
        }
    }

    fn merge(mut self) -> Vec<Span> {
        self.candidates
            .sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut out: Vec<Span> = Vec::with_capacity(self.candidates.len());
        let mut best_priority = 0u8;
        for c in self.candidates {
            if let Some(last) = out.last_mut() {
                if c.start < last.end {
                    last.end = last.end.max(c.end);
                    last.confidence = last.confidence.max(c.confidence);
                    if c.priority > best_priority {
                        best_priority = c.priority;
                        last.phi_type = c.phi_type;
                    }
                    continue;
                }
            }
            best_priority = c.priority;
            out.push(Span {
                start: c.start,
                end: c.end,
                phi_type: c.phi_type,
                confidence: c.confidence,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
