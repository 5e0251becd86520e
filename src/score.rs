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
use crate::error::{Error, Result};
use crate::model::linalg::Cholesky;
use crate::model::{ModelSet, Precision};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;

/// Thompson-sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thompson {
    /// Exploration multiplier `t ≥ 0` on the posterior covariance.
    pub multiplier: f64,
    pub seed: u64,
}

enum Sampler {
    /// Posterior standard deviation of each coefficient.
    Diagonal(Vec<f64>),
    Full(Cholesky),
}

struct EntityScorer<'m> {
    theta: &'m [f64],
    /// Dataset feature id → coefficient index.
    coef_of: HashMap<u32, usize>,
    intercept: Option<usize>,
    sampler: Option<Sampler>,
}

/// Score every record of `data`; returns one margin per record.
pub fn score(data: &Dataset, models: &ModelSet, thompson: Option<Thompson>) -> Result<Vec<f64>> {
    if let Some(t) = thompson {
        if !(t.multiplier >= 0.0 && t.multiplier.is_finite()) {
            return Err(Error::Config(format!(
                "the Thompson multiplier must be a finite number ≥ 0, got {}",
                t.multiplier
            )));
        }
    }
    let scorers: Vec<Option<EntityScorer>> = data
        .entities
        .keys()
        .iter()
        .map(|e| models.get(e).map(|m| {
            let coef_of = m.features.iter().enumerate().filter_map(|(j, k)| data.features.get(k).map(|f| (f, j))).collect();
            let intercept = m.features.iter().position(|k| k.is_intercept());
            let sampler = match thompson {
                None => Ok(None),
                Some(t) => match &m.precision {
                    Precision::None => Err(Error::Config(format!("model of entity {:?} keeps no precision; Thompson sampling needs one", m.entity))),
                    Precision::Diagonal(h) => Ok(Some(Sampler::Diagonal(h.iter().map(|h| (t.multiplier / h).sqrt()).collect()))),
                    Precision::Full(h) => Cholesky::new(h, m.means.len())
                        .map(|c| Some(Sampler::Full(c)))
                        .ok_or_else(|| Error::Config(format!("model of entity {:?}: precision is not positive definite", m.entity))),
                },
            }?;
            Ok(EntityScorer { theta: &m.means, coef_of, intercept, sampler })
        }).transpose())
        .collect::<Result<_>>()?;

    let mut rng = ChaCha8Rng::seed_from_u64(thompson.map_or(0, |t| t.seed));
    let sqrt_t = thompson.map_or(0.0, |t| t.multiplier.sqrt());
    let mut draw: Vec<f64> = Vec::new();
    let mut out = Vec::with_capacity(data.num_rows());
    for i in 0..data.num_rows() {
        let mut s = data.offset[i];
        if let Some(sc) = &scorers[data.entity[i] as usize] {
            let theta: &[f64] = match &sc.sampler {
                None => sc.theta,
                Some(sampler) => {
                    draw.clear();
                    draw.extend(
                        (0..sc.theta.len()).map(|_| -> f64 { StandardNormal.sample(&mut rng) }),
                    );
                    match sampler {
                        Sampler::Diagonal(sd) => {
                            draw.iter_mut().zip(sd).for_each(|(z, sd)| *z *= sd)
                        }
                        Sampler::Full(chol) => {
                            chol.solve_upper(&mut draw);
                            draw.iter_mut().for_each(|z| *z *= sqrt_t);
                        }
                    }
                    draw.iter_mut().zip(sc.theta).for_each(|(z, th)| *z += th);
                    &draw
                }
            };
            if let Some(j) = sc.intercept {
                s += theta[j];
            }
            let (ids, vals) = data.row_features(i);
            for (f, v) in ids.iter().zip(vals) {
                if let Some(&j) = sc.coef_of.get(f) {
                    s += v * theta[j];
                }
            }
        }
        out.push(s);
    }
    Ok(out)
}
