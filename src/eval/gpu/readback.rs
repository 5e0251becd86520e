//! Reading a buffer back: map it once the submission that fills it has run, copy it out,
//! unmap it. Map failures and lost devices come back as [`EvalError`]s.

use crate::eval::EvalError;

/// Map the first `bytes` of a staging buffer once `submission` (which fills it) has run,
/// copy them out and unmap it.
pub(super) fn read_back<T: bytemuck::Pod>(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    bytes: u64,
    submission: wgpu::SubmissionIndex,
) -> Result<Vec<T>, EvalError> {
    let mapped = map_for_reading(buffer, bytes);
    wait_for(device, Some(submission))?;
    copy_mapped(device, buffer, bytes, mapped)
}

/// Ask for the first `bytes` of `buffer` to be mapped once the work submitted so far is
/// done; the receiver gets the outcome when a poll of the device sees it.
pub(super) fn map_for_reading(
    buffer: &wgpu::Buffer,
    bytes: u64,
) -> std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    buffer.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
        let _ = tx.send(r);
    });
    rx
}

/// Block until `submission` (or the latest submission of any thread) has run and its map
/// callbacks have been called.
pub(super) fn wait_for(
    device: &wgpu::Device,
    submission: Option<wgpu::SubmissionIndex>,
) -> Result<(), EvalError> {
    device
        .poll(wgpu::PollType::Wait {
            submission_index: submission,
            timeout: None,
        })
        .map(|_| ())
        .map_err(|e| EvalError::Backend(format!("GPU poll failed: {e}")))
}

/// Copy out the first `bytes` of a buffer that [`map_for_reading`] mapped and unmap it
/// (polling again until the map is done, in case another thread's poll came first).
pub(super) fn copy_mapped<T: bytemuck::Pod>(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    bytes: u64,
    mapped: std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
) -> Result<Vec<T>, EvalError> {
    let outcome = loop {
        match mapped.try_recv() {
            Ok(outcome) => break outcome,
            Err(std::sync::mpsc::TryRecvError::Empty) => wait_for(device, None)?,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(EvalError::Backend("GPU read-back was dropped".into()))
            }
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
