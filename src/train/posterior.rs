//! Step 4 of [`super`]: the posterior model of an entity at its trained θ (DESIGN §1),
//! with precision `Xᵀ diag(ℓ'') X + diag(p) + δ H₀` kept as the configured Hessian type,
//! coefficients only the prior had passed through, and a precision a model file cannot
//! hold repaired (clamped, entries of about 0 raised to the smallest normal f64, or a
//! singular full one replaced by its diagonal) with a note.

use super::{Plan, TrainConfig};
use crate::data::Dataset;
use crate::model::{EntityModel, HessianType, Precision};
use crate::objective::TrainingBatch;
use crate::solver::{SolveReport, StopReason};

/// Why an entity's posterior precision is not the one configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionNote {
    /// Entries beyond f64's range (features of about 1e154 or more) were clamped to the
    /// largest finite f64.
    Clamped,
    /// The full precision was not positive definite (a singular entity): its diagonal
    /// is kept instead.
    DiagonalOfSingularFull,
    /// Entries of 0 or below the smallest normal f64, whose inverse (the variance) is not
    /// finite — a coefficient neither its data nor its prior says anything about: an
    /// unpenalised intercept of zero-weight records, or of a forgotten prior whose
    /// curvature underflowed — were raised to that smallest normal f64, as a singular full
    /// precision's diagonal is.
    Floored,
}

impl PrecisionNote {
    pub fn name(self) -> &'static str {
        match self {
            PrecisionNote::Clamped => "precision clamped to the largest finite f64",
            PrecisionNote::DiagonalOfSingularFull => {
                "full precision not positive definite; its diagonal is kept"
            }
            PrecisionNote::Floored => "precision of about 0 raised to the smallest normal f64",
        }
    }
}

/// One entity's optimum, as the posterior needs it.
#[derive(Clone, Copy)]
pub(super) struct Solution<'a> {
    pub theta: &'a [f64],
    /// The data Hessian at `theta` when the GPU computed it: its diagonal for `diagonal`,
    /// the d×d row-major matrix for `full`.
    pub data_hessian: Option<&'a [f64]>,
    pub report: &'a SolveReport,
}

/// The trained model of plan `k`: trained means and posterior precision, kept coefficients
/// copied from the prior; with the note of what its precision had to give up.
pub(super) fn posterior_model(
    data: &Dataset,
    batch: &TrainingBatch,
    k: usize,
    plan: &Plan,
    solution: &Solution,
    config: &TrainConfig,
) -> (EntityModel, Option<PrecisionNote>) {
    let mut model = EntityModel::empty();
    let note = posterior_model_into(data, batch, k, plan, solution, config, &mut model);
    (model, note)
}

/// [`posterior_model`] written over `model`, whose buffers it reuses (a stream updating
/// record by record would otherwise allocate and free a model per record).
pub(super) fn posterior_model_into(
    data: &Dataset,
    batch: &TrainingBatch,
    k: usize,
    plan: &Plan,
    solution: &Solution,
    config: &TrainConfig,
    model: &mut EntityModel,
) -> Option<PrecisionNote> {
    let Solution {
        theta,
        data_hessian,
        report,
    } = *solution;
    if report.reason == StopReason::LineSearchFailedKeptPrior
        || report.reason == StopReason::NonFiniteStart
    {
        if let Some(pm) = plan.prior {
            model.clone_from(pm);
            return None;
        }
    }
    let problem = batch.entity(k);
    let n = plan.in_prior.len();
    let free = plan.free();
    let kept_precision = |a: usize, b: usize| -> f64 {
        let p = plan.prior.expect("kept coefficients come from a prior");
        match (plan.in_prior[a], plan.in_prior[b]) {
            (Some(pa), Some(pb)) => p.precision_at(pa, pb).unwrap_or(if a == b {
                config.regularization.penalty
            } else {
                0.0
            }),
            _ => 0.0,
        }
    };
    let mut h = match std::mem::replace(&mut model.precision, Precision::None) {
        Precision::Diagonal(h) | Precision::Full(h) => h,
        Precision::None => Vec::new(),
    };
    h.clear();
    let precision = match config.hessian {
        HessianType::None => Precision::None,
        HessianType::Identity => {
            h.resize(n, 1.0);
            Precision::Diagonal(h)
        }
        HessianType::Diagonal => {
            match data_hessian {
                Some(d) => h.extend_from_slice(d),
                None => h = crate::eval::cpu::data_hessian_diagonal(&problem, theta),
            }
            problem.add_regularizer_diagonal(&mut h);
            h.extend((free..n).map(|j| kept_precision(j, j)));
            Precision::Diagonal(h)
        }
        HessianType::Full => {
            let trained = match data_hessian {
                Some(d) => {
                    let mut h = d.to_vec();
                    problem.add_regularizer_full(&mut h);
                    h
                }
                None => problem.hessian_full(theta),
            };
            h.resize(n * n, 0.0);
            for a in 0..n {
                for b in 0..n {
                    h[a * n + b] = if a < free && b < free {
                        trained[a * free + b]
                    } else {
                        kept_precision(a, b)
                    };
                }
            }
            Precision::Full(h)
        }
    };
    model.means.clear();
    model.means.extend_from_slice(theta);
    if let Some(pm) = plan.prior {
        model.means.extend(
            plan.in_prior[free..]
                .iter()
                .map(|pj| pm.means[pj.expect("kept coefficients are in the prior")]),
        );
    }
    let (precision, note) = repaired(precision, n);
    model.hessian = match (&precision, config.hessian) {
        (Precision::Diagonal(_), HessianType::Full) => HessianType::Diagonal,
        (_, configured) => configured,
    };
    model.precision = precision;
    model.entity.clear();
    model.entity.push_str(data.entities.key(plan.entity));
    model.objective = Some(config.objective);
    plan.keys_into(data, &mut model.features);
    model.last_seen = plan.last_seen;
    note
}

/// `precision` as a model file can hold it: entries past f64's range clamped to its
/// largest value, and a full precision that is not positive definite replaced by its
/// diagonal; with the note saying which.
fn repaired(precision: Precision, n: usize) -> (Precision, Option<PrecisionNote>) {
    let clamp = |h: &mut [f64]| {
        let mut clamped = false;
        for v in h.iter_mut() {
            if !v.is_finite() {
                *v = if v.is_nan() || *v > 0.0 {
                    f64::MAX
                } else {
                    -f64::MAX
                };
                clamped = true;
            }
        }
        clamped
    };
    match precision {
        Precision::None => (Precision::None, None),
        Precision::Diagonal(mut h) => {
            let clamped = clamp(&mut h);
            let mut floored = false;
            for v in h.iter_mut().filter(|v| **v < f64::MIN_POSITIVE) {
                *v = f64::MIN_POSITIVE;
                floored = true;
            }
            let note = match (clamped, floored) {
                (true, _) => Some(PrecisionNote::Clamped),
                (false, true) => Some(PrecisionNote::Floored),
                (false, false) => None,
            };
            (Precision::Diagonal(h), note)
        }
        Precision::Full(mut h) => {
            let clamped = clamp(&mut h);
            if crate::model::linalg::Cholesky::new(&h, n).is_some() {
                let note = clamped.then_some(PrecisionNote::Clamped);
                return (Precision::Full(h), note);
            }
            let diagonal = (0..n)
                .map(|j| h[j * n + j].max(f64::MIN_POSITIVE))
                .collect();
            (
                Precision::Diagonal(diagonal),
                Some(PrecisionNote::DiagonalOfSingularFull),
            )
        }
    }
}
