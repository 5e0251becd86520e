//! GAME models (Photon-ML, GDMix): a fixed effect plus random effects of several types,
//! trained by block coordinate descent.
//!
//! The margin of record `i` is `s_i = o_i + Σ_c x_{i,c}·θ_{c, e_c(i)}`: its base offset
//! `o_i` plus one term per coordinate `c`, where `x_{i,c}` is the record's features in
//! `c`'s feature set and `e_c(i)` its entity under `c`'s key (the fixed effect has one
//! entity). The objective is `Σ_i w_i ℓ(s_i, y_i) + Σ_c Σ_e λ_c/2 ‖θ_{c,e}‖²`.
//!
//! Coordinate descent (Zhang et al., KDD 2016, "GLMix"): each pass trains the coordinates
//! in the configured order; coordinate `c` is trained with every other coordinate held
//! fixed, i.e. as a plain [`fit`](crate::train::fit) on offsets `o_i + Σ_{c'≠c} x_{i,c'}·θ_{c'}`,
//! warm-started from its previous pass, and its scores are updated before the next
//! coordinate. Each step minimises the objective over one block, so the objective never
//! increases from one step to the next (up to the solver's tolerance) when every record
//! trains every coordinate.
//!
//! Per-entity data controls (Photon-ML's active data): an entity with fewer than
//! `min_rows` records gets no model and is scored by the other coordinates only; of an
//! entity with more than `max_rows`, a seeded uniform sample of `max_rows` records
//! trains it. Every record is still scored by every coordinate.

mod config;
mod data;
mod files;
pub mod partial;

pub use config::{Coordinate, CoordinateKind, GameConfig};
pub use data::{active_rows, ActiveRows, GameData, IdColumn};
pub use files::SUMMARY_FILE;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::metrics::{auc, is_positive, logloss, rmse};
use crate::model::ModelSet;
use crate::objective::{training_label, Loss};
use crate::score::score;
use crate::solver::StopReason;
use crate::train::{fit_on, Backend};
use std::time::Instant;

/// A trained GAME model: one model set per coordinate, in configuration order.
#[derive(Debug, Clone)]
pub struct GameModel {
    pub config: GameConfig,
    pub coordinates: Vec<ModelSet>,
}

/// Validation metrics of the whole model's margins.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// `logistic`: AUC and log-loss (None when one class only).
    pub auc: Option<f64>,
    pub logloss: Option<f64>,
    /// `linear`: RMSE of the margin.
    pub rmse: Option<f64>,
}

impl Metrics {
    /// The metrics that are defined, by name.
    pub fn defined(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [
            ("auc", self.auc),
            ("logloss", self.logloss),
            ("rmse", self.rmse),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }
}

/// What one coordinate's training step did.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinateStep {
    pub pass: usize,
    pub coordinate: String,
    pub seconds: f64,
    /// Models trained, and of those, the ones that stopped at `max_iterations` or on a
    /// failed line search.
    pub models: usize,
    pub not_converged: usize,
    /// The GAME objective on the training records after this step.
    pub objective: f64,
    /// Metrics on the validation records after this step, when a validation file is given.
    pub validation: Option<Metrics>,
}

/// Which records trained each random effect.
#[derive(Debug, Clone, PartialEq)]
pub struct DataReport {
    pub coordinate: String,
    pub active: ActiveRows,
}

/// What [`train`] returns.
#[derive(Debug, Clone)]
pub struct GameOutput {
    pub model: GameModel,
    pub steps: Vec<CoordinateStep>,
    pub data: Vec<DataReport>,
}

/// A coordinate's view of a data set: its records (features of its set, entity under its
/// key, offsets 0) for scoring every record, and for training when it trains on a subset.
struct CoordinateView {
    all: Dataset,
    /// `Some((training records, their dataset))` when not every record trains it.
    subset: Option<(Vec<usize>, Dataset)>,
}

/// The entity of record `i` under coordinate `c`: its id under `c`'s key, or the
/// coordinate's name for the fixed effect.
fn entity_fn<'a>(data: &'a GameData, c: &'a Coordinate) -> impl Fn(usize) -> &'a str {
    let column = match &c.kind {
        CoordinateKind::Fixed => None,
        CoordinateKind::Random { entity_key, .. } => Some(data.ids(entity_key)),
    };
    move |i| match column {
        Some(column) => column.ids.key(column.of_record[i]).as_str(),
        None => c.name.as_str(),
    }
}

fn names<'a>(config: &'a GameConfig, c: &Coordinate) -> &'a [String] {
    &config.feature_sets[&c.feature_set]
}

/// `x·θ` of every record of `view` (its offsets are 0).
fn coordinate_scores(view: &Dataset, models: &ModelSet) -> Result<Vec<f64>> {
    debug_assert!(view.offset.iter().all(|&o| o == 0.0));
    score(view, models, None)
}

/// Train a GAME model on `data` by coordinate descent; `validation` (optional) is scored
/// after every coordinate step; `step` is called after each.
pub fn train(
    config: &GameConfig,
    data: &GameData,
    validation: Option<&GameData>,
    backend: Backend,
    step: &mut dyn FnMut(&CoordinateStep),
) -> Result<GameOutput> {
    for (set, list) in &config.feature_sets {
        let missing = data.missing_names(list);
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "feature set {set:?} names {missing:?}, which no record of {} has",
                data.path.display()
            )));
        }
    }
    let n = data.num_records();
    let mut reports = Vec::new();
    let mut views = Vec::with_capacity(config.coordinates.len());
    for c in &config.coordinates {
        let entity = entity_fn(data, c);
        let all = data.view(names(config, c), 0..n, &entity);
        let subset = match &c.kind {
            CoordinateKind::Fixed => None,
            CoordinateKind::Random {
                entity_key,
                min_rows,
                max_rows,
                seed,
            } => {
                let active = active_rows(data.ids(entity_key), *min_rows, *max_rows, *seed);
                let subset = (active.rows.len() < n).then(|| {
                    let ds = data.view(names(config, c), active.rows.iter().copied(), &entity);
                    (active.rows.clone(), ds)
                });
                reports.push(DataReport {
                    coordinate: c.name.clone(),
                    active,
                });
                subset
            }
        };
        views.push(CoordinateView { all, subset });
    }
    let validation_views: Option<Vec<Dataset>> = validation.map(|v| {
        config
            .coordinates
            .iter()
            .map(|c| v.view(names(config, c), 0..v.num_records(), entity_fn(v, c)))
            .collect()
    });

    let loss = config.objective().loss();
    let k = config.coordinates.len();
    let mut models: Vec<Option<ModelSet>> = vec![None; k];
    let mut scores = vec![vec![0.0; n]; k];
    let mut total = data.records.offset.clone();
    let mut validation_scores: Vec<Vec<f64>> = match validation {
        Some(v) => vec![vec![0.0; v.num_records()]; k],
        None => Vec::new(),
    };
    let mut steps = Vec::new();
    for pass in 1..=config.passes {
        for (ci, c) in config.coordinates.iter().enumerate() {
            let clock = Instant::now();
            let view = &mut views[ci];
            let (train_set, rows): (&mut Dataset, Option<&[usize]>) = match &mut view.subset {
                Some((rows, ds)) => (ds, Some(rows)),
                None => (&mut view.all, None),
            };
            // Training row k is record rows[k] (every record when all of them train it).
            for (k, o) in train_set.offset.iter_mut().enumerate() {
                let i = rows.map_or(k, |rows| rows[k]);
                *o = total[i] - scores[ci][i];
            }
            let out = fit_on(backend, models[ci].as_ref(), train_set, &c.train, &|_| {})?;
            train_set.offset.fill(0.0);
            let not_converged = out
                .reports
                .iter()
                .filter(|r| {
                    !matches!(
                        r.solve.reason,
                        StopReason::GradientTolerance | StopReason::RelativeReduction
                    )
                })
                .count();
            let mut set = ModelSet::new();
            let trained = out.models.len();
            for m in out.models {
                set.insert(m);
            }
            let new_scores = coordinate_scores(&view.all, &set)?;
            for i in 0..n {
                total[i] += new_scores[i] - scores[ci][i];
            }
            scores[ci] = new_scores;
            if let Some(vviews) = &validation_views {
                validation_scores[ci] = coordinate_scores(&vviews[ci], &set)?;
            }
            models[ci] = Some(set);
            let seconds = clock.elapsed().as_secs_f64();

            let objective = data_loss(loss, &data.records, &total)
                + config
                    .coordinates
                    .iter()
                    .zip(&models)
                    .filter_map(|(c, m)| m.as_ref().map(|m| penalty(c, m)))
                    .sum::<f64>();
            let validation = validation.map(|v| {
                let margins = margins(&v.records.offset, &validation_scores);
                metrics(loss, &v.records.label, &margins)
            });
            let s = CoordinateStep {
                pass,
                coordinate: c.name.clone(),
                seconds,
                models: trained,
                not_converged,
                objective,
                validation,
            };
            step(&s);
            steps.push(s);
        }
    }
    Ok(GameOutput {
        model: GameModel {
            config: config.clone(),
            coordinates: models.into_iter().map(|m| m.unwrap_or_default()).collect(),
        },
        steps,
        data: reports,
    })
}

/// `o_i + Σ_c scores_c[i]`.
fn margins(offsets: &[f64], scores: &[Vec<f64>]) -> Vec<f64> {
    let mut m = offsets.to_vec();
    for s in scores {
        m.iter_mut().zip(s).for_each(|(m, s)| *m += s);
    }
    m
}

/// `Σ_i w_i ℓ(s_i, y_i)`.
fn data_loss(loss: Loss, records: &Dataset, margins: &[f64]) -> f64 {
    (0..records.num_rows())
        .map(|i| {
            let y = training_label(loss, records.label[i]);
            loss.row(margins[i], y, records.weight[i]).loss
        })
        .sum()
}

/// `Σ_e Σ_j p_j θ_j² / 2` of one coordinate's models.
fn penalty(c: &Coordinate, models: &ModelSet) -> f64 {
    let r = &c.train.regularization;
    models
        .models()
        .iter()
        .map(|m| {
            m.features
                .iter()
                .zip(&m.means)
                .filter(|(k, _)| r.intercept_penalty || !k.is_intercept())
                .map(|(_, t)| 0.5 * r.penalty * t * t)
                .sum::<f64>()
        })
        .sum()
}

/// AUC and log-loss (logistic) or RMSE (linear) of `margins`.
pub fn metrics(loss: Loss, labels: &[f64], margins: &[f64]) -> Metrics {
    match loss {
        Loss::Logistic => {
            let positive: Vec<bool> = labels.iter().map(|&y| is_positive(y)).collect();
            Metrics {
                auc: auc(margins, &positive),
                logloss: logloss(margins, &positive),
                rmse: None,
            }
        }
        Loss::Squared => Metrics {
            rmse: rmse(margins, labels),
            ..Metrics::default()
        },
    }
}

impl GameModel {
    /// Margins of every record of `data`: `o_i + Σ_c x_{i,c}·θ_{c,e_c(i)}`, and each
    /// coordinate's term (coordinate order).
    pub fn score(&self, data: &GameData) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let per_coordinate = self
            .config
            .coordinates
            .iter()
            .zip(&self.coordinates)
            .map(|(c, m)| {
                let view = data.view(
                    names(&self.config, c),
                    0..data.num_records(),
                    entity_fn(data, c),
                );
                coordinate_scores(&view, m)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((
            margins(&data.records.offset, &per_coordinate),
            per_coordinate,
        ))
    }
}
