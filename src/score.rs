//! Scoring records with trained models, and Thompson sampling (DESIGN §1).
//!
//! The score of a record is its margin `o + x·θ` (`σ` of it is the probability); a record
//! of an entity without a model, or a feature the model lacks, contributes only what is
//! known. With Thompson sampling every record gets its own posterior draw
//! `θ̃ ~ N(θ, t Σ)`, `Σ = H⁻¹` for a full precision (drawn as `θ + √t L⁻ᵀ z` with
//! `H = L Lᵀ`, `z ~ N(0, I)`) and `Σ = diag(1/H_jj)` for a diagonal one; `t` is the
//! exploration multiplier. Draws come from a ChaCha8 stream seeded by the user, in record
//! order, so a run is reproducible.

use crate::data::Dataset;
use crate::error::Result;
use crate::eval::{EvalError, GpuContext};
use crate::model::posterior::Posterior;
use crate::model::{EntityModel, ModelSet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;

/// Thompson-sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thompson {
    /// Exploration multiplier `t ≥ 0` on the posterior covariance.
    pub multiplier: f64,
    pub seed: u64,
}

/// Where a model's coefficients lie in [`MarginPlan`]'s `theta`.
struct ModelColumns {
    intercept: Option<u32>,
    /// Dataset feature id → coefficient.
    coef_of: HashMap<u32, u32>,
}

/// Score every record of `data` on the CPU in f64; returns one margin per record.
pub fn score(data: &Dataset, models: &ModelSet, thompson: Option<Thompson>) -> Result<Vec<f64>> {
    let plan = MarginPlan::new(data, models);
    match thompson {
        None => Ok(plan.margins()),
        Some(t) => plan.thompson_margins(t),
    }
}

/// The models of a dataset's entities, ready to score its records: the means of every
/// entity's model laid end to end in `theta` (`theta_ptr[e]..theta_ptr[e+1]`, empty for an
/// entity without a model) and, per entity, which coefficient each dataset feature meets.
/// A record's entries are its model's intercept (value 1) and then its features the model
/// has, in row order; a feature the model lacks, or a record whose entity has no model,
/// has none. The CPU margins are summed from the dataset directly (in parallel, with no
/// copy of it); the GPU path packs the entries as a CSR matrix for its kernel.
pub struct MarginPlan<'a> {
    data: &'a Dataset,
    theta: Vec<f64>,
    theta_ptr: Vec<usize>,
    columns: Vec<Option<ModelColumns>>,
    /// The model of each entity of `data`.
    models: Vec<Option<&'a EntityModel>>,
}

impl<'a> MarginPlan<'a> {
    pub fn new(data: &'a Dataset, models: &'a ModelSet) -> Self {
        let models: Vec<Option<&EntityModel>> =
            data.entities.keys().iter().map(|e| models.get(e)).collect();
        let mut theta = Vec::new();
        let mut theta_ptr = vec![0];
        let mut columns: Vec<Option<ModelColumns>> = Vec::with_capacity(models.len());
        for m in &models {
            columns.push(m.map(|m| {
                let base = theta.len() as u32;
                theta.extend_from_slice(&m.means);
                let coef_of = (base..)
                    .zip(&m.features)
                    .filter_map(|(j, k)| data.features.get(k).map(|f| (f, j)))
                    .collect();
                let intercept = (base..).zip(&m.features).find(|(_, k)| k.is_intercept());
                ModelColumns {
                    intercept: intercept.map(|(j, _)| j),
                    coef_of,
                }
            }));
            theta_ptr.push(theta.len());
        }
        MarginPlan {
            data,
            theta,
            theta_ptr,
            columns,
            models,
        }
    }

    /// The entries `(coefficient, value)` of record `i`.
    fn entries(&self, i: usize) -> impl Iterator<Item = (u32, f64)> + '_ {
        let columns = self.columns[self.data.entity[i] as usize].as_ref();
        let intercept = columns.and_then(|c| c.intercept).map(|j| (j, 1.0));
        let (ids, vals) = self.data.row_features(i);
        let features = columns.into_iter().flat_map(move |c| {
            ids.iter()
                .zip(vals)
                .filter_map(|(f, &v)| c.coef_of.get(f).map(|&j| (j, v)))
        });
        intercept.into_iter().chain(features)
    }

    /// `x_i·θ` of record `i`, with `theta[k]` holding coefficient `base + k`.
    fn row_dot(&self, i: usize, theta: &[f64], base: usize) -> f64 {
        self.entries(i)
            .map(|(j, v)| v * theta[j as usize - base])
            .sum()
    }

    /// The margin `o_i + x_i·θ` of every record, in f64.
    pub fn margins(&self) -> Vec<f64> {
        (0..self.data.num_rows())
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| self.margin(i))
            .collect()
    }

    /// The same margins with `x_i·θ` summed on the GPU in f32 (`shaders/row_dots.wgsl`) and
    /// the offsets added in f64.
    pub fn margins_gpu(&self, ctx: &GpuContext) -> std::result::Result<Vec<f64>, EvalError> {
        let rows = self.data.num_rows();
        let mut ptr = Vec::with_capacity(rows + 1);
        ptr.push(0);
        let (mut coef, mut value) = (Vec::new(), Vec::new());
        for i in 0..rows {
            for (j, v) in self.entries(i) {
                coef.push(j);
                value.push(v);
            }
            ptr.push(coef.len());
        }
        let dots = ctx.row_dots(&ptr, &coef, &value, &self.theta)?;
        Ok(self
            .data
            .offset
            .iter()
            .zip(dots)
            .map(|(o, d)| o + f64::from(d))
            .collect())
    }

    /// Margins with every record scored by its own posterior draw `θ̃ ~ N(θ, t Σ)`, drawn in
    /// record order from a ChaCha8 stream seeded by `t.seed`.
    pub fn thompson_margins(&self, t: Thompson) -> Result<Vec<f64>> {
        let posteriors = self.posteriors(t.multiplier)?;
        let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
        let mut draw: Vec<f64> = Vec::new();
        let mut out = Vec::with_capacity(self.data.num_rows());
        for (i, &e) in self.data.entity.iter().enumerate() {
            let e = e as usize;
            let Some(posterior) = &posteriors[e] else {
                out.push(self.data.offset[i]);
                continue;
            };
            posterior.draw(self.means(e), &mut rng, &mut draw);
            out.push(self.margin_with(i, &draw));
        }
        Ok(out)
    }

    /// The posterior of every entity's model under multiplier `t` (`None` without a model).
    pub(crate) fn posteriors(&self, t: f64) -> Result<Vec<Option<Posterior>>> {
        self.models
            .iter()
            .map(|m| m.map(|m| Posterior::new(m, t)).transpose())
            .collect()
    }

    /// The coefficient means of entity `e`'s model (empty without one).
    pub(crate) fn means(&self, e: usize) -> &[f64] {
        &self.theta[self.theta_ptr[e]..self.theta_ptr[e + 1]]
    }

    /// The entity of record `i`.
    pub(crate) fn entity(&self, i: usize) -> usize {
        self.data.entity[i] as usize
    }

    /// The margin `o_i + x_i·θ` of record `i` under the means.
    pub(crate) fn margin(&self, i: usize) -> f64 {
        self.data.offset[i] + self.row_dot(i, &self.theta, 0)
    }

    /// The margin of record `i` under coefficients `theta` of its entity's model.
    pub(crate) fn margin_with(&self, i: usize, theta: &[f64]) -> f64 {
        self.data.offset[i] + self.row_dot(i, theta, self.theta_ptr[self.entity(i)])
    }

    /// The variance of record `i`'s margin under `posterior` (its entity's), with `x` as
    /// scratch.
    pub(crate) fn margin_variance(&self, i: usize, posterior: &Posterior, x: &mut Vec<f64>) -> f64 {
        let e = self.entity(i);
        let base = self.theta_ptr[e];
        x.clear();
        x.resize(self.theta_ptr[e + 1] - base, 0.0);
        for (j, v) in self.entries(i) {
            x[j as usize - base] += v;
        }
        posterior.margin_variance(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureKey;
    use crate::error::Error;
    use crate::model::{EntityModel, HessianType, Precision};

    /// One entity with coefficients `a`, `b` (no intercept), mean (1, −2), and `n` records of
    /// each of the rows x = (1, 0), (0, 1), (1, 1).
    fn fixture(precision: Precision, n: usize) -> (Dataset, ModelSet) {
        let (a, b) = (FeatureKey::new("a", ""), FeatureKey::new("b", ""));
        let mut data = Dataset::new();
        for _ in 0..n {
            data.push("u", 0.0, 1.0, 0.5, None, [(a.clone(), 1.0)]);
            data.push("u", 0.0, 1.0, 0.5, None, [(b.clone(), 1.0)]);
            data.push(
                "u",
                0.0,
                1.0,
                0.5,
                None,
                [(a.clone(), 1.0), (b.clone(), 1.0)],
            );
        }
        let hessian = match precision {
            Precision::Full(_) => HessianType::Full,
            _ => HessianType::Diagonal,
        };
        let model = EntityModel {
            entity: "u".into(),
            objective: None,
            hessian,
            features: vec![a, b],
            means: vec![1.0, -2.0],
            precision,
            last_seen: None,
        };
        (data, [model].into_iter().collect())
    }

    /// Sample variance of the scores of rows `k, k+3, k+6, …`.
    fn variance_of_row_kind(scores: &[f64], k: usize) -> (f64, f64) {
        let v: Vec<f64> = scores.iter().skip(k).step_by(3).copied().collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        (mean, var)
    }

    #[test]
    fn margins_without_thompson() {
        let (data, models) = fixture(Precision::Diagonal(vec![1.0, 1.0]), 1);
        assert_eq!(score(&data, &models, None).unwrap(), vec![1.5, -1.5, -0.5]);
    }

    #[test]
    fn full_precision_draws_have_the_inverse_as_covariance() {
        // H = [[4, 1], [1, 2]], Σ = H⁻¹ = [[2, −1], [−1, 4]] / 7. With t = 3:
        // Var(θ_a) = 6/7, Var(θ_b) = 12/7, Var(θ_a + θ_b) = 3 (2 − 2 + 4)/7 = 12/7.
        // A diagonal-only sampler would give 3/4, 3/2 and 9/4 instead.
        let (data, models) = fixture(Precision::Full(vec![4.0, 1.0, 1.0, 2.0]), 100_000);
        let t = Thompson {
            multiplier: 3.0,
            seed: 11,
        };
        let scores = score(&data, &models, Some(t)).unwrap();
        for (k, mean, var) in [
            (0, 1.5, 6.0 / 7.0),
            (1, -1.5, 12.0 / 7.0),
            (2, -0.5, 12.0 / 7.0),
        ] {
            let (m, v) = variance_of_row_kind(&scores, k);
            // Standard errors: mean √(var/n) ≈ 0.004, variance var·√(2/n) ≈ 0.008.
            assert!((m - mean).abs() < 0.02, "row kind {k}: mean {m} vs {mean}");
            assert!(
                (v - var).abs() < 0.03 * var,
                "row kind {k}: variance {v} vs {var}"
            );
        }
    }

    #[test]
    fn diagonal_precision_draws_are_independent() {
        let (data, models) = fixture(Precision::Diagonal(vec![4.0, 2.0]), 100_000);
        let t = Thompson {
            multiplier: 2.0,
            seed: 5,
        };
        let scores = score(&data, &models, Some(t)).unwrap();
        for (k, var) in [(0, 0.5), (1, 1.0), (2, 1.5)] {
            let (_, v) = variance_of_row_kind(&scores, k);
            assert!(
                (v - var).abs() < 0.03 * var,
                "row kind {k}: variance {v} vs {var}"
            );
        }
    }

    #[test]
    fn draws_are_reproducible_by_seed() {
        let (data, models) = fixture(Precision::Diagonal(vec![4.0, 2.0]), 10);
        let t = |seed| {
            Some(Thompson {
                multiplier: 1.0,
                seed,
            })
        };
        let a = score(&data, &models, t(1)).unwrap();
        assert_eq!(a, score(&data, &models, t(1)).unwrap());
        assert_ne!(a, score(&data, &models, t(2)).unwrap());
        // Every record gets its own draw.
        assert_ne!(a[0], a[3]);
    }

    #[test]
    fn thompson_needs_a_precision() {
        let (data, models) = fixture(Precision::None, 1);
        let t = Thompson {
            multiplier: 1.0,
            seed: 1,
        };
        assert!(matches!(
            score(&data, &models, Some(t)),
            Err(Error::Config(_))
        ));
    }
}
