//! The stream's commit thread: it writes one encoded group at a time to the store
//! ([`ModelStore::write`], the durable `fsync` most of a commit's time goes to) while the
//! training thread trains the next group.
//!
//! At most one commit is in flight: the training thread hands a group over only once the
//! one before has landed ([`Writer::wait`]), and learns of a landing by polling between
//! mini-batches ([`Writer::landed`]). What the store holds is therefore always a prefix of
//! the committed groups, in order, each whole; the models of the group in flight stay in
//! memory until it lands, so no lookup reads the store behind them.

use crate::error::{Error, Result};
use crate::store::{Encoded, ModelStore};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::Scope;
use std::time::Instant;

/// How a commit ended: its result, the seconds its write took, and its buffers, handed
/// back for the next commit to encode into (so that what one thread allocates is not
/// freed by the other).
pub(super) type Landed = (Result<()>, f64, Encoded);

pub(super) struct Writer {
    jobs: SyncSender<Encoded>,
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
        let (jobs, queue) = mpsc::sync_channel::<Encoded>(1);
        let (finished, done) = mpsc::channel();
        scope.spawn(move || {
            for job in queue {
                let clock = Instant::now();
                let result = store.write(&job);
                let seconds = clock.elapsed().as_secs_f64();
                if finished.send((result, seconds, job)).is_err() {
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

    /// Hand `encoded` to the commit thread; the one before must have landed.
    pub(super) fn start(&mut self, encoded: Encoded) -> Result<()> {
        debug_assert!(!self.in_flight, "one commit in flight at a time");
        self.jobs.send(encoded).map_err(|_| self.stopped())?;
        self.in_flight = true;
        Ok(())
    }

    /// The commit in flight, once it has landed; `None` while it is still being written
    /// or when none is in flight.
    pub(super) fn landed(&mut self) -> Option<Landed> {
        if !self.in_flight {
            return None;
        }
        match self.done.try_recv() {
            Ok(landed) => {
                self.in_flight = false;
                Some(landed)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.in_flight = false;
                Some((Err(self.stopped()), 0.0, Encoded::default()))
            }
        }
    }

    /// Wait for the commit in flight to land; `None` when none is in flight.
    pub(super) fn wait(&mut self) -> Option<Landed> {
        if !self.in_flight {
            return None;
        }
        self.in_flight = false;
        let stopped = || (Err(self.stopped()), 0.0, Encoded::default());
        Some(self.done.recv().unwrap_or_else(|_| stopped()))
    }

    fn stopped(&self) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: "the commit thread stopped".into(),
        }
    }
}
