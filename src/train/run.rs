//! A training *run*: [`fit_on`] over the chunks of a data set (a whole file is one chunk),
//! with the prior looked up per chunk, the models and reports handed to a sink as each
//! chunk is trained, and what the run adds up to ([`RunTotals`]) returned as a value:
//! the CLI prints it as the summary and its notices, the Python package returns it.
//!
//! Entities of the prior that no chunk trains are *carried over* unchanged
//! ([`RunTotals::carried`]), as Lambda Learner keeps a model the mini-batch did not touch.

use super::{fit_on, Backend, FitOutput, FitTimings, TrainConfig, Verification};
use crate::data::Dataset;
use crate::error::Result;
use crate::metrics::non_binary_labels;
use crate::model::{EntityModel, ModelSet};
use crate::objective::Loss;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// What the chunks of a run add up to.
#[derive(Debug, Default)]
pub struct RunTotals {
    pub chunks: usize,
    /// Entities trained (over all chunks).
    pub entities: usize,
    pub rows: usize,
    pub evaluations: usize,
    pub rounds: usize,
    /// Entities a GPU solve handed to the f64 CPU evaluator to finish.
    pub finished_in_f64: usize,
    /// Entities whose precision is not the configured one, and the first with its note.
    pub precision_notes: usize,
    pub first_precision_note: Option<(String, &'static str)>,
    /// Entities per stop reason.
    pub reasons: BTreeMap<&'static str, usize>,
    pub timings: FitTimings,
    /// Seconds spent reading chunks, training them and in the sink.
    pub read_seconds: f64,
    pub solve_seconds: f64,
    pub sink_seconds: f64,
    pub verification: Option<Verification>,
    /// With a logistic objective: records whose label is read as a negative without being
    /// 0 or −1, and the 1-based number of the first (over all chunks) with its label.
    pub non_binary_labels: usize,
    pub first_non_binary: Option<(usize, f64)>,
    trained: HashSet<String>,
}

impl RunTotals {
    /// The models of `prior` that no chunk trained, in the prior's order.
    pub fn carried<'a>(&self, prior: Option<&'a ModelSet>) -> Vec<&'a EntityModel> {
        prior.map_or_else(Vec::new, |p| {
            (p.models().iter())
                .filter(|m| !self.trained.contains(&m.entity))
                .collect()
        })
    }

    /// Count the chunk's labels that are not 0, 1 or −1 (before [`RunTotals::add`]).
    fn count_non_binary_labels(&mut self, data: &Dataset) {
        let (count, first) = non_binary_labels(&data.label);
        self.non_binary_labels += count;
        if let (None, Some(i)) = (self.first_non_binary, first) {
            self.first_non_binary = Some((self.rows + i + 1, data.label[i]));
        }
    }

    fn add(&mut self, rows: usize, out: &FitOutput) {
        self.chunks += 1;
        self.entities += out.reports.len();
        self.rows += rows;
        self.rounds += out.rounds;
        for r in &out.reports {
            self.evaluations += r.solve.evaluations;
            self.finished_in_f64 += usize::from(r.solve.finished_precisely);
            if let Some(note) = r.precision_note {
                self.precision_notes += 1;
                if self.first_precision_note.is_none() {
                    self.first_precision_note = Some((r.entity.clone(), note.name()));
                }
            }
            *self.reasons.entry(r.solve.reason.name()).or_default() += 1;
            self.trained.insert(r.entity.clone());
        }
        self.timings.build += out.timings.build;
        self.timings.solve += out.timings.solve;
        self.timings.posterior += out.timings.posterior;
        self.timings.finish += out.timings.finish;
        self.timings.host_cpu.add(&out.timings.host_cpu);
        if let Some(v) = out.verification {
            self.verification = Some(self.verification.map_or(v, |w| w.merge(v)));
        }
    }
}

/// Where a run's chunks come from: the next one, or `None` after the last.
pub type Chunks<'a> = dyn FnMut() -> Result<Option<Dataset>> + 'a;

/// Train every chunk `next_chunk` gives, each entity from its model in `prior` when it
/// has one, handing what each chunk trained to `sink` (once the chunk is dropped) before
/// the next. `progress` gets the number of entities finished so far over the run, and the
/// number of entities of each chunk as it starts ([`Progress`]). A run of no chunks has
/// `chunks == 0`.
pub fn train_chunks(
    backend: Backend,
    prior: Option<&ModelSet>,
    config: &TrainConfig,
    next_chunk: &mut Chunks,
    sink: &mut dyn FnMut(&FitOutput) -> Result<()>,
    progress: &dyn Progress,
) -> Result<RunTotals> {
    let mut totals = RunTotals::default();
    loop {
        let clock = Instant::now();
        let Some(data) = next_chunk()? else { break };
        totals.read_seconds += clock.elapsed().as_secs_f64();
        if config.objective.loss() == Loss::Logistic {
            totals.count_non_binary_labels(&data);
        }
        let clock = Instant::now();
        let done = totals.entities;
        progress.chunk(data.entities.len());
        let out = fit_on(backend, prior, &data, config, &|n| progress.done(done + n))?;
        totals.solve_seconds += clock.elapsed().as_secs_f64();
        totals.add(data.num_rows(), &out);
        // The records go before the sink writes: they and its buffers are not resident at
        // once.
        drop(data);
        let clock = Instant::now();
        sink(&out)?;
        totals.sink_seconds += clock.elapsed().as_secs_f64();
    }
    Ok(totals)
}

/// How a run tells its progress.
pub trait Progress: Sync {
    /// A chunk of `entities` entities starts training.
    fn chunk(&self, _entities: usize) {}
    /// `entities` entities of the run are trained.
    fn done(&self, _entities: usize) {}
}

/// No progress told.
pub struct Silent;

impl Progress for Silent {}
