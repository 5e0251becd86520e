//! Trained per-entity models: coefficient means and the posterior precision kept with
//! them (DESIGN §1, "Hessian types"), and their JSON-lines file form (DESIGN §2).
//!
//! Hessian types: `full` keeps the d×d precision `H`, `diagonal` its diagonal, `identity`
//! the unit matrix and `none` nothing. Variances are `1/H_jj` for a diagonal precision and
//! `diag(H⁻¹)` for a full one.
//!
//! File form, one entity per line:
//!
//! ```json
//! {"entity":"u1","objective":"bayes-logistic","hessian":"diagonal",
//!  "means":[{"name":"intercept","term":"intercept","value":0.12}, …],
//!  "variances":[{"name":"intercept","term":"intercept","value":0.05}, …],
//!  "precision":{"diagonal":[20.0, …]}}
//! ```
//!
//! `precision` holds the exact precision — `{"diagonal": [...]}` in the order of `means`,
//! or for `full` `{"features": [{name, term}, …], "matrix": [[…], …]}` — so a model read
//! back is bit-for-bit the model written. `variances` are for people and for files written
//! by other tools: a file may hold only `entity`, `means` and `variances` (Lambda Learner's
//! form), and a coefficient without a variance then gets the precision the reader is
//! given (λ when the model is a training prior, as in the reference). A model trained by a
//! run with a half-life also holds `"last_seen": t`, the latest timestamp of its records,
//! from which the next update's forgetting factor is computed.

#[cfg(any(feature = "parquet", feature = "avro"))]
mod columns;
mod file;
pub mod linalg;
mod offset;
#[cfg(feature = "parquet")]
mod parquet;
#[cfg(feature = "avro")]
pub mod photon;
pub mod posterior;
#[cfg(any(feature = "parquet", feature = "avro"))]
mod table;

pub use file::{parse_model_line, read_models, write_model_line, write_models, ModelWriter};
pub use offset::OffsetModel;
#[cfg(any(feature = "parquet", feature = "avro"))]
pub use table::{models_from_batches, models_to_batch};

use crate::data::FeatureKey;
use crate::objective::ObjectiveKind;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which posterior precision is kept with a trained model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HessianType {
    Full,
    Diagonal,
    Identity,
    None,
}

impl HessianType {
    pub const ALL: [HessianType; 4] = [
        HessianType::Full,
        HessianType::Diagonal,
        HessianType::Identity,
        HessianType::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HessianType::Full => "full",
            HessianType::Diagonal => "diagonal",
            HessianType::Identity => "identity",
            HessianType::None => "none",
        }
    }
}

impl fmt::Display for HessianType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HessianType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        HessianType::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| {
                format!("unknown Hessian type {s:?}: expected full, diagonal, identity or none")
            })
    }
}

/// The precision kept with a model, aligned with its features.
#[derive(Debug, Clone, PartialEq)]
pub enum Precision {
    None,
    Diagonal(Vec<f64>),
    /// Row-major d×d.
    Full(Vec<f64>),
}

/// One entity's model.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityModel {
    pub entity: String,
    /// The objective it was trained with (absent in files written by other tools).
    pub objective: Option<ObjectiveKind>,
    pub hessian: HessianType,
    /// Coefficient keys; the intercept, when present, is `FeatureKey::intercept()`.
    pub features: Vec<FeatureKey>,
    pub means: Vec<f64>,
    pub precision: Precision,
    /// The latest timestamp among the records that trained it, in the stream's time
    /// units: kept by runs with a half-life (see `Regularization::half_life`), `None`
    /// otherwise and in files written by other tools.
    pub last_seen: Option<f64>,
}

impl EntityModel {
    /// A model of no entity with no coefficients: room for one to be written into.
    pub fn empty() -> Self {
        EntityModel {
            entity: String::new(),
            objective: None,
            hessian: HessianType::None,
            features: Vec::new(),
            means: Vec::new(),
            precision: Precision::None,
            last_seen: None,
        }
    }

    /// Coefficient variances: `1/H_jj` (diagonal, identity) or `diag(H⁻¹)` (full).
    /// `None` when no precision is kept or a full precision is not positive definite.
    pub fn variances(&self) -> Option<Vec<f64>> {
        match &self.precision {
            Precision::None => None,
            Precision::Diagonal(h) => Some(h.iter().map(|v| 1.0 / v).collect()),
            Precision::Full(h) => {
                linalg::Cholesky::new(h, self.means.len()).map(|c| c.inverse_diagonal())
            }
        }
    }

    /// The variances a model file would hold, or why the model cannot be written: JSON
    /// has no non-finite numbers, so every mean and variance must be finite (a full
    /// precision must be positive definite).
    pub fn writable_variances(&self) -> Result<Option<Vec<f64>>, &'static str> {
        if self.means.iter().any(|v| !v.is_finite()) {
            return Err("non-finite mean");
        }
        let variances = self.variances();
        if variances
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| !x.is_finite()))
            || !matches!(&self.precision, Precision::None) && variances.is_none()
        {
            return Err("non-finite or non-positive-definite precision");
        }
        Ok(variances)
    }

    /// Index of every feature of the model.
    pub fn feature_index(&self) -> HashMap<&FeatureKey, usize> {
        self.features
            .iter()
            .enumerate()
            .map(|(j, k)| (k, j))
            .collect()
    }

    /// Precision entry `H_jk`, if any is kept.
    pub fn precision_at(&self, j: usize, k: usize) -> Option<f64> {
        match &self.precision {
            Precision::None => None,
            Precision::Diagonal(h) => Some(if j == k { h[j] } else { 0.0 }),
            Precision::Full(h) => Some(h[j * self.means.len() + k]),
        }
    }
}

/// Models of many entities, looked up by entity id.
#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    models: Vec<EntityModel>,
    /// Hashed with foldhash: a stream looks an entity up several times per record.
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    /// The file the set was read from and each model's line in it, for error messages.
    source: Option<(PathBuf, Vec<usize>)>,
}

impl ModelSet {
    pub fn new() -> Self {
        ModelSet::default()
    }

    /// Add a model; a second model for the same entity replaces the first, in its
    /// place. Returns the model's position in [`Self::models`].
    pub fn insert(&mut self, model: EntityModel) -> usize {
        match self.index.get(&model.entity) {
            Some(&i) => {
                self.models[i] = model;
                i
            }
            None => {
                let i = self.models.len();
                self.index.insert(model.entity.clone(), i);
                self.models.push(model);
                i
            }
        }
    }

    /// Record that the models come from `path`, model `i` from line `lines[i]`.
    pub fn set_source(&mut self, path: PathBuf, lines: Vec<usize>) {
        debug_assert_eq!(lines.len(), self.models.len());
        self.source = Some((path, lines));
    }

    /// The file and line an entity's model was read from, when known.
    pub fn origin(&self, entity: &str) -> Option<(&Path, usize)> {
        let (path, lines) = self.source.as_ref()?;
        Some((path.as_path(), *lines.get(*self.index.get(entity)?)?))
    }

    /// The place of `entity`'s model in [`Self::models`].
    pub fn position(&self, entity: &str) -> Option<usize> {
        self.index.get(entity).copied()
    }

    /// Replace the model at `i` (see [`Self::position`]) by `model`, of the same entity;
    /// returns the model replaced.
    pub fn replace(&mut self, i: usize, model: EntityModel) -> EntityModel {
        debug_assert_eq!(self.models[i].entity, model.entity);
        std::mem::replace(&mut self.models[i], model)
    }

    pub fn get(&self, entity: &str) -> Option<&EntityModel> {
        self.index.get(entity).map(|&i| &self.models[i])
    }

    pub fn contains(&self, entity: &str) -> bool {
        self.index.contains_key(entity)
    }

    pub fn models(&self) -> &[EntityModel] {
        &self.models
    }

    /// The models, in the order they were first inserted.
    pub fn into_models(self) -> Vec<EntityModel> {
        self.models
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// Two sets are equal when they hold the same models in the same order, wherever they
/// were read from.
impl PartialEq for ModelSet {
    fn eq(&self, other: &Self) -> bool {
        self.models == other.models
    }
}

impl FromIterator<EntityModel> for ModelSet {
    fn from_iter<I: IntoIterator<Item = EntityModel>>(iter: I) -> Self {
        let mut s = ModelSet::new();
        for m in iter {
            s.insert(m);
        }
        s
    }
}
