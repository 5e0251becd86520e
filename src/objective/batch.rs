//! A batch of per-entity problems packed flat: the arrays, and the builder that packs them.
//!
//! Layout (E entities, R rows, C coefficients in all):
//!
//! | array           | length | meaning                                                   |
//! |-----------------|--------|-----------------------------------------------------------|
//! | `coef_ptr`      | E + 1  | entity e owns coefficients `coef_ptr[e]..coef_ptr[e+1]`   |
//! | `row_ptr`       | E + 1  | entity e owns rows `row_ptr[e]..row_ptr[e+1]`             |
//! | `nz_ptr`        | R + 1  | row i owns non-zeros `nz_ptr[i]..nz_ptr[i+1]` (CSR)       |
//! | `cols`, `vals`  | nnz    | entity-local feature column (≥ 1) and value               |
//! | `labels` …      | R      | label (±1 for logistic), weight, offset                   |
//! | `penalty`       | C      | `p_j` of the module formula                               |
//! | `prior_mean`    | C      | `θ₀`, also the starting point of the solver               |
//! | prior precision | C or Σd² | `Q = δ H₀`: none, diagonal, or one dense d×d block per entity |
//!
//! Coefficient 0 is the intercept, whose column is 1 in every row. It is implicit: the
//! stored non-zeros of a row are its features, so `x_i = (1, z_i)` and
//!
//! ```text
//! m_i = (o_i + θ_0) + z_i · θ_{1..d}
//! ```
//!
//! A dense row is then `d − 1` values with no padding (16 features read as four 4-lane
//! vectors, where an explicit intercept would leave one column over), and the packing copies
//! the record's values alone. Feature columns are strictly ascending within a row (so each
//! appears at most once, and a row with all of them is `1, 2, …, d−1`).

use super::entity::{EntityPrior, EntityProblem};
use super::Loss;

/// `Q = δ H₀`, the weighted precision of the prior.
#[derive(Debug, Clone, PartialEq)]
pub enum PriorPrecision {
    /// No prior term (`linear`, `logistic`).
    None,
    /// Diagonal of `Q`, one value per coefficient (`coef_ptr` layout).
    Diagonal(Vec<f64>),
    /// Dense row-major d×d block per entity; entity e's block starts at `block_ptr[e]`.
    Full {
        block_ptr: Vec<usize>,
        values: Vec<f64>,
    },
}

/// Many independent entity problems sharing one loss, packed for batched evaluation.
#[derive(Debug, Clone)]
pub struct TrainingBatch {
    pub loss: Loss,
    pub coef_ptr: Vec<usize>,
    pub row_ptr: Vec<usize>,
    pub nz_ptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<f64>,
    pub labels: Vec<f64>,
    pub weights: Vec<f64>,
    pub offsets: Vec<f64>,
    pub penalty: Vec<f64>,
    pub prior_mean: Vec<f64>,
    pub prior_precision: PriorPrecision,
}

impl TrainingBatch {
    pub fn builder(loss: Loss, precision: PrecisionShape) -> TrainingBatchBuilder {
        TrainingBatchBuilder::new(loss, precision)
    }

    /// An empty builder that packs into this batch's buffers, so that a thread packing
    /// one batch after another allocates only when a batch outgrows the last.
    pub fn into_builder(self, loss: Loss, precision: PrecisionShape) -> TrainingBatchBuilder {
        TrainingBatchBuilder::with_buffers(loss, precision, self)
    }

    pub fn precision_shape(&self) -> PrecisionShape {
        match self.prior_precision {
            PriorPrecision::None => PrecisionShape::None,
            PriorPrecision::Diagonal(_) => PrecisionShape::Diagonal,
            PriorPrecision::Full { .. } => PrecisionShape::Full,
        }
    }

    pub fn num_entities(&self) -> usize {
        self.coef_ptr.len() - 1
    }

    pub fn num_rows(&self) -> usize {
        self.labels.len()
    }

    pub fn num_coefficients(&self) -> usize {
        self.prior_mean.len()
    }

    pub fn entity(&self, e: usize) -> EntityProblem<'_> {
        let coefs = self.coef_ptr[e]..self.coef_ptr[e + 1];
        let rows = self.row_ptr[e]..self.row_ptr[e + 1];
        let prior = match &self.prior_precision {
            PriorPrecision::None => EntityPrior::None,
            PriorPrecision::Diagonal(q) => EntityPrior::Diagonal(&q[coefs.clone()]),
            PriorPrecision::Full { block_ptr, values } => {
                let d = coefs.len();
                EntityPrior::Full(&values[block_ptr[e]..block_ptr[e] + d * d])
            }
        };
        EntityProblem {
            loss: self.loss,
            nz_ptr: &self.nz_ptr[rows.start..rows.end + 1],
            cols: &self.cols,
            vals: &self.vals,
            labels: &self.labels[rows.clone()],
            weights: &self.weights[rows.clone()],
            offsets: &self.offsets[rows],
            penalty: &self.penalty[coefs.clone()],
            prior_mean: &self.prior_mean[coefs],
            prior,
        }
    }
}

/// Which prior-precision representation a batch is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionShape {
    None,
    Diagonal,
    Full,
}

/// Appends entities one at a time to a [`TrainingBatch`].
pub struct TrainingBatchBuilder {
    batch: TrainingBatch,
    entity_rows_open: bool,
}

impl TrainingBatchBuilder {
    fn new(loss: Loss, shape: PrecisionShape) -> Self {
        let empty = TrainingBatch {
            loss,
            coef_ptr: Vec::new(),
            row_ptr: Vec::new(),
            nz_ptr: Vec::new(),
            cols: Vec::new(),
            vals: Vec::new(),
            labels: Vec::new(),
            weights: Vec::new(),
            offsets: Vec::new(),
            penalty: Vec::new(),
            prior_mean: Vec::new(),
            prior_precision: PriorPrecision::None,
        };
        Self::with_buffers(loss, shape, empty)
    }

    /// An empty builder that packs into the buffers of `spare`.
    fn with_buffers(loss: Loss, shape: PrecisionShape, spare: TrainingBatch) -> Self {
        fn emptied<T>(mut v: Vec<T>) -> Vec<T> {
            v.clear();
            v
        }
        fn starting_at_0(mut v: Vec<usize>) -> Vec<usize> {
            v.clear();
            v.push(0);
            v
        }
        let prior_precision = match (shape, spare.prior_precision) {
            (PrecisionShape::None, _) => PriorPrecision::None,
            (PrecisionShape::Diagonal, PriorPrecision::Diagonal(q)) => {
                PriorPrecision::Diagonal(emptied(q))
            }
            (PrecisionShape::Diagonal, _) => PriorPrecision::Diagonal(Vec::new()),
            (PrecisionShape::Full, PriorPrecision::Full { block_ptr, values }) => {
                PriorPrecision::Full {
                    block_ptr: starting_at_0(block_ptr),
                    values: emptied(values),
                }
            }
            (PrecisionShape::Full, _) => PriorPrecision::Full {
                block_ptr: vec![0],
                values: Vec::new(),
            },
        };
        TrainingBatchBuilder {
            batch: TrainingBatch {
                loss,
                coef_ptr: starting_at_0(spare.coef_ptr),
                row_ptr: starting_at_0(spare.row_ptr),
                nz_ptr: starting_at_0(spare.nz_ptr),
                cols: emptied(spare.cols),
                vals: emptied(spare.vals),
                labels: emptied(spare.labels),
                weights: emptied(spare.weights),
                offsets: emptied(spare.offsets),
                penalty: emptied(spare.penalty),
                prior_mean: emptied(spare.prior_mean),
                prior_precision,
            },
            entity_rows_open: false,
        }
    }

    /// The prior-precision representation being built.
    pub fn precision_shape(&self) -> PrecisionShape {
        self.batch.precision_shape()
    }

    /// Reserve room for `entities`, `rows` and `nnz` feature non-zeros.
    pub fn reserve(&mut self, entities: usize, rows: usize, nnz: usize) {
        let b = &mut self.batch;
        b.coef_ptr.reserve(entities);
        b.row_ptr.reserve(entities);
        b.nz_ptr.reserve(rows);
        b.labels.reserve(rows);
        b.weights.reserve(rows);
        b.offsets.reserve(rows);
        b.cols.reserve(nnz);
        b.vals.reserve(nnz);
    }

    /// Add one row to the entity being built: entity-local columns ≥ 1 in strictly ascending
    /// order and their values; the intercept is implicit.
    pub fn push_row(
        &mut self,
        label: f64,
        weight: f64,
        offset: f64,
        cols: impl IntoIterator<Item = u32>,
        vals: &[f64],
    ) {
        let b = &mut self.batch;
        let start = b.cols.len();
        b.cols.extend(cols);
        b.vals.extend_from_slice(vals);
        let row = &b.cols[start..];
        assert_eq!(row.len(), vals.len(), "one value per column");
        // A fold with no early exit: one compare per column, no branch per column (the
        // intercept's 0 goes first, so the first column must be ≥ 1).
        let previous = std::iter::once(&0).chain(row);
        let ascending = previous.zip(row).fold(true, |ok, (a, b)| ok & (a < b));
        assert!(
            ascending,
            "columns of a row must be strictly ascending and ≥ 1"
        );
        self.end_row(label, weight, offset);
    }

    /// [`Self::push_row`] of `weights.len()` rows, each with the columns of the row pushed
    /// just before, in this entity: `vals` holds their values one row after another. One
    /// copy per array for a run of dense rows, as a grouped file stores them.
    pub fn push_rows_with_previous_columns(
        &mut self,
        labels: impl IntoIterator<Item = f64>,
        weights: &[f64],
        offsets: &[f64],
        vals: &[f64],
    ) {
        assert!(self.entity_rows_open, "no previous row in this entity");
        let b = &mut self.batch;
        let rows = b.nz_ptr.len();
        let previous = b.nz_ptr[rows - 2]..b.nz_ptr[rows - 1];
        let (n, width) = (weights.len(), previous.len());
        assert_eq!(vals.len(), n * width, "one value per column");
        assert_eq!(offsets.len(), n, "one offset per row");
        b.cols.reserve(n * width);
        for _ in 0..n {
            b.cols.extend_from_within(previous.clone());
        }
        b.vals.extend_from_slice(vals);
        let end = b.nz_ptr[rows - 1];
        b.nz_ptr.extend((1..=n).map(|k| end + k * width));
        b.labels.extend(labels);
        assert_eq!(b.labels.len(), rows - 1 + n, "one label per row");
        b.weights.extend_from_slice(weights);
        b.offsets.extend_from_slice(offsets);
    }

    fn end_row(&mut self, label: f64, weight: f64, offset: f64) {
        let b = &mut self.batch;
        b.nz_ptr.push(b.cols.len());
        b.labels.push(label);
        b.weights.push(weight);
        b.offsets.push(offset);
        self.entity_rows_open = true;
    }

    /// Close the entity whose rows were just pushed. `penalty` and `prior_mean` have one value
    /// per coefficient (intercept first); `prior_precision` is `Q = δH₀`: empty for
    /// [`PrecisionShape::None`], d values for diagonal, d×d row-major for full.
    pub fn finish_entity(&mut self, penalty: &[f64], prior_mean: &[f64], prior_precision: &[f64]) {
        let d = penalty.len();
        assert_eq!(
            prior_mean.len(),
            d,
            "prior mean has one value per coefficient"
        );
        let b = &mut self.batch;
        b.penalty.extend_from_slice(penalty);
        b.prior_mean.extend_from_slice(prior_mean);
        match &mut b.prior_precision {
            PriorPrecision::None => assert!(prior_precision.is_empty()),
            PriorPrecision::Diagonal(q) => {
                assert_eq!(prior_precision.len(), d);
                q.extend_from_slice(prior_precision);
            }
            PriorPrecision::Full { block_ptr, values } => {
                assert_eq!(prior_precision.len(), d * d);
                values.extend_from_slice(prior_precision);
                block_ptr.push(values.len());
            }
        }
        b.coef_ptr.push(b.prior_mean.len());
        b.row_ptr.push(b.labels.len());
        self.entity_rows_open = false;
    }

    pub fn build(self) -> TrainingBatch {
        assert!(
            !self.entity_rows_open,
            "rows pushed after the last finish_entity"
        );
        self.batch
    }
}
