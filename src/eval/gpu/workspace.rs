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
    (
        "theta",
        wgpu::BufferUsages::COPY_DST.union(wgpu::BufferUsages::COPY_SRC),
    ),
    ("out", wgpu::BufferUsages::COPY_SRC),
    ("curvature", wgpu::BufferUsages::empty()),
];

/// Smallest buffer made (bindings may not be empty).
const MIN_BYTES: u64 = 256;

/// Where [`GpuWorkspace::fill_round`] put the task list and its count in the round staging.
pub(super) struct TaskUpload {
    tasks_at: u64,
    tasks_bytes: u64,
    count_at: u64,
}

impl TaskUpload {
    /// Copy the task list and its count from `staging` into their buffers.
    pub(super) fn copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        buffers: &[wgpu::Buffer],
        counts: &wgpu::Buffer,
    ) {
        let tasks = &buffers[Slot::Tasks as usize];
        copy_piece(
            encoder,
            staging,
            self.tasks_at,
            tasks,
            self.tasks_bytes as usize,
        );
        copy_piece(encoder, staging, self.count_at, counts, 16);
    }
}

/// Copy `bytes` (none: no copy) from `at` in `staging` to the start of `to`.
pub(super) fn copy_piece(
    encoder: &mut wgpu::CommandEncoder,
    staging: &wgpu::Buffer,
    at: u64,
    to: &wgpu::Buffer,
    bytes: usize,
) {
    if bytes > 0 {
        encoder.copy_buffer_to_buffer(staging, at, to, 0, bytes as u64);
    }
}

/// Record one compute pass of `pipeline` over the workgroups of `grid`, pass `k` of `of`
/// in its submission (the timer brackets the first and the last).
pub(super) fn encode_pass(
    encoder: &mut wgpu::CommandEncoder,
    timer: Option<&KernelTimer>,
    (k, of): (usize, usize),
    pipeline: &wgpu::ComputePipeline,
    bind: &wgpu::BindGroup,
    (x, y): (u32, u32),
) {
    let mut compute = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: timer.and_then(|t| t.writes(k, of)),
    });
    compute.set_pipeline(pipeline);
    compute.set_bind_group(0, bind, &[]);
    compute.dispatch_workgroups(x, y, 1);
}

/// One submission, waited for: `encode` records its commands (copying from the round
/// `staging`, whose buffer it is given), then each buffer of `reads` is mapped and its
/// first bytes copied out. The timer's seconds come back when the device has timestamps.
/// Errors of the device (validation, memory, a lost device) come back as values.
pub(super) fn submit(
    ctx: &GpuContext,
    timer: Option<&KernelTimer>,
    staging: &mut Staging,
    timings: &mut GpuTimings,
    clock: Instant,
    encode: impl FnOnce(&mut wgpu::CommandEncoder, &wgpu::Buffer),
    reads: &[(&wgpu::Buffer, u64)],
) -> Result<(Vec<Vec<u8>>, Option<f64>), EvalError> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let memory = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encode(&mut encoder, staging.buffer());
    if let Some(timer) = timer {
        timer.resolve(&mut encoder);
    }
    let mapped: Vec<_> = reads
        .iter()
        .map(|&(buffer, bytes)| map_on_submit(&encoder, buffer, bytes))
        .collect();
    let timer_mapped = timer.map(|t| map_on_submit(&encoder, &t.read, 16));
    staging.remap_on_submit(&encoder);
    let submission = ctx.queue.submit([encoder.finish()]);
    staging.submitted(&submission);
    timings.submissions += 1;
    timings.upload += clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let waited = ctx.poller.wait(submission);
    timings.parked_waits += 1;
    timings.kernels += clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let errors = [
        pollster::block_on(memory.pop()),
        pollster::block_on(scope.pop()),
    ];
    if let Some(e) = errors.into_iter().flatten().next() {
        // A rejected submission maps nothing: cancel its maps rather than wait for
        // callbacks that do not come, so that the next part can use the buffers.
        for buffer in reads.iter().map(|r| r.0).chain(timer.map(|t| &t.read)) {
            buffer.unmap();
        }
        return Err(EvalError::Backend(format!("GPU error: {e}")));
    }
    // The maps are settled (and the buffers unmapped) whatever happened, so that the
    // next part can use them.
    let values: Vec<_> = reads
        .iter()
        .zip(mapped)
        .map(|(&(buffer, bytes), m)| copy_mapped::<u8>(buffer, bytes, m))
        .collect();
    let ticks = timer
        .zip(timer_mapped)
        .map(|(t, m)| copy_mapped::<u64>(&t.read, 16, m));
    waited?;
    ctx.uncaptured_error()?;
    let values = values.into_iter().collect::<Result<Vec<_>, _>>()?;
    let seconds = match (timer, ticks) {
        (Some(timer), Some(ticks)) => Some(timer.seconds(&ticks?)),
        _ => None,
    };
    if let Some(s) = seconds {
        timings.device_kernels += s;
    }
    timings.readback += clock.elapsed().as_secs_f64();
    Ok((values, seconds))
}

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
    pub(super) buffers: Vec<wgpu::Buffer>,
    /// The task count (`Outputs` of `shaders/common.wgsl`).
    pub(super) counts: wgpu::Buffer,
    /// MAP_READ staging of `out`.
    out_read: wgpu::Buffer,
    /// Upload staging of a part's entities, rows and labels, and of a round's tasks, θ
    /// and count.
    part_staging: Staging,
    pub(super) round_staging: Staging,
    pub(super) bind: Option<wgpu::BindGroup>,
    pub(super) timer: Option<KernelTimer>,
    /// Parts set up so far on this workspace.
    parts: usize,
    /// The device solver's buffers, made at its first part (`lbfgs.rs`).
    pub(super) lbfgs: Option<super::lbfgs::LbfgsBuffers>,
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
            lbfgs: None,
            timings,
        }
    }

    /// Counts and seconds of everything done on this workspace so far.
    pub fn timings(&self) -> GpuTimings {
        self.timings
    }

    /// Make sure `slot` holds `bytes`: replaced by a buffer with half again as much room
    /// (within the binding limit) when it is too small.
    pub(super) fn reserve(&mut self, slot: Slot, bytes: u64) -> Result<(), GpuError> {
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

    pub(super) fn create(
        &mut self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
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
        self.reserve(Slot::Theta, (self.theta.len() * 4) as u64)
            .map_err(too_large)?;
        let count = passes.iter().map(|p| p.tasks).max().unwrap_or(0);
        let theta = std::mem::take(&mut self.theta);
        let filled = self.fill_round(&[bytemuck::cast_slice(&theta)], Some(count), out_floats);
        self.theta = theta;
        let (at, tasks) = filled?;
        let tasks = tasks.expect("a count was given");
        let bind = self.entity_bind_group();
        let out_bytes = ((out_floats.max(1)) * 4) as u64;
        let (buffers, out_read) = (&self.buffers, &self.out_read);
        let out = &buffers[Slot::Out as usize];
        // A test's injected fault: a copy past the end, which validation rejects.
        let copy = if self.ctx.take_fault() {
            out.size() + 4
        } else {
            out_bytes
        };
        let timer = self.timer.as_ref();
        let (mut read, seconds) = submit(
            self.ctx,
            timer,
            &mut self.round_staging,
            &mut self.timings,
            clock,
            |encoder, staging| {
                tasks.copy(encoder, staging, buffers, &self.counts);
                let theta = &buffers[Slot::Theta as usize];
                copy_piece(encoder, staging, at[0], theta, self.theta.len() * 4);
                for (k, pass) in passes.iter().enumerate() {
                    let grid = self.ctx.task_grid(pass.tasks);
                    encode_pass(
                        encoder,
                        timer,
                        (k, passes.len()),
                        pass.pipeline,
                        &bind,
                        grid,
                    );
                }
                encoder.copy_buffer_to_buffer(out, 0, out_read, 0, copy);
            },
            &[(out_read, out_bytes)],
        )?;
        self.bind = Some(bind);
        if let Some(seconds) = seconds {
            self.timings.device_stages[stage as usize] += seconds;
        }
        self.timings.bytes_down += out_bytes;
        self.timings.dispatches += 1;
        Ok(bytemuck::pod_collect_to_vec(&read.remove(0)))
    }

    /// Fill the round staging with `pieces` and, with `count`, first with the task list
    /// and its count (making room for the tasks and `out_floats` outputs). Returns where
    /// each piece went, and the task upload to copy.
    pub(super) fn fill_round(
        &mut self,
        pieces: &[&[u8]],
        count: Option<u32>,
        out_floats: usize,
    ) -> Result<(Vec<u64>, Option<TaskUpload>), EvalError> {
        let too_large = |e: GpuError| EvalError::Backend(e.to_string());
        if count.is_some() {
            self.reserve(Slot::Tasks, (self.tasks.len() * 32) as u64)
                .map_err(too_large)?;
            self.reserve(Slot::Out, (out_floats * 4) as u64)
                .map_err(too_large)?;
        }
        let created = self.timings.buffers_created;
        let counts = [count.unwrap_or(0), 0, 0, 0];
        let mut all: Vec<&[u8]> = Vec::with_capacity(pieces.len() + 2);
        if count.is_some() {
            all.extend([
                bytemuck::cast_slice(&self.tasks),
                bytemuck::cast_slice(&counts),
            ]);
        }
        all.extend_from_slice(pieces);
        let offsets =
            self.round_staging
                .fill(&self.ctx.device, &self.ctx.poller, &all, &mut self.timings);
        self.count_growth(created);
        let mut offsets = offsets?;
        let upload = count.map(|_| TaskUpload {
            tasks_at: offsets[0],
            tasks_bytes: (self.tasks.len() * 32) as u64,
            count_at: offsets[1],
        });
        if upload.is_some() {
            offsets.drain(..2);
        }
        Ok((offsets, upload))
    }

    /// The entity kernels' bind group, made again only when a buffer was replaced; hand
    /// it back in `self.bind` after use.
    pub(super) fn entity_bind_group(&mut self) -> wgpu::BindGroup {
        match self.bind.take() {
            Some(bind) => bind,
            None => self.bind_group(),
        }
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
