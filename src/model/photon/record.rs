//! One model as a `BayesianLinearModelAvro` record, and back.
//!
//! Photon's fields: `modelId` (the entity; `fixed-effect` for a fixed effect), `modelClass`
//! (`…LogisticRegressionModel` or `…LinearRegressionModel`), `means` and `variances` as
//! name-term-value lists with the intercept as `("(INTERCEPT)", "")`, `lossFunction` (`""`,
//! as Photon writes it). glmix adds three nullable fields that Photon's and GDMix's readers
//! skip (Avro schema resolution drops writer fields the reader lacks): `glmixObjective`,
//! `glmixHessian` and `glmixPrecision` (the exact precision, diagonal or d×d row-major in
//! the order of `means`), so that glmix → Avro → glmix is exact. Without them a model's
//! precision is `1/variance` (Hessian `diagonal`), or none when it has no variances.

use crate::data::FeatureKey;
use crate::model::columns;
use crate::model::{EntityModel, HessianType, Precision};
use crate::objective::ObjectiveKind;
use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use std::collections::HashMap;
use std::sync::Arc;

/// Photon-ML's intercept key (`Constants.INTERCEPT_NAME`, `INTERCEPT_TERM`).
pub const PHOTON_INTERCEPT: (&str, &str) = ("(INTERCEPT)", "");

const CLASS_PREFIX: &str = "com.linkedin.photon.ml.supervised.";
const LOGISTIC_CLASS: &str = "classification.LogisticRegressionModel";
const LINEAR_CLASS: &str = "regression.LinearRegressionModel";

/// The writer schema: Photon's `BayesianLinearModelAvro` with `NameTermValueAvro` inlined
/// at its first use (so that the header stands alone), and glmix's three fields.
pub const SCHEMA: &str = r#"{"type":"record","name":"BayesianLinearModelAvro","namespace":"com.linkedin.photon.avro.generated","doc":"a generic schema to describe a Bayesian linear model with means and variances","fields":[{"name":"modelId","type":"string"},{"name":"modelClass","type":["null","string"],"default":null},{"name":"means","type":{"type":"array","items":{"type":"record","name":"NameTermValueAvro","fields":[{"name":"name","type":"string"},{"name":"term","type":"string"},{"name":"value","type":"double"}]}}},{"name":"variances","type":["null",{"type":"array","items":"NameTermValueAvro"}],"default":null},{"name":"lossFunction","type":["null","string"],"default":null},{"name":"glmixObjective","type":["null","string"],"default":null},{"name":"glmixHessian","type":["null","string"],"default":null},{"name":"glmixPrecision","type":["null",{"type":"array","items":"double"}],"default":null}]}"#;

/// The Photon model class of an objective's models.
pub fn model_class(objective: ObjectiveKind) -> String {
    let class = match objective.loss() {
        crate::objective::Loss::Logistic => LOGISTIC_CLASS,
        crate::objective::Loss::Squared => LINEAR_CLASS,
    };
    format!("{CLASS_PREFIX}{class}")
}

/// The objective a Photon model class trains with (the non-Bayesian one: Photon keeps no
/// prior), or why glmix has none.
pub fn objective_of_class(class: &str) -> Result<ObjectiveKind, String> {
    match class.strip_prefix(CLASS_PREFIX) {
        Some(LOGISTIC_CLASS) => Ok(ObjectiveKind::Logistic),
        Some(LINEAR_CLASS) => Ok(ObjectiveKind::Linear),
        _ => Err(format!(
            "model class {class:?}: glmix trains {CLASS_PREFIX}{LOGISTIC_CLASS} and {LINEAR_CLASS} models only"
        )),
    }
}

fn photon_key(k: &FeatureKey) -> (&str, &str) {
    match k.is_intercept() {
        true => PHOTON_INTERCEPT,
        false => (k.name.as_str(), k.term.as_str()),
    }
}

fn glmix_key(name: &str, term: &str) -> FeatureKey {
    match (name, term) == PHOTON_INTERCEPT {
        true => FeatureKey::intercept(),
        false => FeatureKey::new(name, term),
    }
}

/// One model to write: its id, class, and the coefficients kept.
pub struct Row<'a> {
    pub model_id: &'a str,
    pub class: &'a str,
    pub model: &'a EntityModel,
    /// Photon's sparsity threshold: means of smaller magnitude are left out (and the
    /// model's exact precision with them).
    pub threshold: f64,
}

/// The records of `rows` as one batch of [`SCHEMA`].
pub fn to_batch(rows: &[Row]) -> Result<RecordBatch, String> {
    let (mut ids, mut classes, mut losses) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut objectives, mut hessians) = (StringBuilder::new(), StringBuilder::new());
    let (mut means, mut variances) = (columns::builder(), columns::builder());
    let mut precision = columns::doubles_builder();
    for row in rows {
        let m = row.model;
        let v = m
            .writable_variances()
            .map_err(|why| format!("entity {:?}: {why}", m.entity))?;
        let kept: Vec<usize> = (0..m.means.len())
            .filter(|&j| m.means[j].abs() >= row.threshold)
            .collect();
        let keys: Vec<(&str, &str)> = kept.iter().map(|&j| photon_key(&m.features[j])).collect();
        ids.append_value(row.model_id);
        classes.append_value(row.class);
        losses.append_value("");
        let kept_of = |values: &[f64]| kept.iter().map(|&j| values[j]).collect::<Vec<_>>();
        columns::push(&mut means, keys.iter().copied(), &kept_of(&m.means));
        match &v {
            Some(v) => columns::push(&mut variances, keys.iter().copied(), &kept_of(v)),
            None => variances.append(false),
        }
        objectives.append_option(m.objective.map(|o| o.name()));
        let whole = kept.len() == m.means.len();
        match (&m.precision, whole) {
            (Precision::Diagonal(h) | Precision::Full(h), true) => {
                hessians.append_value(m.hessian.name());
                precision.values().append_slice(h);
                precision.append(true);
            }
            (Precision::None, true) => {
                hessians.append_value(m.hessian.name());
                precision.append(false);
            }
            (_, false) => {
                hessians.append_null();
                precision.append(false);
            }
        }
    }
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("modelId", Arc::new(ids.finish()), false),
        ("modelClass", Arc::new(classes.finish()), true),
        ("means", Arc::new(means.finish()), false),
        ("variances", Arc::new(variances.finish()), true),
        ("lossFunction", Arc::new(losses.finish()), true),
        ("glmixObjective", Arc::new(objectives.finish()), true),
        ("glmixHessian", Arc::new(hessians.finish()), true),
        ("glmixPrecision", Arc::new(precision.finish()), true),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a, nullable)| Field::new(*n, a.data_type().clone(), *nullable))
        .collect();
    let metadata = HashMap::from([("avro.schema".to_string(), SCHEMA.to_string())]);
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a, _)| a).collect())
        .map_err(|e| e.to_string())
}

/// The models of a batch of `BayesianLinearModelAvro` records (Photon's, GDMix's or
/// glmix's); `entity(model_id)` names each model. Errors name the record (1-based) and
/// field.
pub fn from_batch(
    batch: &RecordBatch,
    entity: &dyn Fn(&str) -> String,
) -> Result<Vec<EntityModel>, (usize, &'static str, String)> {
    let missing = |f: &'static str| (1, f, "no such field of type string".to_string());
    let ids = columns::strings(batch, "modelId").ok_or_else(|| missing("modelId"))?;
    let classes = columns::strings(batch, "modelClass");
    let (objectives, hessians) = (
        columns::strings(batch, "glmixObjective"),
        columns::strings(batch, "glmixHessian"),
    );
    let means = columns::coefficient_list(batch, "means").ok_or_else(|| {
        (
            1,
            "means",
            "no list of (name, term, value) records".to_string(),
        )
    })?;
    let variances = columns::coefficient_list(batch, "variances");
    let precisions = columns::double_list(batch, "glmixPrecision");
    // Avro's `string` and `double` are never null.
    let ntv = |l: &arrow_array::ListArray, i: usize| -> Vec<(FeatureKey, f64)> {
        columns::coefficients(l, i)
            .into_iter()
            .map(|(n, t, v)| {
                let key = glmix_key(n.as_deref().unwrap_or(""), t.as_deref().unwrap_or(""));
                (key, v.unwrap_or(f64::NAN))
            })
            .collect()
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let record = i + 1;
        let bad = |field: &'static str, message: String| (record, field, message);
        let coefficients = ntv(means, i);
        let mut features: Vec<FeatureKey> = coefficients.iter().map(|(k, _)| k.clone()).collect();
        let mut values: Vec<f64> = coefficients.iter().map(|(_, v)| *v).collect();
        let given = |o: Option<&arrow_array::StringArray>| {
            o.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
        };
        let objective = match (given(objectives), given(classes)) {
            (Some(o), _) => Some(o.parse().map_err(|m| bad("glmixObjective", m))?),
            (None, Some(class)) => {
                Some(objective_of_class(&class).map_err(|m| bad("modelClass", m))?)
            }
            (None, None) => None,
        };
        let exact = given(hessians)
            .map(|h| h.parse::<HessianType>().map_err(|m| bad("glmixHessian", m)))
            .transpose()?;
        let d = features.len();
        let (hessian, precision) = match exact {
            Some(h) => {
                let p = precisions.and_then(|p| columns::doubles(p, i));
                match (h, p) {
                    (HessianType::None, None) => (h, Precision::None),
                    (HessianType::Full, Some(p)) if p.len() == d * d => (h, Precision::Full(p)),
                    (HessianType::Diagonal | HessianType::Identity, Some(p)) if p.len() == d => {
                        (h, Precision::Diagonal(p))
                    }
                    _ => {
                        return Err(bad(
                            "glmixPrecision",
                            format!("does not fit a {h} precision of {d} coefficients"),
                        ))
                    }
                }
            }
            None => match variances.filter(|v| v.is_valid(i)) {
                None => (HessianType::None, Precision::None),
                Some(v) => {
                    let index: HashMap<FeatureKey, usize> = features
                        .iter()
                        .cloned()
                        .enumerate()
                        .map(|(j, k)| (k, j))
                        .collect();
                    let mut h = vec![f64::NAN; d];
                    for (key, var) in ntv(v, i) {
                        if !(var.is_finite() && var > 0.0) {
                            return Err(bad(
                                "variances",
                                format!("{key:?}: variance {var} is not positive"),
                            ));
                        }
                        match index.get(&key) {
                            Some(&j) => h[j] = 1.0 / var,
                            // A coefficient Photon's sparsity threshold left out of the
                            // means: its mean is 0.
                            None => {
                                features.push(key);
                                values.push(0.0);
                                h.push(1.0 / var);
                            }
                        }
                    }
                    if let Some(j) = h.iter().position(|x| x.is_nan()) {
                        return Err(bad(
                            "variances",
                            format!("{:?} has a mean but no variance", features[j]),
                        ));
                    }
                    (HessianType::Diagonal, Precision::Diagonal(h))
                }
            },
        };
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(bad("means", format!("{v} is not a finite number")));
        }
        let unfit = match &precision {
            Precision::Diagonal(h) => h.iter().find(|v| !(**v > 0.0 && v.is_finite())),
            Precision::Full(h) => h.iter().find(|v| !v.is_finite()),
            Precision::None => None,
        };
        if let Some(v) = unfit {
            return Err(bad("glmixPrecision", format!("{v} is not a precision")));
        }
        out.push(EntityModel {
            entity: entity(ids.value(i)),
            objective,
            hessian,
            features,
            means: values,
            precision,
            last_seen: None,
        });
    }
    Ok(out)
}
