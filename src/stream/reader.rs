//! The stream's reader: the input ([`super::input`]) cut into mini-batches by record count
//! or by tumbling time windows ([`Batching`]). The same input always gives the same
//! mini-batches, which is what makes resuming exact.

use super::input::{Input, Parsed, ParsedLines, Position, Source, Table};
use super::{BatchReport, Batching, OnBadRecord, StreamConfig};
use crate::data::{number_field, Dataset, ParsedLine, LINES_PER_CHUNK};
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

/// Skipped records whose errors a batch report keeps.
const EXAMPLES: usize = 3;

/// One-record mini-batches handed over together at most ([`BatchReader::next_run`]):
/// enough to make the hand-over cheap, few enough that a run's buffers are reused.
const RUN_RECORDS: usize = 1024;

/// A mini-batch as read, before it is validated and trained.
pub(super) struct ReadBatch {
    pub(super) data: Dataset,
    /// Filled in as far as reading goes: numbering, lines, skipped and late records.
    pub(super) report: BatchReport,
    /// Where the input stands once this batch is committed.
    pub(super) cut: Position,
}

/// One-record mini-batches as read ([`BatchReader::next_run`]): record `i` of `data` is
/// mini-batch `batches[i]`, with its report (the run's read time and unread keys on the
/// first) and the position once it is committed.
pub(super) struct ReadRun {
    pub(super) data: Dataset,
    pub(super) batches: Vec<(BatchReport, Position)>,
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
    /// An error met after the records of a run, returned by the next call.
    pub(super) failed: Option<Error>,
    /// Runs the training thread is done with, to read the next ones into (so that what
    /// this thread allocates is not freed by the other).
    pub(super) spare_runs: Option<Receiver<ReadRun>>,
}

impl BatchReader {
    pub(super) fn new(source: &Source, config: &StreamConfig) -> Result<Self> {
        let input = match source {
            Source::Columnar(path, format) => {
                Input::Table(Box::new(Table::new(path, *format, config)?))
            }
            _ => Input::Lines(Box::new(ParsedLines::new(source)?)),
        };
        let cut = input.at();
        Ok(BatchReader {
            input,
            config: config.clone(),
            pending: None,
            batch: 1,
            cut,
            failed: None,
            spare_runs: None,
        })
    }

    /// Whether the input is JSON lines (not a columnar file).
    pub(super) fn reads_lines(&self) -> bool {
        matches!(self.input, Input::Lines(_))
    }

    /// Skip the input up to `position` (an earlier run's last cut) without reading records.
    pub(super) fn skip_to(&mut self, position: &Position) -> Result<()> {
        match &mut self.input {
            Input::Lines(lines) => lines.skip_to(position.lines)?,
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
        let report = self.opening_report();
        let read = match &self.input {
            Input::Lines(_) => self.next_lines(report)?,
            Input::Table(_) => self.next_records(report),
        };
        let Some((mut data, mut report, window, cut)) = read else {
            return Ok(None);
        };
        report.unread_keys = self.prepare(&mut data)?;
        self.close(&mut report, cut.unwrap_or(self.input.at()));
        let config = &self.config;
        if let Some((key, _, line)) = report
            .unread_keys
            .iter()
            .filter(|_| config.strict_keys)
            .min_by_key(|k| k.2)
        {
            return Err(Error::Input {
                path: self.input.name(),
                line: *line,
                field: key.clone(),
                message: "no field reads this key (--strict)".into(),
            });
        }
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

    /// The report of the mini-batch about to be read: its number and first line.
    fn opening_report(&self) -> BatchReport {
        BatchReport {
            batch: self.batch,
            first_line: self.cut.lines + 1,
            ..BatchReport::default()
        }
    }

    /// Close the mini-batch `report` reports at `cut`: the next one starts there.
    fn close(&mut self, report: &mut BatchReport, cut: Position) {
        self.cut = cut;
        self.batch += 1;
        report.last_line = cut.lines;
        report.input_bytes = cut.bytes;
    }

    /// Ready records as read for training (features in key order, the offset model's
    /// score added to each offset); returns the keys no field reads, with their records
    /// and first line.
    fn prepare(&self, data: &mut Dataset) -> Result<Vec<(String, usize, usize)>> {
        data.sort_features();
        if let Some(model) = &self.config.offset_model {
            model.add_to(data)?;
        }
        let unread = data.unread_keys.iter();
        Ok(unread
            .map(|(k, u)| (k.to_string(), u.records, u.first_line))
            .collect())
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
    fn next_lines(&mut self, report: BatchReport) -> Result<Option<Cut>> {
        let (mut data, window) = match self.pending.take() {
            Some((opening, w)) => (opening, Some(w)),
            None => (Dataset::new(), None),
        };
        let read = self.append_lines(&mut data, 0, window, report)?;
        Ok(read.map(|(report, window, cut)| (data, report, window, cut)))
    }

    /// The next one-record mini-batches of JSON lines: as many as are parsed already
    /// (reading a file, up to [`LINES_PER_CHUNK`] lines are parsed ahead; from a pipe, only
    /// what has come), at least one and at most [`RUN_RECORDS`]; `None` at the end. An
    /// error after some of them is returned by the next call, so that the records before
    /// it train.
    pub(super) fn next_run(&mut self) -> Result<Option<ReadRun>> {
        debug_assert_eq!(self.config.batching, Batching::Records(1));
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let started = Instant::now();
        let spare = self.spare_runs.as_ref().and_then(|r| r.try_recv().ok());
        let ReadRun {
            mut data,
            mut batches,
        } = spare.unwrap_or_else(|| ReadRun {
            data: Dataset::new(),
            batches: Vec::with_capacity(RUN_RECORDS),
        });
        data.clear();
        batches.clear();
        loop {
            let Input::Lines(lines) = &self.input else {
                unreachable!("per-record runs read JSON lines")
            };
            if !batches.is_empty() && (lines.queue.is_empty() || batches.len() == RUN_RECORDS) {
                break;
            }
            let report = self.opening_report();
            let start = data.num_rows();
            match self.append_lines(&mut data, start, None, report) {
                Ok(Some((mut report, _, _))) => {
                    self.close(&mut report, self.input.at());
                    batches.push((report, self.cut));
                }
                Ok(None) => break,
                Err(e) if batches.is_empty() => return Err(e),
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        if batches.is_empty() {
            return Ok(None);
        }
        let first = &mut batches[0].0;
        first.unread_keys = self.prepare(&mut data)?;
        first.read_seconds = started.elapsed().as_secs_f64();
        Ok(Some(ReadRun { data, batches }))
    }

    /// Append the next mini-batch of JSON lines to `data`, whose rows from `start` on are
    /// the mini-batch's (the record that opens `window`, if any): its report, window and
    /// cut; `None` when it would hold no record.
    fn append_lines(
        &mut self,
        data: &mut Dataset,
        start: usize,
        mut window: Option<i64>,
        mut report: BatchReport,
    ) -> Result<Option<Appended>> {
        let config = &self.config;
        let Input::Lines(lines) = &mut self.input else {
            unreachable!("a lines input")
        };
        let name = Arc::clone(&lines.lines.name);
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
            let rows = data.num_rows() - start;
            if matches!(config.batching, Batching::Records(n) if rows == n) {
                break;
            }
            // From a pipe, a batch of n records waits for n more lines and a window for
            // one; a file is parsed ahead.
            let wanted = match config.batching {
                _ if lines.read_ahead => LINES_PER_CHUNK,
                Batching::Records(n) => n - rows,
                Batching::Window(_) => 1,
            };
            let Some(Parsed { before, record, .. }) = lines.next(&config.read, wanted)? else {
                break;
            };
            let line = before.lines + 1;
            let record = match record {
                Ok(Some(record)) => record,
                // A blank line.
                Ok(None) => continue,
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
            match record.push(&name, line as usize, &config.read, data) {
                Ok(()) => report.late += usize::from(late),
                Err(e) => bad(e, &mut report)?,
            }
        }
        if data.num_rows() == start {
            // Only blank or skipped lines were left: they make no batch.
            return Ok(None);
        }
        Ok(Some((report, window, cut)))
    }
}

/// A mini-batch as cut: its records, report, window and where it ends (`None`: where the
/// input stands).
type Cut = (Dataset, BatchReport, Option<i64>, Option<Position>);

/// A mini-batch appended to a dataset: a [`Cut`] without the records.
type Appended = (BatchReport, Option<i64>, Option<Position>);

/// The time window of `record` (0 when mini-batches are cut by count).
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
