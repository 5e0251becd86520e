//! One record's update, the work of a stream's one-record mini-batch, without
//! [`super::fit_on`]'s grouping, parts and threads.
//!
//! The record's entity is planned, packed and turned into a posterior model by the same
//! functions as in a fit (the intercept, then the record's features in key order, then
//! the features only its prior has; `δ·H₀` as its prior precision). Its optimum is the
//! root of one scalar equation ([`solve_one_row`]); where that has none (an `A` that is
//! not positive definite) the CPU backend's L-BFGS runs, as it would in a fit. So the
//! model is, bit for bit, the one `fit_on` gives the same record as a mini-batch of its
//! own, and the packed buffers are reused from one record to the next.

use super::pack::{builder, pack_entity, plan_entity, PartScratch, Plan};
use super::posterior::{posterior_model_into, Solution};
use super::TrainConfig;
use crate::data::Dataset;
use crate::error::Result;
use crate::eval::Backend;
use crate::model::EntityModel;
use crate::solver::{solve_one_row_into, OneRowScratch, SolveReport};

/// What one record's update reuses from the one before.
pub struct RecordScratch {
    part: PartScratch<'static>,
    one_row: OneRowScratch,
    /// A model the next update writes its model over (see [`Self::recycle`]).
    spare_model: Option<EntityModel>,
}

impl Default for RecordScratch {
    fn default() -> Self {
        RecordScratch {
            part: PartScratch::new(0),
            one_row: OneRowScratch::default(),
            spare_model: None,
        }
    }
}

impl RecordScratch {
    /// Hand back a model no longer needed (the one an update replaced): the next update
    /// writes its model into its buffers instead of allocating new ones.
    pub fn recycle(&mut self, model: EntityModel) {
        self.spare_model = Some(model);
    }
}

/// What one record's update gives.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdate {
    /// The record's margin `o + x·θ₀` under its entity's model before the update (its
    /// progressive-validation score): the model's intercept, then the record's features
    /// the model has, in row order, summed as [`crate::score::score`] sums them, to the
    /// same bits; the offset alone for an entity without a model.
    pub prior_margin: f64,
    /// The entity's model after the update.
    pub model: EntityModel,
    pub report: SolveReport,
}

/// Update record `row`'s entity by training on that record alone, its `prior` model (if
/// it has one) as the prior.
pub fn update_record(
    prior: Option<&EntityModel>,
    data: &Dataset,
    row: usize,
    config: &TrainConfig,
    scratch: &mut RecordScratch,
) -> Result<RecordUpdate> {
    config.validate()?;
    let mut model = scratch
        .spare_model
        .take()
        .unwrap_or_else(EntityModel::empty);
    let RecordScratch { part, one_row, .. } = scratch;
    let scratch = part;
    let features = data.features.len();
    if scratch.seen.len() < features {
        scratch.seen.resize(features, u32::MAX);
        scratch.column.resize(features, 0);
    }
    let rows = std::slice::from_ref(&row);
    let planned = plan_entity(
        data,
        data.entity[row],
        rows,
        prior.map(|m| (m, None)),
        config,
        &mut scratch.seen,
    );
    // `seen` marks features by entity; the entity's next record must find them unmarked.
    for &f in data.row_features(row).0 {
        scratch.seen[f as usize] = u32::MAX;
    }
    let plan = planned?;
    let prior_margin = prior_margin(data, row, &plan);

    let mut b = builder(config, scratch);
    b.reserve(1, 1, data.row_features(row).0.len());
    pack_entity(&mut b, data, &plan, config, scratch);
    let batch = b.build();

    let start = &batch.prior_mean;
    let report = match solve_one_row_into(&batch.entity(0), start, &config.solver, one_row) {
        Some(report) => report,
        None => {
            let settings = config.solve_settings();
            let mut solved = Backend::Cpu
                .solve(&batch, &mut scratch.gpu, &settings, &mut |_| {})?
                .solved;
            one_row.theta = std::mem::take(&mut solved.theta);
            solved.reports[0]
        }
    };
    let solution = Solution {
        theta: &one_row.theta,
        data_hessian: None,
        report: &report,
    };
    posterior_model_into(data, &batch, 0, &plan, &solution, config, &mut model);
    scratch.spare = Some(batch);
    Ok(RecordUpdate {
        prior_margin,
        model,
        report,
    })
}

/// [`RecordUpdate::prior_margin`] from the record's plan, which has found where each of
/// its coefficients is in the prior: coefficient 0 the intercept, coefficient `c` the
/// record's `c`-th feature.
fn prior_margin(data: &Dataset, row: usize, plan: &Plan) -> f64 {
    let Some(prior) = plan.prior else {
        return data.offset[row];
    };
    let values = data.row_features(row).1;
    let intercept = plan.in_prior[0].map(|pj| (pj, 1.0));
    let features = (plan.in_prior[1..plan.free()].iter().zip(values))
        .filter_map(|(pj, &v)| pj.map(|pj| (pj, v)));
    let dot: f64 = intercept
        .into_iter()
        .chain(features)
        .map(|(pj, v)| v * prior.means[pj])
        .sum();
    data.offset[row] + dot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureKey;
    use crate::model::{HessianType, ModelSet};
    use crate::objective::ObjectiveKind;
    use crate::score::score;
    use crate::train::{fit_on, Backend};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Records of a few entities with ragged, random features, in stream order.
    fn records(seed: u64, count: usize) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data = Dataset::new();
        for _ in 0..count {
            let entity = format!("e{}", rng.gen_range(0..5));
            let mut features = Vec::new();
            for j in 0..8 {
                if rng.gen_bool(0.4) {
                    let key = FeatureKey::new("f", j.to_string());
                    features.push((key, rng.gen_range(-2.0..2.0)));
                }
            }
            let label = f64::from(rng.gen_bool(0.5));
            let offset = rng.gen_range(-1.0..1.0);
            let time = Some(data.num_rows() as f64);
            data.push(
                &entity,
                label,
                rng.gen_range(0.5..2.0),
                offset,
                time,
                features,
            );
        }
        data.sort_features();
        data
    }

    /// Record `i` of `data` as a dataset of its own, as a one-record mini-batch reads it.
    fn alone(data: &Dataset, i: usize) -> Dataset {
        let mut one = Dataset::new();
        one.push_row_of(data, i);
        one.sort_features();
        one
    }

    #[test]
    fn a_record_updates_its_entity_exactly_as_a_one_record_fit() {
        for (objective, hessian, half_life) in [
            (ObjectiveKind::BayesLogistic, HessianType::Diagonal, None),
            (ObjectiveKind::BayesLogistic, HessianType::Full, None),
            (
                ObjectiveKind::BayesLogistic,
                HessianType::Diagonal,
                Some(5.0),
            ),
            (ObjectiveKind::BayesLinear, HessianType::Diagonal, None),
            (ObjectiveKind::BayesLinear, HessianType::Full, Some(5.0)),
            (ObjectiveKind::Logistic, HessianType::Diagonal, None),
        ] {
            let mut config = TrainConfig::new(objective);
            config.hessian = hessian;
            config.regularization.penalty = 2.0;
            config.regularization.delta = 0.8;
            config.regularization.half_life = half_life;
            let data = records(7, 60);
            let (mut by_record, mut by_fit) = (ModelSet::new(), ModelSet::new());
            let mut scratch = RecordScratch::default();
            for i in 0..data.num_rows() {
                let prior = by_record.get(data.entities.key(data.entity[i]));
                let update = update_record(prior, &data, i, &config, &mut scratch).unwrap();
                let one = alone(&data, i);
                let scored = score(&one, &by_fit, None).unwrap()[0];
                let fitted = fit_on(Backend::Cpu, Some(&by_fit), &one, &config, &|_| {}).unwrap();
                let case = format!("{objective} {hessian} record {i}");
                assert_eq!(update.prior_margin.to_bits(), scored.to_bits(), "{case}");
                assert_eq!(update.report, fitted.reports[0].solve, "{case}");
                assert_eq!(update.model, fitted.models[0], "{case}");
                by_record.insert(update.model);
                by_fit.insert(fitted.models[0].clone());
            }
        }
    }
}
