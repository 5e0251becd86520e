//! The lockstep L-BFGS of [`crate::solver`] with its step on the device (GPU-DESIGN §3.6,
//! design (b1)): the host only sequences rounds.
//!
//! A *round* is one submission of two passes over the *listed* entities: the
//! `entity_value_gradient` kernel sums each task's data terms at the entity's trial point,
//! then `lbfgs_step` (`shaders/lbfgs_step.wgsl`) adds the prior terms and takes the
//! evaluation as [`minimize`](crate::solver::minimize) does: the weak-Wolfe line search's
//! decision, the acceptance, the stopping rules, the two-loop direction, and the next trial
//! point written in place into θ on the device. Every vector of an entity (x, g, p, the
//! gradient at the best point of the line search, the m correction pairs) stays on the
//! device in f32; a round reads back 4 bytes, the number of entities still running. When
//! at most [`RELIST_SHARE`] of the listed entities still run, one more read-back fetches
//! their numbers and the task list is cut to them, so a finished entity costs at most a
//! few evaluations it ignores.
//!
//! At the end the host reads each entity's x and report once. An entity that stopped for
//! a reason other than its iteration limit is marked `wants_finish` when the caller will
//! go on with it in f64 (the f64 finish of [`super::super::backend`]).

use super::layout::{GpuLbfgs, GpuLbfgsParams, GpuSlot, GpuTask};
use super::workspace::{copy_piece, encode_pass, submit, Slot};
use super::{GpuError, GpuEvaluator, GpuWorkspace, Stage};
use crate::eval::EvalError;
use crate::objective::{PriorPrecision, TrainingBatch};
use crate::solver::{CorrectionPairs, LbfgsOptions, SolveReport, StopReason};
use bytemuck::Zeroable;
use std::time::Instant;

/// Correction pairs the device keeps at most (`MAX_MEMORY` of the kernel).
pub const MAX_DEVICE_MEMORY: usize = 32;

/// Re-list the running entities when at most this share of the listed ones still run.
const RELIST_SHARE: f64 = 0.75;

/// The order of the kernel's stop reasons.
const REASONS: [StopReason; 6] = [
    StopReason::GradientTolerance,
    StopReason::RelativeReduction,
    StopReason::MaxIterations,
    StopReason::LineSearchFailed,
    StopReason::LineSearchFailedKeptPrior,
    StopReason::NonFiniteStart,
];

/// What the device solver returns for a batch.
#[derive(Debug, Clone)]
pub struct DeviceSolve {
    /// Each entity's last point, laid out by `coef_ptr` (the start for entities not solved).
    pub theta: Vec<f64>,
    /// Each entity's report (`None` for entities not solved).
    pub reports: Vec<Option<SolveReport>>,
    /// Entities that stopped for a reason the f64 finish should check.
    pub wants_finish: Vec<bool>,
    /// Their correction pairs `(s, y)`, oldest first, for the f64 finish to keep.
    pub pairs: Vec<Option<CorrectionPairs>>,
    /// Rounds submitted.
    pub rounds: usize,
}

/// The device solver's buffers in a workspace, grown like the workspace's own.
pub(super) struct LbfgsBuffers {
    slots: wgpu::Buffer,
    prior: wgpu::Buffer,
    state: wgpu::Buffer,
    records: wgpu::Buffer,
    running: wgpu::Buffer,
    params: wgpu::Buffer,
    running_read: wgpu::Buffer,
    records_read: wgpu::Buffer,
    theta_read: wgpu::Buffer,
    state_read: wgpu::Buffer,
    /// The kernel's bind group, made again for each new list (a buffer it binds may
    /// have been replaced).
    bind: Option<wgpu::BindGroup>,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE;
const DST: wgpu::BufferUsages = wgpu::BufferUsages::COPY_DST;
const SRC: wgpu::BufferUsages = wgpu::BufferUsages::COPY_SRC;
const READ: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ;

impl LbfgsBuffers {
    fn new(ws: &mut GpuWorkspace) -> Self {
        let mut make = |label, usage| ws.create(label, 256, usage);
        LbfgsBuffers {
            slots: make("lbfgs_slots", STORAGE | DST),
            prior: make("lbfgs_prior", STORAGE | DST),
            state: make("lbfgs_state", STORAGE | SRC),
            records: make("lbfgs_records", STORAGE | DST | SRC),
            running: make("lbfgs_running", STORAGE | DST | SRC),
            params: make("lbfgs_params", wgpu::BufferUsages::UNIFORM | DST),
            running_read: make("lbfgs_running_read", READ | DST),
            records_read: make("lbfgs_records_read", READ | DST),
            theta_read: make("lbfgs_theta_read", READ | DST),
            state_read: make("lbfgs_state_read", READ | DST),
            bind: None,
        }
    }
}

/// Make sure `buffer` (of `usage`) holds `bytes`, within the binding limit: replaced by one
/// with half again as much room when it is too small.
fn grow(
    ws: &mut GpuWorkspace,
    buffer: &mut wgpu::Buffer,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> Result<(), GpuError> {
    let limit = ws.ctx.max_binding_bytes();
    if bytes > limit {
        return Err(GpuError::TooLarge {
            needed: bytes,
            limit,
        });
    }
    if buffer.size() < bytes {
        let size = (bytes + bytes / 2)
            .clamp(256, limit.max(bytes))
            .next_multiple_of(4);
        *buffer = ws.create("lbfgs", size, usage);
    }
    Ok(())
}

/// f32 values of the device solver's state per entity of `n` coefficients: x, g, p, the
/// line search's best gradient and the trial gradient, the m pairs, and ρ.
fn state_len(n: usize, m: usize) -> usize {
    (5 + 2 * m) * n + m
}

/// The host's part of each entity's record, and the prior terms (penalty, mean, then the
/// diagonal or the full block of Q) as the kernel reads them.
fn records_and_prior(
    batch: &TrainingBatch,
    settled: &[bool],
    memory: usize,
    can_finish: bool,
) -> (Vec<GpuLbfgs>, Vec<f32>, usize) {
    let (mut records, mut prior, mut state) = (Vec::new(), Vec::new(), 0usize);
    for e in 0..batch.num_entities() {
        let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        let n = r.len();
        records.push(GpuLbfgs {
            coef_at: r.start as u32,
            state_at: state as u32,
            prior_at: prior.len() as u32,
            n: n as u32,
            gamma: 1.0,
            can_finish: u32::from(can_finish),
            done: u32::from(settled[e]),
            ..Zeroable::zeroed()
        });
        state += state_len(n, memory);
        let q: &[f64] = match &batch.prior_precision {
            PriorPrecision::None => &[],
            PriorPrecision::Diagonal(q) => &q[r.clone()],
            PriorPrecision::Full { block_ptr, values } => {
                &values[block_ptr[e]..block_ptr[e] + n * n]
            }
        };
        let terms = [&batch.penalty[r.clone()], &batch.prior_mean[r], q];
        prior.extend(terms.iter().flat_map(|t| t.iter()).map(|&v| v as f32));
    }
    (records, prior, state)
}

impl GpuEvaluator<'_, '_> {
    /// Minimise every entity of the batch that is not `settled` from `start` (laid out by
    /// `coef_ptr`) with the step on the device, as the module doc says. `can_finish`: the
    /// caller goes on in f64 with the entities that stop by a convergence test or a failed
    /// line search. Fails on a device error or when the state does not fit a binding; the
    /// caller then solves the batch on the host.
    pub fn minimize_on_device(
        &mut self,
        start: &[f64],
        settled: &[bool],
        options: &LbfgsOptions,
        can_finish: bool,
    ) -> Result<DeviceSolve, EvalError> {
        let batch = self.batch;
        let m = options.memory;
        if m > MAX_DEVICE_MEMORY {
            return Err(EvalError::Backend(format!(
                "the device solver keeps at most {MAX_DEVICE_MEMORY} correction pairs, not {m}"
            )));
        }
        let (records, prior, state_floats) = records_and_prior(batch, settled, m, can_finish);
        self.state_floats = state_floats;
        let precision = self.loss_precision_f64();
        let resolution = 10.0 * precision;
        let factr_eps = options.factr * f64::EPSILON;
        let mut params = GpuLbfgsParams {
            count: 0,
            start: 1,
            memory: m as u32,
            max_iterations: options.max_iterations.min(u32::MAX as usize) as u32,
            max_line_search: options.max_line_search.min(u32::MAX as usize) as u32,
            prior: match batch.prior_precision {
                PriorPrecision::None => 0,
                PriorPrecision::Diagonal(_) => 1,
                PriorPrecision::Full { .. } => 2,
            },
            noisy: u32::from(factr_eps < resolution),
            _pad: 0,
            pgtol: options.pgtol as f32,
            factr_eps: factr_eps as f32,
            resolution: resolution as f32,
            loss_precision: precision as f32,
        };
        let entities = batch.num_entities();
        let coefs = batch.num_coefficients();
        self.reserve_device(entities, coefs, prior.len(), state_floats)
            .map_err(|e| EvalError::Backend(e.to_string()))?;
        let theta0: Vec<f32> = start.iter().map(|&v| v as f32).collect();
        let mut listed: Vec<usize> = (0..entities).filter(|&e| !settled[e]).collect();
        let mut rounds = 0;
        let mut first = Some((theta0, records, prior));
        while !listed.is_empty() {
            let (slots, out_floats) = self.list_device(&listed);
            params.count = slots.len() as u32;
            let mut running = self.device_round(&params, &slots, out_floats, first.take())?;
            rounds += 1;
            params.start = 0;
            loop {
                if running == 0 {
                    listed.clear();
                    break;
                }
                if running as f64 <= RELIST_SHARE * listed.len() as f64 {
                    listed = self.running_entities(running)?;
                    break;
                }
                running = self.device_round(&params, &[], 0, None)?;
                rounds += 1;
            }
        }
        self.read_results(start, settled, m, rounds)
    }

    /// The evaluator's relative loss precision (as [`crate::eval::BatchEvaluator`] has it).
    fn loss_precision_f64(&self) -> f64 {
        crate::eval::BatchEvaluator::loss_precision(self)
    }

    /// Room in the workspace for a batch of `entities` with `coefs` coefficients.
    fn reserve_device(
        &mut self,
        entities: usize,
        coefs: usize,
        prior: usize,
        state: usize,
    ) -> Result<(), GpuError> {
        let ws = &mut *self.ws;
        let mut b = match ws.lbfgs.take() {
            Some(b) => b,
            None => LbfgsBuffers::new(ws),
        };
        let record = std::mem::size_of::<GpuLbfgs>() as u64;
        let (e, c) = (entities as u64, coefs as u64);
        let grown = [
            grow(ws, &mut b.slots, 16 * e, STORAGE | DST),
            grow(ws, &mut b.prior, 4 * prior as u64, STORAGE | DST),
            grow(ws, &mut b.state, 4 * state as u64, STORAGE | SRC),
            grow(ws, &mut b.records, record * e, STORAGE | DST | SRC),
            grow(ws, &mut b.running, 4 * (e + 1), STORAGE | DST | SRC),
            grow(ws, &mut b.params, 48, wgpu::BufferUsages::UNIFORM | DST),
            grow(ws, &mut b.running_read, 4 * (e + 1), READ | DST),
            grow(ws, &mut b.records_read, record * e, READ | DST),
            grow(ws, &mut b.theta_read, 4 * c, READ | DST),
            grow(ws, &mut b.state_read, 4 * state as u64, READ | DST),
        ];
        ws.lbfgs = Some(b);
        grown.into_iter().collect::<Result<(), _>>()?;
        ws.reserve(Slot::Theta, 4 * c)
    }

    /// List the tasks of `entities` in the workspace (θ in place at `coef_ptr`), and one
    /// slot per entity. Returns the slots and the outputs in all.
    fn list_device(&mut self, entities: &[usize]) -> (Vec<GpuSlot>, usize) {
        let ws = &mut *self.ws;
        ws.tasks.clear();
        let mut slots = Vec::with_capacity(entities.len());
        let mut out_at = 0;
        for &e in entities {
            let width = ws.layout.entities[e].d as usize + 2;
            let ranges = &ws.layout.task_rows[ws.layout.task_ptr[e]..ws.layout.task_ptr[e + 1]];
            slots.push(GpuSlot {
                entity: e as u32,
                out_at: out_at as u32,
                tasks: ranges.len() as u32,
                _pad: 0,
            });
            for &(row_begin, row_end) in ranges {
                ws.tasks.push(GpuTask {
                    entity: e as u32,
                    row_begin,
                    row_end,
                    theta_at: self.batch.coef_ptr[e] as u32,
                    out_at: out_at as u32,
                    ..Zeroable::zeroed()
                });
                out_at += width;
            }
        }
        (slots, out_at)
    }

    /// One round over the listed entities; with `slots` (a new list) the task list and the
    /// slots are uploaded too, with `first` θ, the records and the prior. Returns how many
    /// entities still run.
    fn device_round(
        &mut self,
        params: &GpuLbfgsParams,
        slots: &[GpuSlot],
        out_floats: usize,
        first: Option<(Vec<f32>, Vec<GpuLbfgs>, Vec<f32>)>,
    ) -> Result<u32, EvalError> {
        let clock = Instant::now();
        let relisted = !slots.is_empty();
        let tasks = self.ws.tasks.len() as u32;
        let mut pieces: Vec<&[u8]> = vec![bytemuck::bytes_of(params), bytemuck::cast_slice(slots)];
        if let Some((theta, records, prior)) = &first {
            pieces.extend([
                bytemuck::cast_slice(theta),
                bytemuck::cast_slice(records),
                bytemuck::cast_slice(prior),
            ]);
        }
        let sizes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        let (at, task_upload) =
            self.ws
                .fill_round(&pieces, relisted.then_some(tasks), out_floats)?;
        let listed: Vec<usize> = self.ws.tasks.iter().map(|t| t.entity as usize).collect();
        if relisted || first.is_some() {
            // A bind group per list: its buffers may have been replaced.
            self.ws.bind = None;
        }
        let entity_bind = self.ws.entity_bind_group();
        let ws = &mut *self.ws;
        let mut b = ws.lbfgs.take().expect("reserved");
        if relisted || first.is_some() || b.bind.is_none() {
            b.bind = Some(lbfgs_bind_group(ws, &b));
        }
        ws.lbfgs = Some(b);
        let b = ws.lbfgs.as_ref().expect("reserved");
        let lbfgs_bind = b.bind.as_ref().expect("made");
        let timer = ws.timer.as_ref();
        let (ctx, buffers, counts) = (ws.ctx, &ws.buffers, &ws.counts);
        let kernels = ctx.entity_kernels(self.batch.loss, self.wide);
        let task_grid = ctx.task_grid(tasks);
        let slot_grid = ctx.task_grid(params.count);
        let fault = ctx.take_fault();
        let (read, seconds) = submit(
            ctx,
            timer,
            &mut ws.round_staging,
            &mut ws.timings,
            clock,
            |encoder, staging| {
                if let Some(upload) = &task_upload {
                    upload.copy(encoder, staging, buffers, counts);
                }
                copy_piece(encoder, staging, at[0], &b.params, sizes[0]);
                copy_piece(encoder, staging, at[1], &b.slots, sizes[1]);
                if first.is_some() {
                    let theta = &buffers[Slot::Theta as usize];
                    copy_piece(encoder, staging, at[2], theta, sizes[2]);
                    copy_piece(encoder, staging, at[3], &b.records, sizes[3]);
                    copy_piece(encoder, staging, at[4], &b.prior, sizes[4]);
                }
                encoder.clear_buffer(&b.running, 0, Some(4));
                if fault {
                    // A test's injected fault: a copy past the end, which validation rejects.
                    encoder.copy_buffer_to_buffer(&b.running, 0, &b.running_read, 0, 1 << 40);
                }
                let vg = &kernels.value_gradient;
                encode_pass(encoder, timer, (0, 2), vg, &entity_bind, task_grid);
                encode_pass(
                    encoder,
                    timer,
                    (1, 2),
                    &ctx.lbfgs_step,
                    lbfgs_bind,
                    slot_grid,
                );
                encoder.copy_buffer_to_buffer(&b.running, 0, &b.running_read, 0, 4);
            },
            &[(&b.running_read, 4)],
        )?;
        ws.bind = Some(entity_bind);
        if let Some(seconds) = seconds {
            ws.timings.device_stages[Stage::DeviceRound as usize] += seconds;
        }
        ws.timings.bytes_down += 4;
        ws.timings.dispatches += 1;
        let mut distinct = listed;
        distinct.dedup();
        self.count(&distinct);
        Ok(u32::from_le_bytes(
            read[0][..4].try_into().expect("4 bytes"),
        ))
    }

    /// The numbers of the `running` entities the last round left, ascending.
    fn running_entities(&mut self, running: u32) -> Result<Vec<usize>, EvalError> {
        let bytes = 4 * (u64::from(running) + 1);
        let read = self.copy_out(&[Copy::Running(bytes)])?;
        let mut list: Vec<usize> = bytemuck::pod_collect_to_vec::<u8, u32>(&read[0])[1..]
            .iter()
            .map(|&e| e as usize)
            .collect();
        list.sort_unstable();
        Ok(list)
    }

    /// One submission that copies device buffers out and reads them.
    fn copy_out(&mut self, what: &[Copy]) -> Result<Vec<Vec<u8>>, EvalError> {
        let clock = Instant::now();
        let ws = &mut *self.ws;
        let b = ws.lbfgs.as_ref().expect("reserved");
        let theta = &ws.buffers[Slot::Theta as usize];
        let pairs: Vec<(&wgpu::Buffer, &wgpu::Buffer, u64)> = what
            .iter()
            .map(|c| match *c {
                Copy::Running(bytes) => (&b.running, &b.running_read, bytes),
                Copy::Records(bytes) => (&b.records, &b.records_read, bytes),
                Copy::Theta(bytes) => (theta, &b.theta_read, bytes),
                Copy::State(bytes) => (&b.state, &b.state_read, bytes),
            })
            .collect();
        let reads: Vec<(&wgpu::Buffer, u64)> = pairs.iter().map(|&(_, to, n)| (to, n)).collect();
        let (read, _) = submit(
            ws.ctx,
            None,
            &mut ws.round_staging,
            &mut ws.timings,
            clock,
            |encoder, _| {
                for &(from, to, bytes) in &pairs {
                    encoder.copy_buffer_to_buffer(from, 0, to, 0, bytes);
                }
            },
            &reads,
        )?;
        ws.timings.bytes_down += reads.iter().map(|r| r.1).sum::<u64>();
        Ok(read)
    }

    /// Read every entity's point and record once, at the end.
    fn read_results(
        &mut self,
        start: &[f64],
        settled: &[bool],
        m: usize,
        rounds: usize,
    ) -> Result<DeviceSolve, EvalError> {
        let entities = self.batch.num_entities();
        if settled.iter().all(|&s| s) {
            return Ok(DeviceSolve {
                theta: start.to_vec(),
                reports: vec![None; entities],
                wants_finish: vec![false; entities],
                pairs: vec![None; entities],
                rounds,
            });
        }
        let record = std::mem::size_of::<GpuLbfgs>() as u64;
        let records = self.copy_out(&[
            Copy::Records(record * entities as u64),
            Copy::Theta(4 * start.len() as u64),
        ])?;
        let [records, device_theta]: [Vec<u8>; 2] = records.try_into().expect("two reads");
        let records: Vec<GpuLbfgs> = bytemuck::pod_collect_to_vec(&records);
        let device_theta: Vec<f32> = bytemuck::pod_collect_to_vec(&device_theta);
        // The memories of the entities the f64 finish goes on with.
        let finishing = (0..entities).any(|e| !settled[e] && records[e].wants_finish != 0);
        let state = match finishing {
            true => {
                let bytes = 4 * self.state_floats as u64;
                self.copy_out(&[Copy::State(bytes)])?.remove(0)
            }
            false => Vec::new(),
        };
        let state: Vec<f32> = bytemuck::pod_collect_to_vec(&state);
        let mut theta = start.to_vec();
        let mut reports = vec![None; entities];
        let mut wants_finish = vec![false; entities];
        let mut pairs = vec![None; entities];
        for e in (0..entities).filter(|&e| !settled[e]) {
            let r = &records[e];
            let coefs = self.batch.coef_ptr[e]..self.batch.coef_ptr[e + 1];
            for (t, &v) in theta[coefs.clone()].iter_mut().zip(&device_theta[coefs]) {
                *t = f64::from(v);
            }
            let reason = REASONS.get(r.reason as usize).copied().ok_or_else(|| {
                EvalError::Backend(format!("the device solver gave stop reason {}", r.reason))
            })?;
            reports[e] = Some(SolveReport {
                initial_loss: f64::from(r.initial_loss),
                final_loss: f64::from(r.final_loss),
                iterations: r.iterations as usize,
                evaluations: r.evaluations as usize,
                gradient_norm: f64::from(r.gradient_norm),
                reason,
                finished_precisely: false,
            });
            wants_finish[e] = r.wants_finish != 0;
            if wants_finish[e] {
                pairs[e] = Some(memory_pairs(&state, r, m));
            }
        }
        Ok(DeviceSolve {
            theta,
            reports,
            wants_finish,
            pairs,
            rounds,
        })
    }
}

/// An entity's correction pairs in the device state, oldest first (the ring of the
/// kernel's `memory_push`).
fn memory_pairs(state: &[f32], r: &GpuLbfgs, m: usize) -> CorrectionPairs {
    let (n, at) = (r.n as usize, r.state_at as usize);
    let vector = |k: usize| {
        state[at + k * n..at + (k + 1) * n]
            .iter()
            .map(|&v| f64::from(v))
    };
    let mut values = Vec::with_capacity(2 * n * r.len as usize);
    for k in 0..r.len as usize {
        let slot = (r.head as usize + k) % m;
        values.extend(vector(5 + slot));
        values.extend(vector(5 + m + slot));
    }
    CorrectionPairs { n, values }
}

/// What [`GpuEvaluator::copy_out`] reads, and how many bytes of it.
enum Copy {
    Running(u64),
    Records(u64),
    Theta(u64),
    State(u64),
}

/// Bindings 0–7 of `shaders/lbfgs_step.wgsl`.
fn lbfgs_bind_group(ws: &GpuWorkspace, b: &LbfgsBuffers) -> wgpu::BindGroup {
    let buffers = [
        &b.slots,
        &ws.buffers[Slot::Out as usize],
        &ws.buffers[Slot::Theta as usize],
        &b.prior,
        &b.state,
        &b.records,
        &b.running,
        &b.params,
    ];
    let entries: Vec<_> = (0..)
        .zip(buffers)
        .map(|(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    ws.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("lbfgs_step"),
        layout: &ws.ctx.lbfgs_layout,
        entries: &entries,
    })
}
