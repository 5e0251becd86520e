//! The logistic rows of the CPU evaluator, four at a time in AVX2 registers.
//!
//! - [`exp_nonpositive4`] is [`exp_nonpositive`] of four lanes;
//! - [`logistic_block`] is [`super::logistic_block`]: each row's
//!   [`logistic_row_deferred`], the losses summed in four lanes and [`LogSum`];
//! - [`logistic_second_derivatives`] is [`super::Loss::second_derivative`] of a block, for
//!   the posterior's Hessian diagonal.
//!
//! Each does the same operations in the same order as the scalar code, with no FMA (every
//! product and sum is rounded as the scalar code rounds it), so each lane holds the same
//! bits; the tests check them. The compiler vectorises the scalar row loops by itself, but
//! spills their constants and selects. Written with intrinsics, one entity of 50 rows × 17
//! columns (64 such entities in turn, fastest of 30 runs each) takes 495 → 401 ns for its
//! loss and gradient and 545 → 407 ns for its Hessian diagonal.
//!
//! [`logistic_row_deferred`]: super::logistic_row_deferred
//! [`exp_nonpositive`]: super::exp_nonpositive

use super::exp::{LN2_HI, LN2_LO, LOG2_E, ROUNDER};
use super::LogSum;
use std::arch::x86_64::*;

/// `e^x` of each lane, `x ≤ 0`, as [`super::exp_nonpositive`] computes it.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn exp_nonpositive4(x: __m256d) -> __m256d {
    let c = _mm256_set1_pd;
    let underflow = _mm256_cmp_pd::<_CMP_LT_OQ>(x, c(-708.0));
    let x = _mm256_blendv_pd(x, c(-708.0), underflow);
    let shifted = _mm256_add_pd(_mm256_mul_pd(x, c(LOG2_E)), c(ROUNDER));
    let k = _mm256_sub_pd(shifted, c(ROUNDER));
    let r = _mm256_sub_pd(
        _mm256_sub_pd(x, _mm256_mul_pd(k, c(LN2_HI))),
        _mm256_mul_pd(k, c(LN2_LO)),
    );
    let r2 = _mm256_mul_pd(r, r);
    let r4 = _mm256_mul_pd(r2, r2);
    // `a + r b`, the first level of Estrin's tree.
    let pair = |a: f64, b: f64| _mm256_add_pd(c(a), _mm256_mul_pd(r, c(b)));
    let a0 = pair(1.0 / 2.0, 1.0 / 6.0);
    let a1 = pair(1.0 / 24.0, 1.0 / 120.0);
    let a2 = pair(1.0 / 720.0, 1.0 / 5_040.0);
    let a3 = pair(1.0 / 40_320.0, 1.0 / 362_880.0);
    let a4 = pair(1.0 / 3_628_800.0, 1.0 / 39_916_800.0);
    let a5 = pair(1.0 / 479_001_600.0, 1.0 / 6_227_020_800.0);
    let b0 = _mm256_add_pd(a0, _mm256_mul_pd(r2, a1));
    let b1 = _mm256_add_pd(a2, _mm256_mul_pd(r2, a3));
    let b2 = _mm256_add_pd(a4, _mm256_mul_pd(r2, a5));
    let tail = _mm256_add_pd(
        b0,
        _mm256_mul_pd(r4, _mm256_add_pd(b1, _mm256_mul_pd(r4, b2))),
    );
    let p = _mm256_add_pd(c(1.0), _mm256_add_pd(r, _mm256_mul_pd(r2, tail)));
    let k_bits = _mm256_sub_epi64(
        _mm256_castpd_si256(shifted),
        _mm256_set1_epi64x(ROUNDER.to_bits() as i64),
    );
    let two_k = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_add_epi64(
        k_bits,
        _mm256_set1_epi64x(1023),
    )));
    _mm256_blendv_pd(_mm256_mul_pd(p, two_k), _mm256_setzero_pd(), underflow)
}

/// [`super::logistic_row_deferred`] of four lanes: `(w max(−z, 0), 1 + e^{−|z|}, ℓ')`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn logistic_row_deferred4(
    margin: __m256d,
    label: __m256d,
    weight: __m256d,
) -> (__m256d, __m256d, __m256d) {
    let sign = _mm256_set1_pd(-0.0);
    let zero = _mm256_setzero_pd();
    let z = _mm256_mul_pd(label, margin);
    let e = exp_nonpositive4(_mm256_or_pd(z, sign)); // −|z|: the sign bit set
    let one_plus = _mm256_add_pd(_mm256_set1_pd(1.0), e);
    let r = _mm256_div_pd(_mm256_set1_pd(1.0), one_plus);
    let z_nonnegative = _mm256_cmp_pd::<_CMP_GE_OQ>(z, zero);
    let sig_neg_z = _mm256_blendv_pd(r, _mm256_mul_pd(e, r), z_nonnegative);
    // `maxpd` returns its second operand when either is NaN, as `f64::max` returns 0.
    let linear = _mm256_mul_pd(weight, _mm256_max_pd(_mm256_xor_pd(z, sign), zero));
    let slope = _mm256_mul_pd(_mm256_mul_pd(_mm256_xor_pd(weight, sign), label), sig_neg_z);
    (linear, one_plus, slope)
}

/// The logistic terms of a block of rows `margin[k]`, `labels[k]`, `weights[k]`, four at
/// a time: `ℓ'` into `slope[k]`, and `ℓ` added to the four lane sums `sums` (row k in lane
/// k mod 4) and to `logs`, exactly as the portable block loop of
/// [`super::EntityProblem::data_value_and_gradient`] adds them: a unit-weight row's
/// logarithm is left to `logs`, a weighted row takes its own, and lanes past the last row
/// add 0 and a factor 1. `slope` is written up to the next multiple of four; what lies
/// past the last row is unspecified.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn logistic_block<const N: usize>(
    margin: &[f64; N],
    labels: &[f64],
    weights: &[f64],
    sums: &mut [f64; 4],
    logs: &mut LogSum,
    slope: &mut [f64; N],
) {
    const { assert!(N.is_multiple_of(4)) };
    let len = labels.len();
    assert!(len <= N && weights.len() == len);
    // SAFETY: `sums` holds four values.
    let mut lane_sums = unsafe { _mm256_loadu_pd(sums.as_ptr()) };
    let mut k = 0;
    while k < len {
        let rows = (len - k).min(4);
        let (label, weight) = if rows == 4 {
            // SAFETY: k + 4 ≤ len, the length of both slices.
            unsafe {
                (
                    _mm256_loadu_pd(labels.as_ptr().add(k)),
                    _mm256_loadu_pd(weights.as_ptr().add(k)),
                )
            }
        } else {
            let lane = |v: &[f64], q: usize| v.get(k + q).copied().unwrap_or(1.0);
            let (l, w) = (|q| lane(labels, q), |q| lane(weights, q));
            (
                _mm256_set_pd(l(3), l(2), l(1), l(0)),
                _mm256_set_pd(w(3), w(2), w(1), w(0)),
            )
        };
        // SAFETY: k < len ≤ N and N is a multiple of 4, so k + 4 ≤ N.
        let m = unsafe { _mm256_loadu_pd(margin.as_ptr().add(k)) };
        let (mut linear, mut one_plus, s) = logistic_row_deferred4(m, label, weight);
        let weighted = _mm256_cmp_pd::<_CMP_NEQ_UQ>(weight, _mm256_set1_pd(1.0));
        if rows < 4 || _mm256_movemask_pd(weighted) != 0 {
            let (mut l, mut o, mut w) = ([0.0; 4], [0.0; 4], [0.0; 4]);
            // SAFETY: each array holds four values.
            unsafe {
                _mm256_storeu_pd(l.as_mut_ptr(), linear);
                _mm256_storeu_pd(o.as_mut_ptr(), one_plus);
                _mm256_storeu_pd(w.as_mut_ptr(), weight);
            }
            for q in 0..4 {
                if q >= rows {
                    (l[q], o[q]) = (0.0, 1.0);
                } else if w[q] != 1.0 {
                    l[q] += w[q] * o[q].ln();
                    o[q] = 1.0;
                }
            }
            // SAFETY: each array holds four values.
            unsafe {
                linear = _mm256_loadu_pd(l.as_ptr());
                one_plus = _mm256_loadu_pd(o.as_ptr());
            }
        }
        lane_sums = _mm256_add_pd(lane_sums, linear);
        let mut factors = [0.0; 4];
        // SAFETY: `factors` holds four values, and k + 4 ≤ N as above.
        unsafe {
            _mm256_storeu_pd(factors.as_mut_ptr(), one_plus);
            _mm256_storeu_pd(slope.as_mut_ptr().add(k), s);
        }
        logs.add4(&factors);
        k += 4;
    }
    // SAFETY: `sums` holds four values.
    unsafe { _mm256_storeu_pd(sums.as_mut_ptr(), lane_sums) };
}

/// [`super::Loss::second_derivative`] of the logistic loss, `w e^{−|m|} / (1 + e^{−|m|})²`,
/// of the rows `margin[k]`, `weights[k]` (`k < weights.len()`), written over the margins,
/// four rows at a time. What lies past the last row up to the next multiple of four is
/// overwritten with unspecified values.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn logistic_second_derivatives<const N: usize>(margin: &mut [f64; N], weights: &[f64]) {
    const { assert!(N.is_multiple_of(4)) };
    let len = weights.len();
    assert!(len <= N);
    let abs = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let mut k = 0;
    while k < len {
        let weight = if k + 4 <= len {
            // SAFETY: k + 4 ≤ len, the length of `weights`.
            unsafe { _mm256_loadu_pd(weights.as_ptr().add(k)) }
        } else {
            let w = |q: usize| weights.get(k + q).copied().unwrap_or(1.0);
            _mm256_set_pd(w(3), w(2), w(1), w(0))
        };
        // SAFETY: k < len ≤ N and N is a multiple of 4, so k + 4 ≤ N.
        let m = unsafe { _mm256_loadu_pd(margin.as_ptr().add(k)) };
        // −|m|: the sign bit cleared, then set.
        let e = exp_nonpositive4(_mm256_or_pd(_mm256_and_pd(m, abs), _mm256_set1_pd(-0.0)));
        let one_plus = _mm256_add_pd(_mm256_set1_pd(1.0), e);
        let d2 = _mm256_div_pd(_mm256_mul_pd(weight, e), _mm256_mul_pd(one_plus, one_plus));
        // SAFETY: as for the load.
        unsafe { _mm256_storeu_pd(margin.as_mut_ptr().add(k), d2) };
        k += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{exp_nonpositive, Loss};
    use super::*;

    /// Inputs over the whole range, near the reduction's boundaries, and special values.
    fn inputs() -> Vec<f64> {
        let mut x: Vec<f64> = (0..20_000).map(|i| -750.0 * i as f64 / 20_000.0).collect();
        x.extend((0..2_000).map(|i| -(i as f64) * std::f64::consts::LN_2 / 2.0));
        x.extend([
            0.0,
            -0.0,
            -1e-300,
            -5e-324,
            -708.0,
            -708.0000001,
            -707.9999999,
            f64::NEG_INFINITY,
            f64::NAN,
        ]);
        x
    }

    /// Margins of either sign from [`inputs`], some smaller.
    fn margins() -> Vec<f64> {
        let scaled = |x: f64| [x, -x, x / 37.0, -x / 37.0];
        inputs().into_iter().flat_map(scaled).collect()
    }

    #[test]
    fn exp4_has_the_bits_of_the_scalar_exp() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for four in inputs().chunks_exact(4) {
            let mut got = [0.0; 4];
            // SAFETY: AVX2 was detected above.
            unsafe {
                let v = exp_nonpositive4(_mm256_loadu_pd(four.as_ptr()));
                _mm256_storeu_pd(got.as_mut_ptr(), v);
            }
            for (x, g) in four.iter().zip(got) {
                let want = exp_nonpositive(*x);
                assert!(same(g, want), "e^{x}: {g} against {want}");
            }
        }
    }

    /// Slopes, lane sums and `Σ ln` of `margins` in blocks of 32 rows and partial ones
    /// (labels ±1, unit and other weights), summed into the same lane sums and logarithms
    /// as an entity's blocks are, with AVX2 or by the portable loop.
    fn blocks(margins: &[f64], avx2: bool) -> (Vec<f64>, [f64; 4], f64) {
        let (mut slopes, mut sums, mut logs) = (Vec::new(), [0.0; 4], LogSum::default());
        let mut rest = margins;
        for b in 0.. {
            if rest.is_empty() {
                break;
            }
            let len = rest.len().min(32 - b % 5);
            let mut margin = [0.0; 32];
            margin[..len].copy_from_slice(&rest[..len]);
            rest = &rest[len..];
            let labels: Vec<f64> = (0..len)
                .map(|k| if (k + b) % 3 == 0 { 1.0 } else { -1.0 })
                .collect();
            let weights: Vec<f64> = (0..len)
                .map(|k| if (k + b) % 11 == 3 { 2.5 } else { 1.0 })
                .collect();
            let mut slope = [0.0; 32];
            if avx2 {
                // SAFETY: the caller checked that the CPU has AVX2.
                unsafe {
                    logistic_block(&margin, &labels, &weights, &mut sums, &mut logs, &mut slope)
                };
            } else {
                super::super::logistic_block::<false, 32>(
                    &margin, &labels, &weights, &mut sums, &mut logs, &mut slope,
                );
            }
            slopes.extend_from_slice(&slope[..len]);
        }
        (slopes, sums, logs.total())
    }

    #[test]
    fn logistic_blocks_have_the_bits_of_the_portable_blocks() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let finite: Vec<f64> = margins().into_iter().filter(|x| x.is_finite()).collect();
        let special = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
            -1e308,
            0.0,
            -0.0,
        ];
        for margins in [&finite[..], &special[..]] {
            let (got, want) = (blocks(margins, true), blocks(margins, false));
            for (k, (g, w)) in got.0.iter().zip(&want.0).enumerate() {
                assert!(same(*g, *w), "ℓ'({}): {g} against {w}", margins[k]);
            }
            assert!(
                got.1.iter().zip(&want.1).all(|(a, b)| same(*a, *b)),
                "{:?} against {:?}",
                got.1,
                want.1
            );
            assert!(same(got.2, want.2), "Σ ln: {} against {}", got.2, want.2);
        }
        // The finite rows make finite sums, so the sums above compared real values.
        let (_, sums, logs) = blocks(&finite, true);
        assert!(sums.iter().all(|s| s.is_finite() && *s > 0.0) && logs.is_finite());
    }

    #[test]
    fn second_derivatives_have_the_bits_of_the_scalar_ones() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let margins: Vec<f64> = margins().into_iter().chain([1e308, -1e308]).collect();
        for (b, block) in margins.chunks(32).enumerate() {
            let len = block.len() - b % 5;
            let weights: Vec<f64> = (0..len)
                .map(|k| if (k + b) % 11 == 3 { 2.5 } else { 1.0 })
                .collect();
            let mut d2 = [0.0; 32];
            d2[..len].copy_from_slice(&block[..len]);
            // SAFETY: AVX2 was detected above.
            unsafe { logistic_second_derivatives(&mut d2, &weights) };
            for k in 0..len {
                let want = Loss::Logistic.second_derivative(block[k], weights[k]);
                assert!(
                    same(d2[k], want),
                    "ℓ''({}): {} against {want}",
                    block[k],
                    d2[k]
                );
            }
        }
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }
}
