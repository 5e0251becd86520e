//! The Gaussian posterior of one model's coefficients, `N(θ, t Σ)` (DESIGN §1):
//! `Σ = H⁻¹` for a full precision `H`, `Σ = diag(1/H_jj)` for a diagonal one, `t ≥ 0` an
//! exploration multiplier (1 is the posterior itself).
//!
//! - A draw is `θ + √t L⁻ᵀ z` with `H = L Lᵀ` and `z ~ N(0, I)` (full), or `θ_j + √(t/H_jj) z_j`
//!   (diagonal).
//! - The variance of a margin `x·θ` is `t xᵀ Σ x`: `t ‖L⁻¹ x‖²` (full) or `t Σ_j x_j²/H_jj`.

use super::linalg::Cholesky;
use super::{EntityModel, Precision};
use crate::error::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// One model's posterior, factored once for many draws and variances.
pub enum Posterior {
    /// Standard deviation `√(t/H_jj)` of each coefficient.
    Diagonal(Vec<f64>),
    /// `H = L Lᵀ` and `√t`.
    Full(Cholesky, f64),
}

impl Posterior {
    /// The posterior of `m` under multiplier `t` (finite, ≥ 0); a model without a precision,
    /// or with one that is not positive definite, is an error naming its entity.
    pub fn new(m: &EntityModel, t: f64) -> Result<Self> {
        if !(t >= 0.0 && t.is_finite()) {
            return Err(Error::Config(format!(
                "the exploration multiplier must be a finite number ≥ 0, got {t}"
            )));
        }
        match &m.precision {
            Precision::None => Err(Error::Config(format!(
                "model of entity {:?} keeps no precision; a posterior draw or variance needs one",
                m.entity
            ))),
            Precision::Diagonal(h) => Ok(Posterior::Diagonal(
                h.iter().map(|h| (t / h).sqrt()).collect(),
            )),
            Precision::Full(h) => Cholesky::new(h, m.means.len())
                .map(|c| Posterior::Full(c, t.sqrt()))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "model of entity {:?}: precision is not positive definite",
                        m.entity
                    ))
                }),
        }
    }

    /// A draw of the coefficients around `means`, into `out`.
    pub fn draw(&self, means: &[f64], rng: &mut impl Rng, out: &mut Vec<f64>) {
        out.clear();
        out.extend((0..means.len()).map(|_| -> f64 { StandardNormal.sample(rng) }));
        match self {
            Posterior::Diagonal(sd) => out.iter_mut().zip(sd).for_each(|(z, sd)| *z *= sd),
            Posterior::Full(chol, sqrt_t) => {
                chol.solve_upper(out);
                out.iter_mut().for_each(|z| *z *= sqrt_t);
            }
        }
        out.iter_mut().zip(means).for_each(|(z, th)| *z += th);
    }

    /// The variance `t xᵀ Σ x` of the margin `x·θ`, `x` dense over the coefficients
    /// (overwritten).
    pub fn margin_variance(&self, x: &mut [f64]) -> f64 {
        match self {
            Posterior::Diagonal(sd) => x.iter().zip(sd).map(|(x, sd)| (x * sd).powi(2)).sum(),
            Posterior::Full(chol, sqrt_t) => {
                chol.solve_lower(x);
                x.iter().map(|v| (v * sqrt_t).powi(2)).sum()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureKey;
    use crate::model::HessianType;

    fn model(precision: Precision) -> EntityModel {
        EntityModel {
            entity: "u".into(),
            objective: None,
            hessian: HessianType::Full,
            features: vec![FeatureKey::new("a", ""), FeatureKey::new("b", "")],
            means: vec![1.0, -2.0],
            precision,
            last_seen: None,
        }
    }

    #[test]
    fn margin_variance_is_the_quadratic_form_of_the_inverse() {
        // H = [[4, 1], [1, 2]], H⁻¹ = [[2, −1], [−1, 4]] / 7; x = (1, 2):
        // xᵀH⁻¹x = (2 − 4 + 16)/7 = 2, times t = 3.
        let p = Posterior::new(&model(Precision::Full(vec![4.0, 1.0, 1.0, 2.0])), 3.0).unwrap();
        let v = p.margin_variance(&mut [1.0, 2.0]);
        assert!((v - 6.0).abs() < 1e-14, "{v}");
        // Diagonal H = (4, 2): (1/4 + 4/2)·3.
        let p = Posterior::new(&model(Precision::Diagonal(vec![4.0, 2.0])), 3.0).unwrap();
        let v = p.margin_variance(&mut [1.0, 2.0]);
        assert!((v - 6.75).abs() < 1e-14, "{v}");
    }

    #[test]
    fn a_model_without_a_precision_or_a_bad_multiplier_is_refused() {
        assert!(Posterior::new(&model(Precision::None), 1.0).is_err());
        let diagonal = model(Precision::Diagonal(vec![1.0, 1.0]));
        for t in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(Posterior::new(&diagonal, t).is_err(), "{t}");
        }
    }
}
