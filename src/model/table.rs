//! Models as an Arrow table, one row per entity: what Parquet model files hold and what
//! the Python package returns.
//!
//! | column | type | |
//! |---|---|---|
//! | `entity` | utf8 | |
//! | `objective` | utf8, nullable | as in model JSON lines |
//! | `hessian` | utf8 | `full`, `diagonal`, `identity` or `none` |
//! | `means` | `list<struct<name, term, value>>` | the intercept is `("intercept", "intercept")` |
//! | `variances` | `list<struct<name, term, value>>`, nullable | for people |
//! | `precision` | `list<double>`, nullable | diagonal, or d×d row-major, in the order of `means` |
//! | `last_seen` | double, nullable | the latest record time (runs with a half-life); optional on reading |
//!
//! A row is read through the same checks as a model line (`file.rs`), with the row number
//! in place of the line, so a model reads back bit for bit what was written.

use super::columns;
use super::file::{collect, convert, RawCoefficient, RawKey, RawModel, RawPrecision};
use super::{EntityModel, HessianType, ModelSet, Precision};
use crate::error::{Error, Result};
use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{Field, Schema};
use std::path::Path;
use std::sync::Arc;

/// `models` as one record batch of the model table.
pub fn models_to_batch(models: &[&EntityModel]) -> Result<RecordBatch> {
    to_batch(models).map_err(Error::Config)
}

/// The models of the model-table batches `batches` (at least one), checked as a model
/// file's lines are;
/// errors name `name` in place of a file and the row (1-based over the batches).
/// `missing_precision`: the precision of models that have none, as for [`super::read_models`].
pub fn models_from_batches(
    name: &Path,
    batches: impl IntoIterator<Item = RecordBatch>,
    missing_precision: Option<f64>,
) -> Result<ModelSet> {
    let mut rows = Vec::new();
    for batch in batches {
        append_rows(name, &batch, missing_precision, &mut rows)?;
    }
    collect(name, rows)
}

pub(super) fn to_batch(models: &[&EntityModel]) -> Result<RecordBatch, String> {
    let (mut entity, mut objective, mut hessian) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut means, mut variances) = (columns::builder(), columns::builder());
    let mut precision = columns::doubles_builder();
    let mut last_seen = Float64Builder::new();
    for m in models {
        let v = m
            .writable_variances()
            .map_err(|why| format!("entity {:?}: {why}", m.entity))?;
        let keys = || {
            m.features
                .iter()
                .map(|k| (k.name.as_str(), k.term.as_str()))
        };
        entity.append_value(&m.entity);
        objective.append_option(m.objective.map(|o| o.name()));
        hessian.append_value(m.hessian.name());
        columns::push(&mut means, keys(), &m.means);
        match &v {
            Some(v) => columns::push(&mut variances, keys(), v),
            None => variances.append(false),
        }
        match (&m.precision, m.hessian) {
            (Precision::Diagonal(_), HessianType::Identity) | (Precision::None, _) => {
                precision.append(false)
            }
            (Precision::Diagonal(h) | Precision::Full(h), _) => {
                precision.values().append_slice(h);
                precision.append(true);
            }
        }
        last_seen.append_option(m.last_seen);
    }
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("entity", Arc::new(entity.finish()), false),
        ("objective", Arc::new(objective.finish()), true),
        ("hessian", Arc::new(hessian.finish()), false),
        ("means", Arc::new(means.finish()), false),
        ("variances", Arc::new(variances.finish()), true),
        ("precision", Arc::new(precision.finish()), true),
        ("last_seen", Arc::new(last_seen.finish()), true),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a, nullable)| Field::new(*n, a.data_type().clone(), *nullable))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a, _)| a).collect(),
    )
    .map_err(|e| e.to_string())
}

/// Append the models of `batch` to `out`, each with its row number (1-based, after the
/// rows already in `out`).
pub(super) fn append_rows(
    path: &Path,
    batch: &RecordBatch,
    missing_precision: Option<f64>,
    out: &mut Vec<(usize, EntityModel)>,
) -> Result<()> {
    let schema_error = |field: &str, message: String| Error::Schema {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let entity = columns::strings(batch, "entity").ok_or_else(|| {
        schema_error(
            "entity",
            "no column of strings; is this a model table?".into(),
        )
    })?;
    let (objective, hessian) = (
        columns::strings(batch, "objective"),
        columns::strings(batch, "hessian"),
    );
    let means = columns::coefficient_list(batch, "means")
        .ok_or_else(|| schema_error("means", "no list of (name, term, value) structs".into()))?;
    let variances = columns::coefficient_list(batch, "variances");
    let precision = columns::double_list(batch, "precision");
    let last_seen = match batch.column_by_name("last_seen") {
        None => None,
        Some(c) => Some(
            c.as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| schema_error("last_seen", "not a column of doubles".into()))?,
        ),
    };
    let raw_list = |list: &arrow_array::ListArray, i: usize| -> Vec<RawCoefficient> {
        columns::coefficients(list, i)
            .into_iter()
            .map(|(name, term, value)| RawCoefficient {
                name: name.unwrap_or_default().into(),
                term: term.unwrap_or_default().into(),
                value: value.unwrap_or(f64::NAN),
            })
            .collect()
    };
    for i in 0..batch.num_rows() {
        let row = out.len() + 1;
        let text = |a: Option<&arrow_array::StringArray>| {
            a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
        };
        if !entity.is_valid(i) {
            return Err(Error::input(path, row, "entity", "null entity"));
        }
        let means = raw_list(means, i);
        let hessian = text(hessian);
        let precision =
            precision
                .and_then(|p| columns::doubles(p, i))
                .map(|p| match hessian.as_deref() {
                    Some("full") => {
                        let d = means.len().max(1);
                        RawPrecision {
                            features: Some(
                                means
                                    .iter()
                                    .map(|c| RawKey {
                                        name: c.name.clone(),
                                        term: c.term.clone(),
                                    })
                                    .collect(),
                            ),
                            matrix: Some(p.chunks(d).map(<[f64]>::to_vec).collect()),
                            ..Default::default()
                        }
                    }
                    _ => RawPrecision {
                        diagonal: Some(p),
                        ..Default::default()
                    },
                });
        let raw = RawModel {
            entity: serde_json::Value::String(entity.value(i).to_string()),
            objective: text(objective),
            hessian,
            variances: variances.filter(|v| v.is_valid(i)).map(|v| raw_list(v, i)),
            means,
            precision,
            last_seen: last_seen.filter(|t| t.is_valid(i)).map(|t| t.value(i)),
        };
        out.push((row, convert(path, row, raw, missing_precision)?));
    }
    Ok(())
}
