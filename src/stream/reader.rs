//! The stream's reader: input lines, numbered and hashed as they are read ([`Position`]),
//! cut into mini-batches by record count or by tumbling time windows ([`Batching`]).
//! The same input always gives the same mini-batches, which is what makes resuming exact.
//!
//! A columnar file (Parquet, Arrow IPC, Avro) is read whole through the columnar reader
//! and handed out record by record ([`Table`]): its position counts records where a
//! JSON-lines position counts lines, and hashes each record's values (entity, label,
//! weight, offset, timestamp, features) where the other hashes the line's bytes.

use super::{BatchReport, Batching, OnBadRecord, StreamConfig};
use crate::data::{number_field, parse_line, read_columnar_with_ids, Dataset, Format, ParsedLine};
use crate::error::{Error, Result};
use crate::io::{fnv1a, LineReader, FNV1A_EMPTY};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Skipped records whose errors a batch report keeps.
const EXAMPLES: usize = 3;

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
    reader: LineReader<Box<dyn BufRead + Send>>,
    name: PathBuf,
    buffer: String,
    at: Position,
}

impl Lines {
    fn new(source: &Source) -> Result<Self> {
        Ok(Lines {
            reader: LineReader::new(source.open()?, &source.name()),
            name: source.name(),
            buffer: String::new(),
            at: Position {
                hash: FNV1A_EMPTY,
                ..Position::default()
            },
        })
    }

    /// The next line (newline included), or why it is not text, and the position before
    /// it; `None` at the end. Positions count the bytes as read and hash the text.
    fn next(&mut self) -> Result<Option<(Result<&str>, Position)>> {
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

/// The records of a columnar file, with the position after each.
pub(super) struct Table {
    data: Dataset,
    name: PathBuf,
    next: usize,
    at: Position,
    /// Whether a batch has named the file's unread columns.
    unread_named: bool,
}

impl Table {
    fn new(path: &Path, format: Format, config: &StreamConfig) -> Result<Self> {
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
    fn next(&mut self) -> Option<(usize, Position)> {
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
    Lines(Lines),
    Table(Box<Table>),
}

impl Input {
    fn at(&self) -> Position {
        match self {
            Input::Lines(l) => l.at,
            Input::Table(t) => t.at,
        }
    }

    fn name(&self) -> PathBuf {
        match self {
            Input::Lines(l) => l.name.clone(),
            Input::Table(t) => t.name.clone(),
        }
    }
}

/// A mini-batch as read, before it is validated and trained.
pub(super) struct ReadBatch {
    pub(super) data: Dataset,
    /// Filled in as far as reading goes: numbering, lines, skipped and late records.
    pub(super) report: BatchReport,
    /// Where the input stands once this batch is committed.
    pub(super) cut: Position,
}

/// Cuts the input into mini-batches (see [`Batching`]); the same input always gives the
/// same batches, which is what makes resuming exact.
pub(super) struct BatchReader {
    pub(super) input: Input,
    pub(super) config: StreamConfig,
    /// The record read past the end of the previous (time-window) batch, already checked
    /// into a dataset of its own, and its window: they open the next batch.
    pub(super) pending: Option<(Dataset, i64)>,
    /// Number of the next batch, and the line it starts after.
    pub(super) batch: u64,
    pub(super) cut: Position,
}

impl BatchReader {
    pub(super) fn new(source: &Source, config: &StreamConfig) -> Result<Self> {
        let input = match source {
            Source::Columnar(path, format) => {
                Input::Table(Box::new(Table::new(path, *format, config)?))
            }
            _ => Input::Lines(Lines::new(source)?),
        };
        let cut = input.at();
        Ok(BatchReader {
            input,
            config: config.clone(),
            pending: None,
            batch: 1,
            cut,
        })
    }

    /// Skip the input up to `position` (an earlier run's last cut) without reading records.
    pub(super) fn skip_to(&mut self, position: &Position) -> Result<()> {
        match &mut self.input {
            Input::Lines(lines) => {
                while lines.at.lines < position.lines && lines.next()?.is_some() {}
            }
            Input::Table(table) => {
                while table.at.lines < position.lines && table.next().is_some() {}
            }
        }
        self.cut = self.input.at();
        self.batch = position.batches + 1;
        Ok(())
    }

    pub(super) fn next(&mut self) -> Result<Option<ReadBatch>> {
        let started = Instant::now();
        let report = BatchReport {
            batch: self.batch,
            first_line: self.cut.lines + 1,
            ..BatchReport::default()
        };
        let read = match &self.input {
            Input::Lines(_) => self.next_lines(report)?,
            Input::Table(_) => self.next_records(report),
        };
        let Some((mut data, mut report, window, cut)) = read else {
            return Ok(None);
        };
        let config = &self.config;
        let name = self.input.name();
        data.sort_features();
        if let Some(model) = &config.offset_model {
            data.add_offsets(model)?;
        }
        self.cut = cut.unwrap_or(self.input.at());
        self.batch += 1;
        report.last_line = self.cut.lines;
        report.unread_keys = data
            .unread_keys
            .iter()
            .map(|(k, u)| (k.to_string(), u.records, u.first_line))
            .collect();
        if let Some((key, _, line)) = report
            .unread_keys
            .iter()
            .filter(|_| config.strict_keys)
            .min_by_key(|k| k.2)
        {
            return Err(Error::Input {
                path: name,
                line: *line,
                field: key.clone(),
                message: "no field reads this key (--strict)".into(),
            });
        }
        report.input_bytes = self.cut.bytes;
        report.window_start = match config.batching {
            Batching::Window(w) => window.map(|k| k as f64 * w),
            Batching::Records(_) => None,
        };
        report.read_seconds = started.elapsed().as_secs_f64();
        Ok(Some(ReadBatch {
            data,
            report,
            cut: self.cut,
        }))
    }

    /// The next mini-batch of a columnar file's records: its records, report, window and
    /// cut (when it ends before the input's position).
    fn next_records(&mut self, report: BatchReport) -> Option<Cut> {
        let Input::Table(table) = &mut self.input else {
            unreachable!("a table input")
        };
        let (mut data, mut window) = (Dataset::new(), None);
        let mut report = report;
        let mut cut = None;
        loop {
            if matches!(self.config.batching, Batching::Records(n) if data.num_rows() == n) {
                break;
            }
            let at = table.at;
            let Some((i, before)) = table.next() else {
                break;
            };
            if let Batching::Window(w) = self.config.batching {
                // A columnar timestamp was checked finite as it was read.
                let t = table.data.timestamp[i].expect("the timestamp column is read");
                let k = (t / w).floor() as i64;
                match window {
                    Some(current) if k > current && data.num_rows() > 0 => {
                        // The record opens the next batch: put it back.
                        table.next -= 1;
                        table.at = at;
                        cut = Some(before);
                        break;
                    }
                    Some(current) if k < current => report.late += 1,
                    Some(_) => {}
                    None => window = Some(k),
                }
            }
            data.push_row_of(&table.data, i);
        }
        if data.num_rows() == 0 {
            return None;
        }
        // The file's unread columns, named once, with the run's first batch.
        if !table.unread_named {
            data.unread_keys = table.data.unread_keys.clone();
            table.unread_named = true;
        }
        Some((data, report, window, cut))
    }

    /// The next mini-batch of JSON lines (see [`Self::next_records`]).
    fn next_lines(&mut self, mut report: BatchReport) -> Result<Option<Cut>> {
        let config = &self.config;
        let Input::Lines(lines) = &mut self.input else {
            unreachable!("a lines input")
        };
        let name = lines.name.clone();
        let (mut data, mut window) = match self.pending.take() {
            Some((opening, w)) => (opening, Some(w)),
            None => (Dataset::new(), None),
        };
        let mut cut = None;
        let bad = |e: Error, report: &mut BatchReport| -> Result<()> {
            match config.on_bad_record {
                OnBadRecord::Fail => Err(e),
                OnBadRecord::Skip => {
                    report.skipped += 1;
                    if report.skipped_examples.len() < EXAMPLES {
                        report.skipped_examples.push(e.to_string());
                    }
                    Ok(())
                }
            }
        };
        loop {
            if matches!(config.batching, Batching::Records(n) if data.num_rows() == n) {
                break;
            }
            let Some((text, before)) = lines.next()? else {
                break;
            };
            let text = match text {
                Ok(text) => text,
                Err(e) => {
                    bad(e, &mut report)?;
                    continue;
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            let line = before.lines + 1;
            let record = match parse_line(&name, line as usize, text, &config.read, &[]) {
                Ok(record) => record,
                Err(e) => {
                    bad(e, &mut report)?;
                    continue;
                }
            };
            let mut late = false;
            if let Batching::Window(_) = config.batching {
                let w = match window_of(config, &name, line, &record) {
                    Ok(w) => w,
                    Err(e) => {
                        bad(e, &mut report)?;
                        continue;
                    }
                };
                match window {
                    Some(current) if w > current && data.num_rows() > 0 => {
                        // Read it now, so that the next batch does not start on a bad record.
                        let mut opening = Dataset::new();
                        if let Err(e) =
                            record.push(&name, line as usize, &config.read, &mut opening)
                        {
                            bad(e, &mut report)?;
                            continue;
                        }
                        self.pending = Some((opening, w));
                        cut = Some(before);
                        break;
                    }
                    Some(current) if w < current => late = true,
                    Some(current) if w == current => {}
                    _ => window = Some(w),
                }
            }
            match record.push(&name, line as usize, &config.read, &mut data) {
                Ok(()) => report.late += usize::from(late),
                Err(e) => bad(e, &mut report)?,
            }
        }
        if data.num_rows() == 0 {
            // Only blank or skipped lines were left: they make no batch.
            return Ok(None);
        }
        Ok(Some((data, report, window, cut)))
    }
}

/// A mini-batch as cut: its records, report, window and where it ends (`None`: where the
/// input stands).
type Cut = (Dataset, BatchReport, Option<i64>, Option<Position>);

/// Train every mini-batch of `source` into `store` (resuming after its last committed
/// batch), calling `on_batch` after each commit. The next mini-batch is read on another
/// thread while the current one trains.
fn window_of(config: &StreamConfig, name: &Path, line: u64, record: &ParsedLine) -> Result<i64> {
    let (Batching::Window(w), Some(field)) = (config.batching, &config.read.timestamp_field) else {
        return Ok(0);
    };
    let t = match record {
        // The fast path reads a record only with its timestamp, finite.
        ParsedLine::Fast(r) => r.timestamp.expect("the timestamp field is read"),
        ParsedLine::Checked(obj) => number_field(name, line as usize, obj, field)?,
    };
    Ok((t / w).floor() as i64)
}
