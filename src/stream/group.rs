//! The mini-batches a stream has trained since its last durable commit (a *group*), and
//! when the group is committed.
//!
//! Each mini-batch updates its entities' models in memory at once: the next mini-batch's
//! priors are the group's models where it has them, else the store's. The store sees the
//! group in one transaction — its models, the position after its last mini-batch and one
//! [`BatchReport`] row — once it holds [`CommitPolicy::records`] records or
//! [`CommitPolicy::interval`] has passed since its first mini-batch began, and at the end
//! of the stream. The models a mini-batch trains do not depend on where the commits fall
//! (a model reads back from the store exactly as it was written), so a run killed at any
//! moment resumes after its last commit and ends with the models of an uninterrupted run.

use super::report::{BatchReport, Scored};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::{EntityModel, ModelSet};
use crate::store::{ModelReader, ModelStore};
use std::time::{Duration, Instant};

/// When the mini-batches trained since the last commit are committed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitPolicy {
    /// Commit once the group holds this many records (at least 1).
    pub records: usize,
    /// Commit once this long has passed since the group's first mini-batch began (zero:
    /// after every mini-batch).
    pub interval: Duration,
}

impl CommitPolicy {
    /// Commit every mini-batch on its own.
    pub const EVERY_MINI_BATCH: CommitPolicy = CommitPolicy {
        records: 1,
        interval: Duration::ZERO,
    };
}

impl Default for CommitPolicy {
    /// 10,000 records or one second: a mini-batch of the default 10,000 records commits on
    /// its own, and per-record updates commit about once a second.
    fn default() -> Self {
        CommitPolicy {
            records: 10_000,
            interval: Duration::from_secs(1),
        }
    }
}

/// The mini-batches trained since the last commit.
#[derive(Default)]
pub(super) struct Group<'s> {
    /// The newest model of every entity the group updated.
    models: ModelSet,
    /// The store as the last commit left it, opened at the first lookup (a read
    /// transaction takes a file lock) and closed by the next commit.
    reader: Option<ModelReader<'s>>,
    report: Option<BatchReport>,
    scored: Scored,
    began: Option<Instant>,
}

impl<'s> Group<'s> {
    pub(super) fn is_empty(&self) -> bool {
        self.report.is_none()
    }

    /// The models of `batch`'s entities as they stand: the group's, else the store's
    /// (read in one transaction per group: the store changes only by the group's commit).
    pub(super) fn priors(&mut self, store: &'s ModelStore, batch: &Dataset) -> Result<ModelSet> {
        let mut set = ModelSet::new();
        for key in batch.entities.keys() {
            let model = match self.models.get(key) {
                Some(m) => Some(m.clone()),
                None => {
                    if self.reader.is_none() {
                        self.reader = Some(store.reader()?);
                    }
                    self.reader.as_ref().expect("just opened").model(key)?
                }
            };
            if let Some(m) = model {
                set.insert(m);
            }
        }
        Ok(set)
    }

    /// Mark the start of a mini-batch (the first starts the group's clock).
    pub(super) fn begin(&mut self, now: Instant) {
        self.began.get_or_insert(now);
    }

    /// Add a trained mini-batch: the reader's `report` with its training fields filled,
    /// its records and their progressive `scores`, and the models it trained.
    pub(super) fn add(
        &mut self,
        batch: &Dataset,
        scores: &[f64],
        report: BatchReport,
        models: Vec<EntityModel>,
    ) {
        self.scored.add(batch, scores);
        for m in models {
            self.models.insert(m);
        }
        match &mut self.report {
            None => {
                self.report = Some(BatchReport {
                    mini_batches: 1,
                    ..report
                })
            }
            Some(group) => {
                group.batch = report.batch;
                group.mini_batches += 1;
                group.last_line = report.last_line;
                group.input_bytes = report.input_bytes;
                group.new_entities += report.new_entities;
                group.skipped += report.skipped;
                group.late += report.late;
                group.not_converged += report.not_converged;
                group.rows_trained += report.rows_trained;
                group.read_seconds += report.read_seconds;
                group.score_seconds += report.score_seconds;
                group.train_seconds += report.train_seconds;
                group.seconds += report.seconds;
                group.skipped_examples.extend(report.skipped_examples);
                group.unread_keys.extend(report.unread_keys);
            }
        }
    }

    /// Whether the group is to be committed now.
    pub(super) fn due(&self, policy: &CommitPolicy) -> bool {
        self.scored.scores.len() >= policy.records
            || self.began.is_some_and(|t| t.elapsed() >= policy.interval)
    }

    /// The group's models and its report (its metrics over all its records), leaving the
    /// group empty.
    pub(super) fn take(&mut self, kind: crate::objective::Loss) -> (ModelSet, BatchReport) {
        let mut report = self.report.take().expect("a group that is not empty");
        report.validate(kind, &self.scored);
        let models = std::mem::take(&mut self.models);
        self.scored.clear();
        self.began = None;
        self.reader = None;
        (models, report)
    }
}
