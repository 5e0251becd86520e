//! [`GpuEvaluator`]: one batch in a thread's [`GpuWorkspace`], evaluated by one dispatch per
//! round over the running entities' tasks.

use super::context::{ENTITY_WORKGROUP, MAX_GPU_FEATURES};
use super::workspace::Pass;
use super::{GpuError, GpuTimings, GpuWorkspace, Stage};
use crate::eval::{entity_slices_mut, BatchEvaluator, EvalError};
use crate::objective::TrainingBatch;
use bytemuck::Zeroable;
use std::time::Instant;

/// One batch on the GPU, in the buffers of a thread's workspace.
pub struct GpuEvaluator<'w, 'c> {
    pub(super) ws: &'w mut GpuWorkspace<'c>,
    pub(super) batch: &'w TrainingBatch,
    /// Whether some row is wider than one vec4 per lane (the wide kernels).
    pub(super) wide: bool,
    /// The workspace's totals when this batch was set up.
    start: GpuTimings,
    /// f32 values of the device solver's state of this batch (`lbfgs.rs`).
    pub(super) state_floats: usize,
}

impl<'w, 'c> GpuEvaluator<'w, 'c> {
    /// Pack `batch` into the dense layout and upload it; fails when an array exceeds the
    /// device's binding limit or an entity has more features than the kernels take.
    pub fn new(ws: &'w mut GpuWorkspace<'c>, batch: &'w TrainingBatch) -> Result<Self, GpuError> {
        let start = ws.timings;
        let clock = Instant::now();
        ws.layout.plan(batch);
        let pack = clock.elapsed().as_secs_f64();
        let widest = ws.layout.widest as usize * 4;
        if widest > MAX_GPU_FEATURES {
            return Err(GpuError::TooWide {
                features: widest,
                limit: MAX_GPU_FEATURES,
            });
        }
        let layout = &ws.layout;
        let out_floats = (0..batch.num_entities())
            .map(|e| {
                (layout.task_ptr[e + 1] - layout.task_ptr[e]) * (layout.entities[e].d as usize + 2)
            })
            .sum();
        let wide = layout.widest > ENTITY_WORKGROUP;
        ws.upload_part(out_floats, |layout, x, rows| {
            layout.write_x(batch, x);
            layout.write_rows(batch, rows);
        })?;
        ws.timings.pack += pack;
        ws.timings.setup += pack;
        Ok(GpuEvaluator {
            ws,
            batch,
            wide,
            start,
            state_floats: 0,
        })
    }

    /// Time spent and device work asked for on this batch so far.
    pub fn timings(&self) -> GpuTimings {
        self.ws.timings.since(&self.start)
    }

    /// List the tasks of `entities` (each entity's row tasks, or with `whole` one task of
    /// all its rows) with `width(d)` outputs each, and θ of each entity as f32. Returns the
    /// outputs in all.
    fn list(
        &mut self,
        entities: &[usize],
        theta: &[f64],
        width: impl Fn(usize) -> usize,
        whole: bool,
    ) -> usize {
        let ws = &mut *self.ws;
        ws.tasks.clear();
        ws.theta.clear();
        let mut out_at = 0;
        for &e in entities {
            let g = ws.layout.entities[e];
            let theta_at = ws.theta.len() as u32;
            let r = self.batch.coef_ptr[e]..self.batch.coef_ptr[e + 1];
            ws.theta.extend(theta[r].iter().map(|&v| v as f32));
            let all_rows = [(0, g.rows)];
            let ranges = match whole {
                true => &all_rows[..],
                false => &ws.layout.task_rows[ws.layout.task_ptr[e]..ws.layout.task_ptr[e + 1]],
            };
            for &(row_begin, row_end) in ranges {
                ws.tasks.push(super::GpuTask {
                    entity: e as u32,
                    row_begin,
                    row_end,
                    theta_at,
                    out_at: out_at as u32,
                    ..Zeroable::zeroed()
                });
                out_at += width(g.d as usize);
            }
        }
        out_at
    }

    /// The tasks of entity `e` as listed (its row tasks).
    fn tasks_of(&self, e: usize) -> usize {
        self.ws.layout.task_ptr[e + 1] - self.ws.layout.task_ptr[e]
    }

    /// Count one dispatch over `entities` in the named-bytes counters; its slots are the
    /// entities the listed tasks belong to (each entity's tasks are listed together).
    pub(super) fn count(&mut self, entities: &[usize]) {
        let named: u64 = entities
            .iter()
            .map(|&e| self.ws.layout.bytes_per_evaluation(e))
            .sum();
        let tasks = &self.ws.tasks;
        let slots = tasks
            .iter()
            .enumerate()
            .filter(|&(k, t)| k == 0 || tasks[k - 1].entity != t.entity)
            .count();
        let t = &mut self.ws.timings;
        t.kernel_bytes += named as f64;
        t.entity_evaluations += entities.len();
        t.entity_slots += slots;
    }

    /// Add the outputs of entity `e`'s tasks, `sums.len()` of them each from `*at` on, into
    /// `sums` in f64, and move `*at` past them.
    fn add_task_outputs(&self, e: usize, out: &[f32], at: &mut usize, sums: &mut [f64]) {
        let width = sums.len();
        for _ in 0..self.tasks_of(e) {
            for (s, &o) in sums.iter_mut().zip(&out[*at..*at + width]) {
                *s += f64::from(o);
            }
            *at += width;
        }
    }

    /// `diag(Xᵀ diag(ℓ'') X)` of every entity at `theta` (laid out by `coef_ptr`), for the
    /// posterior precision. Mirrors [`EntityProblem::data_hessian_diagonal`].
    ///
    /// [`EntityProblem::data_hessian_diagonal`]: crate::objective::EntityProblem::data_hessian_diagonal
    pub fn data_hessian_diagonal(&mut self, theta: &[f64]) -> Result<Vec<f64>, EvalError> {
        let all: Vec<usize> = (0..self.batch.num_entities()).collect();
        let out_floats = self.list(&all, theta, |d| d + 1, false);
        let kernels = self.ws.ctx.entity_kernels(self.batch.loss, self.wide);
        let pass = Pass {
            pipeline: &kernels.hessian_diagonal,
            tasks: self.ws.tasks.len() as u32,
        };
        let out = self
            .ws
            .dispatch(Stage::HessianDiagonal, &[pass], out_floats)?;
        self.count(&all);
        let clock = Instant::now();
        let mut h = vec![0.0; self.batch.num_coefficients()];
        let mut at = 0;
        for e in all {
            let r = self.batch.coef_ptr[e]..self.batch.coef_ptr[e + 1];
            self.add_task_outputs(e, &out, &mut at, &mut h[r]);
        }
        self.ws.timings.readback += clock.elapsed().as_secs_f64();
        Ok(h)
    }

    /// Every entity's d×d data Hessian `Xᵀ diag(ℓ'') X` at `theta`, row-major blocks one
    /// after another, for `--hessian full`. Mirrors [`EntityProblem::data_hessian_full`].
    ///
    /// [`EntityProblem::data_hessian_full`]: crate::objective::EntityProblem::data_hessian_full
    pub fn data_hessian_full(&mut self, theta: &[f64]) -> Result<Vec<f64>, EvalError> {
        let all: Vec<usize> = (0..self.batch.num_entities()).collect();
        let kernels = self.ws.ctx.entity_kernels(self.batch.loss, self.wide);
        // ℓ'' per row at θ, then the blocks from it (the queue keeps them in order).
        let out_floats = self.list(&all, theta, |d| d + 1, false);
        let pass = Pass {
            pipeline: &kernels.row_curvature,
            tasks: self.ws.tasks.len() as u32,
        };
        self.ws.dispatch(Stage::HessianFull, &[pass], out_floats)?;
        self.count(&all);
        let out_floats = self.list(&all, theta, |d| (d + 1) * (d + 1), true);
        let pass = Pass {
            pipeline: &kernels.hessian_full,
            tasks: self.ws.tasks.len() as u32,
        };
        let out = self.ws.dispatch(Stage::HessianFull, &[pass], out_floats)?;
        Ok(out[..out_floats].iter().map(|&v| f64::from(v)).collect())
    }
}

impl BatchEvaluator for GpuEvaluator<'_, '_> {
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
        let clock = Instant::now();
        let out_floats = self.list(active, theta, |d| d + 2, false);
        self.ws.timings.upload += clock.elapsed().as_secs_f64();
        let kernels = self.ws.ctx.entity_kernels(self.batch.loss, self.wide);
        let pass = Pass {
            pipeline: &kernels.value_gradient,
            tasks: self.ws.tasks.len() as u32,
        };
        let out = self
            .ws
            .dispatch(Stage::ValueGradient, &[pass], out_floats)?;
        self.count(active);
        let clock = Instant::now();
        let coef_ptr = &self.batch.coef_ptr;
        let (mut at, mut sums) = (0, Vec::new());
        for (&e, g) in active.iter().zip(entity_slices_mut(coef_ptr, active, grad)) {
            // (loss, ∂θ₀, ∂θ₁…∂θ_d) summed over the entity's tasks.
            sums.clear();
            sums.resize(g.len() + 1, 0.0);
            self.add_task_outputs(e, &out, &mut at, &mut sums);
            g.copy_from_slice(&sums[1..]);
            let r = coef_ptr[e]..coef_ptr[e + 1];
            loss[e] = sums[0]
                + self
                    .batch
                    .entity(e)
                    .regularizer_value_and_gradient(&theta[r], g);
        }
        self.ws.timings.readback += clock.elapsed().as_secs_f64();
        Ok(())
    }
}
