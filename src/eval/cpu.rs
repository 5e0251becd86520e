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

/// Evaluates a [`TrainingBatch`] in f64 on the CPU.
pub struct CpuEvaluator<'a> {
    batch: &'a TrainingBatch,
}

impl<'a> CpuEvaluator<'a> {
    pub fn new(batch: &'a TrainingBatch) -> Self {
        CpuEvaluator { batch }
    }
}

impl BatchEvaluator for CpuEvaluator<'_> {
    fn coef_ptr(&self) -> &[usize] {
        &self.batch.coef_ptr
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
        let coef_ptr = &self.batch.coef_ptr;
        let slices = entity_slices_mut(coef_ptr, active, grad);
        let mut work: Vec<(usize, &mut [f64], f64)> = active
            .iter()
            .zip(slices)
            .map(|(&e, g)| (e, g, 0.0))
            .collect();
        work.par_chunks_mut(ENTITIES_PER_TASK).for_each(|chunk| {
            for (e, g, f) in chunk.iter_mut() {
                let th = &theta[coef_ptr[*e]..coef_ptr[*e + 1]];
                *f = value_and_gradient(&self.batch.entity(*e), th, g);
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
