//! The f64 CPU evaluator: [`EntityProblem::value_and_gradient`] for every active
//! entity, spread over threads with rayon.
//!
//! Entities are independent, so a thread takes several at a time. An entity with very many
//! rows (a fixed effect over all records, or one item with millions of rows) would then
//! hold one thread while the others wait; its rows are instead cut into fixed pieces of
//! [`SPLIT_ROWS`] evaluated in parallel, whose data terms are summed in piece order:
//! `F = Σ_pieces Σ_{i∈piece} w_i ℓ_i + R(θ)`, `∇F = Σ_pieces X_pᵀ ℓ'_p + ∇R(θ)`. The cut
//! depends on the row count only, so results do not depend on the number of threads.

use super::{entity_slices_mut, BatchEvaluator, EvalError};
use crate::objective::{EntityProblem, TrainingBatch};
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// Entities per rayon task; small problems are cheap, so tasks group several. At least as
/// many as a CPU training part holds (`train`'s 32), so that a part, already one task of a
/// parallel loop, is evaluated on its own thread without splitting.
const ENTITIES_PER_TASK: usize = 128;

/// Rows per piece when one entity's rows are split across threads; entities with fewer
/// than twice this many rows are evaluated whole.
pub const SPLIT_ROWS: usize = 8_192;

/// Whether an entity of `rows` rows is split into pieces.
fn is_split(rows: usize) -> bool {
    rows >= 2 * SPLIT_ROWS
}

/// The row pieces of a problem with `rows` rows.
fn pieces(rows: usize) -> Vec<std::ops::Range<usize>> {
    (0..rows)
        .step_by(SPLIT_ROWS)
        .map(|s| s..(s + SPLIT_ROWS).min(rows))
        .collect()
}

/// `Σ_pieces piece(rows)`, a scalar and a vector of length `d` each, the pieces evaluated
/// in parallel and summed in piece order.
fn sum_over_pieces(
    p: &EntityProblem,
    d: usize,
    piece: impl Fn(&EntityProblem, &mut [f64]) -> f64 + Sync,
) -> (f64, Vec<f64>) {
    let parts: Vec<(f64, Vec<f64>)> = pieces(p.num_rows())
        .into_par_iter()
        .map(|r| {
            let mut v = vec![0.0; d];
            let f = piece(&p.rows(r), &mut v);
            (f, v)
        })
        .collect();
    let (mut f, mut v) = (0.0, vec![0.0; d]);
    for (fp, vp) in parts {
        f += fp;
        v.iter_mut().zip(&vp).for_each(|(v, x)| *v += x);
    }
    (f, v)
}

/// [`EntityProblem::value_and_gradient`], with a large entity's rows split across threads.
pub fn value_and_gradient(p: &EntityProblem, theta: &[f64], grad: &mut [f64]) -> f64 {
    if !is_split(p.num_rows()) {
        return p.value_and_gradient(theta, grad);
    }
    let (f, g) = sum_over_pieces(p, theta.len(), |q, g| q.data_value_and_gradient(theta, g));
    grad.copy_from_slice(&g);
    f + p.regularizer_value_and_gradient(theta, grad)
}

/// [`EntityProblem::data_hessian_diagonal`], with a large entity's rows split across threads.
pub fn data_hessian_diagonal(p: &EntityProblem, theta: &[f64]) -> Vec<f64> {
    if !is_split(p.num_rows()) {
        return p.data_hessian_diagonal(theta);
    }
    sum_over_pieces(p, theta.len(), |q, h| {
        h.copy_from_slice(&q.data_hessian_diagonal(theta));
        0.0
    })
    .1
}

/// Evaluates a [`TrainingBatch`] in f64 on the CPU: all its entities, or a run of them
/// numbered from 0 ([`CpuEvaluator::of_entities`]).
pub struct CpuEvaluator<'a> {
    batch: &'a TrainingBatch,
    /// The batch's number of entity 0.
    first: usize,
    /// The entities' coefficient offsets, from 0.
    coef_ptr: Cow<'a, [usize]>,
}

impl<'a> CpuEvaluator<'a> {
    pub fn new(batch: &'a TrainingBatch) -> Self {
        CpuEvaluator {
            batch,
            first: 0,
            coef_ptr: Cow::Borrowed(&batch.coef_ptr),
        }
    }

    /// The entities `entities` of `batch` as a batch of their own: entity `e` here is
    /// `entities.start + e` there, its coefficients from `coef_ptr[entities.start]` on.
    /// A solve over a few entities at a time keeps their rows in cache, where one over a
    /// large batch reads every row from memory each round.
    pub fn of_entities(batch: &'a TrainingBatch, entities: Range<usize>) -> Self {
        let ptr = &batch.coef_ptr[entities.start..=entities.end];
        let coef_ptr = ptr.iter().map(|&c| c - ptr[0]).collect();
        CpuEvaluator {
            batch,
            first: entities.start,
            coef_ptr: Cow::Owned(coef_ptr),
        }
    }
}

impl BatchEvaluator for CpuEvaluator<'_> {
    fn coef_ptr(&self) -> &[usize] {
        &self.coef_ptr
    }

    fn loss_precision(&self) -> f64 {
        f64::EPSILON
    }

    fn name(&self) -> &str {
        "cpu"
    }

    fn evaluate(
        &mut self,
        active: &[usize],
        theta: &[f64],
        loss: &mut [f64],
        grad: &mut [f64],
    ) -> Result<(), EvalError> {
        let coef_ptr = &self.coef_ptr;
        let slices = entity_slices_mut(coef_ptr, active, grad);
        let mut work: Vec<(usize, &mut [f64], f64)> = active
            .iter()
            .zip(slices)
            .map(|(&e, g)| (e, g, 0.0))
            .collect();
        work.par_chunks_mut(ENTITIES_PER_TASK).for_each(|chunk| {
            for (e, g, f) in chunk.iter_mut() {
                let th = &theta[coef_ptr[*e]..coef_ptr[*e + 1]];
                *f = value_and_gradient(&self.batch.entity(self.first + *e), th, g);
            }
        });
        for (e, _, f) in work {
            loss[e] = f;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Loss, PrecisionShape};

    #[test]
    fn a_run_of_entities_evaluates_as_in_the_whole_batch() {
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        for e in 0..5u32 {
            for i in 0..=e {
                let x = f64::from(e * 7 + i).sin();
                b.push_row(
                    1.0 - 2.0 * f64::from(i % 2),
                    1.0,
                    0.1,
                    1..=e % 3,
                    &[x, -x][..(e % 3) as usize],
                );
            }
            let d = 1 + (e % 3) as usize;
            b.finish_entity(&vec![0.5; d], &vec![0.0; d], &[]);
        }
        let batch = b.build();
        let theta: Vec<f64> = (0..batch.coef_ptr[5])
            .map(|j| 0.1 * j as f64 - 0.3)
            .collect();
        let (mut loss, mut grad) = (vec![0.0; 5], vec![0.0; theta.len()]);
        let all: Vec<usize> = (0..5).collect();
        CpuEvaluator::new(&batch)
            .evaluate(&all, &theta, &mut loss, &mut grad)
            .unwrap();
        let (c0, c1) = (batch.coef_ptr[1], batch.coef_ptr[4]);
        let mut run = CpuEvaluator::of_entities(&batch, 1..4);
        assert_eq!(run.coef_ptr()[3], c1 - c0);
        let (mut run_loss, mut run_grad) = (vec![0.0; 3], vec![0.0; c1 - c0]);
        run.evaluate(&[0, 2], &theta[c0..c1], &mut run_loss, &mut run_grad)
            .unwrap();
        assert_eq!([run_loss[0], run_loss[2]], [loss[1], loss[3]]);
        let (g1, g3) = (
            batch.coef_ptr[1]..batch.coef_ptr[2],
            batch.coef_ptr[3]..batch.coef_ptr[4],
        );
        assert_eq!(run_grad[g1.start - c0..g1.end - c0], grad[g1]);
        assert_eq!(run_grad[g3.start - c0..g3.end - c0], grad[g3]);
    }

    #[test]
    fn a_split_entity_sums_to_the_whole() {
        let rows = 2 * SPLIT_ROWS + 123;
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        for i in 0..rows {
            let x = (i as f64 * 0.37).sin();
            let label = if i % 3 == 0 { 1.0 } else { -1.0 };
            b.push_row(label, 1.0, 0.1, [1 + (i % 2) as u32], &[x]);
        }
        b.finish_entity(&[0.5; 3], &[0.0; 3], &[]);
        let batch = b.build();
        let p = batch.entity(0);
        let theta = [0.2, -0.7, 1.1];
        let (mut whole, mut split) = (vec![0.0; 3], vec![0.0; 3]);
        let f_whole = p.value_and_gradient(&theta, &mut whole);
        let f_split = value_and_gradient(&p, &theta, &mut split);
        assert_eq!(pieces(rows).len(), 3);
        assert!((f_whole - f_split).abs() <= 1e-12 * f_whole.abs());
        for (a, b) in whole.iter().zip(&split) {
            assert!((a - b).abs() <= 1e-10 * a.abs().max(1.0), "{a} vs {b}");
        }
        let (h_whole, h_split) = (
            p.data_hessian_diagonal(&theta),
            data_hessian_diagonal(&p, &theta),
        );
        for (a, b) in h_whole.iter().zip(&h_split) {
            assert!((a - b).abs() <= 1e-10 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}
