//! The device and the compiled kernels: built once per process, shared by every thread.

use super::poller::Poller;
use super::GpuError;
use crate::eval::EvalError;
use crate::objective::Loss;
use std::sync::{Arc, Mutex};

/// Kernels of the dense layout, one WGSL file each in `shaders/`, the device L-BFGS step,
/// the scoring kernel, and `glmix gpu-probe`'s read kernel.
pub const KERNELS: [&str; 6] = [
    "entity_value_gradient",
    "entity_hessian_diagonal",
    "hessian_full",
    "lbfgs_step",
    "row_dots",
    "probe_read",
];

/// vec4s of a row each lane of the wide variant of the entity kernels reads: rows of up to
/// `WIDE_COLS_PER_LANE · ENTITY_WORKGROUP` vec4s (4,096 features).
pub const WIDE_COLS_PER_LANE: u32 = 16;

/// Lanes per workgroup of the entity kernels (`WG` in `shaders/entity_common.wgsl`).
pub const ENTITY_WORKGROUP: u32 = 64;

/// Features of the widest entity the GPU takes; wider ones are solved on the CPU.
pub const MAX_GPU_FEATURES: usize = (4 * WIDE_COLS_PER_LANE * ENTITY_WORKGROUP) as usize;

/// Invocations per workgroup of `row_dots` (`@workgroup_size(256)`).
const ROW_DOTS_WORKGROUP: u32 = 256;

/// The WGSL source of `kernel` as its pipeline is built: `shaders/common.wgsl`, then for the
/// entity kernels `const COLS_PER_LANE` and `shaders/entity_common.wgsl`, then the kernel's
/// own file.
pub fn kernel_source(kernel: &str, cols_per_lane: u32) -> String {
    let common = include_str!("../../../shaders/common.wgsl");
    let entity = include_str!("../../../shaders/entity_common.wgsl");
    let own = match kernel {
        "entity_value_gradient" => include_str!("../../../shaders/entity_value_gradient.wgsl"),
        "entity_hessian_diagonal" => {
            include_str!("../../../shaders/entity_hessian_diagonal.wgsl")
        }
        "hessian_full" => include_str!("../../../shaders/hessian_full.wgsl"),
        "row_dots" => return format!("{common}{}", include_str!("../../../shaders/row_dots.wgsl")),
        "lbfgs_step" => return include_str!("../../../shaders/lbfgs_step.wgsl").to_string(),
        "probe_read" => {
            return format!(
                "{common}{}",
                include_str!("../../../shaders/probe_read.wgsl")
            )
        }
        other => panic!("no kernel {other}"),
    };
    format!("{common}const COLS_PER_LANE: u32 = {cols_per_lane}u;\n{entity}{own}")
}

/// The entity kernels for one loss and one row width.
pub(super) struct EntityKernels {
    pub value_gradient: wgpu::ComputePipeline,
    pub hessian_diagonal: wgpu::ComputePipeline,
    /// `entity_hessian_diagonal` that also writes ℓ'' per row, for `hessian_full`.
    pub row_curvature: wgpu::ComputePipeline,
    pub hessian_full: wgpu::ComputePipeline,
}

/// A device with the kernels compiled for both losses and both row widths.
pub struct GpuContext {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Nanoseconds per timestamp tick, when the device has timestamp queries.
    pub(super) timestamp_period: Option<f32>,
    /// The one bind group layout of the entity kernels (`shaders/entity_common.wgsl`).
    pub(super) entity_layout: wgpu::BindGroupLayout,
    /// [loss][wide]: squared then logistic; rows of ≤ 64 vec4s, then wider.
    entity: [[EntityKernels; 2]; 2],
    /// `row_dots`: `x_i·θ` per record, for scoring.
    pub(super) row_dots: wgpu::ComputePipeline,
    /// `lbfgs_step` and the layout of its bindings (`shaders/lbfgs_step.wgsl`).
    pub(super) lbfgs_step: wgpu::ComputePipeline,
    pub(super) lbfgs_layout: wgpu::BindGroupLayout,
    /// Errors no error scope caught (the handler keeps them instead of panicking), and
    /// why the device was lost, if it was.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// A test's request to fail the n-th evaluation from now (see [`Self::fail_evaluation`]).
    pub(super) fault: Mutex<Option<usize>>,
    /// The thread that makes every poll of `device`.
    pub(super) poller: Poller,
}

impl GpuContext {
    /// The first adapter wgpu offers (high performance preferred), with its own limits.
    pub fn new() -> Result<Self, GpuError> {
        pollster::block_on(Self::new_async())
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
        // wgpu's default handler panics; keep such errors so that the next evaluation
        // returns them as values.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().expect("not poisoned").push(e.to_string());
        }));
        let sink = uncaptured.clone();
        device.set_device_lost_callback(move |reason, message| {
            sink.lock()
                .expect("not poisoned")
                .push(format!("device lost ({reason:?}): {message}"));
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let entity_layout = entity_bind_group_layout(&device);
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("entity"),
            bind_group_layouts: &[Some(&entity_layout)],
            immediate_size: 0,
        });
        let kernels = |loss: f64, cols: u32| {
            let build = |name: &str, kernel: &str, constants: &[(&str, f64)]| {
                pipeline(
                    &device,
                    Some(&layout),
                    name,
                    &kernel_source(kernel, cols),
                    constants,
                )
            };
            EntityKernels {
                value_gradient: build(
                    "entity_value_gradient",
                    "entity_value_gradient",
                    &[("LOSS", loss)],
                ),
                hessian_diagonal: build(
                    "entity_hessian_diagonal",
                    "entity_hessian_diagonal",
                    &[("LOSS", loss)],
                ),
                row_curvature: build(
                    "entity_hessian_diagonal+curvature",
                    "entity_hessian_diagonal",
                    &[("LOSS", loss), ("ROW_CURVATURE", 1.0)],
                ),
                hessian_full: build("hessian_full", "hessian_full", &[]),
            }
        };
        let entity = [
            [kernels(0.0, 1), kernels(0.0, WIDE_COLS_PER_LANE)],
            [kernels(1.0, 1), kernels(1.0, WIDE_COLS_PER_LANE)],
        ];
        let row_dots = pipeline(
            &device,
            None,
            "row_dots",
            &kernel_source("row_dots", 1),
            &[],
        );
        let lbfgs_layout = lbfgs_bind_group_layout(&device);
        let lbfgs_step = pipeline(
            &device,
            Some(
                &device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("lbfgs_step"),
                    bind_group_layouts: &[Some(&lbfgs_layout)],
                    immediate_size: 0,
                }),
            ),
            "lbfgs_step",
            &kernel_source("lbfgs_step", 1),
            &[],
        );
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Validation(e.to_string()));
        }
        let timestamp_period = (!timestamps.is_empty()).then(|| queue.get_timestamp_period());
        let poller = Poller::new(device.clone());
        Ok(GpuContext {
            device,
            queue,
            timestamp_period,
            info,
            limits,
            entity_layout,
            entity,
            row_dots,
            lbfgs_step,
            lbfgs_layout,
            uncaptured,
            fault: Mutex::new(None),
            poller,
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
             max compute workgroups per dimension: {}\nmax compute workgroup storage bytes: {}\n\
             subgroup sizes: {}..{}\ntimestamp queries: {}\n\
             entity kernels: {ENTITY_WORKGROUP} lanes per workgroup, one task per workgroup",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info,
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_workgroup_storage_size,
            self.info.subgroup_min_size,
            self.info.subgroup_max_size,
            self.timestamp_period
                .map_or("no".into(), |p| format!("{p} ns per tick")),
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

    /// Make the evaluation `n` evaluations from now fail on the device, by a command that
    /// the GPU's validation rejects: tests use it to check that a GPU failure in the middle
    /// of a run ends on the CPU with the CPU's models.
    pub fn fail_evaluation(&self, n: usize) {
        *self.fault.lock().expect("not poisoned") = Some(n);
    }

    /// Whether the evaluation about to be encoded is the one [`Self::fail_evaluation`]
    /// asked to fail.
    pub(super) fn take_fault(&self) -> bool {
        let mut fault = self.fault.lock().expect("not poisoned");
        match *fault {
            Some(0) => {
                *fault = None;
                true
            }
            Some(n) => {
                *fault = Some(n - 1);
                false
            }
            None => false,
        }
    }

    /// An error no scope caught since the last call (a lost device, say), as a value.
    pub(super) fn uncaptured_error(&self) -> Result<(), EvalError> {
        let mut errors = self.uncaptured.lock().expect("not poisoned");
        match errors.is_empty() {
            true => Ok(()),
            false => Err(EvalError::Backend(
                errors.drain(..).collect::<Vec<_>>().join("; "),
            )),
        }
    }

    pub(super) fn entity_kernels(&self, loss: Loss, wide: bool) -> &EntityKernels {
        let l = match loss {
            Loss::Squared => 0,
            Loss::Logistic => 1,
        };
        &self.entity[l][usize::from(wide)]
    }

    /// Workgroups for `n` one-workgroup tasks, as a 2-D grid when one dimension is not
    /// enough.
    pub(super) fn task_grid(&self, n: u32) -> (u32, u32) {
        let groups = n.max(1);
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            (groups, 1)
        } else {
            (max, groups.div_ceil(max))
        }
    }

    /// Workgroups of `row_dots` for `n` records.
    pub(super) fn row_grid(&self, n: u32) -> (u32, u32) {
        self.task_grid(n.div_ceil(ROW_DOTS_WORKGROUP))
    }
}

/// Bindings 0–7 of `shaders/entity_common.wgsl`.
fn entity_bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    bind_group_layout(
        device,
        "entity",
        &[true, true, true, true, true, false, false],
    )
}

/// Bindings 0–7 of `shaders/lbfgs_step.wgsl`.
fn lbfgs_bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    bind_group_layout(
        device,
        "lbfgs_step",
        &[true, true, false, true, false, false, false],
    )
}

/// Storage bindings `0..read_only.len()` (read-only or not), then one uniform.
fn bind_group_layout(
    device: &wgpu::Device,
    label: &str,
    read_only: &[bool],
) -> wgpu::BindGroupLayout {
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut entries: Vec<_> = (0..)
        .zip(read_only)
        .map(|(b, &read_only)| entry(b, wgpu::BufferBindingType::Storage { read_only }))
        .collect();
    entries.push(entry(
        read_only.len() as u32,
        wgpu::BufferBindingType::Uniform,
    ));
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

fn pipeline(
    device: &wgpu::Device,
    layout: Option<&wgpu::PipelineLayout>,
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
        layout,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            ..Default::default()
        },
        cache: None,
    })
}
