//! The per-entity objectives of DESIGN §1 in f64: the reference every other
//! evaluator is checked against.
//!
//! Every objective is written in one form. For an entity with rows `i`
//! (features `x_i`, label `y_i`, weight `w_i`, offset `o_i`) and margin
//! `m_i = o_i + x_i·θ`:
//!
//! ```text
//! F(θ) = Σ_i ℓ(m_i; y_i, w_i) + ½ Σ_j p_j θ_j² + ½ (θ − θ₀)ᵀ Q (θ − θ₀)
//! ```
//!
//! | objective        | ℓ(m; y, w)             | p_j        | Q     |
//! |------------------|------------------------|------------|-------|
//! | `linear`         | w/2 (m − y)²           | λ          | 0     |
//! | `logistic`       | w log(1 + e^{−y m})    | λ          | 0     |
//! | `bayes-linear`   | w/2 (m − y)²           | (1 − δ) λ  | δ H₀  |
//! | `bayes-logistic` | w log(1 + e^{−y m})    | (1 − δ) λ  | δ H₀  |
//!
//! with `p_0 = 0` for the intercept when its penalty is turned off. The per-row
//! derivatives with respect to the margin are
//! logistic `ℓ' = −w y σ(−y m)`, `ℓ'' = w σ(m) σ(−m)`;
//! linear `ℓ' = w (m − y)`, `ℓ'' = w`.
//! Gradient `∇F = Xᵀ ℓ' + p ⊙ θ + Q (θ − θ₀)`, Hessian `Xᵀ diag(ℓ'') X + diag(p) + Q`.
//!
//! The logistic loss uses the softplus form `log(1 + e^{−z}) = max(−z, 0) + log1p(e^{−|z|})`,
//! which neither overflows nor loses the gradient at |z| = 1000.
//!
//! Reference: Lambda Learner (Ramanath et al., 2020, arXiv:2010.05154), §3.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod batch;
mod entity;
mod exp;

pub use batch::{PrecisionShape, PriorPrecision, TrainingBatch, TrainingBatchBuilder};
pub use entity::{EntityPrior, EntityProblem};
pub use exp::exp_nonpositive;

use std::fmt;
use std::str::FromStr;

/// The data term of an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// `w/2 (m − y)²`.
    Squared,
    /// `w log(1 + e^{−y m})`, labels ±1.
    Logistic,
}

/// One of the four objectives of DESIGN §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectiveKind {
    Linear,
    Logistic,
    BayesLinear,
    BayesLogistic,
}

impl ObjectiveKind {
    pub const ALL: [ObjectiveKind; 4] = [
        ObjectiveKind::Linear,
        ObjectiveKind::Logistic,
        ObjectiveKind::BayesLinear,
        ObjectiveKind::BayesLogistic,
    ];

    pub fn loss(self) -> Loss {
        match self {
            ObjectiveKind::Linear | ObjectiveKind::BayesLinear => Loss::Squared,
            ObjectiveKind::Logistic | ObjectiveKind::BayesLogistic => Loss::Logistic,
        }
    }

    /// Whether the previous model enters the objective as a prior `δ/2 (θ−θ₀)ᵀH₀(θ−θ₀)`.
    pub fn is_bayesian(self) -> bool {
        matches!(
            self,
            ObjectiveKind::BayesLinear | ObjectiveKind::BayesLogistic
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectiveKind::Linear => "linear",
            ObjectiveKind::Logistic => "logistic",
            ObjectiveKind::BayesLinear => "bayes-linear",
            ObjectiveKind::BayesLogistic => "bayes-logistic",
        }
    }
}

impl fmt::Display for ObjectiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ObjectiveKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ObjectiveKind::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| {
                format!("unknown objective {s:?}: expected linear, logistic, bayes-linear or bayes-logistic")
            })
    }
}

/// Regularisation settings shared by every entity of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regularization {
    /// L2 penalty λ ≥ 0 (default 1).
    pub penalty: f64,
    /// Forgetting factor δ ∈ [0, 1]; used by the `bayes-*` objectives only (default 0.8).
    pub delta: f64,
    /// Whether the intercept (coefficient 0) is penalised like the others (default true,
    /// Lambda Learner's behaviour; Photon-ML leaves it unpenalised).
    pub intercept_penalty: bool,
    /// A half-life `h > 0` of the prior's weight, in the records' time units (default
    /// none): an entity's forgetting factor becomes `2^{−Δt/h}`, `Δt` the time from its
    /// model's `last_seen` to the newest of its records being trained, so that the prior
    /// fades with elapsed time rather than with the number of updates.
    pub half_life: Option<f64>,
}

impl Default for Regularization {
    fn default() -> Self {
        Regularization {
            penalty: 1.0,
            delta: 0.8,
            intercept_penalty: true,
            half_life: None,
        }
    }
}

impl Regularization {
    /// The forgetting factor of an entity whose model was last seen at `prior_seen` and
    /// whose newest record is at `seen`: `2^{−(seen − prior_seen)/h}` under a half-life
    /// `h` (a late record's negative gap counts as 0), else δ. Without both times (a prior
    /// from a model file, or no prior) it is δ.
    pub fn forgetting(&self, prior_seen: Option<f64>, seen: Option<f64>) -> f64 {
        match (self.half_life, prior_seen, seen) {
            (Some(h), Some(t0), Some(t)) => (-(t - t0).max(0.0) / h).exp2(),
            _ => self.delta,
        }
    }

    /// The diagonal penalty `p_j` of coefficient `j` under `objective`, for an entity
    /// whose forgetting factor is `delta` (see [`Self::forgetting`]).
    pub fn coefficient_penalty(&self, objective: ObjectiveKind, j: usize, delta: f64) -> f64 {
        if j == 0 && !self.intercept_penalty {
            0.0
        } else if objective.is_bayesian() {
            (1.0 - delta) * self.penalty
        } else {
            self.penalty
        }
    }

    /// The prior precision of coefficient `j` when there is no previous model (`H₀ = λ I`,
    /// without the intercept when its penalty is off), so a cold `bayes-*` fit equals the
    /// plain fit.
    pub fn cold_precision(&self, j: usize) -> f64 {
        if j == 0 && !self.intercept_penalty {
            0.0
        } else {
            self.penalty
        }
    }
}

/// `log(1 + e^z)` without overflow or cancellation.
#[inline]
pub fn softplus(z: f64) -> f64 {
    z.max(0.0) + exp_nonpositive(-z.abs()).ln_1p()
}

/// `1 / (1 + e^{−z})` without overflow.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Loss and first and second derivatives with respect to the margin of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowDerivatives {
    pub loss: f64,
    pub d1: f64,
    pub d2: f64,
}

/// `ℓ = w log(1 + e^{−y m})`, `ℓ' = −w y σ(−y m)`, `ℓ'' = w σ(m) σ(−m)`, with one `exp`
/// and one `log`. The loss takes `ln(1 + e^{−|z|})` of the `1 + e^{−|z|}` it already has:
/// its absolute error stays below one ulp of 1 (2.2e-16), like the sum it enters, while
/// the derivatives keep full relative precision at any margin.
#[inline]
pub fn logistic_row(margin: f64, label: f64, weight: f64) -> RowDerivatives {
    let z = label * margin;
    let e = exp_nonpositive(-z.abs()); // e^{−|z|} ∈ (0, 1]
    let one_plus = 1.0 + e;
    // σ(−z) = e^{−z} / (1 + e^{−z}); for z ≥ 0 that is e/(1+e), else 1/(1+e).
    let sig_neg_z = if z >= 0.0 {
        e / one_plus
    } else {
        1.0 / one_plus
    };
    RowDerivatives {
        loss: weight * ((-z).max(0.0) + one_plus.ln()),
        d1: -weight * label * sig_neg_z,
        d2: weight * e / (one_plus * one_plus),
    }
}

/// `ℓ` and `ℓ'` of a logistic row, with `ℓ`'s logarithm left to the caller: returns
/// `(w · max(−z, 0), 1 + e^{−|z|}, ℓ')` so that `ℓ = first + w ln(second)`. One `exp` and
/// one division; [`LogSum`] then takes the logarithms of many rows at once.
#[inline(always)]
pub fn logistic_row_deferred(margin: f64, label: f64, weight: f64) -> (f64, f64, f64) {
    let z = label * margin;
    let e = exp_nonpositive(-z.abs());
    let one_plus = 1.0 + e;
    let r = 1.0 / one_plus;
    let sig_neg_z = if z >= 0.0 { e * r } else { r };
    (
        weight * (-z).max(0.0),
        one_plus,
        -weight * label * sig_neg_z,
    )
}

/// The logistic terms of a block of rows `margin[k]`, `labels[k]`, `weights[k]`
/// (`k < labels.len() ≤ N`): `ℓ'` into `slope[k]`, and `ℓ` added to the four lane sums
/// `sums` (row k in lane k mod 4) and to `logs`. A unit-weight row's logarithm is left to
/// `logs`; a weighted row takes its own. With `AVX2`, four rows at a time in registers
/// ([`avx2::logistic_block`], the same bits).
#[inline(always)]
pub(crate) fn logistic_block<const AVX2: bool, const N: usize>(
    margin: &[f64; N],
    labels: &[f64],
    weights: &[f64],
    sums: &mut [f64; 4],
    logs: &mut LogSum,
    slope: &mut [f64; N],
) {
    const { assert!(N.is_multiple_of(4)) };
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is true only in the functions compiled for AVX2, which are called
        // after checking that the CPU has it.
        return unsafe { avx2::logistic_block(margin, labels, weights, sums, logs, slope) };
    }
    let len = labels.len();
    // The factors of `logs`, 1 where there is none (past the last row too).
    let (mut linear, mut one_plus) = ([0.0; N], [1.0; N]);
    for k in 0..len {
        (linear[k], one_plus[k], slope[k]) =
            logistic_row_deferred(margin[k], labels[k], weights[k]);
    }
    for k in 0..len {
        if weights[k] != 1.0 {
            linear[k] += weights[k] * one_plus[k].ln();
            one_plus[k] = 1.0;
        }
    }
    for k in (0..len.next_multiple_of(4)).step_by(4) {
        for q in 0..4 {
            sums[q] += linear[k + q];
        }
        logs.add4(&one_plus[k..k + 4]);
    }
}

/// The squared-loss terms of a block of rows, as [`logistic_block`] adds the logistic ones.
#[inline(always)]
pub(crate) fn squared_block<const N: usize>(
    margin: &[f64; N],
    labels: &[f64],
    weights: &[f64],
    sums: &mut [f64; 4],
    slope: &mut [f64; N],
) {
    let len = labels.len();
    let mut linear = [0.0; N];
    for k in 0..len {
        let r = squared_row(margin[k], labels[k], weights[k]);
        linear[k] = r.loss;
        slope[k] = r.d1;
    }
    for k in (0..len.next_multiple_of(4)).step_by(4) {
        for q in 0..4 {
            sums[q] += linear[k + q];
        }
    }
}

/// `Σ ln(a_k)` over factors `a_k ∈ [1, 2]`, as the logarithm of their running product:
/// one `ln` per 1,020 terms instead of one per term. The factors come four at a time into
/// four lane products (independent multiplications, so they overlap); each lane holds at
/// most 255 factors (`≤ 2^255`), so the four lanes multiply to at most `2^1020`, far from
/// overflow, before one `ln` is taken. Each product step rounds by at most half an ulp, so
/// the absolute error stays within `n ε`, as for a sum of `n` separately rounded logarithms.
#[derive(Debug, Clone, Copy)]
pub struct LogSum {
    logs: f64,
    product: [f64; 4],
    factors: u32,
}

impl Default for LogSum {
    fn default() -> Self {
        LogSum {
            logs: 0.0,
            product: [1.0; 4],
            factors: 0,
        }
    }
}

impl LogSum {
    /// Four factors, one per lane (1 for a lane with none).
    #[inline(always)]
    pub fn add4(&mut self, factors: &[f64]) {
        debug_assert!(factors.iter().all(|f| (1.0..=2.0).contains(f)));
        for (p, f) in self.product.iter_mut().zip(factors) {
            *p *= f;
        }
        self.factors += 1;
        if self.factors == 255 {
            self.logs += self.lanes().ln();
            self.product = [1.0; 4];
            self.factors = 0;
        }
    }

    fn lanes(&self) -> f64 {
        let p = self.product;
        (p[0] * p[1]) * (p[2] * p[3])
    }

    pub fn total(self) -> f64 {
        self.logs + self.lanes().ln()
    }
}

/// `ℓ = w/2 (m − y)²`, `ℓ' = w (m − y)`, `ℓ'' = w`.
#[inline(always)]
pub fn squared_row(margin: f64, label: f64, weight: f64) -> RowDerivatives {
    let r = margin - label;
    RowDerivatives {
        loss: 0.5 * weight * r * r,
        d1: weight * r,
        d2: weight,
    }
}

impl Loss {
    /// `ℓ''` alone: `w σ(m) σ(−m)` (which does not depend on the ±1 label) or `w`.
    #[inline(always)]
    pub fn second_derivative(self, margin: f64, weight: f64) -> f64 {
        match self {
            Loss::Squared => weight,
            Loss::Logistic => {
                let e = exp_nonpositive(-margin.abs());
                let one_plus = 1.0 + e;
                weight * e / (one_plus * one_plus)
            }
        }
    }

    /// [`Self::second_derivative`] of the rows `margin[k]`, `weights[k]`
    /// (`k < weights.len() ≤ N`), written over the margins; with `AVX2`, four logistic rows
    /// at a time ([`avx2::logistic_second_derivatives`], the same bits).
    #[inline(always)]
    pub(crate) fn second_derivatives<const AVX2: bool, const N: usize>(
        self,
        margin: &mut [f64; N],
        weights: &[f64],
    ) {
        #[cfg(target_arch = "x86_64")]
        if AVX2 && self == Loss::Logistic {
            // SAFETY: `AVX2` is true only in the functions compiled for AVX2, which are
            // called after checking that the CPU has it.
            return unsafe { avx2::logistic_second_derivatives(margin, weights) };
        }
        for (d2, &w) in margin.iter_mut().zip(weights) {
            *d2 = self.second_derivative(*d2, w);
        }
    }

    #[inline]
    pub fn row(self, margin: f64, label: f64, weight: f64) -> RowDerivatives {
        match self {
            Loss::Squared => squared_row(margin, label, weight),
            Loss::Logistic => logistic_row(margin, label, weight),
        }
    }
}

/// The label of a record as the objective sees it: for a logistic loss `1` is +1 and any
/// other value −1 (the Lambda Learner convention); a squared loss uses it as given.
pub fn training_label(loss: Loss, raw: f64) -> f64 {
    match loss {
        Loss::Squared => raw,
        Loss::Logistic => {
            if raw == 1.0 {
                1.0
            } else {
                -1.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_is_stable_and_pinned() {
        // Independent values: log(1+e^z) computed in high precision.
        assert_eq!(softplus(0.0), std::f64::consts::LN_2);
        assert!((softplus(1.0) - 1.313_261_687_518_222_8).abs() < 1e-15);
        assert!((softplus(-1.0) - 0.313_261_687_518_222_8).abs() < 1e-15);
        assert_eq!(softplus(1000.0), 1000.0);
        assert!(softplus(-1000.0) >= 0.0 && softplus(-1000.0) < 1e-300);
        assert!(softplus(-30.0) > 0.0);
        assert!((softplus(-30.0) - 9.357_622_968_839_737e-14).abs() < 1e-27);
    }

    #[test]
    fn logistic_row_at_extreme_margins() {
        let r = logistic_row(-1000.0, 1.0, 1.0);
        assert_eq!(r.loss, 1000.0);
        assert_eq!(r.d1, -1.0);
        assert_eq!(r.d2, 0.0);
        let r = logistic_row(1000.0, 1.0, 2.0);
        assert_eq!(r.loss, 0.0);
        assert!(r.d1 <= 0.0 && r.d1 > -1e-300);
        let r = logistic_row(0.0, -1.0, 1.0);
        assert_eq!(r.loss, std::f64::consts::LN_2);
        assert_eq!(r.d1, 0.5);
        assert_eq!(r.d2, 0.25);
    }

    #[test]
    fn objective_names_round_trip() {
        for o in ObjectiveKind::ALL {
            assert_eq!(o.name().parse::<ObjectiveKind>().unwrap(), o);
        }
        assert!("ridge"
            .parse::<ObjectiveKind>()
            .unwrap_err()
            .contains("ridge"));
    }

    #[test]
    fn labels_follow_the_reference_convention() {
        assert_eq!(training_label(Loss::Logistic, 1.0), 1.0);
        assert_eq!(training_label(Loss::Logistic, 0.0), -1.0);
        assert_eq!(training_label(Loss::Logistic, -1.0), -1.0);
        assert_eq!(training_label(Loss::Squared, 4.0), 4.0);
    }
}
