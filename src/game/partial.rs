//! Partial sums of a fixed effect's data term over a share of the records, for a driver
//! that trains the fixed effect on records spread across machines (`glmix.spark`'s GAME):
//! each share returns its sums, the driver adds them and the penalty, and steps.
//!
//! With coefficients `θ` over `keys` (the intercept, when among them, has `x = 1` in
//! every record), margins `m_i = o_i + x_i·θ` and the loss's row terms `ℓ_i = w_i ℓ(m_i,
//! y_i)`, `ℓ'_i`, `ℓ''_i` (see [`crate::objective::Loss::row`]):
//!
//! - loss `Σ_i ℓ_i`,
//! - gradient `Σ_i ℓ'_i x_i`,
//! - Hessian diagonal `Σ_i ℓ''_i x_ij²`, on request.
//!
//! A record's features outside `keys` are not part of the model and add nothing.

use crate::data::{Dataset, FeatureKey};
use crate::objective::{training_label, Loss};
use std::collections::HashMap;

/// The sums of one share of the records.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialSums {
    pub loss: f64,
    /// In the order of `keys`.
    pub gradient: Vec<f64>,
    pub hessian_diagonal: Option<Vec<f64>>,
    /// `x_i·θ` of every record, in record order (its offset not included).
    pub scores: Vec<f64>,
}

/// The partial sums of `data` at `theta` (see the module doc).
pub fn fixed_effect_sums(
    data: &Dataset,
    keys: &[FeatureKey],
    theta: &[f64],
    loss: Loss,
    with_hessian: bool,
) -> PartialSums {
    assert_eq!(keys.len(), theta.len(), "one coefficient per key");
    let at: HashMap<&FeatureKey, usize> = keys.iter().enumerate().map(|(j, k)| (k, j)).collect();
    let intercept = at.get(&FeatureKey::intercept()).copied();
    // Dataset feature id → coefficient.
    let column: Vec<Option<usize>> = data
        .features
        .keys()
        .iter()
        .map(|k| at.get(k).copied())
        .collect();
    let d = keys.len();
    let mut sums = PartialSums {
        loss: 0.0,
        gradient: vec![0.0; d],
        hessian_diagonal: with_hessian.then(|| vec![0.0; d]),
        scores: Vec::with_capacity(data.num_rows()),
    };
    for i in 0..data.num_rows() {
        let (ids, values) = data.row_features(i);
        let mut score = intercept.map_or(0.0, |j| theta[j]);
        for (&f, &v) in ids.iter().zip(values) {
            if let Some(j) = column[f as usize] {
                score += theta[j] * v;
            }
        }
        sums.scores.push(score);
        let y = training_label(loss, data.label[i]);
        let row = loss.row(data.offset[i] + score, y, data.weight[i]);
        sums.loss += row.loss;
        let mut add = |j: usize, x: f64| {
            sums.gradient[j] += row.d1 * x;
            if let Some(h) = &mut sums.hessian_diagonal {
                h[j] += row.d2 * x * x;
            }
        };
        if let Some(j) = intercept {
            add(j, 1.0);
        }
        for (&f, &v) in ids.iter().zip(values) {
            if let Some(j) = column[f as usize] {
                add(j, v);
            }
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_the_hand_computed_ones() {
        // Squared loss, ℓ = w/2 (m − y)², ℓ' = w (m − y), ℓ'' = w.
        let mut data = Dataset::new();
        let f = |v: f64| {
            vec![
                (FeatureKey::new("f", ""), v),
                (FeatureKey::new("g", ""), 9.0),
            ]
        };
        data.push("a", 1.0, 2.0, 0.5, None, f(2.0));
        data.push("b", -1.0, 1.0, 0.0, None, f(-1.0));
        let keys = [FeatureKey::intercept(), FeatureKey::new("f", "")];
        let s = fixed_effect_sums(&data, &keys, &[0.25, 1.0], Loss::Squared, true);
        // Margins 0.5 + 0.25 + 2 = 2.75 and 0.25 − 1 = −0.75; residuals 1.75 and 0.25.
        assert_eq!(s.scores, [2.25, -0.75]);
        assert_eq!(s.loss, 0.5 * 2.0 * 1.75 * 1.75 + 0.5 * 0.25 * 0.25);
        assert_eq!(s.gradient, [2.0 * 1.75 + 0.25, 2.0 * 1.75 * 2.0 - 0.25]);
        assert_eq!(s.hessian_diagonal, Some(vec![3.0, 2.0 * 4.0 + 1.0]));
    }

    #[test]
    fn a_logistic_gradient_matches_finite_differences() {
        let mut data = Dataset::new();
        for i in 0..40 {
            let x = (i as f64 * 0.37).sin();
            let features = [
                (FeatureKey::new("x", ""), x),
                (FeatureKey::new("z", "t"), 1.0),
            ];
            data.push("e", f64::from(i % 3 == 0), 1.0, 0.1, None, features);
        }
        let keys = [
            FeatureKey::intercept(),
            FeatureKey::new("x", ""),
            FeatureKey::new("z", "t"),
        ];
        let theta = [0.2, -0.7, 0.3];
        let s = fixed_effect_sums(&data, &keys, &theta, Loss::Logistic, false);
        for j in 0..3 {
            let h = 1e-6;
            let mut up = theta;
            up[j] += h;
            let mut down = theta;
            down[j] -= h;
            let f = |t: &[f64]| fixed_effect_sums(&data, &keys, t, Loss::Logistic, false).loss;
            let numeric = (f(&up) - f(&down)) / (2.0 * h);
            assert!(
                (numeric - s.gradient[j]).abs() < 1e-6,
                "{j}: {numeric} vs {}",
                s.gradient[j]
            );
        }
    }
}
