//! Batched evaluation of many entities' objectives at once.
//!
//! The solver hands an evaluator the list of entities still running and one flat
//! coefficient vector laid out by [`BatchEvaluator::coef_ptr`] (entity `e` owns
//! `coef_ptr[e]..coef_ptr[e+1]`). For each listed entity the evaluator writes
//! `F_e(θ_e)` into `loss[e]` and `∇F_e(θ_e)` into that entity's slice of `grad`;
//! entries of entities not listed are left untouched.
//!
//! Implementations: [`cpu::CpuEvaluator`] (f64, rayon) — the reference — and
//! [`gpu::GpuEvaluator`] (wgpu compute shaders, f32 data terms). [`backend::Backend`]
//! chooses between them for a part and falls back to the CPU when the GPU fails.

pub mod backend;
pub mod cpu;
pub mod gpu;

pub use backend::Backend;
pub use cpu::CpuEvaluator;
pub use gpu::{GpuContext, GpuError, GpuEvaluator, GpuTimings, GpuWorkspace, Stage};

/// An error raised by an evaluator itself (device loss, a validation error…).
/// A non-converging entity is never an error; it is a report of the solver.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("evaluator failed: {0}")]
    Backend(String),
}

/// Evaluates losses and gradients of a batch of independent entity problems.
pub trait BatchEvaluator {
    /// Coefficient layout: `coef_ptr[e]..coef_ptr[e+1]` belongs to entity `e`.
    fn coef_ptr(&self) -> &[usize];

    /// Relative precision of the losses returned (≈ machine epsilon of the arithmetic,
    /// times a small factor). The line search treats loss differences below
    /// `loss_precision · |F|` as noise.
    fn loss_precision(&self) -> f64;

    /// A short name for reports: `cpu`, `gpu`, ….
    fn name(&self) -> &str;

    /// Evaluate every entity in `active` (ascending, no repeats) at its slice of `theta`.
    fn evaluate(
        &mut self,
        active: &[usize],
        theta: &[f64],
        loss: &mut [f64],
        grad: &mut [f64],
    ) -> Result<(), EvalError>;
}

/// Split `grad` into the mutable slices of the listed entities (ascending order).
pub(crate) fn entity_slices_mut<'a>(
    coef_ptr: &[usize],
    active: &[usize],
    mut grad: &'a mut [f64],
) -> Vec<&'a mut [f64]> {
    let mut out = Vec::with_capacity(active.len());
    let mut consumed = 0;
    for &e in active {
        let (start, end) = (coef_ptr[e], coef_ptr[e + 1]);
        assert!(
            start >= consumed,
            "active entities must be ascending and distinct"
        );
        let rest = std::mem::take(&mut grad);
        let (_, tail) = rest.split_at_mut(start - consumed);
        let (mine, tail) = tail.split_at_mut(end - start);
        out.push(mine);
        grad = tail;
        consumed = end;
    }
    out
}
