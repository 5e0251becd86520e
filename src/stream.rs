//! Incremental training on a stream of records (Lambda Learner's workflow).
//!
//! Records arrive in time order (a file or stdin) and are cut into mini-batches — by
//! record count, or by tumbling time windows `⌊t / w⌋` over a timestamp field. For each
//! mini-batch `B_k`:
//!
//! 1. **Progressive validation.** `B_k` is scored with the models as they stand (trained
//!    on `B_1 … B_{k−1}` only), so every metric is measured on data the models have not
//!    seen. Per batch: AUC, log-loss (logistic) or RMSE (linear), per-entity AUC, and the
//!    same for the offsets alone (the fixed effect); running values over the whole stream
//!    so far (AUC from an [`AucHistogram`]).
//! 2. **Update.** Every entity `B_k` touches is trained at once with the batched solver,
//!    its stored model as the prior: `bayes-*` objectives give the sequential-Bayesian
//!    update `θ_k = argmin ℓ_k(θ) + (1−δ)λ/2‖θ‖² + δ/2 (θ−θ_{k−1})ᵀ H_{k−1} (θ−θ_{k−1})`;
//!    other objectives are warm-started from `θ_{k−1}`. [`Update::Retrain`] instead
//!    retrains each touched entity from scratch on all its records so far — the costly
//!    baseline incremental updates are measured against.
//! 3. **Commit.** The updated models, the stream position (lines consumed and an FNV-1a
//!    hash of their bytes) and the batch's metrics go to the [`ModelStore`] in one
//!    transaction.
//!
//! A run started on a store that already holds a position resumes after the last
//! committed mini-batch: it re-reads (and hash-checks) the consumed lines, skips them, and
//! goes on — so a run killed at any moment and started again ends with exactly the models
//! of an uninterrupted one. The settings that shape the models are stored too, and a
//! resumed run must use the same ones.
//!
//! Bad records either stop the run with the file, line and field ([`OnBadRecord::Fail`];
//! every batch before is committed, the one in progress is not) or are skipped and
//! counted per batch ([`OnBadRecord::Skip`]).

use crate::data::{Dataset, ReadOptions};
use crate::error::{Error, Result};
use crate::io::{ReadAhead, FNV1A_EMPTY};
use crate::metrics::{auc, entity_auc, is_positive, logloss, rmse, AucHistogram};
use crate::model::ModelSet;
use crate::model::OffsetModel;
use crate::objective::{softplus, Loss};
use crate::score::score;
use crate::store::{Commit, ModelStore};
use crate::train::{fit_on, Backend, TrainConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Instant;

mod input;
mod reader;
mod settings;

pub use input::{Position, Source};
use reader::{BatchReader, ReadBatch};

use settings::{legacy_fingerprint, StreamSettings};

/// How the stream is cut into mini-batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Batching {
    /// Every `n` good records (the last batch may be shorter).
    Records(usize),
    /// Tumbling windows of this many time units over [`ReadOptions::timestamp_field`]:
    /// record `t` falls in window `⌊t / w⌋`. A record older than the current window
    /// (late) joins the current batch and is counted.
    Window(f64),
}

/// What happens to a record that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadRecord {
    /// Stop with an error naming the file, line and field.
    Fail,
    /// Skip it, count it in its batch's report.
    Skip,
}

/// How a touched entity's model is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// From the batch alone, the stored model as prior (and starting point).
    Incremental,
    /// From scratch (no prior) on every record of the entity so far.
    Retrain,
}

/// Settings of a stream run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub train: TrainConfig,
    pub batching: Batching,
    pub read: ReadOptions,
    /// Added to every record's offset (`β₀ + x·β`).
    pub offset_model: Option<OffsetModel>,
    pub on_bad_record: OnBadRecord,
    /// A key no field reads is an error (naming its first line), raised before the
    /// mini-batch holding it trains; otherwise it is reported in [`BatchReport`].
    pub strict_keys: bool,
    pub update: Update,
}

impl StreamConfig {
    fn validate(&self) -> Result<()> {
        match self.batching {
            Batching::Records(0) => {
                return Err(Error::Config("a mini-batch needs at least 1 record".into()))
            }
            Batching::Window(w) if !(w > 0.0 && w.is_finite()) => {
                return Err(Error::Config(format!(
                    "the time window must be a finite number > 0, got {w}"
                )))
            }
            Batching::Window(_) if self.read.timestamp_field.is_none() => {
                return Err(Error::Config("time windows need a timestamp field".into()))
            }
            _ => {}
        }
        Ok(())
    }
}

/// The position a stream has committed to `store`, if any has.
pub fn committed_position(store: &ModelStore) -> Result<Option<Position>> {
    store
        .state(POSITION)?
        .map(|bytes| decode(store, &bytes))
        .transpose()
}

/// Running progressive-validation sums over every committed batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Running {
    records: u64,
    /// Σ log-loss (logistic) or Σ squared error (linear).
    loss: f64,
    offset_loss: f64,
    auc: AucHistogram,
    offset_auc: AucHistogram,
}

impl Running {
    fn add(&mut self, kind: Loss, data: &Dataset, scores: &[f64]) {
        for (i, &s) in scores.iter().enumerate() {
            let (y, o) = (data.label[i], data.offset[i]);
            let positive = is_positive(y);
            let loss = |m: f64| match kind {
                Loss::Logistic if positive => softplus(-m),
                Loss::Logistic => softplus(m),
                Loss::Squared => (m - y) * (m - y),
            };
            self.loss += loss(s);
            self.offset_loss += loss(o);
            if kind == Loss::Logistic {
                self.auc.add(s, positive);
                self.offset_auc.add(o, positive);
            }
        }
        self.records += scores.len() as u64;
    }

    fn mean(&self, kind: Loss, sum: f64) -> Option<f64> {
        let n = self.records as f64;
        match kind {
            _ if self.records == 0 => None,
            Loss::Logistic => Some(sum / n),
            Loss::Squared => Some((sum / n).sqrt()),
        }
    }
}

/// Progressive validation and timing of one mini-batch. Loss-type metrics are log-loss
/// for logistic objectives and RMSE for linear ones (the other is `None`); AUCs are for
/// logistic objectives only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// 1-based batch number over the whole stream (resumed runs continue it).
    pub batch: u64,
    /// Input lines the batch spans (blank and skipped lines included).
    pub first_line: u64,
    pub last_line: u64,
    pub records: usize,
    pub entities: usize,
    /// Touched entities that had no model yet.
    pub new_entities: usize,
    pub skipped: usize,
    /// Records older than the batch's time window (window batching only).
    pub late: usize,
    /// Start of the time window (window batching only).
    pub window_start: Option<f64>,
    pub auc: Option<f64>,
    pub logloss: Option<f64>,
    pub rmse: Option<f64>,
    pub entity_auc: Option<f64>,
    /// Entities with both classes in the batch, over which `entity_auc` is averaged.
    pub entity_auc_entities: usize,
    pub offset_auc: Option<f64>,
    pub offset_logloss: Option<f64>,
    pub offset_rmse: Option<f64>,
    /// Over every record of the stream so far, this batch included.
    pub running_records: u64,
    pub running_auc: Option<f64>,
    pub running_loss: Option<f64>,
    pub running_offset_auc: Option<f64>,
    pub running_offset_loss: Option<f64>,
    /// Entities whose solve stopped at the iteration limit or a failed line search.
    pub not_converged: usize,
    /// Rows the solver trained on (more than `records` with [`Update::Retrain`]).
    pub rows_trained: usize,
    pub read_seconds: f64,
    pub score_seconds: f64,
    pub train_seconds: f64,
    /// The batch's latency without its commit: reading it, then validating and training it
    /// (the time it waited for the previous batch to finish is not counted; the commit
    /// comes after, and [`StreamSummary::batch_seconds`] includes it).
    pub seconds: f64,
    /// Input bytes consumed once the batch is committed.
    pub input_bytes: u64,
    /// The first few skipped records' errors (not stored).
    #[serde(skip)]
    pub skipped_examples: Vec<String>,
    /// Keys of the batch's records that no field reads, with their count of records and
    /// first line (not stored).
    #[serde(skip)]
    pub unread_keys: Vec<(String, usize, usize)>,
}

impl BatchReport {
    /// Columns of the metrics CSV, in order (the fields above).
    pub const COLUMNS: &'static [&'static str] = &[
        "batch",
        "first_line",
        "last_line",
        "records",
        "entities",
        "new_entities",
        "skipped",
        "late",
        "window_start",
        "auc",
        "logloss",
        "rmse",
        "entity_auc",
        "entity_auc_entities",
        "offset_auc",
        "offset_logloss",
        "offset_rmse",
        "running_records",
        "running_auc",
        "running_loss",
        "running_offset_auc",
        "running_offset_loss",
        "not_converged",
        "rows_trained",
        "read_seconds",
        "score_seconds",
        "train_seconds",
        "seconds",
        "input_bytes",
    ];

    /// One CSV line (no newline) in [`BatchReport::COLUMNS`] order; `None` is empty.
    pub fn csv_row(&self) -> String {
        let Value::Object(map) = serde_json::to_value(self).expect("a report serialises") else {
            unreachable!("a struct serialises to an object")
        };
        Self::COLUMNS
            .iter()
            .map(|c| match &map[*c] {
                Value::Null => String::new(),
                v => v.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What one [`run_stream`] call did.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    /// Batches committed before this run (resumed from).
    pub resumed_after: u64,
    /// Batches committed by this run.
    pub batches: u64,
    pub records: u64,
    pub skipped: u64,
    /// Each batch's latency: reading it, validating, training and committing it (not the
    /// time it waited, read ahead, for the previous batch).
    pub batch_seconds: Vec<f64>,
    pub seconds: f64,
    /// The last batch's report.
    pub last: Option<BatchReport>,
}

const POSITION: &str = "stream.position";
const RUNNING: &str = "stream.running";
const SETTINGS: &str = "stream.settings";

pub fn run_stream(
    source: &Source,
    store: &ModelStore,
    config: &StreamConfig,
    backend: Backend,
    on_batch: &mut dyn FnMut(&BatchReport),
) -> Result<StreamSummary> {
    config.validate()?;
    let clock = Instant::now();
    let kind = config.train.objective.loss();
    let settings = StreamSettings::of(config);
    let mut position = Position {
        hash: FNV1A_EMPTY,
        ..Position::default()
    };
    let mut running = Running::default();
    if let Some(committed) = committed_position(store)? {
        let stored = store.state(SETTINGS)?.unwrap_or_default();
        if let Err(differences) = settings.check(&stored, &legacy_fingerprint(config)) {
            return Err(Error::Config(format!(
                "{} was trained with other settings; resume with the same ones or use a new store\n{differences}",
                store.path().display()
            )));
        }
        position = committed;
        running = decode(store, &store.state(RUNNING)?.unwrap_or_default())?;
    }
    let mut summary = StreamSummary {
        resumed_after: position.batches,
        ..Default::default()
    };

    // Resume: skip what the store holds — or, to retrain from scratch, read it again
    // into the history, batch by batch as the first time.
    let mut reader = BatchReader::new(source, config)?;
    let mut history = History::default();
    match config.update {
        Update::Incremental => reader.skip_to(&position)?,
        Update::Retrain => {
            while reader.cut.lines < position.lines {
                match reader.next()? {
                    Some(b) => history.append(&b.data),
                    None => break,
                }
            }
        }
    }
    if reader.cut.lines != position.lines || reader.cut.hash != position.hash {
        return Err(Error::Config(format!(
            "{}: its first {} {} are not those {} was trained on; is this the same input?",
            source.name().display(),
            position.lines,
            match source {
                Source::Columnar(..) => "records",
                _ => "lines",
            },
            store.path().display()
        )));
    }

    let batches = ReadAhead::spawn(move || reader.next());
    while let Some(ReadBatch {
        data: batch,
        mut report,
        cut,
    }) = batches.next()?
    {
        let started = Instant::now();
        // 1. Progressive validation with the models as they stand.
        let clock = Instant::now();
        let priors: ModelSet = store.models(batch.entities.keys().iter().map(String::as_str))?;
        let scores = score(&batch, &priors, None)?;
        report.validate(kind, &batch, &scores, &priors);
        running.add(kind, &batch, &scores);
        report.running(kind, &running);
        report.score_seconds = clock.elapsed().as_secs_f64();

        // 2. Update every touched entity.
        let clock = Instant::now();
        let out = match config.update {
            Update::Incremental => {
                report.rows_trained = batch.num_rows();
                fit_on(backend, Some(&priors), &batch, &config.train, &|_| {})?
            }
            Update::Retrain => {
                history.append(&batch);
                let touched = history.of(&batch);
                report.rows_trained = touched.num_rows();
                fit_on(backend, None, &touched, &config.train, &|_| {})?
            }
        };
        report.not_converged = out
            .reports
            .iter()
            .filter(|r| !r.solve.reason.converged())
            .count();
        report.train_seconds = clock.elapsed().as_secs_f64();
        report.seconds = report.read_seconds + started.elapsed().as_secs_f64();

        // 3. Commit models, position and metrics together.
        position = Position {
            batches: report.batch,
            lines: cut.lines,
            bytes: cut.bytes,
            hash: cut.hash,
            records: position.records + batch.num_rows() as u64,
            skipped: position.skipped + report.skipped as u64,
        };
        let row = serde_json::to_string(&report).expect("a report serialises");
        store.commit(Commit {
            models: &out.models,
            state: vec![
                (POSITION, encode(&position)),
                (RUNNING, encode(&running)),
                (SETTINGS, settings.encode()),
            ],
            batch: Some((position.batches, row)),
        })?;

        summary.batches += 1;
        summary.records += batch.num_rows() as u64;
        summary.skipped += report.skipped as u64;
        summary
            .batch_seconds
            .push(report.read_seconds + started.elapsed().as_secs_f64());
        on_batch(&report);
        summary.last = Some(report);
    }
    summary.seconds = clock.elapsed().as_secs_f64();
    Ok(summary)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stream state serialises")
}

fn decode<T: for<'de> Deserialize<'de>>(store: &ModelStore, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store {
        path: store.path().to_path_buf(),
        message: format!("unreadable stream state: {e}"),
    })
}

impl BatchReport {
    fn validate(&mut self, kind: Loss, data: &Dataset, scores: &[f64], priors: &ModelSet) {
        self.records = data.num_rows();
        self.entities = data.entities.len();
        self.new_entities = data
            .entities
            .keys()
            .iter()
            .filter(|e| !priors.contains(e))
            .count();
        match kind {
            Loss::Logistic => {
                let positive: Vec<bool> = data.label.iter().map(|&y| is_positive(y)).collect();
                self.auc = auc(scores, &positive);
                self.logloss = logloss(scores, &positive);
                (self.entity_auc, self.entity_auc_entities) =
                    entity_auc(&data.entity, scores, &positive);
                self.offset_auc = auc(&data.offset, &positive);
                self.offset_logloss = logloss(&data.offset, &positive);
            }
            Loss::Squared => {
                self.rmse = rmse(scores, &data.label);
                self.offset_rmse = rmse(&data.offset, &data.label);
            }
        }
    }

    fn running(&mut self, kind: Loss, running: &Running) {
        self.running_records = running.records;
        self.running_loss = running.mean(kind, running.loss);
        self.running_offset_loss = running.mean(kind, running.offset_loss);
        if kind == Loss::Logistic {
            self.running_auc = running.auc.auc();
            self.running_offset_auc = running.offset_auc.auc();
        }
    }
}

/// Every record so far, for [`Update::Retrain`], appended batch by batch (a resumed run
/// reads the same batches again, so it rebuilds exactly the history of an uninterrupted
/// one).
#[derive(Default)]
struct History {
    data: Dataset,
    rows_of: Vec<Vec<usize>>,
}

impl History {
    fn append(&mut self, batch: &Dataset) {
        for i in 0..batch.num_rows() {
            self.data.push_row_of(batch, i);
            let e = *self.data.entity.last().expect("just pushed") as usize;
            if e == self.rows_of.len() {
                self.rows_of.push(Vec::new());
            }
            self.rows_of[e].push(self.data.num_rows() - 1);
        }
    }

    /// Every record so far of the entities `batch` touches.
    fn of(&self, batch: &Dataset) -> Dataset {
        let mut touched = Dataset::new();
        for entity in batch.entities.keys() {
            let e = self.data.entities.get(entity).expect("appended before");
            for &i in &self.rows_of[e as usize] {
                touched.push_row_of(&self.data, i);
            }
        }
        touched.sort_features();
        touched
    }
}
