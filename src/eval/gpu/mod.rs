//! The wgpu evaluator: the data terms of the objectives on the GPU in f32, the prior terms
//! and the solver on the CPU in f64.
//!
//! For the running entities of a batch, one evaluation is five dispatches (`shaders/`):
//! `row_derivatives` (margin `m_i = o_i + x_i·θ`, `ℓ(m_i)` and `ℓ'(m_i)` per row);
//! `column_sums` (partial sums of `Xᵀ ℓ'` over chunks of ≤ 256 entries of each
//! coefficient's column in a CSC copy) and `entity_loss` (partial sums of `ℓ_i` over chunks
//! of ≤ 256 rows); then `reduce` twice, adding the chunks of each coefficient and of each
//! entity. The chunks spread an entity with very many rows over many invocations. The host
//! adds `½ Σ p θ² + ½ (θ−θ₀)ᵀQ(θ−θ₀)` and its gradient in f64, exactly as
//! [`EntityProblem::value_and_gradient`] does. For the posterior, `column_sums` with
//! `ℓ''` and squared values gives the Hessian diagonal, and `hessian_full` the d×d blocks.
//!
//! The device, shader modules and pipelines are built once in a [`GpuContext`]; a
//! [`GpuEvaluator`] uploads one batch and reuses its buffers for every evaluation.
//! Validation errors are caught by an error scope and returned as [`EvalError`]s.
//!
//! [`EntityProblem::value_and_gradient`]: crate::objective::EntityProblem::value_and_gradient

mod layout;
mod row_dots;

pub use layout::{GpuChunk, GpuCounts, GpuRow, PackedBatch, CHUNK};

use super::{entity_slices_mut, BatchEvaluator, EvalError};
use crate::objective::{Loss, TrainingBatch};
use layout::non_empty;
use std::time::Instant;
use wgpu::util::DeviceExt;

/// Why no GPU evaluator could be made.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU adapter {adapter} refused a device: {message}")]
    Device { adapter: String, message: String },
    #[error("the GPU rejected a shader or pipeline: {0}")]
    Validation(String),
    #[error("the batch needs a {needed}-byte buffer; this GPU binds at most {limit} bytes")]
    TooLarge { needed: u64, limit: u64 },
}

/// A kernel's WGSL source: `shaders/common.wgsl` (shared structs), then `shaders/<name>.wgsl`.
macro_rules! kernel_source {
    ($name:literal) => {
        concat!(
            include_str!("../../../shaders/common.wgsl"),
            include_str!(concat!("../../../shaders/", $name, ".wgsl"))
        )
    };
}

/// Threads per workgroup of every kernel (`@workgroup_size(256)`).
const WORKGROUP: u32 = 256;

struct Kernels {
    row_derivatives: wgpu::ComputePipeline,
    /// `row_derivatives` that also writes `ℓ''` per row.
    row_derivatives_d2: wgpu::ComputePipeline,
    hessian_diagonal: wgpu::ComputePipeline,
    hessian_full: wgpu::ComputePipeline,
    gradient: wgpu::ComputePipeline,
    entity_loss: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
}

/// A device with the kernels compiled for both losses.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Nanoseconds per timestamp tick, when the device has timestamp queries.
    timestamp_period: Option<f32>,
    squared: Kernels,
    logistic: Kernels,
    /// `row_dots`: `x_i·θ` per record, for scoring.
    row_dots: wgpu::ComputePipeline,
}

impl GpuContext {
    /// The first adapter wgpu offers (high performance preferred), with its own limits.
    /// A panic inside the driver stack is caught and reported as an error.
    pub fn new() -> Result<Self, GpuError> {
        std::panic::catch_unwind(|| pollster::block_on(Self::new_async())).unwrap_or_else(|p| {
            let message = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic while opening the device".into());
            Err(GpuError::NoAdapter(message))
        })
    }

    async fn new_async() -> Result<Self, GpuError> {
        // Vulkan, Metal or DX12 unless WGPU_BACKEND says otherwise: probing OpenGL through
        // EGL prints noise on headless hosts and its compute support is rarely usable.
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        descriptor.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Timestamp queries time the kernels on the device, where the adapter has them.
        let timestamps = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("glmix"),
                required_features: timestamps,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = |loss: f64| Kernels {
            row_derivatives: pipeline(
                &device,
                "row_derivatives",
                kernel_source!("row_derivatives"),
                &[("LOSS", loss)],
            ),
            row_derivatives_d2: pipeline(
                &device,
                "row_derivatives_d2",
                kernel_source!("row_derivatives"),
                &[("LOSS", loss), ("WITH_D2", 1.0)],
            ),
            hessian_diagonal: pipeline(
                &device,
                "hessian_diagonal",
                kernel_source!("column_sums"),
                &[("POWER", 2.0)],
            ),
            hessian_full: pipeline(&device, "hessian_full", kernel_source!("hessian_full"), &[]),
            gradient: pipeline(
                &device,
                "gradient",
                kernel_source!("column_sums"),
                &[("POWER", 1.0)],
            ),
            entity_loss: pipeline(&device, "entity_loss", kernel_source!("entity_loss"), &[]),
            reduce: pipeline(&device, "reduce", kernel_source!("reduce"), &[]),
        };
        let (squared, logistic) = (kernels(0.0), kernels(1.0));
        let row_dots = pipeline(&device, "row_dots", kernel_source!("row_dots"), &[]);
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Validation(e.to_string()));
        }
        let timestamp_period = (!timestamps.is_empty()).then(|| queue.get_timestamp_period());
        Ok(GpuContext {
            device,
            queue,
            timestamp_period,
            info,
            limits,
            squared,
            logistic,
            row_dots,
        })
    }

    /// Whether the kernels are timed on the device (the adapter has timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.timestamp_period.is_some()
    }

    /// Whether the adapter is a software rasterizer on the CPU (llvmpipe/lavapipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// "name (backend, device type)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The adapter and the limits the evaluator works within, one `key: value` per line.
    pub fn report(&self) -> String {
        let l = &self.limits;
        format!(
            "adapter: {}\nbackend: {:?}\ndevice type: {:?}\ndriver: {} {}\n\
             max storage buffer binding bytes: {}\nmax buffer bytes: {}\n\
             max compute workgroups per dimension: {}\nworkgroup size used: {WORKGROUP}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info,
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroups_per_dimension,
        )
    }

    /// Use at most `n` workgroups per grid dimension (the adapter's limit when larger).
    /// Tests use it to exercise two-dimensional grids on small batches.
    pub fn limit_workgroups_per_dimension(&mut self, n: u32) {
        self.limits.max_compute_workgroups_per_dimension =
            n.clamp(1, self.limits.max_compute_workgroups_per_dimension);
    }

    /// Bind at most `bytes` per buffer (the adapter's limit when larger). Tests use it to
    /// make small batches split into parts and overflow.
    pub fn limit_binding_bytes(&mut self, bytes: u64) {
        self.limits.max_storage_buffer_binding_size =
            bytes.min(self.limits.max_storage_buffer_binding_size);
    }

    /// Largest storage buffer one binding may hold, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    fn kernels(&self, loss: Loss) -> &Kernels {
        match loss {
            Loss::Squared => &self.squared,
            Loss::Logistic => &self.logistic,
        }
    }

    /// Workgroups for `n` invocations, as a 2-D grid when one dimension is not enough.
    fn grid(&self, n: u32) -> (u32, u32) {
        let groups = n.div_ceil(WORKGROUP).max(1);
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            (groups, 1)
        } else {
            (max, groups.div_ceil(max))
        }
    }
}

fn pipeline(
    device: &wgpu::Device,
    name: &str,
    source: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            ..Default::default()
        },
        cache: None,
    })
}

/// One batch resident on the GPU.
pub struct GpuEvaluator<'a> {
    ctx: &'a GpuContext,
    batch: &'a TrainingBatch,
    counts: GpuCounts,
    running: wgpu::Buffer,
    theta: wgpu::Buffer,
    loss: wgpu::Buffer,
    grad: wgpu::Buffer,
    loss_read: wgpu::Buffer,
    grad_read: wgpu::Buffer,
    /// row_derivatives, gradient, entity_loss, reduce (gradient), reduce (loss),
    /// row_derivatives with ℓ'', hessian_diagonal (reduced by the gradient's reduce).
    bind: [wgpu::BindGroup; 7],
    /// Scratch: f32 coefficients and running flags written per evaluation.
    theta_f32: Vec<f32>,
    running_flags: Vec<u32>,
    /// Bytes the kernels read and write in one dispatch over the whole batch.
    bytes_per_dispatch: f64,
    /// The share of the batch's rows whose entities run in the next dispatch.
    running_rows_share: f64,
    /// Bindings 0–5 of `hessian_full`, and the entries of all its blocks.
    full_hessian_inputs: [wgpu::Buffer; 6],
    block_entries: u32,
    timer: Option<KernelTimer>,
    timings: GpuTimings,
}

/// Two timestamps around an evaluation's kernels, resolved and copied out with its results.
struct KernelTimer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    read: wgpu::Buffer,
    /// Nanoseconds per tick.
    period: f32,
}

impl KernelTimer {
    fn new(device: &wgpu::Device, period: f32) -> Self {
        let bytes = 2 * std::mem::size_of::<u64>() as u64;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        KernelTimer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel_timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: buffer(
                "kernel_timer_resolved",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: buffer(
                "kernel_timer_read",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period,
        }
    }

    /// The writes of pass `k` of `passes`: the start before the first, the end after the
    /// last.
    fn writes(&self, k: usize, passes: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let (first, last) = (k == 0, k + 1 == passes);
        (first || last).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: first.then_some(0),
            end_of_pass_write_index: last.then_some(1),
        })
    }

    /// Queue the resolve of both timestamps and their copy to the readable buffer.
    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.read, 0, self.read.size());
    }

    /// Seconds between the two timestamps of `ticks`.
    fn seconds(&self, ticks: &[u64]) -> f64 {
        ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(self.period) * 1e-9
    }
}

/// Where a GPU evaluator's time went: measured on the host, but for `device_kernels`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTimings {
    /// Packing the batch, creating and filling its buffers and bind groups.
    pub setup: f64,
    /// The packing alone (the GPU layout of the batch, on the host).
    pub pack: f64,
    /// Writing θ and the running flags, encoding and submitting.
    pub upload: f64,
    /// From submission until the results could be read, on the host (the kernels, the
    /// copies, and other threads' work queued before them).
    pub kernels: f64,
    /// The kernels alone, timed on the device by timestamp queries (0 where the adapter
    /// has none).
    pub device_kernels: f64,
    /// Mapping and copying out the losses and gradients.
    pub readback: f64,
    /// Evaluations dispatched.
    pub dispatches: usize,
    /// Bytes the kernels move: each dispatch's share of the batch's, by the rows of the
    /// entities it runs.
    pub kernel_bytes: f64,
}

impl GpuTimings {
    pub fn add(&mut self, other: &GpuTimings) {
        self.setup += other.setup;
        self.pack += other.pack;
        self.upload += other.upload;
        self.kernels += other.kernels;
        self.device_kernels += other.device_kernels;
        self.readback += other.readback;
        self.dispatches += other.dispatches;
        self.kernel_bytes += other.kernel_bytes;
    }
}

impl<'a> GpuEvaluator<'a> {
    /// Upload `batch`; fails when a buffer exceeds the device's binding limit.
    pub fn new(ctx: &'a GpuContext, batch: &'a TrainingBatch) -> Result<Self, GpuError> {
        let clock = Instant::now();
        let packed = PackedBatch::new(batch);
        let pack = clock.elapsed().as_secs_f64();
        let bytes_per_dispatch = packed.bytes_per_dispatch();
        let device = &ctx.device;
        let limit = ctx.max_binding_bytes();
        let storage = |name: &str, bytes: &[u8], usage: wgpu::BufferUsages| {
            let needed = bytes.len() as u64;
            if needed > limit {
                return Err(GpuError::TooLarge { needed, limit });
            }
            Ok(
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytes,
                    usage: wgpu::BufferUsages::STORAGE | usage,
                }),
            )
        };
        let read = wgpu::BufferUsages::empty();
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let (e, c, r) = (
            batch.num_entities().max(1),
            batch.num_coefficients().max(1),
            batch.num_rows().max(1),
        );
        let rows = storage("rows", bytemuck::cast_slice(&non_empty(packed.rows)), read)?;
        let nz_ptr = storage("nz_ptr", bytemuck::cast_slice(&packed.nz_ptr), read)?;
        let cols = storage("cols", bytemuck::cast_slice(&non_empty(packed.cols)), read)?;
        let vals = storage("vals", bytemuck::cast_slice(&non_empty(packed.vals)), read)?;
        let coef_ptr = storage("coef_ptr", bytemuck::cast_slice(&packed.coef_ptr), read)?;
        let csc_rows = storage(
            "csc_rows",
            bytemuck::cast_slice(&non_empty(packed.csc_rows)),
            read,
        )?;
        let csc_vals = storage(
            "csc_vals",
            bytemuck::cast_slice(&non_empty(packed.csc_vals)),
            read,
        )?;
        let grad_chunks = storage(
            "grad_chunks",
            bytemuck::cast_slice(&packed.grad_chunks),
            read,
        )?;
        let grad_part_ptr = storage(
            "grad_part_ptr",
            bytemuck::cast_slice(&packed.grad_part_ptr),
            read,
        )?;
        let loss_chunks = storage(
            "loss_chunks",
            bytemuck::cast_slice(&packed.loss_chunks),
            read,
        )?;
        let loss_part_ptr = storage(
            "loss_part_ptr",
            bytemuck::cast_slice(&packed.loss_part_ptr),
            read,
        )?;
        let entity_ids = storage("entity_ids", bytemuck::cast_slice(&packed.entity_ids), read)?;
        let grad_partial = storage(
            "grad_partial",
            bytemuck::cast_slice(&vec![0f32; packed.grad_chunks.len()]),
            rw,
        )?;
        let loss_partial = storage(
            "loss_partial",
            bytemuck::cast_slice(&vec![0f32; packed.loss_chunks.len()]),
            rw,
        )?;
        let coef_entity = storage(
            "coef_entity",
            bytemuck::cast_slice(&non_empty(packed.coef_entity)),
            read,
        )?;
        let running = storage("running", bytemuck::cast_slice(&vec![0u32; e]), rw)?;
        let theta = storage("theta", bytemuck::cast_slice(&vec![0f32; c]), rw)?;
        let row_loss = storage("row_loss", bytemuck::cast_slice(&vec![0f32; r]), rw)?;
        let row_d1 = storage("row_d1", bytemuck::cast_slice(&vec![0f32; r]), rw)?;
        let loss = storage("loss", bytemuck::cast_slice(&vec![0f32; e]), rw)?;
        let grad = storage("grad", bytemuck::cast_slice(&vec![0f32; c]), rw)?;
        let row_d2 = storage("row_d2", bytemuck::cast_slice(&vec![0f32; r]), rw)?;
        let csc_ptr = storage("csc_ptr", bytemuck::cast_slice(&packed.csc_ptr), read)?;
        let block_ptr = storage("block_ptr", bytemuck::cast_slice(&packed.block_ptr), read)?;
        let uniform = |name: &str, contents: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents,
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        let counts = uniform("counts", bytemuck::bytes_of(&packed.counts));
        let outputs = |n: u32| [n, 0, 0, 0];
        let coefficient_outputs = uniform(
            "coefficient_outputs",
            bytemuck::cast_slice(&outputs(packed.counts.coefficients)),
        );
        let entity_outputs = uniform(
            "entity_outputs",
            bytemuck::cast_slice(&outputs(packed.counts.entities)),
        );
        let staging = |name: &str, len: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: (len * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let kernels = ctx.kernels(batch.loss);
        let bind = |pipeline: &wgpu::ComputePipeline, buffers: &[(u32, &wgpu::Buffer)]| {
            bind_group(device, pipeline, buffers)
        };
        // Both variants of `row_derivatives` read and write the same buffers.
        let row_buffers = [
            (0, &rows),
            (1, &nz_ptr),
            (2, &cols),
            (3, &vals),
            (4, &coef_ptr),
            (5, &running),
            (6, &theta),
            (7, &row_loss),
            (8, &row_d1),
            (9, &counts),
            (10, &row_d2),
        ];
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind = [
            bind(&kernels.row_derivatives, &row_buffers),
            bind(
                &kernels.gradient,
                &[
                    (0, &grad_chunks),
                    (1, &csc_rows),
                    (2, &csc_vals),
                    (3, &running),
                    (4, &row_d1),
                    (5, &grad_partial),
                    (6, &counts),
                ],
            ),
            bind(
                &kernels.entity_loss,
                &[
                    (0, &loss_chunks),
                    (1, &running),
                    (2, &row_loss),
                    (3, &loss_partial),
                    (4, &counts),
                ],
            ),
            bind(
                &kernels.reduce,
                &[
                    (0, &grad_part_ptr),
                    (1, &coef_entity),
                    (2, &running),
                    (3, &grad_partial),
                    (4, &grad),
                    (5, &coefficient_outputs),
                ],
            ),
            bind(
                &kernels.reduce,
                &[
                    (0, &loss_part_ptr),
                    (1, &entity_ids),
                    (2, &running),
                    (3, &loss_partial),
                    (4, &loss),
                    (5, &entity_outputs),
                ],
            ),
            bind(&kernels.row_derivatives_d2, &row_buffers),
            bind(
                &kernels.hessian_diagonal,
                &[
                    (0, &grad_chunks),
                    (1, &csc_rows),
                    (2, &csc_vals),
                    (3, &running),
                    (4, &row_d2),
                    (5, &grad_partial),
                    (6, &counts),
                ],
            ),
        ];
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation(err.to_string()));
        }
        Ok(GpuEvaluator {
            ctx,
            batch,
            counts: packed.counts,
            running,
            theta,
            loss_read: staging("loss_read", e),
            grad_read: staging("grad_read", c),
            loss,
            grad,
            bind,
            theta_f32: vec![0.0; c],
            running_flags: vec![0; e],
            bytes_per_dispatch,
            running_rows_share: 1.0,
            full_hessian_inputs: [block_ptr, coef_ptr, csc_ptr, csc_rows, csc_vals, row_d2],
            block_entries: *packed.block_ptr.last().expect("E + 1 pointers"),
            timer: ctx.timestamp_period.map(|p| KernelTimer::new(device, p)),
            timings: GpuTimings {
                setup: clock.elapsed().as_secs_f64(),
                pack,
                ..GpuTimings::default()
            },
        })
    }

    /// Time spent so far, by phase.
    pub fn timings(&self) -> GpuTimings {
        self.timings
    }

    /// `diag(Xᵀ diag(ℓ'') X)` of every entity at `theta` (laid out by `coef_ptr`), for the
    /// posterior precision. Mirrors [`EntityProblem::data_hessian_diagonal`].
    ///
    /// [`EntityProblem::data_hessian_diagonal`]: crate::objective::EntityProblem::data_hessian_diagonal
    pub fn data_hessian_diagonal(&mut self, theta: &[f64]) -> Result<Vec<f64>, EvalError> {
        self.upload(theta, None);
        let ctx = self.ctx;
        let kernels = ctx.kernels(self.batch.loss);
        let c = self.counts;
        let passes = [
            (&kernels.row_derivatives_d2, 5, c.rows),
            (&kernels.hessian_diagonal, 6, c.gradient_chunks),
            (&kernels.reduce, 3, c.coefficients),
        ];
        let (_, h) = self.run(&passes)?;
        Ok(h.into_iter().map(f64::from).collect())
    }

    /// Every entity's d×d data Hessian `Xᵀ diag(ℓ'') X` at `theta`, row-major blocks one
    /// after another, for `--hessian full`. Mirrors [`EntityProblem::data_hessian_full`].
    ///
    /// [`EntityProblem::data_hessian_full`]: crate::objective::EntityProblem::data_hessian_full
    pub fn data_hessian_full(&mut self, theta: &[f64]) -> Result<Vec<f64>, EvalError> {
        let ctx = self.ctx;
        let bytes = 4 * u64::from(self.block_entries.max(1));
        if bytes > ctx.max_binding_bytes() {
            return Err(EvalError::Backend(format!(
                "the full Hessians need {bytes} bytes; this GPU binds at most {}",
                ctx.max_binding_bytes()
            )));
        }
        self.upload(theta, None);
        let kernels = ctx.kernels(self.batch.loss);
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let blocks = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hessian_blocks"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hessian_blocks_read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let outputs = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("hessian_outputs"),
            contents: bytemuck::cast_slice(&[self.block_entries, 0, 0, 0]),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut buffers: Vec<(u32, &wgpu::Buffer)> = (0..).zip(&self.full_hessian_inputs).collect();
        buffers.extend([(6, &blocks), (7, &outputs)]);
        let bind = bind_group(device, &kernels.hessian_full, &buffers);
        // ℓ'' per row at θ (the first pass of the diagonal), then the blocks.
        let mut encoder = device.create_command_encoder(&Default::default());
        self.encode(
            &mut encoder,
            &[(&kernels.row_derivatives_d2, 5, self.counts.rows)],
        );
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&kernels.hessian_full);
            pass.set_bind_group(0, &bind, &[]);
            let (x, y) = ctx.grid(self.block_entries);
            pass.dispatch_workgroups(x, y, 1);
        }
        encoder.copy_buffer_to_buffer(&blocks, 0, &read, 0, bytes);
        let submission = ctx.queue.submit([encoder.finish()]);
        let out: Vec<f32> = read_back(device, &read, submission)?;
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(EvalError::Backend(format!("GPU validation error: {err}")));
        }
        Ok(out[..self.block_entries as usize]
            .iter()
            .map(|&v| f64::from(v))
            .collect())
    }

    /// Run the kernels for the entities flagged in `running` and read back the
    /// data losses and gradients.
    fn dispatch(&mut self) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
        let ctx = self.ctx;
        let kernels = ctx.kernels(self.batch.loss);
        let c = self.counts;
        let passes = [
            (&kernels.row_derivatives, 0, c.rows),
            (&kernels.gradient, 1, c.gradient_chunks),
            (&kernels.entity_loss, 2, c.loss_chunks),
            (&kernels.reduce, 3, c.coefficients),
            (&kernels.reduce, 4, c.entities),
        ];
        self.run(&passes)
    }

    /// Queue θ (as f32) and the running flags (`active`, or every entity) for the next
    /// submission.
    fn upload(&mut self, theta: &[f64], active: Option<&[usize]>) {
        let clock = Instant::now();
        let row_ptr = &self.batch.row_ptr;
        match active {
            Some(active) => {
                self.running_flags.fill(0);
                let mut running_rows = 0;
                for &e in active {
                    self.running_flags[e] = 1;
                    running_rows += row_ptr[e + 1] - row_ptr[e];
                }
                self.running_rows_share = running_rows as f64 / self.batch.num_rows().max(1) as f64;
            }
            None => {
                self.running_flags.fill(1);
                self.running_rows_share = 1.0;
            }
        }
        for (t, &v) in self.theta_f32.iter_mut().zip(theta) {
            *t = v as f32;
        }
        let queue = &self.ctx.queue;
        queue.write_buffer(&self.running, 0, bytemuck::cast_slice(&self.running_flags));
        queue.write_buffer(&self.theta, 0, bytemuck::cast_slice(&self.theta_f32));
        self.timings.upload += clock.elapsed().as_secs_f64();
    }

    /// Record `passes` (pipeline, index into `bind`, invocations) in order, one compute
    /// pass per kernel so that each reads what the previous wrote.
    fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        passes: &[(&wgpu::ComputePipeline, usize, u32)],
    ) {
        for (k, &(pipeline, bind, n)) in passes.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: self.timer.as_ref().and_then(|t| t.writes(k, passes.len())),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &self.bind[bind], &[]);
            let (x, y) = self.ctx.grid(n);
            pass.dispatch_workgroups(x, y, 1);
        }
    }

    /// Run `passes` on what [`Self::upload`] queued and read back the `loss` and `grad`
    /// buffers.
    fn run(
        &mut self,
        passes: &[(&wgpu::ComputePipeline, usize, u32)],
    ) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
        let ctx = self.ctx;
        let clock = Instant::now();
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.encode(&mut encoder, passes);
        encoder.copy_buffer_to_buffer(&self.loss, 0, &self.loss_read, 0, self.loss_read.size());
        encoder.copy_buffer_to_buffer(&self.grad, 0, &self.grad_read, 0, self.grad_read.size());
        if let Some(timer) = &self.timer {
            timer.resolve(&mut encoder);
        }
        let submission = ctx.queue.submit([encoder.finish()]);
        let loss_mapped = map_for_reading(&self.loss_read);
        let grad_mapped = map_for_reading(&self.grad_read);
        let timer_mapped = self.timer.as_ref().map(|t| map_for_reading(&t.read));
        self.timings.upload += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        wait_for(&ctx.device, Some(submission))?;
        self.timings.kernels += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let loss = copy_mapped(&ctx.device, &self.loss_read, loss_mapped)?;
        let grad = copy_mapped(&ctx.device, &self.grad_read, grad_mapped)?;
        if let (Some(timer), Some(mapped)) = (&self.timer, timer_mapped) {
            let ticks: Vec<u64> = copy_mapped(&ctx.device, &timer.read, mapped)?;
            self.timings.device_kernels += timer.seconds(&ticks);
        }
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(EvalError::Backend(format!("GPU validation error: {err}")));
        }
        self.timings.readback += clock.elapsed().as_secs_f64();
        self.timings.dispatches += 1;
        self.timings.kernel_bytes += self.bytes_per_dispatch * self.running_rows_share;
        Ok((loss, grad))
    }
}

/// A bind group for `pipeline`'s group 0 with each buffer at its binding.
fn bind_group(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|&(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Map a staging buffer once `submission` (which fills it) has run, copy it out and unmap it.
fn read_back<T: bytemuck::Pod>(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
) -> Result<Vec<T>, EvalError> {
    let mapped = map_for_reading(buffer);
    wait_for(device, Some(submission))?;
    copy_mapped(device, buffer, mapped)
}

/// Ask for `buffer` to be mapped once the work submitted so far is done; the receiver
/// gets the outcome when a poll of the device sees it.
fn map_for_reading(
    buffer: &wgpu::Buffer,
) -> std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    buffer.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    rx
}

/// Block until `submission` (or the latest submission of any thread) has run and its
/// map callbacks have been called.
fn wait_for(
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

/// Copy out a buffer that [`map_for_reading`] mapped and unmap it (polling again until
/// the map is done, in case another thread's poll came first).
fn copy_mapped<T: bytemuck::Pod>(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
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
            .get_mapped_range(..)
            .map_err(|e| EvalError::Backend(format!("GPU read-back failed: {e}")))?;
        bytemuck::cast_slice::<u8, T>(&view).to_vec()
    };
    buffer.unmap();
    Ok(out)
}

impl BatchEvaluator for GpuEvaluator<'_> {
    fn coef_ptr(&self) -> &[usize] {
        &self.batch.coef_ptr
    }

    /// f32 data terms summed over many rows: a few f32 epsilons relative.
    fn loss_precision(&self) -> f64 {
        8.0 * f64::from(f32::EPSILON)
    }

    fn name(&self) -> &str {
        "gpu"
    }

    fn evaluate(
        &mut self,
        active: &[usize],
        theta: &[f64],
        loss: &mut [f64],
        grad: &mut [f64],
    ) -> Result<(), EvalError> {
        self.upload(theta, Some(active));
        let (data_loss, data_grad) = self.dispatch()?;
        let coef_ptr = &self.batch.coef_ptr;
        for (&e, g) in active.iter().zip(entity_slices_mut(coef_ptr, active, grad)) {
            let r = coef_ptr[e]..coef_ptr[e + 1];
            for (gj, &dj) in g.iter_mut().zip(&data_grad[r.clone()]) {
                *gj = f64::from(dj);
            }
            let prior = self
                .batch
                .entity(e)
                .regularizer_value_and_gradient(&theta[r], g);
            loss[e] = f64::from(data_loss[e]) + prior;
        }
        Ok(())
    }
}
