//! Where the stream's records come from ([`Source`]), and how far into it a run has read
//! ([`Position`]): JSON lines numbered and hashed as they are read, and parsed ahead in
//! parallel ([`ParsedLines`]); or a columnar file (Parquet, Arrow IPC, Avro) read whole
//! through the columnar reader and handed out record by record ([`Table`]), whose position
//! counts records where a JSON-lines position counts lines, and hashes each record's values
//! (entity, label, weight, offset, timestamp, features) where the other hashes the line's
//! bytes.

use super::StreamConfig;
use crate::data::{
    parse_line, read_columnar_with_ids, Dataset, Format, ParsedLine, ReadOptions, LINES_PER_CHUNK,
};
use crate::error::{Error, Result};
use crate::io::{fnv1a, LineReader, FNV1A_EMPTY};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// JSON lines.
    File(PathBuf),
    Stdin,
    /// A columnar file (Parquet, Arrow IPC, Avro; `Format::is_columnar`).
    Columnar(PathBuf, Format),
}

impl Source {
    /// `-` is stdin; a file is JSON lines unless `format` (or, when none is given, what
    /// its name or bytes say) is columnar.
    pub fn from_arg(path: &Path, format: Option<Format>) -> Self {
        if path == Path::new("-") {
            return Source::Stdin;
        }
        match format.unwrap_or_else(|| Format::of_file(path)) {
            f if f.is_columnar() => Source::Columnar(path.to_path_buf(), f),
            _ => Source::File(path.to_path_buf()),
        }
    }

    /// The name used in error messages.
    pub fn name(&self) -> PathBuf {
        match self {
            Source::File(p) | Source::Columnar(p, _) => p.clone(),
            Source::Stdin => PathBuf::from("<stdin>"),
        }
    }

    fn open(&self) -> Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            Source::File(p) | Source::Columnar(p, _) => {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(p).map_err(|e| Error::io(p, e))?,
                ))
            }
            Source::Stdin => Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin())),
        })
    }
}

/// How far into the input the committed batches reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub batches: u64,
    pub lines: u64,
    pub bytes: u64,
    /// FNV-1a of the bytes of those lines.
    pub hash: u64,
    pub records: u64,
    pub skipped: u64,
}

/// Lines of the input, numbered from 1, with the position after each.
pub(super) struct Lines {
    pub(super) reader: LineReader<Box<dyn BufRead + Send>>,
    /// Shared, so that each mini-batch's errors can name it without a copy.
    pub(super) name: Arc<Path>,
    pub(super) buffer: String,
    pub(super) at: Position,
}

impl Lines {
    pub(super) fn new(source: &Source) -> Result<Self> {
        Ok(Lines {
            reader: LineReader::new(source.open()?, &source.name()),
            name: source.name().into(),
            buffer: String::new(),
            at: Position {
                hash: FNV1A_EMPTY,
                ..Position::default()
            },
        })
    }

    /// The next line (newline included), or why it is not text, and the position before
    /// it; `None` at the end. Positions count the bytes as read and hash the text.
    pub(super) fn next(&mut self) -> Result<Option<(Result<&str>, Position)>> {
        let before = self.at;
        let Some(text) = self.reader.read(&mut self.buffer)? else {
            return Ok(None);
        };
        self.at.lines += 1;
        self.at.bytes += self.reader.consumed() as u64;
        self.at.hash = fnv1a(self.at.hash, self.buffer.as_bytes());
        Ok(Some((text.map(|()| self.buffer.as_str()), before)))
    }
}

/// Lines parsed ahead, up to [`LINES_PER_CHUNK`] at a time in parallel (as `glmix train`
/// parses them), handed out one by one in order. It never reads further ahead than it is
/// asked to, so that a batch from a pipe is cut as soon as its lines have come.
pub(super) struct ParsedLines {
    pub(super) lines: Lines,
    pub(super) texts: Vec<String>,
    pub(super) queue: VecDeque<Parsed>,
    /// The position after the last line handed out.
    pub(super) at: Position,
    /// Whether lines may be read ahead of what a mini-batch needs (not from a pipe, where
    /// the next lines may be a long time coming).
    pub(super) read_ahead: bool,
}

/// One line of the input: the positions before and after it, and its record (`None`
/// for a blank line), or why it is none.
pub(super) struct Parsed {
    pub(super) before: Position,
    pub(super) after: Position,
    pub(super) record: Result<Option<ParsedLine>>,
}

impl ParsedLines {
    pub(super) fn new(source: &Source) -> Result<Self> {
        let lines = Lines::new(source)?;
        let at = lines.at;
        Ok(ParsedLines {
            lines,
            texts: vec![String::new(); LINES_PER_CHUNK],
            queue: VecDeque::new(),
            at,
            read_ahead: !matches!(source, Source::Stdin),
        })
    }

    /// Skip up to line `to` without parsing (only before the first line is handed out).
    pub(super) fn skip_to(&mut self, to: u64) -> Result<()> {
        debug_assert!(self.queue.is_empty());
        while self.lines.at.lines < to && self.lines.next()?.is_some() {}
        self.at = self.lines.at;
        Ok(())
    }

    /// The next line; when none is parsed, read and parse up to `wanted` of them (at
    /// least one).
    pub(super) fn next(&mut self, read: &ReadOptions, wanted: usize) -> Result<Option<Parsed>> {
        if self.queue.is_empty() {
            self.fill(read, wanted.clamp(1, self.texts.len()))?;
        }
        let parsed = self.queue.pop_front();
        if let Some(p) = &parsed {
            self.at = p.after;
        }
        Ok(parsed)
    }

    /// Read up to `count` lines and parse them in parallel.
    pub(super) fn fill(&mut self, read: &ReadOptions, count: usize) -> Result<()> {
        use rayon::prelude::*;
        let mut framed: Vec<(Position, Position, Option<Error>)> = Vec::with_capacity(count);
        while framed.len() < count {
            let Some((text, before)) = self.lines.next()? else {
                break;
            };
            let k = framed.len();
            let failed = match text {
                Ok(text) => {
                    self.texts[k].clear();
                    self.texts[k].push_str(text);
                    None
                }
                Err(e) => Some(e),
            };
            framed.push((before, self.lines.at, failed));
        }
        let name = &self.lines.name;
        let records: Vec<Option<Result<ParsedLine>>> = self.texts[..framed.len()]
            .par_iter()
            .zip(&framed)
            .map(|(text, (before, _, failed))| {
                let line = before.lines as usize + 1;
                (failed.is_none() && !text.trim().is_empty())
                    .then(|| parse_line(name, line, text, read, &[]))
            })
            .collect();
        for ((before, after, failed), record) in framed.into_iter().zip(records) {
            let record = match failed {
                Some(e) => Err(e),
                None => record.transpose(),
            };
            self.queue.push_back(Parsed {
                before,
                after,
                record,
            });
        }
        Ok(())
    }
}

/// The records of a columnar file, with the position after each.
pub(super) struct Table {
    pub(super) data: Dataset,
    pub(super) name: PathBuf,
    pub(super) next: usize,
    pub(super) at: Position,
    /// Whether a batch has named the file's unread columns.
    pub(super) unread_named: bool,
}

impl Table {
    pub(super) fn new(path: &Path, format: Format, config: &StreamConfig) -> Result<Self> {
        let (data, _) = read_columnar_with_ids(path, format, &config.read, &[])?;
        Ok(Table {
            data,
            name: path.to_path_buf(),
            next: 0,
            at: Position {
                hash: FNV1A_EMPTY,
                ..Position::default()
            },
            unread_named: false,
        })
    }

    /// The next record's index, and the position before it; `None` at the end.
    pub(super) fn next(&mut self) -> Option<(usize, Position)> {
        let i = self.next;
        if i == self.data.num_rows() {
            return None;
        }
        let before = self.at;
        let d = &self.data;
        let mut h = fnv1a(self.at.hash, d.entities.key(d.entity[i]).as_bytes());
        for v in [d.label[i], d.weight[i], d.offset[i]] {
            h = fnv1a(h, &v.to_le_bytes());
        }
        if let Some(t) = d.timestamp[i] {
            h = fnv1a(h, &t.to_le_bytes());
        }
        let (ids, values) = d.row_features(i);
        for (&f, v) in ids.iter().zip(values) {
            let key = d.features.key(f);
            h = fnv1a(h, key.name.as_bytes());
            h = fnv1a(h, &[0]);
            h = fnv1a(h, key.term.as_bytes());
            h = fnv1a(h, &v.to_le_bytes());
        }
        self.at.hash = h;
        self.at.lines += 1;
        self.next += 1;
        Some((i, before))
    }
}

/// What a [`BatchReader`] reads.
pub(super) enum Input {
    Lines(Box<ParsedLines>),
    Table(Box<Table>),
}

impl Input {
    pub(super) fn at(&self) -> Position {
        match self {
            Input::Lines(l) => l.at,
            Input::Table(t) => t.at,
        }
    }

    pub(super) fn name(&self) -> PathBuf {
        match self {
            Input::Lines(l) => l.lines.name.to_path_buf(),
            Input::Table(t) => t.name.clone(),
        }
    }
}
