//! Seeded synthetic GLMix workloads for benchmarks, the demo and tests.
//!
//! A global fixed effect `β` (intercept `β₀ = −1`, coefficients `~ N(0, 0.3²)`) gives
//! each record's offset `β₀ + x·β`; every entity has its own true random effect
//! (intercept `~ N(0, 0.5²)`, coefficients `~ N(0, 0.5² / k)` with `k` the expected
//! number of features per row, so margins stay moderate). Features are `N(0, 1)` values on
//! all `d` columns (dense) or the value 1 on each column with probability `density`
//! (sparse, like one-hot categorical data). Labels are Bernoulli(`σ(margin)`) as 1 / 0 for a
//! logistic workload and `margin + N(0, 0.5²)` for a linear one. Record timestamps are
//! uniform on [0, 1), so a workload can be cut into time-ordered mini-batches.

use crate::data::{Dataset, FeatureKey};
use crate::objective::{sigmoid, Loss};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};

/// Shape of a synthetic workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub entities: usize,
    /// Rows per entity (exactly, or on average when `ragged`).
    pub rows_per_entity: usize,
    /// Feature columns `d` (the intercept comes on top).
    pub features: usize,
    /// 1.0 for dense `N(0,1)` features; below 1, sparse binary features with this density.
    pub density: f64,
    /// Row counts uniform on `1..=2n−1` instead of exactly `n`.
    pub ragged: bool,
    /// Row counts following Zipf's law with this exponent `s` instead (overrides
    /// `ragged`): the entity of rank `r` gets about `E n r^{−s} / Σ_k k^{−s}` rows, at
    /// least one, ranks shuffled among the entities. With `s = 1` and E = 10⁴, the
    /// largest entity holds about a tenth of all rows.
    pub zipf: Option<f64>,
    pub loss: Loss,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            entities: 10_000,
            rows_per_entity: 50,
            features: 16,
            density: 1.0,
            ragged: false,
            zipf: None,
            loss: Loss::Logistic,
            seed: 42,
        }
    }
}

/// A workload and the truth it was drawn from.
pub struct Synthetic {
    pub data: Dataset,
    /// Global fixed effect: intercept, then one coefficient per feature column.
    pub global: Vec<f64>,
    /// True per-entity effects: intercept, then one coefficient per feature column.
    pub truth: Vec<Vec<f64>>,
}

/// Feature column `j` is named `("f", j)`.
pub fn feature_key(j: usize) -> FeatureKey {
    FeatureKey::new("f", j.to_string())
}

pub fn generate(spec: &SyntheticSpec) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let d = spec.features;
    let sparse = spec.density < 1.0;
    let per_row = if sparse {
        (spec.density * d as f64).max(1.0)
    } else {
        d as f64
    };
    let global: Vec<f64> = std::iter::once(-1.0)
        .chain((0..d).map(|_| 0.3 * rng.sample::<f64, _>(StandardNormal)))
        .collect();
    let effect_sd = 0.5 / per_row.sqrt();
    let noise = Normal::new(0.0, 0.5).expect("valid normal");

    let zipf_rows = spec.zipf.map(|s| zipf_row_counts(spec, s, &mut rng));
    let mut data = Dataset::new();
    // Reserved up front: growing by doubling would leave up to twice the data allocated.
    let rows = match &zipf_rows {
        Some(counts) => counts.iter().sum(),
        None => spec.entities * spec.rows_per_entity,
    };
    data.reserve(rows, (rows as f64 * per_row).ceil() as usize);
    for j in 0..d {
        data.features.id(&feature_key(j));
    }
    let mut truth = Vec::with_capacity(spec.entities);
    let mut row = Vec::with_capacity(d);
    for e in 0..spec.entities {
        let id = data.entities.id(&format!("e{e}"));
        let theta: Vec<f64> = std::iter::once(0.5 * rng.sample::<f64, _>(StandardNormal))
            .chain((0..d).map(|_| effect_sd * rng.sample::<f64, _>(StandardNormal)))
            .collect();
        let n = if let Some(counts) = &zipf_rows {
            counts[e]
        } else if spec.ragged {
            rng.gen_range(1..=(2 * spec.rows_per_entity).saturating_sub(1).max(1))
        } else {
            spec.rows_per_entity
        };
        for _ in 0..n {
            row.clear();
            for j in 0..d {
                if sparse {
                    if rng.gen::<f64>() < spec.density {
                        row.push((j as u32, 1.0));
                    }
                } else {
                    row.push((j as u32, rng.sample(StandardNormal)));
                }
            }
            let offset = global[0]
                + row
                    .iter()
                    .map(|&(j, v)| global[j as usize + 1] * v)
                    .sum::<f64>();
            let margin = offset
                + theta[0]
                + row
                    .iter()
                    .map(|&(j, v)| theta[j as usize + 1] * v)
                    .sum::<f64>();
            let label = match spec.loss {
                Loss::Logistic => f64::from(u8::from(rng.gen::<f64>() < sigmoid(margin))),
                Loss::Squared => margin + noise.sample(&mut rng),
            };
            let timestamp = rng.gen::<f64>();
            data.push_interned(id, label, 1.0, offset, Some(timestamp), &row);
        }
        truth.push(theta);
    }
    Synthetic {
        data,
        global,
        truth,
    }
}

/// Zipf row counts of [`SyntheticSpec::zipf`], entity by entity.
fn zipf_row_counts(spec: &SyntheticSpec, s: f64, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let weights: Vec<f64> = (1..=spec.entities).map(|r| (r as f64).powf(-s)).collect();
    let total = (spec.entities * spec.rows_per_entity) as f64 / weights.iter().sum::<f64>();
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| ((w * total).round() as usize).max(1))
        .collect();
    rand::seq::SliceRandom::shuffle(counts.as_mut_slice(), rng);
    counts
}

/// Rows of `data` whose timestamp lies in `[from, to)`, as a new dataset in time order.
pub fn time_slice(data: &Dataset, from: f64, to: f64) -> Dataset {
    let mut rows: Vec<usize> = (0..data.num_rows())
        .filter(|&i| data.timestamp[i].is_some_and(|t| t >= from && t < to))
        .collect();
    rows.sort_by(|&a, &b| {
        data.timestamp[a]
            .partial_cmp(&data.timestamp[b])
            .expect("finite timestamps")
    });
    let mut out = Dataset::new();
    for &i in &rows {
        out.push_row_of(data, i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_row_counts_are_skewed_with_the_requested_mean() {
        let spec = SyntheticSpec {
            entities: 10_000,
            rows_per_entity: 100,
            ..SyntheticSpec::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = zipf_row_counts(&spec, 1.0, &mut rng);
        let total: usize = counts.iter().sum();
        // Rounding to whole rows, and the floor of one row, move the total a little.
        assert!((total as f64 / 1e6 - 1.0).abs() < 0.01, "{total}");
        counts.sort_unstable_by(|a, b| b.cmp(a));
        // Rank 1 holds 1/H(10⁴) ≈ 10.2% of the rows; the top 1% of entities over half.
        assert!((counts[0] as f64 / total as f64 - 0.102).abs() < 0.002);
        assert!(counts[..100].iter().sum::<usize>() * 2 > total);
        assert!(*counts.last().unwrap() >= 1);
    }
}
