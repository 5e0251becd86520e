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
//!    so far (AUC from an [`crate::metrics::AucHistogram`]).
//! 2. **Update.** Every entity `B_k` touches is trained at once with the batched solver,
//!    its stored model as the prior: `bayes-*` objectives give the sequential-Bayesian
//!    update `θ_k = argmin ℓ_k(θ) + (1−δ)λ/2‖θ‖² + δ/2 (θ−θ_{k−1})ᵀ H_{k−1} (θ−θ_{k−1})`;
//!    other objectives are warm-started from `θ_{k−1}`. [`Update::Retrain`] instead
//!    retrains each touched entity from scratch on all its records so far — the costly
//!    baseline incremental updates are measured against.
//! 3. **Commit.** The updated models, the stream position (lines consumed and an FNV-1a
//!    hash of their bytes) and the batch's metrics go to the [`ModelStore`] in one
//!    transaction; mini-batches are committed in groups ([`CommitPolicy`]), each written
//!    by a commit thread while the next trains (`writer`).
//!
//! One-record mini-batches trained incrementally take a path of their own
//! (`per_record`): the same scores and models, bit for bit, without a fit per record.
//!
//! **Forgetting.** A fixed δ weights the prior at every update of an entity, so it forgets
//! per update: per record with one-record mini-batches, per hour with hourly windows, and
//! its best value depends on the cut. With a half-life `h`
//! ([`crate::objective::Regularization::half_life`]) the weight is `δ_k = 2^{−Δt/h}`, `Δt`
//! the time from the model's `last_seen` to the newest of the entity's records in `B_k`.
//! For the squared loss, where an update is exact, two updates with `δ₁` and then `δ₂`
//! leave `ℓ₂ + δ₂ℓ₁ + (1 − δ₁δ₂)λ/2‖θ‖² + δ₁δ₂/2 (θ−θ₀)ᵀH₀(θ−θ₀)`, and `δ₁δ₂ =
//! 2^{−(t₂−t₀)/h}` is the weight one update over both would give: the cut changes only how
//! records inside one mini-batch are weighted against each other (alike), and not at all
//! when they share one time (a test checks it, with dense rows and a full precision).
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
use crate::model::OffsetModel;
use crate::objective::Loss;
use crate::score::score;
use crate::store::{Commit, Encoded, ModelStore};
use crate::train::{fit_on, Backend, TrainConfig};
use serde::{Deserialize, Serialize};
use std::time::Instant;

mod group;
mod input;
mod per_record;
mod reader;
mod report;
mod settings;
mod writer;

pub use group::CommitPolicy;
use group::Group;
pub use input::{Position, Source};
use reader::{BatchReader, ReadBatch, ReadRun};
pub use report::BatchReport;
use report::{Running, Scored};

use settings::{legacy_fingerprint, StreamSettings};
use writer::{Job, Landed, Writer};

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
    /// When trained mini-batches are committed to the store.
    pub commit: CommitPolicy,
}

impl StreamConfig {
    fn validate(&self) -> Result<()> {
        match self.batching {
            Batching::Records(0) => {
                return Err(Error::Config("a mini-batch needs at least 1 record".into()))
            }
            _ if self.commit.records == 0 => {
                return Err(Error::Config("a commit needs at least 1 record".into()))
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

/// What one [`run_stream`] call did.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    /// Mini-batches committed before this run (resumed from).
    pub resumed_after: u64,
    /// Mini-batches trained and committed by this run, and its commits.
    pub batches: u64,
    pub commits: u64,
    pub records: u64,
    pub skipped: u64,
    /// Each mini-batch's latency: reading it, validating and training it (not the time it
    /// waited, read ahead, for the one before, nor the commit).
    pub batch_seconds: Vec<f64>,
    /// Each commit's seconds.
    pub commit_seconds: Vec<f64>,
    pub seconds: f64,
    /// The last commit's report.
    pub last: Option<BatchReport>,
}

/// Records of mini-batches read ahead of training, beyond the next mini-batch.
const READ_AHEAD_RECORDS: usize = 65_536;

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
    let summary = StreamSummary {
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

    std::thread::scope(|scope| {
        let mut trainer = Trainer {
            store,
            kind,
            settings: settings.encode(),
            on_batch,
            group: Group::default(),
            running,
            position,
            summary,
            writer: Writer::spawn(scope, store),
            spare: Default::default(),
        };
        // Small mini-batches queue up to READ_AHEAD_RECORDS, so that a one-record
        // mini-batch is handed over by a lock, not by a meeting of two threads.
        let trained = if per_record::applies(config, &reader) {
            let (recycle, spare_runs) = std::sync::mpsc::channel();
            reader.spare_runs = Some(spare_runs);
            let runs = ReadAhead::spawn_weighted(
                READ_AHEAD_RECORDS,
                |r: &ReadRun| r.batches.len(),
                move || reader.next_run(),
            );
            per_record::train(&mut trainer, &runs, &recycle, config)
        } else {
            let batches = ReadAhead::spawn_weighted(
                READ_AHEAD_RECORDS,
                |b: &ReadBatch| b.data.num_rows().max(1),
                move || reader.next(),
            );
            train_batches(&mut trainer, &batches, config, backend, &mut history)
        };
        // What trained before a failure is committed too, so that a run resumes after it.
        if !trainer.group.is_empty() {
            trainer.commit()?;
        }
        trainer.flush()?;
        trained?;
        let mut summary = trainer.summary;
        summary.seconds = clock.elapsed().as_secs_f64();
        Ok(summary)
    })
}

/// Train every mini-batch of `batches` with the batched solver, committing as due.
fn train_batches(
    t: &mut Trainer,
    batches: &ReadAhead<ReadBatch>,
    config: &StreamConfig,
    backend: Backend,
    history: &mut History,
) -> Result<()> {
    while let Some(ReadBatch {
        data: batch,
        mut report,
        cut,
    }) = batches.next()?
    {
        let started = Instant::now();
        t.group.begin(started);
        // 1. Progressive validation with the models as they stand.
        let priors = t.group.priors(t.store, &batch)?;
        let scores = score(&batch, priors, None)?;
        t.running.add(t.kind, &batch, &scores);
        report.new_entities = batch
            .entities
            .keys()
            .iter()
            .filter(|e| !priors.contains(e))
            .count();
        report.score_seconds = started.elapsed().as_secs_f64();

        // 2. Update every touched entity.
        let clock = Instant::now();
        let out = match config.update {
            Update::Incremental => {
                report.rows_trained = batch.num_rows();
                fit_on(backend, Some(priors), &batch, &config.train, &|_| {})?
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
        t.advance(&report, &cut, batch.num_rows());
        t.group.add(&batch, &scores, report, out.models);

        // 3. Commit the group's models, the position and its metrics together.
        t.commit_if_due(&config.commit)?;
    }
    Ok(())
}

/// What the training loop carries from one mini-batch to the next, and commits.
struct Trainer<'s, 'f> {
    store: &'s ModelStore,
    kind: Loss,
    settings: Vec<u8>,
    on_batch: &'f mut dyn FnMut(&BatchReport),
    group: Group<'s>,
    running: Running,
    /// Where the input stands after the last trained mini-batch.
    position: Position,
    summary: StreamSummary,
    writer: Writer,
    /// The buffers of the last commit, for the next to fill.
    spare: (Encoded, Scored),
}

impl Trainer<'_, '_> {
    /// Count a trained mini-batch of `records` records, reported by `report`, that ends
    /// at `cut`.
    fn advance(&mut self, report: &BatchReport, cut: &Position, records: usize) {
        self.position = Position {
            batches: report.batch,
            lines: cut.lines,
            bytes: cut.bytes,
            hash: cut.hash,
            records: self.position.records + records as u64,
            skipped: self.position.skipped + report.skipped as u64,
        };
        let summary = &mut self.summary;
        summary.batches += 1;
        summary.records += records as u64;
        summary.skipped += report.skipped as u64;
        summary.batch_seconds.push(report.seconds);
    }

    /// Report the commit in flight if it has landed, and commit the group if it is due.
    fn commit_if_due(&mut self, policy: &CommitPolicy) -> Result<()> {
        if let Some(landed) = self.writer.landed() {
            self.land(landed?)?;
        }
        match self.group.due(policy) {
            true => self.commit(),
            false => Ok(()),
        }
    }

    /// Commit the group (its models, the position and running sums after its last
    /// mini-batch, and its report row) in one transaction, written by the commit thread
    /// once the commit before it has landed.
    fn commit(&mut self) -> Result<()> {
        self.flush()?;
        let clock = Instant::now();
        let (mut encoded, spare_scored) = std::mem::take(&mut self.spare);
        let (mut report, scored) = self.group.take_report(spare_scored);
        report.running(self.kind, &self.running);
        self.store.encode_into(
            Commit {
                models: self.group.trained(),
                state: vec![
                    (POSITION, encode(&self.position)),
                    (RUNNING, encode(&self.running)),
                    (SETTINGS, self.settings.clone()),
                ],
                batch: None,
            },
            &mut encoded,
        )?;
        self.group.handed_off();
        self.writer.start(Job {
            encoded,
            report,
            scored,
            kind: self.kind,
            seconds: clock.elapsed().as_secs_f64(),
        })?;
        Ok(())
    }

    /// Wait for the commit in flight, if any, and report it.
    fn flush(&mut self) -> Result<()> {
        match self.writer.wait() {
            Some(landed) => self.land(landed?),
            None => Ok(()),
        }
    }

    /// The commit in flight has landed: hand its report to `on_batch`.
    fn land(&mut self, landed: Landed) -> Result<()> {
        let Landed {
            written,
            seconds,
            mut report,
            encoded,
            scored,
        } = landed;
        self.spare = (encoded, scored);
        written?;
        self.group.landed();
        report.commit_seconds = seconds;
        self.summary.commits += 1;
        self.summary.commit_seconds.push(report.commit_seconds);
        (self.on_batch)(&report);
        self.summary.last = Some(report);
        Ok(())
    }
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
