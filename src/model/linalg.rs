//! Dense Cholesky factorisation `H = L Lᵀ` of a small symmetric positive-definite
//! precision, for variances `diag(H⁻¹)` and for posterior draws `L⁻ᵀ z ~ N(0, H⁻¹)`.

/// Lower-triangular factor `L` of `H = L Lᵀ`, row-major d×d.
#[derive(Debug, Clone)]
pub struct Cholesky {
    d: usize,
    l: Vec<f64>,
}

impl Cholesky {
    /// Factor row-major `h` (d×d); `None` if it is not positive definite.
    pub fn new(h: &[f64], d: usize) -> Option<Self> {
        assert_eq!(h.len(), d * d);
        let mut l = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let mut s = h[i * d + j];
                for k in 0..j {
                    s -= l[i * d + k] * l[j * d + k];
                }
                if i == j {
                    if s.is_nan() || s <= 0.0 || !s.is_finite() {
                        return None;
                    }
                    l[i * d + i] = s.sqrt();
                } else {
                    l[i * d + j] = s / l[j * d + j];
                }
            }
        }
        Some(Cholesky { d, l })
    }

    /// Solve `Lᵀ x = z` in place: if `z ~ N(0, I)` then `x ~ N(0, H⁻¹)`.
    pub fn solve_upper(&self, x: &mut [f64]) {
        let d = self.d;
        for i in (0..d).rev() {
            let mut s = x[i];
            for (k, xk) in x.iter().enumerate().skip(i + 1) {
                s -= self.l[k * d + i] * xk;
            }
            x[i] = s / self.l[i * d + i];
        }
    }

    /// Solve `L x = b` in place.
    pub fn solve_lower(&self, x: &mut [f64]) {
        let d = self.d;
        for i in 0..d {
            let row = &self.l[i * d..i * d + i];
            let s = x[i] - row.iter().zip(&x[..i]).map(|(a, b)| a * b).sum::<f64>();
            x[i] = s / self.l[i * d + i];
        }
    }

    /// `diag(H⁻¹)`: `(H⁻¹)_jj = ‖L⁻¹ e_j‖²`.
    pub fn inverse_diagonal(&self) -> Vec<f64> {
        let d = self.d;
        (0..d)
            .map(|j| {
                let mut e = vec![0.0; d];
                e[j] = 1.0;
                self.solve_lower(&mut e);
                e.iter().map(|v| v * v).sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_diagonal_of_a_2x2_is_pinned() {
        // H = [[4, 2], [2, 3]], det 8, H⁻¹ = [[3/8, −2/8], [−2/8, 4/8]].
        let c = Cholesky::new(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let v = c.inverse_diagonal();
        assert!((v[0] - 0.375).abs() < 1e-15 && (v[1] - 0.5).abs() < 1e-15);
    }

    #[test]
    fn solves_against_the_factor() {
        let h = [4.0, 2.0, 2.0, 3.0];
        let c = Cholesky::new(&h, 2).unwrap();
        // H⁻¹ b via L then Lᵀ.
        let mut x = [1.0, 1.0];
        c.solve_lower(&mut x);
        c.solve_upper(&mut x);
        assert!((x[0] - 0.125).abs() < 1e-15 && (x[1] - 0.25).abs() < 1e-15);
    }

    #[test]
    fn rejects_indefinite_matrices() {
        assert!(Cholesky::new(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}
