//! `glmix gpu-probe`: what the card can do, measured with the device and kernels training
//! uses.
//!
//! - **read**: GB/s of `shaders/probe_read.wgsl` over resident buffers of at most one
//!   binding each: the achievable bandwidth, the denominator of a kernel's share of it;
//! - **upload / readback**: GB/s of fills of training's persistent upload staging copied
//!   into a device buffer, and of a copy from one into a mapped staging buffer read on
//!   the host;
//! - **round trip**: microseconds from submitting a 4-byte copy to reading it mapped;
//! - **kernel**: `entity_value_gradient` over resident synthetic slabs of E entities of
//!   n rows × d features, every entity running, one submission per slab per evaluation
//!   (with its read-back, as in training): entity-evaluations/s, the GB/s its named bytes
//!   make, and their share of the read bandwidth.
//!
//! Device seconds come from timestamp queries where the adapter has them, else from the
//! host's clock around submission and wait (the report says which).

use super::layout::{bytes_per_evaluation, rows_per_task, GpuEntity, GpuTask};
use super::readback::read_back;
use super::staging::Staging;
use super::timer::KernelTimer;
use super::workspace::Pass;
use super::{GpuContext, GpuTimings, GpuWorkspace, Stage};
use crate::eval::EvalError;
use crate::objective::Loss;
use bytemuck::Zeroable;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// Bytes read by the read probe (0 skips it).
    pub read_bytes: u64,
    /// Bytes moved each way by the upload and readback probes (0 skips them).
    pub transfer_bytes: u64,
    /// Round trips timed (0 skips them).
    pub round_trips: usize,
    /// The kernel probe's shape (0 entities skips it), and its evaluations.
    pub entities: usize,
    pub rows: usize,
    pub features: usize,
    pub repeat: usize,
}

/// What was measured; `None` where a probe was skipped.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProbeReport {
    /// `device` (timestamp queries) or `host` (the host's clock).
    pub timed_on: &'static str,
    pub read_gb_per_s: Option<f64>,
    pub upload_gb_per_s: Option<f64>,
    pub readback_gb_per_s: Option<f64>,
    pub round_trip_us_median: Option<f64>,
    pub kernel: Option<KernelProbe>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelProbe {
    pub entities: usize,
    pub rows: usize,
    pub features: usize,
    pub slabs: usize,
    pub bytes_per_entity_evaluation: u64,
    pub seconds_per_evaluation_median: f64,
    pub entity_evaluations_per_s: f64,
    pub named_gb_per_s: f64,
    /// `named_gb_per_s` over the read probe's GB/s, when both ran.
    pub share_of_read_bandwidth: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl GpuContext {
    /// Run the probes `options` asks for.
    pub fn probe(&self, options: &ProbeOptions) -> Result<ProbeReport, EvalError> {
        let mut report = ProbeReport {
            timed_on: if self.has_timestamps() {
                "device"
            } else {
                "host"
            },
            ..Default::default()
        };
        if options.read_bytes > 0 {
            report.read_gb_per_s = Some(self.probe_read(options.read_bytes)?);
        }
        if options.transfer_bytes > 0 {
            let (up, down) = self.probe_transfers(options.transfer_bytes)?;
            report.upload_gb_per_s = Some(up);
            report.readback_gb_per_s = Some(down);
        }
        if options.round_trips > 0 {
            report.round_trip_us_median = Some(self.probe_round_trips(options.round_trips)?);
        }
        if options.entities > 0 {
            let mut kernel = self.probe_kernel(options)?;
            kernel.share_of_read_bandwidth =
                report.read_gb_per_s.map(|r| kernel.named_gb_per_s / r);
            report.kernel = Some(kernel);
        }
        Ok(report)
    }

    fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Seconds of `encode`'s passes, by timestamps (the passes' writes) or the host clock.
    fn timed(
        &self,
        timer: Option<&KernelTimer>,
        encode: impl FnOnce(&mut wgpu::CommandEncoder, Option<&KernelTimer>),
    ) -> Result<f64, EvalError> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encode(&mut encoder, timer);
        if let Some(t) = timer {
            t.resolve(&mut encoder);
        }
        let clock = Instant::now();
        let submission = self.queue.submit([encoder.finish()]);
        match timer {
            Some(t) => {
                let ticks: Vec<u64> = read_back(&self.poller, &t.read, 16, submission)?;
                Ok(t.seconds(&ticks))
            }
            None => {
                self.poller.wait(submission)?;
                Ok(clock.elapsed().as_secs_f64())
            }
        }
    }

    fn timer(&self) -> Option<KernelTimer> {
        self.timestamp_period.map(|p| {
            KernelTimer::new(self, p, &mut |label, size, usage| {
                self.buffer(label, size, usage)
            })
        })
    }

    /// GB/s of the read kernel over `bytes` in buffers of at most one binding, median of 5.
    fn probe_read(&self, bytes: u64) -> Result<f64, EvalError> {
        let chunk = self.max_binding_bytes().min(1 << 30) / 16 * 16;
        let pieces = bytes.div_ceil(chunk) as usize;
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("probe_read"),
                source: wgpu::ShaderSource::Wgsl(super::kernel_source("probe_read", 1).into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("probe_read"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        let groups = self.task_grid(8192).0;
        let sums = self.buffer(
            "probe_sums",
            u64::from(groups) * 256 * 4,
            wgpu::BufferUsages::STORAGE,
        );
        let counts = self.buffer(
            "probe_counts",
            16,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        self.queue.write_buffer(
            &counts,
            0,
            bytemuck::cast_slice(&[(chunk / 16) as u32, 0, 0, 0]),
        );
        let data: Vec<wgpu::Buffer> = (0..pieces)
            .map(|_| self.buffer("probe_data", chunk, wgpu::BufferUsages::STORAGE))
            .collect();
        let binds: Vec<wgpu::BindGroup> = data
            .iter()
            .map(|d| {
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: d.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: sums.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: counts.as_entire_binding(),
                        },
                    ],
                })
            })
            .collect();
        let timer = self.timer();
        let mut seconds = Vec::new();
        for _ in 0..5 {
            seconds.push(self.timed(timer.as_ref(), |encoder, timer| {
                for (k, bind) in binds.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: timer.and_then(|t| t.writes(k, binds.len())),
                    });
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, bind, &[]);
                    pass.dispatch_workgroups(groups, 1, 1);
                }
            })?);
        }
        Ok((pieces as u64 * chunk) as f64 / median(seconds) / 1e9)
    }

    /// GB/s of staged uploads and of copy-and-map read-backs, `bytes` each way, in
    /// pieces of at most 256 MiB (host clock: these are what training's transfers see).
    fn probe_transfers(&self, bytes: u64) -> Result<(f64, f64), EvalError> {
        let piece = self.max_binding_bytes().min(256 << 20) / 16 * 16;
        let pieces = bytes.div_ceil(piece);
        let device_buffer = self.buffer(
            "probe_device",
            piece,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        );
        let host = vec![1u8; piece as usize];
        let mut timings = GpuTimings::default();
        let mut staging = Staging::new(&self.device, "probe_upload", piece, &mut timings);
        let clock = Instant::now();
        for _ in 0..pieces {
            staging.fill(&self.device, &self.poller, &[&host], &mut timings)?;
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(staging.buffer(), 0, &device_buffer, 0, piece);
            staging.remap_on_submit(&encoder);
            let submission = self.queue.submit([encoder.finish()]);
            staging.submitted(&submission);
            self.poller.wait(submission)?;
        }
        let up = (pieces * piece) as f64 / clock.elapsed().as_secs_f64() / 1e9;
        let staging = self.buffer(
            "probe_staging",
            piece,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let clock = Instant::now();
        for _ in 0..pieces {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&device_buffer, 0, &staging, 0, piece);
            let submission = self.queue.submit([encoder.finish()]);
            let _: Vec<u32> = read_back(&self.poller, &staging, piece, submission)?;
        }
        let down = (pieces * piece) as f64 / clock.elapsed().as_secs_f64() / 1e9;
        Ok((up, down))
    }

    /// Median microseconds from submitting a 4-byte copy to reading it mapped.
    fn probe_round_trips(&self, n: usize) -> Result<f64, EvalError> {
        let source = self.buffer("probe_word", 4, wgpu::BufferUsages::COPY_SRC);
        let staging = self.buffer(
            "probe_word_read",
            4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let clock = Instant::now();
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&source, 0, &staging, 0, 4);
            let submission = self.queue.submit([encoder.finish()]);
            let _: Vec<u32> = read_back(&self.poller, &staging, 4, submission)?;
            times.push(clock.elapsed().as_secs_f64() * 1e6);
        }
        Ok(median(times))
    }

    /// `entity_value_gradient` over resident synthetic slabs, every entity running.
    fn probe_kernel(&self, o: &ProbeOptions) -> Result<KernelProbe, EvalError> {
        let (n, d) = (o.rows.max(1), o.features);
        let d4 = d.div_ceil(4);
        let per_entity_x = (n * d4 * 16) as u64;
        let limit = self.max_binding_bytes();
        let per_slab = ((limit / per_entity_x.max(1)).min(limit / (16 * n as u64)) as usize)
            .clamp(1, o.entities);
        let slabs = o.entities.div_ceil(per_slab);
        let backend = |e: super::GpuError| EvalError::Backend(e.to_string());
        let mut workspaces = Vec::with_capacity(slabs);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut out_floats = Vec::with_capacity(slabs);
        for s in 0..slabs {
            let entities = per_slab.min(o.entities - s * per_slab);
            let mut ws = GpuWorkspace::new(self);
            let layout = &mut ws.layout;
            let per_task = rows_per_task(d4 as u32) as usize;
            layout.task_ptr.push(0);
            for e in 0..entities {
                layout.entities.push(GpuEntity {
                    x_at: (e * n * d4) as u32,
                    row_at: (e * n) as u32,
                    rows: n as u32,
                    d4: d4 as u32,
                    d: d as u32,
                    _pad: [0; 3],
                });
                for start in (0..n).step_by(per_task) {
                    layout
                        .task_rows
                        .push((start as u32, (start + per_task).min(n) as u32));
                }
                layout.task_ptr.push(layout.task_rows.len());
            }
            layout.widest = d4 as u32;
            layout.x_len = entities * n * d4;
            layout.rows_len = entities * n;
            let tasks = layout.task_rows.len();
            let floats = tasks * (d + 2);
            ws.upload_part(floats, |layout, x, rows| {
                let x_values = (0..4 * layout.x_len).map(|_| next());
                x.into_chunks::<4>()
                    .0
                    .write_iter(x_values.map(f32::to_ne_bytes));
                let records = (0..layout.rows_len).flat_map(|_| {
                    let label = if next() > 0.0 { 1.0 } else { -1.0 };
                    [label, 1.0, 0.1 * next(), 0.0]
                });
                rows.into_chunks::<4>()
                    .0
                    .write_iter(records.map(f32::to_ne_bytes));
            })
            .map_err(backend)?;
            ws.tasks = (0..entities)
                .flat_map(|e| {
                    let (rows, task_ptr) = (&ws.layout.task_rows, &ws.layout.task_ptr);
                    rows[task_ptr[e]..task_ptr[e + 1]].iter().enumerate().map(
                        move |(k, &(b, en))| GpuTask {
                            entity: e as u32,
                            row_begin: b,
                            row_end: en,
                            theta_at: (e * (d + 1)) as u32,
                            out_at: ((task_ptr[e] + k) * (d + 2)) as u32,
                            ..Zeroable::zeroed()
                        },
                    )
                })
                .collect();
            ws.theta = (0..entities * (d + 1)).map(|_| 0.1 * next()).collect();
            out_floats.push(floats);
            workspaces.push(ws);
        }
        let wide = d4 > super::context::ENTITY_WORKGROUP as usize;
        let pipeline = &self.entity_kernels(Loss::Logistic, wide).value_gradient;
        let mut seconds = Vec::with_capacity(o.repeat.max(1));
        for _ in 0..o.repeat.max(1) {
            let mut total = 0.0;
            for (ws, &floats) in workspaces.iter_mut().zip(&out_floats) {
                let before = ws.timings;
                let clock = Instant::now();
                let pass = Pass {
                    pipeline,
                    tasks: ws.tasks.len() as u32,
                };
                ws.dispatch(Stage::ValueGradient, &[pass], floats)?;
                total += match self.has_timestamps() {
                    true => ws.timings.device_kernels - before.device_kernels,
                    false => clock.elapsed().as_secs_f64(),
                };
            }
            seconds.push(total);
        }
        let per_evaluation = median(seconds);
        let named = bytes_per_evaluation(n as u64, d as u64);
        Ok(KernelProbe {
            entities: o.entities,
            rows: n,
            features: d,
            slabs,
            bytes_per_entity_evaluation: named,
            seconds_per_evaluation_median: per_evaluation,
            entity_evaluations_per_s: o.entities as f64 / per_evaluation,
            named_gb_per_s: (named * o.entities as u64) as f64 / per_evaluation / 1e9,
            share_of_read_bandwidth: None,
        })
    }
}
