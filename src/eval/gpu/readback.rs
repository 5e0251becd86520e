//! Reading a buffer back: have it mapped when the submission that fills it has run, wait
//! for that through the [`Poller`], copy it out, unmap it. Map failures and lost devices
//! come back as [`EvalError`]s.

use super::poller::Poller;
use crate::eval::EvalError;
use std::sync::mpsc::{channel, Receiver, TryRecvError};

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

/// Copy out the first `bytes` of a buffer whose map was asked for (by [`read_back`] or
/// [`map_on_submit`]) and whose submission the poller has seen run, and unmap it.
pub(super) fn copy_mapped<T: bytemuck::Pod>(
    buffer: &wgpu::Buffer,
    bytes: u64,
    mapped: Mapped,
) -> Result<Vec<T>, EvalError> {
    let outcome = match mapped.try_recv() {
        Ok(outcome) => outcome,
        Err(TryRecvError::Empty) => {
            // Cancel the map, so that the buffer can be used again.
            buffer.unmap();
            return Err(EvalError::Backend(
                "GPU read-back was not mapped when its submission had run".into(),
            ));
        }
        Err(TryRecvError::Disconnected) => {
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
