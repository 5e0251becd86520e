//! Plan and pack: each entity's coefficient space (the intercept, then the features of
//! its rows in key order, then the kept features only its prior has) and where each
//! coefficient is in its prior; then its rows, penalties, prior mean and prior precision
//! `δ·H₀` packed into the part's [`TrainingBatch`] (see the parent module's doc).

use super::{Fit, TrainConfig};
use crate::data::{Dataset, FeatureKey};
use crate::error::{Error, Result};
use crate::eval::GpuWorkspace;
use crate::model::{EntityModel, HessianType, ModelSet, Precision};
use crate::objective::{training_label, PrecisionShape, TrainingBatch, TrainingBatchBuilder};
use std::ops::Range;

/// How one entity's coefficients map to data and prior.
pub(super) struct Plan<'p> {
    pub(super) entity: u32,
    pub(super) rows: &'p [usize],
    /// Dataset feature ids of trained coefficients `1..free`, ascending (0 is the intercept).
    pub(super) data_features: Vec<u32>,
    pub(super) prior: Option<&'p EntityModel>,
    /// Index in the prior of each trained coefficient, then of each kept one.
    pub(super) in_prior: Vec<Option<usize>>,
    /// Whether every row has the features of the first (as in dense data).
    pub(super) uniform_rows: bool,
    /// The forgetting factor δ of its prior ([`crate::objective::Regularization::forgetting`]).
    pub(super) delta: f64,
    /// The trained model's `last_seen` under a half-life: the newest time of its rows and
    /// its prior's; `None` without a half-life.
    pub(super) last_seen: Option<f64>,
}

impl Plan<'_> {
    /// Trained coefficients: the intercept and the data features.
    pub(super) fn free(&self) -> usize {
        self.data_features.len() + 1
    }

    /// Keys of all coefficients, trained then kept, written over `keys`.
    pub(super) fn keys_into(&self, data: &Dataset, keys: &mut Vec<FeatureKey>) {
        keys.clear();
        keys.reserve(self.in_prior.len());
        keys.push(FeatureKey::intercept());
        keys.extend(
            self.data_features
                .iter()
                .map(|&f| data.features.key(f).clone()),
        );
        if let Some(pm) = self.prior {
            keys.extend(
                self.in_prior[self.free()..]
                    .iter()
                    .map(|pj| pm.features[pj.expect("kept coefficients are in the prior")].clone()),
            );
        }
    }
}

/// Feature non-zeros of `rows` (the intercept not counted).
fn feature_nnz(data: &Dataset, rows: &[usize]) -> usize {
    rows.iter()
        .map(|&i| data.nz_ptr[i + 1] - data.nz_ptr[i])
        .sum()
}

/// What one thread reuses from one part to the next.
pub(super) struct PartScratch<'c> {
    /// `seen[f] == entity` marks features already found in the entity's rows.
    pub(super) seen: Vec<u32>,
    /// Entity-local column of each dataset feature id, for the entity being packed.
    pub(super) column: Vec<u32>,
    /// The packed buffers of the thread's last part, for the next to fill.
    pub(super) spare: Option<TrainingBatch>,
    /// The thread's GPU buffers, made at its first GPU part.
    pub(super) gpu: Option<GpuWorkspace<'c>>,
    /// One entity's penalties, prior mean and prior precision, as packed.
    pub(super) penalty: Vec<f64>,
    pub(super) mean: Vec<f64>,
    pub(super) precision: Vec<f64>,
}

impl PartScratch<'_> {
    pub(super) fn new(features: usize) -> Self {
        PartScratch {
            seen: vec![u32::MAX; features],
            column: vec![0; features],
            spare: None,
            gpu: None,
            penalty: Vec::new(),
            mean: Vec::new(),
            precision: Vec::new(),
        }
    }
}

/// Plan and pack the entities `part`, one at a time: an entity's rows are read to find its
/// features and read again at once to pack them, while they are still in cache.
pub(super) fn pack_part<'p>(
    fit: &Fit<'p>,
    part: Range<usize>,
    scratch: &mut PartScratch,
) -> Result<(Vec<Plan<'p>>, TrainingBatch)> {
    let Fit {
        data,
        groups,
        prior,
        config,
        ..
    } = *fit;
    let rows = &groups.rows[groups.ptr[part.start]..groups.ptr[part.end]];
    let mut b = builder(config, scratch);
    b.reserve(part.len(), rows.len(), feature_nnz(data, rows));
    let mut plans = Vec::with_capacity(part.len());
    for e in part {
        let entity = e as u32;
        let prior = prior_of(data, entity, prior);
        let plan = plan_entity(data, entity, groups.of(e), prior, config, &mut scratch.seen)?;
        pack_entity(&mut b, data, &plan, config, scratch);
        plans.push(plan);
    }
    Ok((plans, b.build()))
}

/// A builder for `config`'s batches, on the thread's spare buffers when it has them.
pub(super) fn builder(config: &TrainConfig, scratch: &mut PartScratch) -> TrainingBatchBuilder {
    let loss = config.objective.loss();
    let shape = match (config.objective.is_bayesian(), config.hessian) {
        (false, _) => PrecisionShape::None,
        (true, HessianType::Full) => PrecisionShape::Full,
        (true, _) => PrecisionShape::Diagonal,
    };
    match scratch.spare.take() {
        Some(spare) => spare.into_builder(loss, shape),
        None => TrainingBatch::builder(loss, shape),
    }
}

/// The prior model of `entity` in `prior`, and the file and line it was read from.
pub(super) fn prior_of<'p>(
    data: &Dataset,
    entity: u32,
    prior: Option<&'p ModelSet>,
) -> Option<(&'p EntityModel, Option<(&'p std::path::Path, usize)>)> {
    let (set, key) = (prior?, data.entities.key(entity));
    Some((set.get(key)?, set.origin(key)))
}

/// The plan of `entity`, whose records are `rows`: its features in id order and where its
/// coefficients are in its `prior` model (with the file and line it was read from, when
/// known). `seen` is the thread's [`PartScratch::seen`].
pub(super) fn plan_entity<'p>(
    data: &Dataset,
    entity: u32,
    rows: &'p [usize],
    prior: Option<(&'p EntityModel, Option<(&'p std::path::Path, usize)>)>,
    config: &TrainConfig,
    seen: &mut [u32],
) -> Result<Plan<'p>> {
    let mut data_features = Vec::new();
    let mut previous: &[u32] = &[];
    let mut uniform_rows = true;
    // Ids ascend strictly within a row, so two rows with every feature of the dataset hold
    // the same ids: they need not be read (in dense data, nowhere else in a fit).
    let every_feature = |ids: &[u32]| ids.len() == data.features.len();
    for (r, &i) in rows.iter().enumerate() {
        let ids = data.row_features(i).0;
        // A row with the previous row's features (every row, in dense data) adds none.
        if r > 0 && ((every_feature(ids) && every_feature(previous)) || ids == previous) {
            continue;
        }
        uniform_rows &= r == 0;
        for &f in ids {
            if std::mem::replace(&mut seen[f as usize], entity) != entity {
                data_features.push(f);
            }
        }
        previous = ids;
    }
    data_features.sort_unstable();
    let (prior, origin) = prior.unzip();
    let origin = origin.flatten();
    let reg = &config.regularization;
    let (delta, last_seen) = match reg.half_life {
        None => (reg.delta, None),
        Some(_) => {
            let newest = rows
                .iter()
                .filter_map(|&i| data.timestamp[i])
                .reduce(f64::max);
            let prior_seen = prior.and_then(|p| p.last_seen);
            let last_seen = newest.into_iter().chain(prior_seen).reduce(f64::max);
            (reg.forgetting(prior_seen, newest), last_seen)
        }
    };
    let mut plan = Plan {
        entity,
        rows,
        in_prior: vec![None; data_features.len() + 1],
        data_features,
        prior,
        uniform_rows,
        delta,
        last_seen,
    };
    if let Some(pm) = prior {
        check_prior_fits(pm, origin, config)?;
        for (pj, key) in pm.features.iter().enumerate() {
            let local = if key.is_intercept() {
                Some(0)
            } else {
                data.features
                    .get(key)
                    .and_then(|f| plan.data_features.binary_search(&f).ok())
                    .map(|c| c + 1)
            };
            match local {
                Some(j) => plan.in_prior[j] = Some(pj),
                None => plan.in_prior.push(Some(pj)),
            }
        }
    }
    Ok(plan)
}

/// A prior "fits" when it can serve as `H₀` for the requested training.
/// With the model's file and line known, a misfit is an input error there.
fn check_prior_fits(
    pm: &EntityModel,
    origin: Option<(&std::path::Path, usize)>,
    config: &TrainConfig,
) -> Result<()> {
    if !config.objective.is_bayesian() {
        return Ok(());
    }
    let mismatch = |message: String| {
        Err(match origin {
            Some((path, line)) => Error::input(
                path,
                line,
                "hessian",
                format!("prior for entity {:?}: {message}", pm.entity),
            ),
            None => Error::PriorMismatch {
                entity: pm.entity.clone(),
                message,
            },
        })
    };
    match (&pm.precision, config.hessian) {
        (Precision::None, _) => mismatch(format!(
            "it keeps no precision (Hessian type none), but {} needs one; retrain it with --hessian diagonal or full",
            config.objective
        )),
        (Precision::Full(_), h) if h != HessianType::Full => mismatch(format!(
            "it has a full precision matrix but --hessian {h} was asked; use --hessian full so its correlations are not dropped"
        )),
        _ => Ok(()),
    }
}

/// Pack `plan`'s rows, penalties, prior mean and prior precision into `b`.
pub(super) fn pack_entity(
    b: &mut TrainingBatchBuilder,
    data: &Dataset,
    plan: &Plan,
    config: &TrainConfig,
    scratch: &mut PartScratch,
) {
    let objective = config.objective;
    let loss = objective.loss();
    let reg = &config.regularization;
    let column = &mut scratch.column;
    for (j, &f) in plan.data_features.iter().enumerate() {
        column[f as usize] = j as u32 + 1;
    }
    // Uniform rows: the first spells its columns out, the others reuse them.
    let (spelled, uniform) = match plan.uniform_rows {
        true => plan.rows.split_at(plan.rows.len().min(1)),
        false => (plan.rows, &[][..]),
    };
    for &i in spelled {
        let (ids, vals) = data.row_features(i);
        // Dataset ids ascend within a row and `column` is monotone, so columns ascend.
        let cols = ids.iter().map(|&f| column[f as usize]);
        let label = training_label(loss, data.label[i]);
        b.push_row(label, data.weight[i], data.offset[i], cols, vals);
    }
    // Rows with the first row's columns, copied a run of consecutive records at a time (a
    // file grouped by entity holds one run per entity).
    for run in uniform.chunk_by(|&i, &j| j == i + 1) {
        let rows = run[0]..run[run.len() - 1] + 1;
        b.push_rows_with_previous_columns(
            data.label[rows.clone()]
                .iter()
                .map(|&y| training_label(loss, y)),
            &data.weight[rows.clone()],
            &data.offset[rows.clone()],
            &data.values[data.nz_ptr[rows.start]..data.nz_ptr[rows.end]],
        );
    }
    let d = plan.free();
    let h0 = |j: usize, k: usize| -> f64 {
        match (plan.prior, plan.in_prior[j], plan.in_prior[k]) {
            (Some(pm), Some(pj), Some(pk)) => pm.precision_at(pj, pk).unwrap_or(0.0),
            _ if j == k => reg.cold_precision(j),
            _ => 0.0,
        }
    };
    let delta = plan.delta;
    let PartScratch {
        penalty,
        mean,
        precision,
        ..
    } = scratch;
    penalty.clear();
    penalty.extend((0..d).map(|j| reg.coefficient_penalty(objective, j, delta)));
    mean.clear();
    mean.extend((0..d).map(|j| match (plan.prior, plan.in_prior[j]) {
        (Some(pm), Some(pj)) => pm.means[pj],
        _ => 0.0,
    }));
    precision.clear();
    match b.precision_shape() {
        PrecisionShape::None => {}
        PrecisionShape::Diagonal => precision.extend((0..d).map(|j| delta * h0(j, j))),
        PrecisionShape::Full => precision.extend((0..d * d).map(|jk| delta * h0(jk / d, jk % d))),
    }
    b.finish_entity(penalty, mean, precision);
}
