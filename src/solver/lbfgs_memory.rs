//! The L-BFGS inverse-Hessian approximation: `m` correction pairs and the two-loop recursion.
//!
//! With pairs `s_k = x_{k+1} − x_k`, `y_k = g_{k+1} − g_k`, `ρ_k = 1/(y_kᵀs_k)`, the
//! direction `p = −H_k g` is computed by Nocedal & Wright, *Numerical Optimization*
//! (2006), Algorithm 7.4, with `H⁰ = (sᵀy / yᵀy) I` from the newest pair.

use crate::vector::{axpy, axpy_scale_dot, dot};

/// A ring buffer of at most `m` correction pairs of dimension `d`, in storage the caller
/// lends (so that a batch's solver keeps all its memories in one allocation).
#[derive(Debug)]
pub struct LbfgsMemory<'a> {
    d: usize,
    m: usize,
    s: &'a mut [f64],
    y: &'a mut [f64],
    rho: &'a mut [f64],
    /// Index of the oldest pair.
    head: usize,
    len: usize,
    /// `γ = sᵀy / yᵀy` of the newest pair.
    gamma: f64,
}

impl<'a> LbfgsMemory<'a> {
    /// The length of the storage [`LbfgsMemory::new`] takes: `(2d + 1) m`.
    pub fn storage_len(d: usize, m: usize) -> usize {
        (2 * d + 1) * m
    }

    /// An empty memory in `storage`, of length [`LbfgsMemory::storage_len`]`(d, m)`.
    pub fn new(d: usize, m: usize, storage: &'a mut [f64]) -> Self {
        assert_eq!(
            storage.len(),
            Self::storage_len(d, m),
            "L-BFGS storage length"
        );
        let (s, rest) = storage.split_at_mut(d * m);
        let (y, rho) = rest.split_at_mut(d * m);
        LbfgsMemory {
            d,
            m,
            s,
            y,
            rho,
            head: 0,
            len: 0,
            gamma: 1.0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.head = 0;
    }

    /// Store a pair if it has positive curvature (`sᵀy > ε yᵀy`); returns whether it was kept.
    pub fn push(&mut self, s: &[f64], y: &[f64]) -> bool {
        let sy = dot(s, y);
        let yy = dot(y, y);
        if self.m == 0 || sy.is_nan() || sy <= f64::EPSILON * yy || !sy.is_finite() {
            return false;
        }
        let slot = (self.head + self.len) % self.m;
        if self.len == self.m {
            self.head = (self.head + 1) % self.m;
        } else {
            self.len += 1;
        }
        self.s[slot * self.d..(slot + 1) * self.d].copy_from_slice(s);
        self.y[slot * self.d..(slot + 1) * self.d].copy_from_slice(y);
        self.rho[slot] = 1.0 / sy;
        self.gamma = sy / yy;
        true
    }

    fn pair(&self, k: usize) -> (&[f64], &[f64], f64) {
        // `head + k < 2m`: one comparison instead of a division.
        let slot = match self.head + k {
            s if s >= self.m => s - self.m,
            s => s,
        };
        let r = slot * self.d..(slot + 1) * self.d;
        (&self.s[r.clone()], &self.y[r], self.rho[slot])
    }

    /// Write `−H g` into `p`; `alpha` is scratch of length ≥ m.
    ///
    /// Each pass of the recursion updates `p` and takes the dot product the next step
    /// needs from the new `p` ([`axpy_scale_dot`]), so a pair costs two passes over `d`
    /// values instead of four; the values are rounded as in the textbook order.
    pub fn direction(&self, g: &[f64], p: &mut [f64], alpha: &mut [f64]) {
        let len = self.len;
        if len == 0 {
            for (pj, gj) in p.iter_mut().zip(g) {
                *pj = -gj;
            }
            return;
        }
        p.fill(0.0);
        // p = −g, and the first loop's first dot product s_{len−1}·p.
        let mut t = axpy_scale_dot(-1.0, g, 1.0, p, self.pair(len - 1).0);
        for k in (0..len).rev() {
            let (_, y, rho) = self.pair(k);
            let a = rho * t;
            alpha[k] = a;
            // The last pass of the first loop also scales by H⁰ = γ I and starts the second.
            t = match k {
                0 => axpy_scale_dot(-a, y, self.gamma, p, self.pair(0).1),
                _ => axpy_scale_dot(-a, y, 1.0, p, self.pair(k - 1).0),
            };
        }
        for (k, &a) in alpha.iter().enumerate().take(len) {
            let (s, _, rho) = self.pair(k);
            let b = rho * t;
            if k + 1 < len {
                t = axpy_scale_dot(a - b, s, 1.0, p, self.pair(k + 1).1);
            } else {
                axpy(a - b, s, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a quadratic `½ xᵀ A x` with A diagonal, pairs from exact steps make
    /// the two-loop recursion reproduce `−A⁻¹ g` once all d directions are seen.
    #[test]
    fn two_loop_recovers_inverse_of_a_diagonal_quadratic() {
        let a = [1.0, 4.0, 9.0];
        let mut storage = vec![0.0; LbfgsMemory::storage_len(3, 5)];
        let mut mem = LbfgsMemory::new(3, 5, &mut storage);
        for k in 0..3 {
            let mut s = [0.0; 3];
            s[k] = 1.0;
            let y: Vec<f64> = s.iter().zip(&a).map(|(s, a)| s * a).collect();
            assert!(mem.push(&s, &y));
        }
        let g = [1.0, 1.0, 1.0];
        let mut p = [0.0; 3];
        mem.direction(&g, &mut p, &mut [0.0; 5]);
        for j in 0..3 {
            assert!((p[j] + 1.0 / a[j]).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn rejects_pairs_without_positive_curvature() {
        let mut storage = vec![0.0; LbfgsMemory::storage_len(2, 3)];
        let mut mem = LbfgsMemory::new(2, 3, &mut storage);
        assert!(!mem.push(&[1.0, 0.0], &[-1.0, 0.0]));
        assert!(mem.is_empty());
    }

    #[test]
    fn keeps_only_the_newest_m_pairs() {
        let mut storage = vec![0.0; LbfgsMemory::storage_len(1, 2)];
        let mut mem = LbfgsMemory::new(1, 2, &mut storage);
        for k in 1..=3 {
            mem.push(&[1.0], &[k as f64]);
        }
        assert_eq!(mem.len, 2);
        assert_eq!(mem.pair(0).1, &[2.0]);
        assert_eq!(mem.pair(1).1, &[3.0]);
    }
}
