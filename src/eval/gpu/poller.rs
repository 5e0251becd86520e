//! The one thread that polls the device.
//!
//! A worker submits its own command buffer, whose read-backs and staging re-maps were
//! asked for with `map_buffer_on_submit`, and hands the submission to [`Poller::wait`]. The
//! poller thread takes submissions in the order they were handed over and blocks in
//! `device.poll(Wait { submission })` on each, which returns once that submission has run;
//! then it wakes the worker. Submissions to one queue complete in order, so waiting on the
//! oldest never holds up a younger one. A map's callback is usually called by that poll,
//! but another worker's `queue.submit` may have collected it and call it a moment later, so
//! the worker then waits for the callback itself (`readback::outcome_after_run`).
//!
//! So no worker thread polls the device: a worker waits parked on a channel while the
//! other workers pack, step their L-BFGS and submit, and the locks wgpu takes inside a
//! poll are taken by one thread only.

use crate::eval::EvalError;
use std::collections::VecDeque;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Done = Sender<Result<(), String>>;

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(wgpu::SubmissionIndex, Done)>,
    stop: bool,
}

/// The device's poller thread, stopped and joined on drop.
pub(super) struct Poller {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    pub(super) fn new(device: wgpu::Device) -> Self {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let shared = queue.clone();
        let thread = std::thread::Builder::new()
            .name("glmix-gpu-poller".into())
            .spawn(move || poll_in_order(&device, &shared))
            .expect("the poller thread starts");
        Poller {
            queue,
            thread: Some(thread),
        }
    }

    /// Park the calling thread until `submission` has run on the device.
    pub(super) fn wait(&self, submission: wgpu::SubmissionIndex) -> Result<(), EvalError> {
        let (done, finished) = channel();
        let (lock, wake) = &*self.queue;
        lock.lock()
            .expect("not poisoned")
            .waiting
            .push_back((submission, done));
        wake.notify_one();
        match finished.recv() {
            Ok(polled) => polled.map_err(|e| EvalError::Backend(format!("GPU poll failed: {e}"))),
            Err(_) => Err(EvalError::Backend("the GPU poller thread stopped".into())),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock().expect("not poisoned").stop = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The poller thread: each submission handed over, oldest first, until told to stop.
fn poll_in_order(device: &wgpu::Device, queue: &(Mutex<Queue>, Condvar)) {
    let (lock, wake) = queue;
    loop {
        let (submission, done) = {
            let mut q = lock.lock().expect("not poisoned");
            loop {
                if let Some(next) = q.waiting.pop_front() {
                    break next;
                }
                if q.stop {
                    return;
                }
                q = wake.wait(q).expect("not poisoned");
            }
        };
        let polled = device.poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: None,
        });
        // The worker may have given up waiting; nothing is lost then.
        let _ = done.send(polled.map(|_| ()).map_err(|e| e.to_string()));
    }
}
