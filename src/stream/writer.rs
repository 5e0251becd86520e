//! The stream's commit thread: it finishes one group's report row at a time (the metrics
//! of the group's progressive scores) and writes the group to the store
//! ([`ModelStore::write`], the durable `fsync` most of a commit's time goes to) while the
//! training thread trains the next group.
//!
//! At most one commit is in flight: the training thread hands a group over only once the
//! one before has landed ([`Writer::wait`]), and learns of a landing by polling between
//! mini-batches ([`Writer::landed`]). What the store holds is therefore always a prefix of
//! the committed groups, in order, each whole; the models of the group in flight stay in
//! memory until it lands, so no lookup reads the store behind them. The buffers of a
//! landed commit go back to the training thread for the next one, so that what one thread
//! allocates is not freed by the other.

use super::report::{BatchReport, Scored};
use crate::error::{Error, Result};
use crate::objective::Loss;
use crate::store::{Encoded, ModelStore};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::Scope;
use std::time::Instant;

/// A group to commit: its models and state, encoded, and its report, whose metrics over
/// `scored` the commit thread fills in before it writes the report as the batch row.
pub(super) struct Job {
    pub(super) encoded: Encoded,
    pub(super) report: BatchReport,
    pub(super) scored: Scored,
    pub(super) kind: Loss,
    /// Seconds the training thread spent on the commit before handing it over.
    pub(super) seconds: f64,
}

/// How a commit ended: its result, its seconds (the training thread's and the commit
/// thread's), its report with its metrics, and its buffers.
pub(super) struct Landed {
    pub(super) written: Result<()>,
    pub(super) seconds: f64,
    pub(super) report: BatchReport,
    pub(super) encoded: Encoded,
    pub(super) scored: Scored,
}

pub(super) struct Writer {
    jobs: SyncSender<Job>,
    done: Receiver<Landed>,
    in_flight: bool,
    path: std::path::PathBuf,
}

impl Writer {
    /// Start the commit thread in `scope`, writing to `store`.
    pub(super) fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        store: &'scope ModelStore,
    ) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(1);
        let (finished, done) = mpsc::channel();
        scope.spawn(move || {
            for job in queue {
                if finished.send(write(store, job)).is_err() {
                    break;
                }
            }
        });
        Writer {
            jobs,
            done,
            in_flight: false,
            path: store.path().to_path_buf(),
        }
    }

    /// Hand `job` to the commit thread; the one before must have landed.
    pub(super) fn start(&mut self, job: Job) -> Result<()> {
        debug_assert!(!self.in_flight, "one commit in flight at a time");
        self.jobs.send(job).map_err(|_| self.stopped())?;
        self.in_flight = true;
        Ok(())
    }

    /// The commit in flight, once it has landed; `None` while it is still being written
    /// or when none is in flight.
    pub(super) fn landed(&mut self) -> Option<Result<Landed>> {
        if !self.in_flight {
            return None;
        }
        match self.done.try_recv() {
            Ok(landed) => {
                self.in_flight = false;
                Some(Ok(landed))
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.in_flight = false;
                Some(Err(self.stopped()))
            }
        }
    }

    /// Wait for the commit in flight to land; `None` when none is in flight.
    pub(super) fn wait(&mut self) -> Option<Result<Landed>> {
        if !self.in_flight {
            return None;
        }
        self.in_flight = false;
        Some(self.done.recv().map_err(|_| self.stopped()))
    }

    fn stopped(&self) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: "the commit thread stopped".into(),
        }
    }
}

/// Finish `job`'s report row and write it with the group, in one transaction.
fn write(store: &ModelStore, job: Job) -> Landed {
    let clock = Instant::now();
    let Job {
        mut encoded,
        mut report,
        mut scored,
        kind,
        seconds,
    } = job;
    report.validate(kind, &scored);
    scored.clear();
    let row = serde_json::to_string(&report).expect("a report serialises");
    encoded.set_batch_row(report.batch, row);
    let written = store.write(&encoded);
    Landed {
        written,
        seconds: seconds + clock.elapsed().as_secs_f64(),
        report,
        encoded,
        scored,
    }
}
