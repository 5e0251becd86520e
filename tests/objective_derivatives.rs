//! Gradients and Hessians of every objective against central finite differences.

mod common;

use common::{random_batch, random_point};
use glmix::objective::{ObjectiveKind, PrecisionShape};
use proptest::prelude::*;

fn objective() -> impl Strategy<Value = ObjectiveKind> {
    prop::sample::select(ObjectiveKind::ALL.to_vec())
}

fn shape() -> impl Strategy<Value = PrecisionShape> {
    prop::sample::select(vec![PrecisionShape::Diagonal, PrecisionShape::Full])
}

/// Central difference of `f` along coordinate `j` with step `h`.
fn central(f: &dyn Fn(&[f64]) -> f64, x: &[f64], j: usize, h: f64) -> f64 {
    let mut a = x.to_vec();
    let mut b = x.to_vec();
    a[j] += h;
    b[j] -= h;
    (f(&a) - f(&b)) / (2.0 * h)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn gradient_matches_finite_differences(seed in any::<u64>(), obj in objective(), shape in shape()) {
        let batch = random_batch(seed, 1, 12, 6, obj, shape);
        let p = batch.entity(0);
        let theta = random_point(seed ^ 1, &batch, 2.0);
        let mut g = vec![0.0; theta.len()];
        p.value_and_gradient(&theta, &mut g);
        for (j, &gj) in g.iter().enumerate() {
            let fd = central(&|x| p.value(x), &theta, j, 1e-5);
            prop_assert!((gj - fd).abs() <= 1e-6 * (1.0 + gj.abs()), "coef {j}: analytic {gj} vs fd {fd}");
        }
    }

    #[test]
    fn hessian_matches_finite_differences_of_the_gradient(seed in any::<u64>(), obj in objective(), shape in shape()) {
        let batch = random_batch(seed, 1, 12, 6, obj, shape);
        let p = batch.entity(0);
        let theta = random_point(seed ^ 2, &batch, 2.0);
        let d = theta.len();
        let h = p.hessian_full(&theta);
        let diag = p.hessian_diagonal(&theta);
        for k in 0..d {
            let grad_k = |x: &[f64]| {
                let mut g = vec![0.0; d];
                p.value_and_gradient(x, &mut g);
                g[k]
            };
            for j in 0..d {
                let fd = central(&grad_k, &theta, j, 1e-5);
                prop_assert!((h[k * d + j] - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "H[{k}][{j}] = {} vs fd {fd}", h[k * d + j]);
            }
            prop_assert!((diag[k] - h[k * d + k]).abs() <= 1e-12 * (1.0 + diag[k].abs()));
        }
        let data_full = p.data_hessian_full(&theta);
        let data_diag = p.data_hessian_diagonal(&theta);
        for k in 0..d {
            prop_assert!((data_diag[k] - data_full[k * d + k]).abs() <= 1e-12 * (1.0 + data_diag[k].abs()));
        }
    }
}

#[test]
fn logistic_gradient_keeps_its_size_at_huge_margins() {
    // One row, huge offset pushing the margin to ±1000: loss must be finite and the
    // gradient of the data term must be exactly ±w (not NaN, not 0).
    use glmix::objective::{Loss, TrainingBatch};
    for (offset, label, expect_loss, expect_grad) in
        [(-1000.0, 1.0, 1000.0, -1.0), (1000.0, -1.0, 1000.0, 1.0)]
    {
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        b.push_row(label, 1.0, offset, [], &[]);
        b.finish_entity(&[0.0], &[0.0], &[]);
        let batch = b.build();
        let mut g = [0.0];
        let f = batch.entity(0).value_and_gradient(&[0.0], &mut g);
        assert_eq!(f, expect_loss);
        assert_eq!(g[0], expect_grad);
    }
}
