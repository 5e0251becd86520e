//! The dense entity-major layout of a [`TrainingBatch`] on the GPU: plain `#[repr(C)]`
//! records for the kernels of `shaders/` (`entity_common.wgsl` declares the same), kept
//! apart from the domain types.
//!
//! | buffer      | element       | length               | meaning                                   |
//! |-------------|---------------|----------------------|-------------------------------------------|
//! | `entities`  | [`GpuEntity`] | E                    | where an entity's rows are; n, ⌈d/4⌉, d    |
//! | `x`         | `[f32; 4]`    | Σₑ nₑ ⌈dₑ/4⌉         | features: row-major within an entity, entities one after another |
//! | `rows`      | `[f32; 4]`    | R                    | label, weight, offset, 0                  |
//! | `tasks`     | [`GpuTask`]   | tasks of a dispatch  | rows of one entity; where its θ and outputs are |
//! | `theta`     | f32           | per dispatch         | θ₀, θ₁…θ_d of each active entity, in task order |
//! | `out`       | f32           | per dispatch         | each task's sums                          |
//! | `curvature` | f32           | R                    | ℓ'' per row, for the full Hessian         |
//!
//! **Dense over each entity's own features.** Entity e's coefficients are the intercept and
//! the dₑ features its rows have (the projection of [`crate::train`]); its rows hold those dₑ
//! values in column order, zero where a row lacks one, padded with zeros to ⌈dₑ/4⌉ vec4s.
//! The intercept stays implicit (`m = o + θ₀ + x·θ`), so d = 32 is exactly 8 vec4s. A
//! sparse entity's zeros are stored and read: its bytes grow by the inverse of its density
//! over its own features. Every entity is packed so; the README gives the figures measured
//! on sparse data and why no CSR variant is kept beside it.
//!
//! **Tasks.** Per evaluation the host lists only the running entities, so a finished one
//! costs nothing. An entity of n rows is one task when n ≤ [`rows_per_task`] (512 rows at
//! d = 32), else several, whose sums the host adds in f64.
//!
//! Arrays that could be empty are padded to one element (bindings may not be empty); the
//! kernels take sizes from the task list, never from array lengths.

use crate::objective::TrainingBatch;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuEntity {
    /// First vec4 of the entity's rows in `x`.
    pub x_at: u32,
    /// First row of the entity in `rows`.
    pub row_at: u32,
    pub rows: u32,
    /// vec4s per row, ⌈d/4⌉.
    pub d4: u32,
    /// Features (the intercept not counted).
    pub d: u32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuTask {
    pub entity: u32,
    /// Rows `row_begin..row_end` of the entity.
    pub row_begin: u32,
    pub row_end: u32,
    /// θ₀ of the entity in `theta`.
    pub theta_at: u32,
    /// The task's first output in `out`.
    pub out_at: u32,
    pub _pad: [u32; 3],
}

/// One entity's scalar L-BFGS state for the device solver (`Lbfgs` of
/// `shaders/lbfgs_step.wgsl`, which says what each field is). The host writes the places
/// (`coef_at` … `n`), `gamma = 1` and `can_finish`; the kernel the rest.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuLbfgs {
    pub coef_at: u32,
    pub state_at: u32,
    pub prior_at: u32,
    pub n: u32,
    pub origin_value: f32,
    pub origin_slope: f32,
    pub noise: f32,
    pub first_step: f32,
    pub lo_alpha: f32,
    pub lo_value: f32,
    pub lo_slope: f32,
    pub pending: f32,
    pub hi_alpha: f32,
    pub hi_value: f32,
    pub hi_slope: f32,
    pub has_hi: u32,
    pub search_evaluations: u32,
    pub head: u32,
    pub len: u32,
    pub gamma: f32,
    pub f: f32,
    pub steepest: u32,
    pub steps_within_noise: u32,
    pub can_finish: u32,
    pub initial_loss: f32,
    pub final_loss: f32,
    pub iterations: u32,
    pub evaluations: u32,
    pub gradient_norm: f32,
    pub reason: u32,
    pub done: u32,
    pub wants_finish: u32,
}

/// An entity listed for a round of the device solver: its tasks' outputs are `tasks`
/// runs of d + 2 values from `out_at`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuSlot {
    pub entity: u32,
    pub out_at: u32,
    pub tasks: u32,
    pub _pad: u32,
}

/// The settings of a round of the device solver (`Params` of `shaders/lbfgs_step.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct GpuLbfgsParams {
    /// Listed entities.
    pub count: u32,
    /// 1 in the first round, whose evaluation is of the starting point.
    pub start: u32,
    pub memory: u32,
    pub max_iterations: u32,
    pub max_line_search: u32,
    /// 0: no prior term, 1: diagonal Q, 2: full Q.
    pub prior: u32,
    /// 1 when `factr · ε` is below the evaluator's resolution (the noise stopping rule).
    pub noisy: u32,
    pub _pad: u32,
    pub pgtol: f32,
    pub factr_eps: f32,
    pub resolution: f32,
    pub loss_precision: f32,
}

/// Rows per task for rows of `d4` vec4s: about 64 KiB of `x`, at least 64 and at most 4,096
/// rows, so that an entity with very many rows is spread over many workgroups.
pub fn rows_per_task(d4: u32) -> u32 {
    (65_536 / (16 * d4.max(1))).clamp(64, 4_096)
}

/// Bytes the kernels name in one evaluation of an entity of `rows` rows and `d` features:
/// its tasks and its record, each row's vec4s and its (label, weight, offset), θ in, and
/// each task's outputs (loss, ∂θ₀, ∂θ₁…∂θ_d).
pub fn bytes_per_evaluation(rows: u64, d: u64) -> u64 {
    let d4 = d.div_ceil(4);
    let tasks = rows.div_ceil(u64::from(rows_per_task(d4 as u32))).max(1);
    let record = std::mem::size_of::<GpuEntity>() as u64;
    let task = std::mem::size_of::<GpuTask>() as u64;
    record + tasks * (task + 4 * (d + 2)) + rows * 16 * (d4 + 1) + 4 * (d + 1)
}

/// Where a batch's static arrays go: the entity records and task ranges on the host,
/// refilled part after part without new allocations once they have held the largest; the
/// features `x` and the `rows` records are written straight into the upload staging by
/// [`Self::write_x`] and [`Self::write_rows`].
#[derive(Debug, Default)]
pub struct DenseLayout {
    pub entities: Vec<GpuEntity>,
    /// Entity e's tasks are `task_rows[task_ptr[e]..task_ptr[e + 1]]`.
    pub task_ptr: Vec<usize>,
    /// Row ranges of the tasks.
    pub task_rows: Vec<(u32, u32)>,
    /// The largest ⌈d/4⌉ of the batch.
    pub widest: u32,
    /// vec4s of `x`, and of `rows` (one per record).
    pub x_len: usize,
    pub rows_len: usize,
}

fn u32_of(v: usize) -> u32 {
    u32::try_from(v).expect("parts are cut to fit u32 indices")
}

/// Bytes of one vec4.
const VEC4: usize = 16;

impl DenseLayout {
    /// Lay out `batch`: each entity's place in `x` and `rows`, and its tasks.
    pub fn plan(&mut self, batch: &TrainingBatch) {
        self.entities.clear();
        self.task_ptr.clear();
        self.task_rows.clear();
        self.task_ptr.push(0);
        self.widest = 0;
        let mut x_at = 0usize;
        for e in 0..batch.num_entities() {
            let rows = batch.row_ptr[e + 1] - batch.row_ptr[e];
            let d = batch.coef_ptr[e + 1] - batch.coef_ptr[e] - 1;
            let d4 = u32_of(d.div_ceil(4));
            self.entities.push(GpuEntity {
                x_at: u32_of(x_at),
                row_at: u32_of(batch.row_ptr[e]),
                rows: u32_of(rows),
                d4,
                d: u32_of(d),
                _pad: [0; 3],
            });
            let per_task = rows_per_task(d4) as usize;
            let mut start = 0;
            loop {
                let end = (start + per_task).min(rows);
                self.task_rows.push((u32_of(start), u32_of(end)));
                start = end;
                if start >= rows {
                    break;
                }
            }
            self.task_ptr.push(self.task_rows.len());
            self.widest = self.widest.max(d4);
            x_at += rows * d4 as usize;
        }
        self.x_len = x_at;
        self.rows_len = batch.num_rows();
    }

    /// Write the planned batch's features into `out` (`x_len` vec4s) in one pass, each
    /// row converted in a small buffer and written whole (the staging may be
    /// write-combined memory, which wants contiguous writes). One thread: the other
    /// threads pack and solve parts of their own meanwhile.
    pub fn write_x(&self, batch: &TrainingBatch, mut out: wgpu::WriteOnly<'_, [u8]>) {
        let mut row = Vec::new();
        let mut at = 0;
        for g in &self.entities {
            let (d, d4) = (g.d as usize, g.d4 as usize);
            row.clear();
            row.resize(4 * d4, 0f32);
            for r in 0..g.rows as usize {
                let i = g.row_at as usize + r;
                let k = batch.nz_ptr[i]..batch.nz_ptr[i + 1];
                let (cols, vals) = (&batch.cols[k.clone()], &batch.vals[k]);
                // Columns ascend strictly from 1, so a row with d of them has them all.
                if cols.len() == d {
                    for (out, &v) in row.iter_mut().zip(vals) {
                        *out = v as f32;
                    }
                } else {
                    row.fill(0.0);
                    for (&c, &v) in cols.iter().zip(vals) {
                        row[c as usize - 1] = v as f32;
                    }
                }
                out.slice(at..at + d4 * VEC4)
                    .copy_from_slice(bytemuck::cast_slice(&row));
                at += d4 * VEC4;
            }
        }
    }

    /// Write each record's (label, weight, offset, 0) into `out` (`rows_len` vec4s).
    pub fn write_rows(&self, batch: &TrainingBatch, out: wgpu::WriteOnly<'_, [u8]>) {
        let records = (0..batch.num_rows()).map(|i| {
            [
                batch.labels[i] as f32,
                batch.weights[i] as f32,
                batch.offsets[i] as f32,
                0.0,
            ]
        });
        out.into_chunks::<VEC4>()
            .0
            .write_iter(records.map(bytemuck::cast::<[f32; 4], [u8; VEC4]>));
    }

    /// [`Self::plan`], then `x` and `rows` into host vectors (for tests and benchmarks;
    /// training writes them into the staging).
    pub fn pack(&mut self, batch: &TrainingBatch) -> (Vec<[f32; 4]>, Vec<[f32; 4]>) {
        self.plan(batch);
        let mut x = vec![[0f32; 4]; self.x_len];
        let mut rows = vec![[0f32; 4]; self.rows_len];
        self.write_x(
            batch,
            wgpu::WriteOnly::from_mut(bytemuck::cast_slice_mut(&mut x)),
        );
        self.write_rows(
            batch,
            wgpu::WriteOnly::from_mut(bytemuck::cast_slice_mut(&mut rows)),
        );
        (x, rows)
    }

    /// Bytes the kernels name in one evaluation of entity `e` ([`bytes_per_evaluation`]).
    pub fn bytes_per_evaluation(&self, e: usize) -> u64 {
        let g = &self.entities[e];
        bytes_per_evaluation(u64::from(g.rows), u64::from(g.d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Loss, PrecisionShape};

    #[test]
    fn rows_are_dense_over_the_entitys_features_and_padded_to_vec4s() {
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        b.push_row(1.0, 1.0, 0.0, [1], &[2.0]);
        b.push_row(-1.0, 0.5, 0.25, [2, 5], &[3.0, 4.0]);
        b.finish_entity(&[1.0; 6], &[0.0; 6], &[]);
        b.push_row(1.0, 1.0, -1.0, [], &[]);
        b.finish_entity(&[1.0], &[0.0], &[]);
        let mut p = DenseLayout::default();
        let (x, rows) = p.pack(&b.build());
        // Entity 0: 5 features in 2 vec4s per row; entity 1: the intercept alone.
        assert_eq!(
            x,
            vec![
                [2.0, 0.0, 0.0, 0.0],
                [0.0; 4],
                [0.0, 3.0, 0.0, 0.0],
                [4.0, 0.0, 0.0, 0.0]
            ]
        );
        let (e0, e1) = (p.entities[0], p.entities[1]);
        assert_eq!((e0.x_at, e0.row_at, e0.rows, e0.d4, e0.d), (0, 0, 2, 2, 5));
        assert_eq!((e1.x_at, e1.row_at, e1.rows, e1.d4, e1.d), (4, 2, 1, 0, 0));
        assert_eq!(rows[1], [-1.0, 0.5, 0.25, 0.0]);
        assert_eq!(p.task_rows, vec![(0, 2), (0, 1)]);
        assert_eq!(p.widest, 2);
    }

    #[test]
    fn an_entity_with_very_many_rows_is_cut_into_tasks() {
        let mut b = TrainingBatch::builder(Loss::Squared, PrecisionShape::None);
        for i in 0..1_100 {
            b.push_row(i as f64, 1.0, 0.0, [1, 2, 3, 4, 5, 6, 7, 8], &[1.0; 8]);
        }
        b.finish_entity(&[1.0; 9], &[0.0; 9], &[]);
        let mut p = DenseLayout::default();
        p.plan(&b.build());
        // Two vec4s per row: 2,048 rows per task would be 64 KiB; 1,100 rows are one task.
        assert_eq!(rows_per_task(2), 2_048);
        assert_eq!(p.task_rows, vec![(0, 1_100)]);
        assert_eq!(rows_per_task(8), 512);
        assert_eq!(rows_per_task(64), 64);
    }

    #[test]
    fn an_evaluation_of_64_rows_of_32_features_names_under_9_6_kb() {
        // 32 B task + 32 B record + 64 × (8 vec4s + 1 row record) × 16 B + θ + outputs.
        assert_eq!(
            bytes_per_evaluation(64, 32),
            32 + 32 + 64 * 9 * 16 + 4 * 33 + 4 * 34
        );
        assert!(bytes_per_evaluation(64, 32) <= 9_600);
    }
}
