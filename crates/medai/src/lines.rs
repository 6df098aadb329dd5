//! Line input for the `phi` and `triage` commands: a file or `-` (standard input), read one
//! bounded line at a time so a line without a newline cannot exhaust memory.

use anyhow::Context as _;
use std::io::{BufRead, Read as _};
use std::path::Path;

/// The longest input line accepted (a clinical note or a question with its context is a few
/// KB; this bounds memory).
pub const MAX_LINE: usize = 8 << 20;

/// A buffered reader of `path`, or of standard input for `-`.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(std::io::BufReader::new(file)))
}

/// Lines of `path` (`-`: standard input).
pub struct Lines {
    reader: Box<dyn BufRead>,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    pub number: usize,
}

impl Lines {
    /// Opens `path`, or standard input for `-`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            reader: open(path)?,
            buf: Vec::new(),
            number: 0,
        })
    }

    /// The next line's 1-based number and text without its `\n` or `\r\n` (`Err`: it is not
    /// UTF-8), or `None` at the end. A line longer than [`MAX_LINE`] stops the input with an
    /// error.
    #[allow(
        clippy::type_complexity,
        reason = "a line number and a line that may not be text"
    )]
    pub fn next_line(&mut self) -> anyhow::Result<Option<(usize, Result<&str, &'static str>)>> {
        self.buf.clear();
        let read = self
            .reader
            .by_ref()
            .take((MAX_LINE + 1) as u64)
            .read_until(b'\n', &mut self.buf)
            .context("cannot read the input")?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.len() > MAX_LINE && !self.buf.ends_with(b"\n") {
            anyhow::bail!(
                "line {} is longer than {MAX_LINE} bytes; split the input",
                self.number
            );
        }
        Ok(Some((
            self.number,
            match std::str::from_utf8(&self.buf) {
                Ok(line) => {
                    let line = line.strip_suffix('\n').unwrap_or(line);
                    Ok(line.strip_suffix('\r').unwrap_or(line))
                }
                Err(_) => Err("not UTF-8"),
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn lines_are_numbered_stripped_and_checked_for_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, b"a\r\nb\n\xff\nlast").unwrap();
        let mut lines = Lines::open(&path).unwrap();
        let mut seen = Vec::new();
        while let Some((n, line)) = lines.next_line().unwrap() {
            seen.push((n, line.map(str::to_owned)));
        }
        assert_eq!(
            seen,
            [
                (1, Ok("a".to_owned())),
                (2, Ok("b".to_owned())),
                (3, Err("not UTF-8")),
                (4, Ok("last".to_owned())),
            ]
        );
    }

    #[test]
    fn an_overlong_line_stops_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        let mut data = b"short\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        std::fs::write(&path, &data).unwrap();
        let mut lines = Lines::open(&path).unwrap();
        assert!(matches!(lines.next_line().unwrap(), Some((1, Ok("short")))));
        let err = lines.next_line().unwrap_err().to_string();
        assert!(err.contains("line 2 is longer than"), "{err}");
        assert!(Lines::open(&dir.path().join("missing")).is_err());
    }
}
