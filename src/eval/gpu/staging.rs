//! Host-to-device uploads through a persistent staging buffer.
//!
//! A [`Staging`] is a `MAP_WRITE | COPY_SRC` buffer made mapped and kept: the host writes
//! into its mapped range, unmaps it, and the submission that copies it into device buffers
//! maps it again (`map_buffer_on_submit`) for the next fill. No staging memory is allocated
//! per upload, as `queue.write_buffer` would (wgpu 30 makes a fresh staging buffer per
//! call); the buffer is replaced by a larger one only when a fill needs more room, or after
//! a failed submission left it unmapped.

use super::poller::Poller;
use super::readback::{outcome_after_run, Mapped};
use super::GpuTimings;
use crate::eval::EvalError;
use std::sync::mpsc::{channel, TryRecvError};

/// Whether the buffer can be written now.
enum State {
    /// Mapped: the host may write.
    Mapped,
    /// Unmapped and copied from by `submission`, which maps it again when it has run.
    Remapping {
        submission: Option<wgpu::SubmissionIndex>,
        mapped: Mapped,
    },
    /// Unmapped with no map on its way (a fill whose copies were never submitted).
    Unmapped,
}

pub(super) struct Staging {
    label: &'static str,
    buffer: wgpu::Buffer,
    state: State,
}

impl Staging {
    pub(super) fn new(
        device: &wgpu::Device,
        label: &'static str,
        bytes: u64,
        timings: &mut GpuTimings,
    ) -> Self {
        Staging {
            label,
            buffer: create(device, label, bytes, timings),
            state: State::Mapped,
        }
    }

    /// Write `pieces` one after another (each at a multiple of 4 bytes) into the mapped
    /// buffer and unmap it; returns each piece's offset. The caller copies from those
    /// offsets in its next submission and calls [`Self::remap_on_submit`] on its encoder.
    pub(super) fn fill(
        &mut self,
        device: &wgpu::Device,
        poller: &Poller,
        pieces: &[&[u8]],
        timings: &mut GpuTimings,
    ) -> Result<Vec<u64>, EvalError> {
        let sizes: Vec<u64> = pieces.iter().map(|p| p.len() as u64).collect();
        self.fill_with(device, poller, &sizes, timings, |regions| {
            for (mut region, piece) in regions.into_iter().zip(pieces) {
                region.copy_from_slice(piece);
            }
        })
    }

    /// [`Self::fill`], with `write` writing each region of `sizes` bytes straight into
    /// the mapped buffer.
    pub(super) fn fill_with(
        &mut self,
        device: &wgpu::Device,
        poller: &Poller,
        sizes: &[u64],
        timings: &mut GpuTimings,
        write: impl FnOnce(Vec<wgpu::WriteOnly<'_, [u8]>>),
    ) -> Result<Vec<u64>, EvalError> {
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut end = 0u64;
        for &size in sizes {
            offsets.push(end);
            end += size.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        }
        let writable = match std::mem::replace(&mut self.state, State::Unmapped) {
            State::Mapped => true,
            State::Remapping { submission, mapped } => match (mapped.try_recv(), submission) {
                (Ok(outcome), _) => outcome.is_ok(),
                // Not yet seen by a poll: wait for the submission that maps it.
                (Err(TryRecvError::Empty), Some(s)) => {
                    poller.wait(s)?;
                    matches!(outcome_after_run(&mapped), Some(Ok(())))
                }
                (Err(_), _) => false,
            },
            State::Unmapped => false,
        };
        if !writable || self.buffer.size() < end {
            let size = (end + end / 2).max(self.buffer.size());
            self.buffer = create(device, self.label, size, timings);
        }
        {
            let mut view = self
                .buffer
                .get_mapped_range_mut(..end.max(4))
                .map_err(|e| EvalError::Backend(format!("GPU staging: {e}")))?;
            let mut rest = view.slice(..);
            let mut regions = Vec::with_capacity(sizes.len());
            for (k, &size) in sizes.iter().enumerate() {
                let next = offsets.get(k + 1).copied().unwrap_or(end);
                let (region, tail) = rest.split_at((next - offsets[k]) as usize);
                regions.push(region.split_at(size as usize).0);
                rest = tail;
            }
            write(regions);
        }
        self.buffer.unmap();
        timings.bytes_up += sizes.iter().sum::<u64>();
        timings.staged_fills += 1;
        Ok(offsets)
    }

    pub(super) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Have the submission of `encoder` map the buffer again once it has run.
    pub(super) fn remap_on_submit(&mut self, encoder: &wgpu::CommandEncoder) {
        let (tx, rx) = channel();
        encoder.map_buffer_on_submit(&self.buffer, wgpu::MapMode::Write, .., move |r| {
            let _ = tx.send(r);
        });
        self.state = State::Remapping {
            submission: None,
            mapped: rx,
        };
    }

    /// The submission [`Self::remap_on_submit`]'s encoder became.
    pub(super) fn submitted(&mut self, index: &wgpu::SubmissionIndex) {
        if let State::Remapping { submission, .. } = &mut self.state {
            *submission = Some(index.clone());
        }
    }
}

fn create(
    device: &wgpu::Device,
    label: &'static str,
    bytes: u64,
    timings: &mut GpuTimings,
) -> wgpu::Buffer {
    let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(256);
    timings.buffers_created += 1;
    timings.buffer_bytes_created += size;
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: true,
    })
}
