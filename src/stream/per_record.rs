//! Per-record updates: a stream cut into one-record mini-batches (`--batch-records 1`),
//! trained incrementally.
//!
//! Each record is a mini-batch as in [`super::run_stream`]: scored by its entity's model
//! as it stands, then that model updated by the record alone ([`update_record`]: the
//! score [`crate::score::score`] gives and the model [`crate::train::fit_on`] gives a
//! one-record mini-batch, bit for bit), and committed in groups as any mini-batch is.
//! What changes is the cost: the reader hands over the records it has parsed ahead as
//! one dataset (a *run*, [`ReadRun`]) instead of a dataset per record, and the training
//! loop builds no score plan, entity grouping or parts for one record. The run's records
//! still train one after another, each on the model the one before left; the model of the
//! record [`PREFETCH_AHEAD`] places on is asked into the cache meanwhile (each record
//! touches a random entity's model, and waiting for it was much of a record's time).
//!
//! It is taken for JSON-lines input without `--strict` (whose error must stop the stream
//! before the record holding an unread key trains; a run reads past it), and always
//! solves on the CPU: one record's optimum is one scalar equation.

use super::reader::{BatchReader, ReadRun};
use super::{Batching, StreamConfig, Trainer, Update};
use crate::error::Result;
use crate::io::ReadAhead;
use crate::train::{update_record, RecordScratch};
use std::sync::mpsc::Sender;
use std::time::Instant;

/// How many records ahead a record's model is prefetched (4, 8 and 16 measured alike).
const PREFETCH_AHEAD: usize = 8;

/// Whether `config`'s stream, read by `reader`, is trained record by record here.
pub(super) fn applies(config: &StreamConfig, reader: &BatchReader) -> bool {
    config.batching == Batching::Records(1)
        && config.update == Update::Incremental
        && !config.strict_keys
        && reader.reads_lines()
}

/// Score and train every record of `runs`, committing as due; each run, once trained, is
/// handed back through `recycle` for the reader to fill again.
pub(super) fn train(
    t: &mut Trainer,
    runs: &ReadAhead<ReadRun>,
    recycle: &Sender<ReadRun>,
    config: &StreamConfig,
) -> Result<()> {
    let mut scratch = RecordScratch::default();
    while let Some(mut run) = runs.next()? {
        let ReadRun { data, batches } = &mut run;
        // Where the prefetches found the models of the records ahead, by record modulo.
        let mut places = [None; PREFETCH_AHEAD];
        for (i, (mut report, cut)) in batches.drain(..).enumerate() {
            let hint = std::mem::take(&mut places[i % PREFETCH_AHEAD]);
            if let Some(&ahead) = data.entity.get(i + PREFETCH_AHEAD) {
                places[i % PREFETCH_AHEAD] = t.group.prefetch(data.entities.key(ahead));
            }
            let started = Instant::now();
            t.group.begin(started);
            let entity = data.entities.key(data.entity[i]);
            let prior = t.group.prior_at(t.store, entity, hint)?;
            report.new_entities = usize::from(prior.is_none());
            let (prior, at) = prior.unzip();
            let update = update_record(prior, data, i, &config.train, &mut scratch)?;
            let score = update.prior_margin;
            t.running.add_record(t.kind, data, i, score);
            report.rows_trained = 1;
            report.not_converged = usize::from(!update.report.reason.converged());
            let trained = Instant::now();
            // Scoring is part of the update: it reads the prior where the update finds it.
            report.train_seconds = (trained - started).as_secs_f64();
            report.seconds = report.read_seconds + report.train_seconds;
            t.advance(&report, &cut, 1);
            let replaced = t
                .group
                .add_record(data, i, score, report, (update.model, at));
            if let Some(old) = replaced {
                scratch.recycle(old);
            }
            t.commit_if_due(&config.commit)?;
        }
        // The reader may have stopped (at the end, or on an error): the run is dropped.
        let _ = recycle.send(run);
    }
    Ok(())
}
