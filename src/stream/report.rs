//! What a stream reports: [`BatchReport`], one row per commit of one or more mini-batches
//! (its progressive-validation metrics and timings), and [`Running`], the sums over every
//! record so far.

use crate::data::Dataset;
use crate::metrics::{auc, entity_auc, is_positive, logloss, rmse, AucHistogram};
use crate::objective::{softplus, Loss};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Records scored before they trained, gathered over the mini-batches of one commit.
#[derive(Debug, Default)]
pub(super) struct Scored {
    pub scores: Vec<f64>,
    pub labels: Vec<f64>,
    pub offsets: Vec<f64>,
    /// Each record's entity, numbered within the commit from 0 in order of first
    /// appearance: the group's numbering of the entities it trains (the entity of a
    /// group's record is one the group trains), so that no record is looked up by id.
    pub entity: Vec<u32>,
    /// How many entities `entity` numbers.
    pub entities: usize,
}

impl Scored {
    /// Empty, its room kept for the next commit's records.
    pub(super) fn clear(&mut self) {
        self.scores.clear();
        self.labels.clear();
        self.offsets.clear();
        self.entity.clear();
        self.entities = 0;
    }

    /// Add record `i` of `data`, scored `score`, whose entity the caller has numbered
    /// `number` (the next number for an entity new to the commit).
    pub(super) fn add_numbered(&mut self, data: &Dataset, i: usize, score: f64, number: u32) {
        self.scores.push(score);
        self.labels.push(data.label[i]);
        self.offsets.push(data.offset[i]);
        self.entity.push(number);
        self.entities = self.entities.max(number as usize + 1);
    }
}

/// Running progressive-validation sums over every committed batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Running {
    records: u64,
    /// Σ log-loss (logistic) or Σ squared error (linear).
    loss: f64,
    offset_loss: f64,
    auc: AucHistogram,
    offset_auc: AucHistogram,
}

impl Running {
    pub(super) fn add(&mut self, kind: Loss, data: &Dataset, scores: &[f64]) {
        for (i, &s) in scores.iter().enumerate() {
            self.add_record(kind, data, i, s);
        }
    }

    /// Add record `i` of `data`, scored `s`.
    pub(super) fn add_record(&mut self, kind: Loss, data: &Dataset, i: usize, s: f64) {
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
        self.records += 1;
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

/// Progressive validation and timing of the mini-batches of one commit (one mini-batch
/// unless commits are grouped). Loss-type metrics are log-loss for logistic objectives and
/// RMSE for linear ones (the other is `None`); AUCs are for logistic objectives only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// 1-based number of the last mini-batch, over the whole stream (resumed runs continue
    /// it).
    pub batch: u64,
    /// Mini-batches the row covers (rows stored before grouped commits read as 1).
    #[serde(default = "one")]
    pub mini_batches: u64,
    /// Input lines the mini-batches span (blank and skipped lines included).
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
    /// Rows the solver trained on (more than `records` with [`super::Update::Retrain`]).
    pub rows_trained: usize,
    pub read_seconds: f64,
    /// Scoring the records before they train (per-record mini-batches score inside
    /// their update, counted in `train_seconds`).
    pub score_seconds: f64,
    pub train_seconds: f64,
    /// The mini-batches' latency without the commit: reading them, then validating and
    /// training them (the time each waited for the one before is not counted).
    pub seconds: f64,
    /// The commit's own seconds (not stored: a row is stored by its commit).
    #[serde(skip)]
    pub commit_seconds: f64,
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

fn one() -> u64 {
    1
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
        "mini_batches",
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

impl BatchReport {
    /// The metrics of the progressively scored records `scored`.
    pub(super) fn validate(&mut self, kind: Loss, scored: &Scored) {
        self.records = scored.scores.len();
        self.entities = scored.entities;
        let (scores, labels, offsets) = (&scored.scores, &scored.labels, &scored.offsets);
        match kind {
            Loss::Logistic => {
                let positive: Vec<bool> = labels.iter().map(|&y| is_positive(y)).collect();
                self.auc = auc(scores, &positive);
                self.logloss = logloss(scores, &positive);
                (self.entity_auc, self.entity_auc_entities) =
                    entity_auc(&scored.entity, scores, &positive);
                self.offset_auc = auc(offsets, &positive);
                self.offset_logloss = logloss(offsets, &positive);
            }
            Loss::Squared => {
                self.rmse = rmse(scores, labels);
                self.offset_rmse = rmse(offsets, labels);
            }
        }
    }

    pub(super) fn running(&mut self, kind: Loss, running: &Running) {
        self.running_records = running.records;
        self.running_loss = running.mean(kind, running.loss);
        self.running_offset_loss = running.mean(kind, running.offset_loss);
        if kind == Loss::Logistic {
            self.running_auc = running.auc.auc();
            self.running_offset_auc = running.offset_auc.auc();
        }
    }
}
