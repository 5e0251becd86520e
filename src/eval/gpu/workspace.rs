//! A thread's device buffers for the dense layout, created at its first part and reused
//! part after part; a buffer is replaced by a larger one (with room to spare) only when a
//! part needs more than it holds. One bind group serves every entity kernel and is
//! rebuilt only when a buffer was replaced.
//!
//! Uploads go through two persistent [`Staging`] buffers: a part's static arrays (one
//! submission per part) and each round's task list, θ and task count (copied by the
//! round's own submission). A round is one submission: copies in, the kernels, the
//! results out into a mapped read-back buffer; the worker then waits parked on the
//! [`Poller`](super::poller::Poller), never polling the device itself.

use super::layout::{DenseLayout, GpuTask};
use super::readback::{copy_mapped, map_on_submit};
use super::staging::Staging;
use super::timer::KernelTimer;
use super::{GpuContext, GpuError, GpuTimings, Stage};
use crate::eval::EvalError;
use std::time::Instant;

/// The buffers of `shaders/entity_common.wgsl`, by binding.
#[derive(Clone, Copy)]
pub(super) enum Slot {
    Entities = 0,
    Tasks = 1,
    X = 2,
    Rows = 3,
    Theta = 4,
    Out = 5,
    Curvature = 6,
}

const SLOTS: [(&str, wgpu::BufferUsages); 7] = [
    ("entities", wgpu::BufferUsages::COPY_DST),
    ("tasks", wgpu::BufferUsages::COPY_DST),
    ("x", wgpu::BufferUsages::COPY_DST),
    ("rows", wgpu::BufferUsages::COPY_DST),
    ("theta", wgpu::BufferUsages::COPY_DST),
    ("out", wgpu::BufferUsages::COPY_SRC),
    ("curvature", wgpu::BufferUsages::empty()),
];

/// Smallest buffer made (bindings may not be empty).
const MIN_BYTES: u64 = 256;

/// One dispatch of an evaluation: a kernel over the first `tasks` tasks.
pub(super) struct Pass<'k> {
    pub pipeline: &'k wgpu::ComputePipeline,
    pub tasks: u32,
}

/// Device buffers, bind group, staging and timer of one thread, and the host arrays it
/// packs and lists into.
pub struct GpuWorkspace<'c> {
    pub(super) ctx: &'c GpuContext,
    pub(super) layout: DenseLayout,
    /// The task list and θ of the next dispatch.
    pub(super) tasks: Vec<GpuTask>,
    pub(super) theta: Vec<f32>,
    buffers: Vec<wgpu::Buffer>,
    /// The task count (`Outputs` of `shaders/common.wgsl`).
    counts: wgpu::Buffer,
    /// MAP_READ staging of `out`.
    out_read: wgpu::Buffer,
    /// Upload staging of a part's entities, rows and labels, and of a round's tasks, θ
    /// and count.
    part_staging: Staging,
    round_staging: Staging,
    bind: Option<wgpu::BindGroup>,
    timer: Option<KernelTimer>,
    /// Parts set up so far on this workspace.
    parts: usize,
    pub(super) timings: GpuTimings,
}

impl<'c> GpuWorkspace<'c> {
    pub fn new(ctx: &'c GpuContext) -> Self {
        let mut timings = GpuTimings::default();
        let mut create = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            timings.buffers_created += 1;
            timings.buffer_bytes_created += size;
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let buffers = SLOTS
            .iter()
            .map(|&(label, usage)| create(label, MIN_BYTES, wgpu::BufferUsages::STORAGE | usage))
            .collect();
        let counts = create(
            "counts",
            16,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let out_read = create(
            "out_read",
            MIN_BYTES,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let timer = ctx
            .timestamp_period
            .map(|p| KernelTimer::new(ctx, p, &mut create));
        let part_staging = Staging::new(&ctx.device, "part_staging", MIN_BYTES, &mut timings);
        let round_staging = Staging::new(&ctx.device, "round_staging", MIN_BYTES, &mut timings);
        GpuWorkspace {
            ctx,
            layout: DenseLayout::default(),
            tasks: Vec::new(),
            theta: Vec::new(),
            buffers,
            counts,
            out_read,
            part_staging,
            round_staging,
            bind: None,
            timer,
            parts: 0,
            timings,
        }
    }

    /// Counts and seconds of everything done on this workspace so far.
    pub fn timings(&self) -> GpuTimings {
        self.timings
    }

    /// Make sure `slot` holds `bytes`: replaced by a buffer with half again as much room
    /// (within the binding limit) when it is too small.
    fn reserve(&mut self, slot: Slot, bytes: u64) -> Result<(), GpuError> {
        let limit = self.ctx.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                needed: bytes,
                limit,
            });
        }
        let current = &self.buffers[slot as usize];
        if current.size() >= bytes {
            return Ok(());
        }
        let size = (bytes + bytes / 2)
            .clamp(MIN_BYTES, limit.max(bytes))
            .next_multiple_of(4);
        let (label, usage) = SLOTS[slot as usize];
        self.buffers[slot as usize] = self.create(label, size, wgpu::BufferUsages::STORAGE | usage);
        if matches!(slot, Slot::Out) {
            self.out_read = self.create(
                "out_read",
                size,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
        }
        self.bind = None;
        Ok(())
    }

    /// Count the buffers created since `before` (staging grown by a fill) as created after
    /// the first part when they were.
    fn count_growth(&mut self, before: usize) {
        if self.parts > 1 {
            self.timings.buffers_created_after_first_part += self.timings.buffers_created - before;
        }
    }

    fn create(&mut self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.timings.buffers_created += 1;
        self.timings.buffer_bytes_created += size;
        if self.parts > 1 {
            self.timings.buffers_created_after_first_part += 1;
        }
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Upload the planned layout's static arrays, growing their buffers as needed, and
    /// make room for `out_floats` outputs per dispatch. `write` writes `x` and `rows`
    /// (`x_len` and `rows_len` vec4s) straight into the mapped staging.
    pub(super) fn upload_part(
        &mut self,
        out_floats: usize,
        write: impl FnOnce(&DenseLayout, wgpu::WriteOnly<'_, [u8]>, wgpu::WriteOnly<'_, [u8]>),
    ) -> Result<(), GpuError> {
        self.parts += 1;
        let clock = Instant::now();
        let bytes = |n: usize, size: usize| (n * size) as u64;
        let (entities, x, rows) = (
            self.layout.entities.len(),
            self.layout.x_len,
            self.layout.rows_len,
        );
        self.reserve(Slot::Entities, bytes(entities, 32))?;
        self.reserve(Slot::X, bytes(x, 16))?;
        self.reserve(Slot::Rows, bytes(rows, 16))?;
        self.reserve(Slot::Curvature, bytes(rows, 4))?;
        self.reserve(Slot::Tasks, bytes(self.layout.task_rows.len(), 32))?;
        self.reserve(Slot::Out, bytes(out_floats, 4))?;
        let ctx = self.ctx;
        let created = self.timings.buffers_created;
        let layout = &self.layout;
        let mut packing = 0.0;
        let offsets = self.part_staging.fill_with(
            &ctx.device,
            &ctx.poller,
            &[bytes(entities, 32), bytes(x, 16), bytes(rows, 16)],
            &mut self.timings,
            |regions| {
                let clock = Instant::now();
                let [mut records, x, rows]: [_; 3] = regions.try_into().expect("three regions");
                records.copy_from_slice(bytemuck::cast_slice(&layout.entities));
                write(layout, x, rows);
                packing = clock.elapsed().as_secs_f64();
            },
        );
        self.timings.pack += packing;
        self.count_growth(created);
        let offsets = offsets.map_err(|e| GpuError::Upload(e.to_string()))?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let lengths = [bytes(entities, 32), bytes(x, 16), bytes(rows, 16)];
        for ((slot, at), len) in [Slot::Entities, Slot::X, Slot::Rows]
            .into_iter()
            .zip(offsets)
            .zip(lengths)
        {
            if len > 0 {
                let to = &self.buffers[slot as usize];
                encoder.copy_buffer_to_buffer(self.part_staging.buffer(), at, to, 0, len);
            }
        }
        self.part_staging.remap_on_submit(&encoder);
        let submission = ctx.queue.submit([encoder.finish()]);
        self.part_staging.submitted(&submission);
        self.timings.part_submissions += 1;
        self.timings.setup += clock.elapsed().as_secs_f64();
        Ok(())
    }

    /// Write the listed tasks and θ, run `passes` of `stage` in order (one compute pass each, so each
    /// sees what the one before wrote), and read back the first `out_floats` outputs. One
    /// submission; errors of the device come back as values.
    pub(super) fn dispatch(
        &mut self,
        stage: Stage,
        passes: &[Pass],
        out_floats: usize,
    ) -> Result<Vec<f32>, EvalError> {
        let clock = Instant::now();
        let too_large = |e: GpuError| EvalError::Backend(e.to_string());
        self.reserve(Slot::Tasks, (self.tasks.len() * 32) as u64)
            .map_err(too_large)?;
        self.reserve(Slot::Theta, (self.theta.len() * 4) as u64)
            .map_err(too_large)?;
        self.reserve(Slot::Out, (out_floats * 4) as u64)
            .map_err(too_large)?;
        let ctx = self.ctx;
        let count = passes.iter().map(|p| p.tasks).max().unwrap_or(0);
        let created = self.timings.buffers_created;
        let offsets = self.round_staging.fill(
            &ctx.device,
            &ctx.poller,
            &[
                bytemuck::cast_slice(&self.tasks),
                bytemuck::cast_slice(&self.theta),
                bytemuck::cast_slice(&[count, 0, 0, 0]),
            ],
            &mut self.timings,
        );
        self.count_growth(created);
        let offsets = offsets?;
        let bind = match self.bind.take() {
            Some(bind) => bind,
            None => self.bind_group(),
        };
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let staging = self.round_staging.buffer();
        for ((to, at), len) in [
            &self.buffers[Slot::Tasks as usize],
            &self.buffers[Slot::Theta as usize],
            &self.counts,
        ]
        .into_iter()
        .zip(offsets)
        .zip([self.tasks.len() * 32, self.theta.len() * 4, 16])
        {
            if len > 0 {
                encoder.copy_buffer_to_buffer(staging, at, to, 0, len as u64);
            }
        }
        for (k, pass) in passes.iter().enumerate() {
            let mut compute = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: self.timer.as_ref().and_then(|t| t.writes(k, passes.len())),
            });
            compute.set_pipeline(pass.pipeline);
            compute.set_bind_group(0, &bind, &[]);
            let (x, y) = ctx.task_grid(pass.tasks);
            compute.dispatch_workgroups(x, y, 1);
        }
        self.bind = Some(bind);
        let out_bytes = ((out_floats.max(1)) * 4) as u64;
        let out = &self.buffers[Slot::Out as usize];
        // A test's injected fault: a copy past the end, which validation rejects.
        let copy = if ctx.take_fault() {
            out.size() + 4
        } else {
            out_bytes
        };
        encoder.copy_buffer_to_buffer(out, 0, &self.out_read, 0, copy);
        if let Some(timer) = &self.timer {
            timer.resolve(&mut encoder);
        }
        let out_mapped = map_on_submit(&encoder, &self.out_read, out_bytes);
        let timer_mapped = self
            .timer
            .as_ref()
            .map(|t| map_on_submit(&encoder, &t.read, 16));
        self.round_staging.remap_on_submit(&encoder);
        let submission = ctx.queue.submit([encoder.finish()]);
        self.round_staging.submitted(&submission);
        self.timings.submissions += 1;
        self.timings.upload += clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let waited = ctx.poller.wait(submission);
        self.timings.parked_waits += 1;
        self.timings.kernels += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        // The maps are settled (and the buffers unmapped) whatever happened, so that the
        // next part can use them.
        let values = copy_mapped::<f32>(&self.out_read, out_bytes, out_mapped);
        let ticks = timer_mapped.map(|m| {
            let read = &self.timer.as_ref().expect("mapped").read;
            copy_mapped::<u64>(read, 16, m)
        });
        let errors = [
            pollster::block_on(memory.pop()),
            pollster::block_on(scope.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(EvalError::Backend(format!("GPU error: {e}")));
        }
        waited?;
        ctx.uncaptured_error()?;
        let values = values?;
        if let (Some(timer), Some(ticks)) = (&self.timer, ticks) {
            let seconds = timer.seconds(&ticks?);
            self.timings.device_kernels += seconds;
            self.timings.device_stages[stage as usize] += seconds;
        }
        self.timings.bytes_down += out_bytes;
        self.timings.dispatches += 1;
        self.timings.readback += clock.elapsed().as_secs_f64();
        Ok(values)
    }

    fn bind_group(&self) -> wgpu::BindGroup {
        let mut entries: Vec<wgpu::BindGroupEntry> = self
            .buffers
            .iter()
            .enumerate()
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding: binding as u32,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: 7,
            resource: self.counts.as_entire_binding(),
        });
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("entity"),
                layout: &self.ctx.entity_layout,
                entries: &entries,
            })
    }
}
