//! The f64 evaluation of one entity's problem, borrowed from a
//! [`TrainingBatch`](super::TrainingBatch): the
//! loss, gradient and Hessian of the module formula of [`crate::objective`], rows taken
//! in blocks of [`ROW_BLOCK`] (the layout is in [`super::batch`]).

use super::{logistic_block, squared_block, LogSum, Loss};
#[cfg(target_arch = "x86_64")]
use crate::vector::dot4_avx2;
use crate::vector::{add_squares4, axpy, axpy4, dot, dot4, sum4};

/// The prior term of one entity.
#[derive(Debug, Clone, Copy)]
pub enum EntityPrior<'a> {
    None,
    Diagonal(&'a [f64]),
    Full(&'a [f64]),
}

/// Rows evaluated together by [`EntityProblem::value_and_gradient`].
const ROW_BLOCK: usize = 32;

/// One entity's problem, borrowed from a [`TrainingBatch`](super::TrainingBatch).
#[derive(Debug, Clone, Copy)]
pub struct EntityProblem<'a> {
    pub loss: Loss,
    /// Row pointers into `cols`/`vals` (one more than the number of rows).
    pub nz_ptr: &'a [usize],
    pub cols: &'a [u32],
    pub vals: &'a [f64],
    pub labels: &'a [f64],
    pub weights: &'a [f64],
    pub offsets: &'a [f64],
    pub penalty: &'a [f64],
    pub prior_mean: &'a [f64],
    pub prior: EntityPrior<'a>,
}

impl<'a> EntityProblem<'a> {
    pub fn num_rows(&self) -> usize {
        self.labels.len()
    }

    pub fn num_coefficients(&self) -> usize {
        self.penalty.len()
    }

    #[inline(always)]
    fn row(&self, i: usize) -> (&'a [u32], &'a [f64]) {
        let r = self.nz_ptr[i]..self.nz_ptr[i + 1];
        (&self.cols[r.clone()], &self.vals[r])
    }

    /// `m_i = (o_i + θ_0) + z_i·θ`, summed in the order of the row's features.
    #[inline]
    pub fn margin(&self, i: usize, theta: &[f64]) -> f64 {
        let (cols, vals) = self.row(i);
        let mut m = self.offsets[i] + theta[0];
        for (&c, &v) in cols.iter().zip(vals) {
            m += v * theta[c as usize];
        }
        m
    }

    /// Whether every row holds every feature column: with columns ascending within a row,
    /// that is `nnz = rows × (d − 1)`, and row `i` is then `vals[nz_ptr[i]..][..d − 1]`,
    /// the values of columns `1..d` in order.
    #[inline]
    fn is_dense(&self) -> bool {
        let features = self.num_coefficients() - 1;
        self.nz_ptr[self.num_rows()] - self.nz_ptr[0] == self.num_rows() * features
    }

    /// `m_i = (o_i + θ_0) + z_i·θ`, reading a dense row without its column indices.
    #[inline(always)]
    fn row_margin(&self, i: usize, theta: &[f64], dense: bool) -> f64 {
        (self.offsets[i] + theta[0]) + self.z_theta(i, theta, dense)
    }

    /// `z_i·θ` (the intercept left out), reading a dense row without its column indices.
    #[inline(always)]
    fn z_theta(&self, i: usize, theta: &[f64], dense: bool) -> f64 {
        let (cols, vals) = self.row(i);
        if dense {
            dot(vals, &theta[1..])
        } else {
            cols.iter()
                .zip(vals)
                .map(|(&c, &v)| v * theta[c as usize])
                .sum()
        }
    }

    /// Margins `m_i = (o_i + θ_0) + z_i·θ` of the rows `start..start + out.len()`, into `out`.
    #[inline(always)]
    fn block_margins<const AVX2: bool>(
        &self,
        start: usize,
        theta: &[f64],
        dense: bool,
        out: &mut [f64],
    ) {
        let mut done = 0;
        let (intercept, features) = (theta[0], &theta[1..]);
        if dense {
            // Four rows at a time, each rounded as `dot` rounds it alone.
            let d = features.len();
            while done + 4 <= out.len() {
                let i = start + done;
                let base = self.nz_ptr[i];
                let block = &self.vals[base..base + 4 * d];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `AVX2` is true only in the functions compiled for AVX2, which are
                // called after checking that the CPU has it.
                let dots = if AVX2 {
                    unsafe { dot4_avx2(block, features) }
                } else {
                    dot4(block, features)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let dots = dot4(block, features);
                for (q, dot) in dots.into_iter().enumerate() {
                    out[done + q] = (self.offsets[i + q] + intercept) + dot;
                }
                done += 4;
            }
        }
        for (k, m) in out.iter_mut().enumerate().skip(done) {
            *m = self.row_margin(start + k, theta, dense);
        }
    }

    /// Rows `range` of this problem alone, with the same coefficients and regulariser: the
    /// pieces a large entity is split into so that threads share its rows.
    pub fn rows(&self, range: std::ops::Range<usize>) -> EntityProblem<'a> {
        EntityProblem {
            nz_ptr: &self.nz_ptr[range.start..range.end + 1],
            labels: &self.labels[range.clone()],
            weights: &self.weights[range.clone()],
            offsets: &self.offsets[range],
            ..*self
        }
    }

    /// `F(θ)` and `∇F(θ)` (written into `grad`).
    pub fn value_and_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        self.data_value_and_gradient(theta, grad) + self.regularizer_value_and_gradient(theta, grad)
    }

    /// The data term `Σ w_i ℓ(m_i, y_i)` and its gradient `Xᵀ ℓ'` (written into `grad`).
    ///
    /// This is the hot loop of the CPU path. An entity whose every row holds every feature
    /// (columns ascending, so `nnz = rows × (d − 1)` means dense) is read as a row-major
    /// matrix with no column indices, four rows at a time (margins by `dot4`, with AVX2
    /// intrinsics where the CPU has them and the same rounding either way; gradient terms
    /// by `axpy4`); the logistic terms of 32 rows at a time by `logistic_block` (AVX2
    /// intrinsics there too, the same bits), whose logarithms of unit-weight rows are taken
    /// in bulk by [`LogSum`], and the losses are summed in four lanes. The intercept's
    /// gradient is the sum of each block's slopes. All give the same value as the plain
    /// per-row sum up to rounding.
    pub fn data_value_and_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.data_value_and_gradient_avx2(theta, grad) };
        }
        self.data_value_and_gradient_inline::<false>(theta, grad)
    }

    /// [`Self::data_value_and_gradient`] compiled with 4-lane f64 vectors. No FMA is
    /// enabled (Rust never contracts `a * b + c` by itself), so it rounds exactly as the
    /// portable build does: the same bits on every x86-64 machine.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn data_value_and_gradient_avx2(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        self.data_value_and_gradient_inline::<true>(theta, grad)
    }

    #[inline(always)]
    fn data_value_and_gradient_inline<const AVX2: bool>(
        &self,
        theta: &[f64],
        grad: &mut [f64],
    ) -> f64 {
        grad.fill(0.0);
        let dense = self.is_dense();
        let mut logs = LogSum::default();
        // Rows go in blocks: margins, then ℓ and ℓ' of the whole block (vector code, `exp`
        // included), then the block's gradient terms. Losses are summed in four lanes,
        // rows k ≡ 0, 1, 2, 3 (mod 4), so the additions overlap.
        let mut sums = [0.0f64; 4];
        let mut margin = [0.0f64; ROW_BLOCK];
        let mut slope = [0.0f64; ROW_BLOCK];
        for start in (0..self.num_rows()).step_by(ROW_BLOCK) {
            let rows = start..(start + ROW_BLOCK).min(self.num_rows());
            let len = rows.len();
            let (labels, weights) = (&self.labels[rows.clone()], &self.weights[rows.clone()]);
            self.block_margins::<AVX2>(start, theta, dense, &mut margin[..len]);
            match self.loss {
                Loss::Squared => squared_block(&margin, labels, weights, &mut sums, &mut slope),
                Loss::Logistic => logistic_block::<AVX2, ROW_BLOCK>(
                    &margin, labels, weights, &mut sums, &mut logs, &mut slope,
                ),
            }
            // The intercept's column is 1: its gradient is the sum of the slopes.
            grad[0] += sum4(&slope[..len]);
            let mut k = 0;
            if dense {
                let features = &mut grad[1..];
                let d = features.len();
                while k + 4 <= len {
                    let base = self.nz_ptr[start + k];
                    let a = [slope[k], slope[k + 1], slope[k + 2], slope[k + 3]];
                    axpy4(a, &self.vals[base..base + 4 * d], features);
                    k += 4;
                }
            }
            for (k, &d1) in slope[..len].iter().enumerate().skip(k) {
                let (cols, vals) = self.row(start + k);
                if dense {
                    axpy(d1, vals, &mut grad[1..]);
                } else {
                    for (&c, &v) in cols.iter().zip(vals) {
                        grad[c as usize] += d1 * v;
                    }
                }
            }
        }
        ((sums[0] + sums[1]) + (sums[2] + sums[3])) + logs.total()
    }

    /// `F(θ)` alone.
    pub fn value(&self, theta: &[f64]) -> f64 {
        let mut grad = vec![0.0; self.num_coefficients()];
        self.value_and_gradient(theta, &mut grad)
    }

    /// Adds `p ⊙ θ + Q(θ − θ₀)` to `grad` and returns `½ Σ p θ² + ½ (θ−θ₀)ᵀQ(θ−θ₀)`.
    pub fn regularizer_value_and_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let mut f = 0.0;
        for j in 0..theta.len() {
            f += 0.5 * self.penalty[j] * theta[j] * theta[j];
            grad[j] += self.penalty[j] * theta[j];
        }
        match self.prior {
            EntityPrior::None => {}
            EntityPrior::Diagonal(q) => {
                for j in 0..theta.len() {
                    let dev = theta[j] - self.prior_mean[j];
                    f += 0.5 * q[j] * dev * dev;
                    grad[j] += q[j] * dev;
                }
            }
            EntityPrior::Full(q) => {
                let d = theta.len();
                for j in 0..d {
                    let mut qd = 0.0;
                    for k in 0..d {
                        qd += q[j * d + k] * (theta[k] - self.prior_mean[k]);
                    }
                    f += 0.5 * (theta[j] - self.prior_mean[j]) * qd;
                    grad[j] += qd;
                }
            }
        }
        f
    }

    /// Diagonal of the data Hessian `Xᵀ diag(ℓ'') X`.
    pub fn data_hessian_diagonal(&self, theta: &[f64]) -> Vec<f64> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.data_hessian_diagonal_avx2(theta) };
        }
        self.data_hessian_diagonal_inline::<false>(theta)
    }

    /// [`Self::data_hessian_diagonal`] with 4-lane vectors, rounding as the portable build.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn data_hessian_diagonal_avx2(&self, theta: &[f64]) -> Vec<f64> {
        self.data_hessian_diagonal_inline::<true>(theta)
    }

    #[inline(always)]
    fn data_hessian_diagonal_inline<const AVX2: bool>(&self, theta: &[f64]) -> Vec<f64> {
        let mut h = vec![0.0; self.num_coefficients()];
        let dense = self.is_dense();
        let mut d2 = [0.0f64; ROW_BLOCK];
        for start in (0..self.num_rows()).step_by(ROW_BLOCK) {
            let len = ROW_BLOCK.min(self.num_rows() - start);
            self.block_margins::<AVX2>(start, theta, dense, &mut d2[..len]);
            let weights = &self.weights[start..start + len];
            self.loss
                .second_derivatives::<AVX2, ROW_BLOCK>(&mut d2, weights);
            h[0] += sum4(&d2[..len]);
            let mut k = 0;
            if dense {
                // Four rows at a time, in the order of the row loop below.
                let features = &mut h[1..];
                while k + 4 <= len {
                    let base = self.nz_ptr[start + k];
                    let a = [d2[k], d2[k + 1], d2[k + 2], d2[k + 3]];
                    add_squares4(a, &self.vals[base..base + 4 * features.len()], features);
                    k += 4;
                }
            }
            for (k, &d2) in d2[..len].iter().enumerate().skip(k) {
                let (cols, vals) = self.row(start + k);
                if dense {
                    h[1..]
                        .iter_mut()
                        .zip(vals)
                        .for_each(|(h, v)| *h += d2 * v * v);
                } else {
                    for (&c, &v) in cols.iter().zip(vals) {
                        h[c as usize] += d2 * v * v;
                    }
                }
            }
        }
        h
    }

    /// The data Hessian `Xᵀ diag(ℓ'') X`, dense row-major d×d.
    pub fn data_hessian_full(&self, theta: &[f64]) -> Vec<f64> {
        let d = self.num_coefficients();
        let mut h = vec![0.0; d * d];
        let dense = self.is_dense();
        for i in 0..self.num_rows() {
            let margin = self.row_margin(i, theta, dense);
            let d2 = self.loss.second_derivative(margin, self.weights[i]);
            let (cols, vals) = self.row(i);
            // The intercept's row and column: its value 1 makes each entry d2 · v.
            h[0] += d2;
            for (&a, &va) in cols.iter().zip(vals) {
                let a = a as usize;
                h[a] += d2 * va;
                h[a * d] += d2 * va;
                for (&b, &vb) in cols.iter().zip(vals) {
                    h[a * d + b as usize] += d2 * va * vb;
                }
            }
        }
        h
    }

    /// Diagonal of the full Hessian of `F`: data Hessian + `p` + diag(Q).
    pub fn hessian_diagonal(&self, theta: &[f64]) -> Vec<f64> {
        let mut h = self.data_hessian_diagonal(theta);
        self.add_regularizer_diagonal(&mut h);
        h
    }

    /// Add `p_j + Q_jj` to a data Hessian diagonal `h`.
    pub fn add_regularizer_diagonal(&self, h: &mut [f64]) {
        let d = self.num_coefficients();
        for j in 0..d {
            h[j] += self.penalty[j];
            h[j] += match self.prior {
                EntityPrior::None => 0.0,
                EntityPrior::Diagonal(q) => q[j],
                EntityPrior::Full(q) => q[j * d + j],
            };
        }
    }

    /// The Hessian of `F`: data Hessian + diag(p) + Q, dense row-major d×d.
    pub fn hessian_full(&self, theta: &[f64]) -> Vec<f64> {
        let mut h = self.data_hessian_full(theta);
        self.add_regularizer_full(&mut h);
        h
    }

    /// Add `diag(p) + Q` to a dense row-major data Hessian `h`.
    pub fn add_regularizer_full(&self, h: &mut [f64]) {
        let d = self.num_coefficients();
        for j in 0..d {
            h[j * d + j] += self.penalty[j];
        }
        match self.prior {
            EntityPrior::None => {}
            EntityPrior::Diagonal(q) => {
                for j in 0..d {
                    h[j * d + j] += q[j];
                }
            }
            EntityPrior::Full(q) => {
                for (hj, qj) in h.iter_mut().zip(q) {
                    *hj += qj;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::logistic_row;
    use crate::objective::{PrecisionShape, TrainingBatch, TrainingBatchBuilder};

    /// A dense entity (every row has both features) with unit and non-unit weights.
    fn dense_batch(loss: Loss) -> TrainingBatch {
        let mut b = TrainingBatch::builder(loss, PrecisionShape::None);
        for i in 0..700 {
            let x = (i as f64 * 0.37).sin() * 3.0;
            let label = if i % 3 == 0 { 1.0 } else { -1.0 };
            let weight = if i % 5 == 0 { 2.5 } else { 1.0 };
            b.push_row(label, weight, 0.1 * (i % 7) as f64, [1, 2], &[x, -0.5 * x]);
        }
        b.finish_entity(&[1.0, 1.0, 1.0], &[0.0; 3], &[]);
        b.build()
    }

    /// The plain per-row sums of the module formula, with no fast paths.
    fn naive(p: &EntityProblem, theta: &[f64]) -> (f64, Vec<f64>) {
        let mut f = 0.0;
        let mut g = vec![0.0; theta.len()];
        for i in 0..p.num_rows() {
            let r = p.loss.row(p.margin(i, theta), p.labels[i], p.weights[i]);
            f += r.loss;
            g[0] += r.d1;
            let (cols, vals) = p.row(i);
            for (&c, &v) in cols.iter().zip(vals) {
                g[c as usize] += r.d1 * v;
            }
        }
        for j in 0..theta.len() {
            f += 0.5 * p.penalty[j] * theta[j] * theta[j];
            g[j] += p.penalty[j] * theta[j];
        }
        (f, g)
    }

    #[test]
    fn rows_with_the_previous_columns_pack_as_rows_with_them_spelled_out() {
        let mut spelled = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        let mut reused = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        for b in [&mut spelled, &mut reused] {
            b.push_row(1.0, 1.0, 0.0, [2, 5], &[0.5, -1.0]);
        }
        spelled.push_row(-1.0, 2.0, 0.3, [2, 5], &[1.5, 4.0]);
        spelled.push_row(1.0, 1.0, -0.1, [2, 5], &[2.5, 0.0]);
        let vals = [1.5, 4.0, 2.5, 0.0];
        reused.push_rows_with_previous_columns([-1.0, 1.0], &[2.0, 1.0], &[0.3, -0.1], &vals);
        for b in [&mut spelled, &mut reused] {
            b.finish_entity(&[1.0; 6], &[0.0; 6], &[]);
        }
        let (a, b) = (spelled.build(), reused.build());
        assert_eq!((a.cols, a.vals, a.nz_ptr), (b.cols, b.vals, b.nz_ptr));
        assert_eq!(
            (a.labels, a.weights, a.offsets),
            (b.labels, b.weights, b.offsets)
        );
    }

    #[test]
    #[should_panic(expected = "no previous row in this entity")]
    fn an_entity_starts_with_its_columns_spelled_out() {
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        b.push_row(1.0, 1.0, 0.0, [1], &[0.5]);
        b.finish_entity(&[1.0; 2], &[0.0; 2], &[]);
        b.push_rows_with_previous_columns([1.0], &[1.0], &[0.0], &[0.5]);
    }

    #[test]
    fn the_dense_path_and_bulk_logarithms_match_the_plain_sums() {
        for loss in [Loss::Logistic, Loss::Squared] {
            let batch = dense_batch(loss);
            let p = batch.entity(0);
            assert!(p.is_dense());
            let theta = [0.3, -1.2, 0.8];
            let mut g = [0.0; 3];
            let f = p.value_and_gradient(&theta, &mut g);
            let (f0, g0) = naive(&p, &theta);
            assert!((f - f0).abs() <= 1e-12 * f0.abs(), "{loss:?}: {f} vs {f0}");
            for (a, b) in g.iter().zip(&g0) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "{loss:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn a_builder_on_reused_buffers_packs_what_a_fresh_one_packs() {
        for shape in [
            PrecisionShape::None,
            PrecisionShape::Diagonal,
            PrecisionShape::Full,
        ] {
            let pack = |mut b: TrainingBatchBuilder, rows: usize| {
                let shape = b.precision_shape();
                for i in 0..rows {
                    b.push_row(1.0, 1.0, 0.5, [1, 3], &[i as f64, 2.0]);
                }
                let d = 4;
                let q = match shape {
                    PrecisionShape::None => vec![],
                    PrecisionShape::Diagonal => vec![2.0; d],
                    PrecisionShape::Full => vec![2.0; d * d],
                };
                b.finish_entity(&[1.0; 4], &[0.1; 4], &q);
                b.build()
            };
            let fresh = pack(TrainingBatch::builder(Loss::Logistic, shape), 3);
            // The spare was packed bigger, and with another precision shape.
            let spare = pack(
                TrainingBatch::builder(Loss::Squared, PrecisionShape::Full),
                9,
            );
            let reused = pack(spare.into_builder(Loss::Logistic, shape), 3);
            assert_eq!(format!("{reused:?}"), format!("{fresh:?}"));
        }
    }

    #[test]
    fn second_derivative_is_the_rows_d2() {
        for m in [-800.0, -30.0, -1.5, 0.0, 0.7, 12.0, 900.0] {
            for y in [-1.0, 1.0] {
                let d2 = logistic_row(m, y, 1.7).d2;
                let got = Loss::Logistic.second_derivative(m, 1.7);
                assert!((got - d2).abs() <= 1e-15 * d2, "m = {m}: {got} vs {d2}");
            }
        }
        assert_eq!(Loss::Squared.second_derivative(3.0, 0.5), 0.5);
    }

    #[test]
    fn the_vector_build_gives_the_portable_builds_bits() {
        // A sparse entity too, so both row paths are covered.
        let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::None);
        for i in 0..77 {
            let x = (i as f64 * 0.91).cos() * 2.0;
            b.push_row(1.0, 1.0 + (i % 2) as f64, 0.0, [1 + i % 3], &[x]);
        }
        b.finish_entity(&[1.0; 4], &[0.0; 4], &[]);
        let sparse = b.build();
        for batch in [
            dense_batch(Loss::Logistic),
            dense_batch(Loss::Squared),
            sparse,
        ] {
            let p = batch.entity(0);
            let theta: Vec<f64> = (0..p.num_coefficients())
                .map(|j| 0.3 - 0.2 * j as f64)
                .collect();
            let (mut g, mut g_portable) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
            let f = p.data_value_and_gradient(&theta, &mut g);
            let f_portable = p.data_value_and_gradient_inline::<false>(&theta, &mut g_portable);
            assert_eq!(f.to_bits(), f_portable.to_bits());
            assert_eq!(g, g_portable);
            assert_eq!(
                p.data_hessian_diagonal(&theta),
                p.data_hessian_diagonal_inline::<false>(&theta)
            );
        }
    }
}
