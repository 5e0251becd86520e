//! Reading a buffer back: have it mapped when the submission that fills it has run, wait
//! for that through the [`Poller`], copy it out, unmap it. Map failures and lost devices
//! come back as [`EvalError`]s.

use super::poller::Poller;
use crate::eval::EvalError;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The outcome of a map, sent by its callback.
pub(super) type Mapped = Receiver<Result<(), wgpu::BufferAsyncError>>;

/// Map the first `bytes` of a staging buffer once `submission` (which fills it) has run,
/// copy them out and unmap it.
pub(super) fn read_back<T: bytemuck::Pod>(
    poller: &Poller,
    buffer: &wgpu::Buffer,
    bytes: u64,
    submission: wgpu::SubmissionIndex,
) -> Result<Vec<T>, EvalError> {
    let (tx, mapped) = channel();
    buffer.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
        let _ = tx.send(r);
    });
    poller.wait(submission)?;
    copy_mapped(buffer, bytes, mapped)
}

/// Have the submission of `encoder` map the first `bytes` of `buffer` for reading once it
/// has run; the receiver gets the outcome.
pub(super) fn map_on_submit(
    encoder: &wgpu::CommandEncoder,
    buffer: &wgpu::Buffer,
    bytes: u64,
) -> Mapped {
    let (tx, mapped) = channel();
    encoder.map_buffer_on_submit(buffer, wgpu::MapMode::Read, ..bytes, move |r| {
        let _ = tx.send(r);
    });
    mapped
}

/// How long a map's callback may lag behind the poll that saw its submission run.
///
/// Any thread's `queue.submit` also maintains the device: it may collect the callbacks of
/// finished maps and call them only after the poller's poll has returned. The callback is
/// then on its way (microseconds); this bound only turns a lost one into an error.
const CALLBACK_LAG: Duration = Duration::from_secs(10);

/// The outcome of a map whose submission the poller has seen run; `None` if its callback
/// never came or was dropped.
pub(super) fn outcome_after_run(mapped: &Mapped) -> Option<Result<(), wgpu::BufferAsyncError>> {
    mapped.recv_timeout(CALLBACK_LAG).ok()
}

/// Copy out the first `bytes` of a buffer whose map was asked for (by [`read_back`] or
/// [`map_on_submit`]) and whose submission the poller has seen run, and unmap it.
pub(super) fn copy_mapped<T: bytemuck::Pod>(
    buffer: &wgpu::Buffer,
    bytes: u64,
    mapped: Mapped,
) -> Result<Vec<T>, EvalError> {
    let outcome = match mapped.recv_timeout(CALLBACK_LAG) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => {
            // Cancel the map, so that the buffer can be used again.
            buffer.unmap();
            return Err(EvalError::Backend(format!(
                "GPU read-back was not mapped {CALLBACK_LAG:?} after its submission had run"
            )));
        }
        Err(RecvTimeoutError::Disconnected) => {
            return Err(EvalError::Backend("GPU read-back was dropped".into()))
        }
    };
    outcome.map_err(|e| EvalError::Backend(format!("GPU read-back failed: {e}")))?;
    let out = {
        let view = buffer
            .get_mapped_range(..bytes)
            .map_err(|e| EvalError::Backend(format!("GPU read-back failed: {e}")))?;
        bytemuck::cast_slice::<u8, T>(&view).to_vec()
    };
    buffer.unmap();
    Ok(out)
}
