//! The optimum of an entity with one row, without L-BFGS: a stream's per-record update.
//!
//! With one row `x = (1, z)`, margin `m = o + x·θ` and the prior terms of
//! [`EntityProblem::regularizer_value_and_gradient`],
//!
//! `F(θ) = ℓ(m) + ½ Σ p_j θ_j² + ½ (θ−θ₀)ᵀ Q (θ−θ₀)`,  `∇F = ℓ'(m) x + Aθ − Qθ₀`,
//!
//! with `A = diag(p) + Q`. At the optimum `θ = u − s v` with `u = A⁻¹Qθ₀`, `v = A⁻¹x` and
//! `s = ℓ'(m)`; its margin is `m = m₀ − q s` with `m₀ = o + x·u` and `q = x·v ≥ 0`, so the
//! whole problem is one scalar equation
//!
//! `g(s) = s − ℓ'(m₀ − q s) = 0`,  `g'(s) = 1 + q ℓ''(m₀ − q s) ≥ 1`.
//!
//! For the squared loss `ℓ' = w (m − y)` it is linear: `s = w (m₀ − y) / (1 + w q)`. For
//! the logistic loss `g` increases strictly and its root lies between 0 and `ℓ'(m₀)`
//! (`ℓ'` increases with `m`); Newton's method, kept inside that bracket by bisection,
//! reaches it to rounding in a few steps. The solve needs `A` positive definite (a
//! diagonal `A` with every entry > 0, or a full one with a Cholesky factor); otherwise, or
//! when the result does not meet the gradient tolerance, the caller runs L-BFGS instead.

use super::{LbfgsOptions, SolveReport, StopReason};
use crate::model::linalg::Cholesky;
use crate::objective::{logistic_row, EntityPrior, EntityProblem, Loss};
use crate::vector::inf_norm;

/// Newton steps on `s` at most (a few suffice; the bracket halves when a step leaves it).
const MAX_STEPS: usize = 100;

/// The optimum of `problem` and its report, when it has one row and a positive-definite
/// `A` (see the module doc); `None` otherwise.
pub fn solve_one_row(
    problem: &EntityProblem,
    start: &[f64],
    options: &LbfgsOptions,
) -> Option<(Vec<f64>, SolveReport)> {
    let mut scratch = OneRowScratch::default();
    let report = solve_one_row_into(problem, start, options, &mut scratch)?;
    Some((scratch.theta, report))
}

/// The buffers of [`solve_one_row_into`], kept from one entity to the next.
#[derive(Debug, Default)]
pub struct OneRowScratch {
    x: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    grad: Vec<f64>,
    /// The optimum, once [`solve_one_row_into`] has found it.
    pub theta: Vec<f64>,
}

/// [`solve_one_row`] into `scratch`, whose `theta` holds the optimum when it has one.
pub fn solve_one_row_into(
    problem: &EntityProblem,
    start: &[f64],
    options: &LbfgsOptions,
    scratch: &mut OneRowScratch,
) -> Option<SolveReport> {
    if problem.num_rows() != 1 {
        return None;
    }
    let d = problem.num_coefficients();
    let OneRowScratch {
        x,
        u,
        v,
        grad,
        theta,
    } = scratch;
    x.clear();
    x.resize(d, 0.0);
    x[0] = 1.0;
    for k in problem.nz_ptr[0]..problem.nz_ptr[1] {
        x[problem.cols[k] as usize] += problem.vals[k];
    }
    solve_prior(problem, x, u, v)?;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
    let m0 = problem.offsets[0] + dot(x, u);
    let q = dot(x, v);
    let (y, w) = (problem.labels[0], problem.weights[0]);
    let (s, steps) = match problem.loss {
        Loss::Squared => (w * (m0 - y) / (1.0 + w * q), 1),
        Loss::Logistic => logistic_root(m0, q, y, w),
    };
    theta.clear();
    theta.extend(u.iter().zip(v.iter()).map(|(u, v)| u - s * v));

    let initial_loss = problem.value(start);
    grad.clear();
    grad.resize(d, 0.0);
    let final_loss = problem.value_and_gradient(theta, grad);
    let gradient_norm = inf_norm(grad);
    let met = initial_loss.is_finite() && final_loss.is_finite() && gradient_norm <= options.pgtol;
    met.then_some(SolveReport {
        initial_loss,
        final_loss,
        iterations: steps,
        evaluations: 2,
        gradient_norm,
        reason: StopReason::GradientTolerance,
        finished_precisely: false,
    })
}

/// `u = A⁻¹Qθ₀` and `v = A⁻¹x` written over `u` and `v`, or `None` when `A` is not
/// positive definite.
fn solve_prior(
    problem: &EntityProblem,
    x: &[f64],
    u: &mut Vec<f64>,
    v: &mut Vec<f64>,
) -> Option<()> {
    let (p, mean) = (problem.penalty, problem.prior_mean);
    let d = p.len();
    u.clear();
    v.clear();
    match problem.prior {
        EntityPrior::None | EntityPrior::Diagonal(_) => {
            let q = |j: usize| match problem.prior {
                EntityPrior::Diagonal(q) => q[j],
                _ => 0.0,
            };
            for j in 0..d {
                let a = p[j] + q(j);
                if !(a > 0.0 && a.is_finite()) {
                    return None;
                }
                u.push(q(j) * mean[j] / a);
                v.push(x[j] / a);
            }
            Some(())
        }
        EntityPrior::Full(q) => {
            let mut a = q.to_vec();
            for j in 0..d {
                a[j * d + j] += p[j];
            }
            let factor = Cholesky::new(&a, d)?;
            u.extend((0..d).map(|j| (0..d).map(|k| q[j * d + k] * mean[k]).sum::<f64>()));
            v.extend_from_slice(x);
            for b in [u, v] {
                factor.solve_lower(b);
                factor.solve_upper(b);
            }
            Some(())
        }
    }
}

/// The root of `g(s) = s − ℓ'(m₀ − q s)` for the logistic loss of label `y` (±1) and
/// weight `w`, and the Newton steps taken.
fn logistic_root(m0: f64, q: f64, y: f64, w: f64) -> (f64, usize) {
    let at = |s: f64| logistic_row(m0 - q * s, y, w);
    let start = at(0.0).d1;
    let (mut lo, mut hi) = if start >= 0.0 {
        (0.0, start)
    } else {
        (start, 0.0)
    };
    let mut s = start;
    for step in 1..=MAX_STEPS {
        let r = at(s);
        let g = s - r.d1;
        if g == 0.0 {
            return (s, step);
        }
        if g > 0.0 {
            hi = hi.min(s);
        } else {
            lo = lo.max(s);
        }
        let newton = s - g / (1.0 + q * r.d2);
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - s).abs() <= f64::EPSILON * s.abs().max(f64::MIN_POSITIVE) || hi <= lo {
            return (next, step);
        }
        s = next;
    }
    (s, MAX_STEPS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::CpuEvaluator;
    use crate::objective::{PrecisionShape, TrainingBatch};
    use crate::solver::minimize;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random one-row entities (sparse rows, some intercept-only), with the given loss
    /// and prior shape.
    fn batch(loss: Loss, shape: PrecisionShape, seed: u64) -> TrainingBatch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = TrainingBatch::builder(loss, shape);
        for e in 0..200 {
            let d = if e % 10 == 0 { 0 } else { rng.gen_range(1..12) };
            let cols: Vec<u32> = (1..=d as u32).filter(|_| rng.gen_bool(0.6)).collect();
            let vals: Vec<f64> = cols.iter().map(|_| rng.gen_range(-3.0..3.0)).collect();
            let label = match loss {
                Loss::Logistic => [-1.0, 1.0][rng.gen_range(0..2)],
                Loss::Squared => rng.gen_range(-5.0..5.0),
            };
            let weight = rng.gen_range(0.2..4.0);
            b.push_row(label, weight, rng.gen_range(-2.0..2.0), cols, &vals);
            let n = d + 1;
            // Every 7th entity's intercept unpenalised: without a prior that A is
            // singular, and L-BFGS is left to it.
            let penalty: Vec<f64> = (0..n)
                .map(|j| {
                    if j == 0 && e % 7 == 0 {
                        0.0
                    } else {
                        rng.gen_range(0.5..2.0)
                    }
                })
                .collect();
            let mean: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let precision: Vec<f64> = match shape {
                PrecisionShape::None => Vec::new(),
                PrecisionShape::Diagonal => (0..n).map(|_| rng.gen_range(0.1..20.0)).collect(),
                PrecisionShape::Full => {
                    // B Bᵀ + 0.1 I: positive definite with off-diagonal terms.
                    let b: Vec<f64> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let mut h = vec![0.0; n * n];
                    for i in 0..n {
                        for j in 0..n {
                            h[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                                + if i == j { 0.1 } else { 0.0 };
                        }
                    }
                    h
                }
            };
            b.finish_entity(&penalty, &mean, &precision);
        }
        b.build()
    }

    #[test]
    fn one_row_optima_zero_the_gradient_and_match_tight_lbfgs() {
        // No relative-reduction stop: L-BFGS goes on until the gradient vanishes to
        // rounding (or no step can lower F any more).
        let tight = LbfgsOptions {
            factr: 0.0,
            pgtol: 1e-13,
            ..LbfgsOptions::default()
        };
        for loss in [Loss::Logistic, Loss::Squared] {
            for (k, shape) in [
                PrecisionShape::None,
                PrecisionShape::Diagonal,
                PrecisionShape::Full,
            ]
            .into_iter()
            .enumerate()
            {
                let batch = batch(loss, shape, 7 + k as u64);
                let reference = minimize(
                    &mut CpuEvaluator::new(&batch),
                    &batch.prior_mean,
                    &tight,
                    |_| {},
                )
                .unwrap();
                let mut solved = 0;
                for e in 0..batch.num_entities() {
                    let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
                    let problem = batch.entity(e);
                    let Some((theta, report)) =
                        solve_one_row(&problem, &batch.prior_mean[r.clone()], &tight)
                    else {
                        // Only an A that is not positive definite is left to L-BFGS.
                        assert!(
                            shape == PrecisionShape::None,
                            "{loss:?} {shape:?} entity {e}"
                        );
                        continue;
                    };
                    solved += 1;
                    // The optimality certificate: the gradient vanishes to rounding.
                    let want = &reference.theta[r];
                    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    assert!(report.gradient_norm <= 1e-12 * scale, "{report:?}");
                    // L-BFGS's iterate is within ‖∇F‖ √n / λ_min of the optimum, with
                    // λ_min(∇²F) ≥ λ_min(A) ≥ 0.1 by construction; it stops where F no
                    // longer resolves a step, about 1e-10 of gradient here.
                    let lbfgs = reference.reports[e];
                    let slack = lbfgs.gradient_norm * (theta.len() as f64).sqrt() / 0.1;
                    for (a, b) in theta.iter().zip(want) {
                        assert!(
                            (a - b).abs() <= 1e-9 * scale + slack,
                            "{loss:?} {shape:?} {e}: {a} {b}; {report:?} {lbfgs:?}"
                        );
                    }
                    assert!(report.final_loss <= lbfgs.final_loss * (1.0 + 1e-14));
                }
                assert!(solved >= 100, "{loss:?} {shape:?}: {solved} solved");
            }
        }
    }
}
