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

/// `y ← y + a x`.
#[inline(always)]
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
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
    fn axpy_and_inf_norm() {
        let mut y = [1.0, -1.0];
        axpy(2.0, &[0.5, 3.0], &mut y);
        assert_eq!(y, [2.0, 5.0]);
        assert_eq!(inf_norm(&y), 5.0);
        assert_eq!(inf_norm(&[]), 0.0);
    }
}
