//! The f64 CPU evaluator: [`EntityProblem::value_and_gradient`] for every active
//! entity, spread over threads with rayon.

use super::{entity_slices_mut, BatchEvaluator, EvalError};
use crate::objective::TrainingBatch;
use rayon::prelude::*;

/// Entities per rayon task; small problems are cheap, so tasks group several.
const ENTITIES_PER_TASK: usize = 64;

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
                *f = self.batch.entity(*e).value_and_gradient(th, g);
            }
        });
        for (e, _, f) in work {
            loss[e] = f;
        }
        Ok(())
    }
}
