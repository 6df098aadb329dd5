//! A server-sent events decoder that accepts the body in arbitrary pieces.
//!
//! Bytes arrive as the network delivers them: an event, a line, or a UTF-8 character may be cut
//! anywhere. The decoder keeps the unfinished line as bytes and decodes only complete lines, so a
//! character split across two reads comes out whole. It follows the WHATWG rules that matter
//! for a client: `\n`, `\r\n` and `\r` end lines, lines starting with `:` are comments, `data`
//! lines of one event are joined with `\n`, one space after the colon is dropped, a blank line
//! ends the event, and an unfinished event at the end of the body is discarded.

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Longest line accepted: a streaming chunk is a few hundred bytes; anything this long is not a
/// chat completion stream and must not grow memory without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The incremental decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
}

/// The body broke the limits of the decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server-sent events line longer than {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

impl SseDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the body, appending the events it completes to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), LineTooLong> {
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&bytes[..end]);
            if self.line.len() > MAX_LINE_BYTES {
                return Err(LineTooLong);
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
            self.line = line;
            self.line.clear();
            if bytes[end] == b'\r' {
                match bytes.get(end + 1) {
                    Some(b'\n') => bytes = &bytes[end + 2..],
                    Some(_) => bytes = &bytes[end + 1..],
                    None => {
                        self.skip_lf = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[end + 1..];
            }
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
                self.has_data = false;
            } else {
                self.event = None;
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry and unknown fields do not matter to a chat client
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use proptest::prelude::*;

    fn decode_in_pieces(body: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        for c in cuts {
            d.feed(&body[last..c], &mut out).unwrap();
            last = c;
        }
        d.feed(&body[last..], &mut out).unwrap();
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn fields_comments_and_line_endings() {
        let body = b": keep-alive\n\ndata: a\r\ndata:b\r\rid: 7\nretry: 10\nevent: x\ndata:  c\n\ndata: [DONE]\n\ndata: unfinished";
        let events = decode_in_pieces(body, &[]);
        assert_eq!(data(&events), vec!["a\nb", " c", "[DONE]"]);
        assert_eq!(events[1].event.as_deref(), Some("x"));
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn crlf_split_between_pieces_is_one_line_end() {
        let events = decode_in_pieces(b"data: a\r\n\r\ndata: b\r\n\r\n", &[8, 9, 10]);
        assert_eq!(data(&events), vec!["a", "b"]);
    }

    #[test]
    fn overlong_line_is_refused() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert_eq!(d.feed(&long, &mut out), Err(LineTooLong));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            texts in proptest::collection::vec("[a-zé😀\u{4e2d} :\\[\\]{}\"]{0,12}", 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            crlf in any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut body = String::new();
            for t in &texts {
                body.push_str(&format!(": comment{nl}data: {t}{nl}{nl}"));
            }
            let events = decode_in_pieces(body.as_bytes(), &cuts);
            prop_assert_eq!(data(&events), texts.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
