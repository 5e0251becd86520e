//! Level-1 vector kernels shared by the objectives and the solver.
//!
//! [`dot`] keeps four partial sums: a single running sum makes every addition wait for
//! the previous one (a 4-cycle latency each), while four independent ones let the CPU
//! overlap them and the compiler use SIMD. The result differs from the sequential sum
//! only by rounding.

/// `a · b` over the shorter length.
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let (chunks_a, chunks_b) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `Σ a_i`, in [`dot`]'s four lanes.
#[inline(always)]
pub fn sum4(a: &[f64]) -> f64 {
    let chunks = a.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().sum();
    let mut acc = [0.0f64; 4];
    for x in chunks {
        acc[0] += x[0];
        acc[1] += x[1];
        acc[2] += x[2];
        acc[3] += x[3];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `x_q · b` for the four rows `x_q = x[q d..(q+1) d]` of a row-major 4×d block, each
/// rounded exactly as [`dot`] rounds it. The four rows are summed together, so their
/// sums overlap and `b` is read once for all four.
#[inline(always)]
pub fn dot4(x: &[f64], b: &[f64]) -> [f64; 4] {
    let d = b.len();
    let x = &x[..4 * d];
    let full = d - d % 4;
    let mut acc = [[0.0f64; 4]; 4];
    for c in (0..full).step_by(4) {
        for (q, acc) in acc.iter_mut().enumerate() {
            let row = &x[q * d + c..q * d + c + 4];
            acc[0] += row[0] * b[c];
            acc[1] += row[1] * b[c + 1];
            acc[2] += row[2] * b[c + 2];
            acc[3] += row[3] * b[c + 3];
        }
    }
    let mut out = row_tails(x, b, full);
    for (out, acc) in out.iter_mut().zip(&acc) {
        *out += (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
    out
}

/// `Σ_{c ≥ full} x_qc b_c` of each row of a row-major 4×d block: the columns past the
/// last full group of four, summed in order as [`dot`] sums its tail.
#[inline(always)]
fn row_tails(x: &[f64], b: &[f64], full: usize) -> [f64; 4] {
    let d = b.len();
    std::array::from_fn(|q| (full..d).map(|c| x[q * d + c] * b[c]).sum())
}

/// [`dot4`] with AVX2 intrinsics: the four rows' partial sums stay in four 4-lane
/// registers and are reduced together (`hadd`, then the 128-bit halves swapped and
/// added), which rounds exactly as [`dot4`]: `(s₀ + s₁) + (s₂ + s₃)`, then the tail.
/// Left to itself the compiler vectorises [`dot4`] across rows instead, with shuffles.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn dot4_avx2(x: &[f64], b: &[f64]) -> [f64; 4] {
    use std::arch::x86_64::*;
    let d = b.len();
    let x = &x[..4 * d];
    let full = d - d % 4;
    let mut acc = [_mm256_setzero_pd(); 4];
    for c in (0..full).step_by(4) {
        // SAFETY: c + 4 ≤ full ≤ d, and row q spans x[q d..(q+1) d].
        let bv = unsafe { _mm256_loadu_pd(b.as_ptr().add(c)) };
        for (q, acc) in acc.iter_mut().enumerate() {
            let xv = unsafe { _mm256_loadu_pd(x.as_ptr().add(q * d + c)) };
            *acc = _mm256_add_pd(*acc, _mm256_mul_pd(xv, bv));
        }
    }
    let h01 = _mm256_hadd_pd(acc[0], acc[1]); // s0+s1 (rows 0, 1), s2+s3 (rows 0, 1)
    let h23 = _mm256_hadd_pd(acc[2], acc[3]);
    let low = _mm256_permute2f128_pd(h01, h23, 0x20);
    let high = _mm256_permute2f128_pd(h01, h23, 0x31);
    let mut sums = [0.0; 4];
    unsafe { _mm256_storeu_pd(sums.as_mut_ptr(), _mm256_add_pd(low, high)) };
    let mut out = row_tails(x, b, full);
    for (out, sum) in out.iter_mut().zip(sums) {
        *out += sum;
    }
    out
}

/// `y ← c (y + a x)`, returning `z · y` of the new `y`: one pass where a two-loop
/// recursion would take an [`axpy`] then a [`dot`], summed in [`dot`]'s four lanes.
#[inline(always)]
pub fn axpy_scale_dot(a: f64, x: &[f64], c: f64, y: &mut [f64], z: &[f64]) -> f64 {
    let n = y.len();
    let (x, z) = (&x[..n], &z[..n]);
    let mut acc = [0.0f64; 4];
    let full = n - n % 4;
    for j in (0..full).step_by(4) {
        for q in 0..4 {
            let v = c * (y[j + q] + a * x[j + q]);
            y[j + q] = v;
            acc[q] += z[j + q] * v;
        }
    }
    let mut tail = 0.0;
    for j in full..n {
        let v = c * (y[j] + a * x[j]);
        y[j] = v;
        tail += z[j] * v;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `y ← y + a x`.
#[inline(always)]
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// The four rows of a row-major 4×d block, each of length `d`.
#[inline(always)]
fn rows4(x: &[f64], d: usize) -> [&[f64]; 4] {
    let x = &x[..4 * d];
    std::array::from_fn(|q| &x[q * d..(q + 1) * d])
}

/// `y ← y + a_0 x_0 + a_1 x_1 + a_2 x_2 + a_3 x_3` for the four rows `x_q = x[q d..(q+1) d]`
/// of a row-major 4×d block, added in that order: the same bits as four [`axpy`]s, with `y`
/// loaded and stored once.
#[inline(always)]
pub fn axpy4(a: [f64; 4], x: &[f64], y: &mut [f64]) {
    let [x0, x1, x2, x3] = rows4(x, y.len());
    for c in 0..y.len() {
        y[c] = (((y[c] + a[0] * x0[c]) + a[1] * x1[c]) + a[2] * x2[c]) + a[3] * x3[c];
    }
}

/// `y ← y + a_0 x_0² + a_1 x_1² + a_2 x_2² + a_3 x_3²` (squares taken elementwise, each term
/// rounded as `(a_q x) x`) for the four rows of a row-major 4×d block, added in that order:
/// the same bits as adding the rows one at a time, with `y` loaded and stored once.
#[inline(always)]
pub fn add_squares4(a: [f64; 4], x: &[f64], y: &mut [f64]) {
    let [x0, x1, x2, x3] = rows4(x, y.len());
    for c in 0..y.len() {
        y[c] = (((y[c] + a[0] * x0[c] * x0[c]) + a[1] * x1[c] * x1[c]) + a[2] * x2[c] * x2[c])
            + a[3] * x3[c] * x3[c];
    }
}

/// `max_j |v_j|` (0 for an empty vector).
#[inline]
pub fn inf_norm(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_on_every_length() {
        for n in 0..13 {
            let a: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
            let b: Vec<f64> = (0..n).map(|i| 2.0 - i as f64).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), plain, "n = {n}");
        }
    }

    #[test]
    fn sum4_rounds_as_dot_with_ones() {
        for n in 0..13 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
            assert_eq!(sum4(&a), dot(&a, &vec![1.0; n]), "n = {n}");
        }
    }

    #[test]
    fn dot4_rounds_each_row_as_dot() {
        for d in 0..13 {
            let x: Vec<f64> = (0..4 * d).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
            let b: Vec<f64> = (0..d).map(|i| (i as f64 * 1.3).cos() / 7.0).collect();
            let want: Vec<f64> = (0..4).map(|q| dot(&x[q * d..(q + 1) * d], &b)).collect();
            assert_eq!(dot4(&x, &b).to_vec(), want, "d = {d}");
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn dot4_avx2_rounds_as_dot4() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for d in 0..21 {
            let x: Vec<f64> = (0..4 * d).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
            let b: Vec<f64> = (0..d).map(|i| (i as f64 * 1.3).cos() / 7.0).collect();
            // SAFETY: AVX2 was detected above.
            let got = unsafe { dot4_avx2(&x, &b) };
            let want = dot4(&x, &b);
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "d = {d}");
        }
    }

    #[test]
    fn axpy4_adds_as_four_axpys() {
        for d in 0..9 {
            let x: Vec<f64> = (0..4 * d).map(|i| (i as f64 * 0.91).sin() * 1e2).collect();
            let a = [0.3, -1.7, 2.9e-3, 11.0];
            let mut want: Vec<f64> = (0..d).map(|i| i as f64 / 3.0).collect();
            let mut got = want.clone();
            for q in 0..4 {
                axpy(a[q], &x[q * d..(q + 1) * d], &mut want);
            }
            axpy4(a, &x, &mut got);
            assert_eq!(got, want, "d = {d}");
        }
    }

    #[test]
    fn add_squares4_adds_as_four_rows() {
        for d in 0..9 {
            let x: Vec<f64> = (0..4 * d).map(|i| (i as f64 * 0.91).sin() * 1e2).collect();
            let a = [0.3, 1.7, 2.9e-3, 11.0];
            let mut want: Vec<f64> = (0..d).map(|i| i as f64 / 3.0).collect();
            let mut got = want.clone();
            for q in 0..4 {
                for c in 0..d {
                    want[c] += a[q] * x[q * d + c] * x[q * d + c];
                }
            }
            add_squares4(a, &x, &mut got);
            assert_eq!(got, want, "d = {d}");
        }
    }

    #[test]
    fn axpy_scale_dot_rounds_as_axpy_then_dot() {
        for n in [0, 3, 4, 17] {
            let x: Vec<f64> = (0..n).map(|j| (j as f64 * 0.7).sin()).collect();
            let z: Vec<f64> = (0..n).map(|j| (j as f64 * 1.3).cos()).collect();
            let mut y: Vec<f64> = (0..n).map(|j| 0.1 * j as f64 - 0.4).collect();
            let mut expected = y.clone();
            axpy(-0.37, &x, &mut expected);
            expected.iter_mut().for_each(|v| *v *= 1.9);
            let t = axpy_scale_dot(-0.37, &x, 1.9, &mut y, &z);
            assert_eq!(y, expected);
            assert_eq!(t.to_bits(), dot(&z, &expected).to_bits());
        }
    }

    #[test]
    fn axpy_and_inf_norm() {
        let mut y = [1.0, -1.0];
        axpy(2.0, &[0.5, 3.0], &mut y);
        assert_eq!(y, [2.0, 5.0]);
        assert_eq!(inf_norm(&y), 5.0);
        assert_eq!(inf_norm(&[]), 0.0);
    }
}
