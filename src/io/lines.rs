//! Lines of a text input, numbered from 1, as every reader of records and models takes
//! them: a UTF-8 byte-order mark before the first line is dropped, and a line that is not
//! UTF-8 is an error naming the file, the line and the byte where it goes wrong (a plain
//! `read_line` says only "stream did not contain valid UTF-8").

use crate::error::{Error, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};

const BYTE_ORDER_MARK: &[u8] = b"\xef\xbb\xbf";

pub struct LineReader<R> {
    reader: R,
    path: PathBuf,
    /// Lines read so far: the number of the last one.
    number: usize,
    /// Bytes the last line took.
    consumed: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Lines of `reader`, named `path` in errors.
    pub fn new(reader: R, path: &Path) -> Self {
        LineReader {
            reader,
            path: path.to_path_buf(),
            number: 0,
            consumed: 0,
        }
    }

    /// The number of the last line read (0 before the first).
    pub fn number(&self) -> usize {
        self.number
    }

    /// Replace `line` with the next line, its `\n` (and any `\r` before it) kept as read;
    /// `false` at the end of the input. A line that is not UTF-8 is an error.
    pub fn read_line(&mut self, line: &mut String) -> Result<bool> {
        match self.read(line)? {
            None => Ok(false),
            Some(text) => text.map(|()| true),
        }
    }

    /// [`Self::read_line`] that tells a line that is not UTF-8 (`Some(Err)`, the line
    /// consumed and `line` left empty, so that a caller may skip it) from a failure to
    /// read (`Err`). The bytes are read straight into `line`'s buffer.
    pub fn read(&mut self, line: &mut String) -> Result<Option<Result<()>>> {
        let mut bytes = std::mem::take(line).into_bytes();
        bytes.clear();
        let read = self
            .reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.consumed = read;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.number == 1 && bytes.starts_with(BYTE_ORDER_MARK) {
            bytes.drain(..BYTE_ORDER_MARK.len());
        }
        Ok(Some(match String::from_utf8(bytes) {
            Ok(text) => {
                *line = text;
                Ok(())
            }
            Err(e) => Err(Error::input(
                &self.path,
                self.number,
                "line",
                format!(
                    "not UTF-8 (byte {} of the line)",
                    e.utf8_error().valid_up_to() + 1
                ),
            )),
        }))
    }

    /// Bytes of input the last line took (a byte-order mark included).
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Result<Vec<String>> {
        let mut reader = LineReader::new(bytes, Path::new("in.jsonl"));
        let mut out = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line)? {
            out.push(line.clone());
        }
        Ok(out)
    }

    #[test]
    fn a_byte_order_mark_is_dropped_from_the_first_line_only() {
        let got = lines(b"\xef\xbb\xbf{\"a\":1}\n\xef\xbb\xbfx\n").unwrap();
        assert_eq!(
            got,
            vec!["{\"a\":1}\n".to_string(), "\u{feff}x\n".to_string()]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line_and_byte() {
        let err = lines(b"ok\nok\nab\xffcd\n").unwrap_err().to_string();
        assert_eq!(err, "in.jsonl:3: line: not UTF-8 (byte 3 of the line)");
    }

    #[test]
    fn the_last_line_may_lack_its_newline() {
        assert_eq!(
            lines(b"a\nb").unwrap(),
            vec!["a\n".to_string(), "b".to_string()]
        );
    }
}
