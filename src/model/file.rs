//! Reading and writing model JSON lines (see the parent module for the form), and the
//! choice of form by file: Parquet (`model/parquet.rs`) for a `.parquet` name or bytes.

use super::{EntityModel, HessianType, ModelSet, Precision};
use crate::data::FeatureKey;
use crate::error::{Error, Result};
use crate::io::{LineReader, OutputFile};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::Path;

#[derive(Deserialize)]
pub(super) struct RawModel {
    pub(super) entity: Value,
    #[serde(default)]
    pub(super) objective: Option<String>,
    #[serde(default)]
    pub(super) hessian: Option<String>,
    pub(super) means: Vec<RawCoefficient>,
    #[serde(default)]
    pub(super) variances: Option<Vec<RawCoefficient>>,
    #[serde(default)]
    pub(super) precision: Option<RawPrecision>,
    #[serde(default)]
    pub(super) last_seen: Option<f64>,
}

#[derive(Deserialize, Serialize)]
pub(super) struct RawCoefficient {
    pub(super) name: CompactString,
    #[serde(default)]
    pub(super) term: CompactString,
    pub(super) value: f64,
}

#[derive(Deserialize, Serialize)]
pub(super) struct RawKey {
    pub(super) name: CompactString,
    #[serde(default)]
    pub(super) term: CompactString,
}

#[derive(Deserialize, Serialize, Default)]
pub(super) struct RawPrecision {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) diagonal: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) features: Option<Vec<RawKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) matrix: Option<Vec<Vec<f64>>>,
}

/// Read a model JSON-lines file. A coefficient without a variance gets
/// `missing_precision`; with `None` that is an error (unless the model has no variances
/// at all, which reads as Hessian type `none`).
pub fn read_models(path: &Path, missing_precision: Option<f64>) -> Result<ModelSet> {
    #[cfg(feature = "parquet")]
    if crate::data::Format::of_file(path) == crate::data::Format::Parquet {
        return collect(path, super::parquet::read_rows(path, missing_precision)?);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut models = Vec::new();
    let mut reader = LineReader::new(BufReader::with_capacity(1 << 20, file), path);
    let mut line = String::new();
    while reader.read_line(&mut line)? {
        let number = reader.number();
        if line.trim().is_empty() {
            continue;
        }
        models.push((
            number,
            parse_model_line(path, number, &line, missing_precision)?,
        ));
    }
    collect(path, models)
}

/// The models of `path`, each with its line (or row): one per entity, at least one.
pub(super) fn collect(path: &Path, models: Vec<(usize, EntityModel)>) -> Result<ModelSet> {
    let mut set = ModelSet::new();
    let mut seen_lines: HashMap<String, usize> = HashMap::new();
    let mut lines = Vec::with_capacity(models.len());
    for (number, model) in models {
        if let Some(first) = seen_lines.insert(model.entity.clone(), number) {
            return Err(Error::input(
                path,
                number,
                "entity",
                format!(
                    "entity {:?} already has a model on line {first}",
                    model.entity
                ),
            ));
        }
        set.insert(model);
        lines.push(number);
    }
    set.set_source(path.to_path_buf(), lines);
    if set.is_empty() {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            message: "no models".into(),
        });
    }
    Ok(set)
}

/// Parse one model line (line `line` of `path`, for error messages).
pub fn parse_model_line(
    path: &Path,
    line: usize,
    text: &str,
    missing_precision: Option<f64>,
) -> Result<EntityModel> {
    let raw: RawModel = serde_json::from_str(text).map_err(|e| {
        let (field, message) = crate::data::json_path::error_field(text, &e);
        Error::input(path, line, field, format!("malformed model: {message}"))
    })?;
    convert(path, line, raw, missing_precision)
}

pub(super) fn convert(
    path: &Path,
    line: usize,
    raw: RawModel,
    missing_precision: Option<f64>,
) -> Result<EntityModel> {
    let err = |field: &str, msg: String| Error::input(path, line, field, msg);
    let entity = match raw.entity {
        Value::String(s) => s,
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        v => {
            return Err(err(
                "entity",
                format!("expected a string or integer id, got {v}"),
            ))
        }
    };
    let objective = raw
        .objective
        .map(|o| o.parse().map_err(|m| err("objective", m)))
        .transpose()?;
    let tag: Option<HessianType> = raw
        .hessian
        .map(|h| h.parse().map_err(|m| err("hessian", m)))
        .transpose()?;

    if let Some(t) = raw.last_seen.filter(|t| !t.is_finite()) {
        return Err(err("last_seen", format!("{t} is not a finite time")));
    }
    let mut features = Vec::with_capacity(raw.means.len());
    let mut means = Vec::with_capacity(raw.means.len());
    let mut index: HashMap<FeatureKey, usize> = HashMap::new();
    for (j, c) in raw.means.into_iter().enumerate() {
        let key = FeatureKey::new(c.name, c.term);
        if index.insert(key.clone(), j).is_some() {
            return Err(err(
                &format!("means[{j}]"),
                format!("duplicate coefficient ({}, {})", key.name, key.term),
            ));
        }
        features.push(key);
        means.push(c.value);
    }
    let d = means.len();

    let mut variances: Vec<Option<f64>> = vec![None; d];
    for (k, c) in raw.variances.iter().flatten().enumerate() {
        let key = FeatureKey::new(c.name.clone(), c.term.clone());
        let field = format!("variances[{k}]");
        let j = *index
            .get(&key)
            .ok_or_else(|| err(&field, format!("({}, {}) has no mean", key.name, key.term)))?;
        if !(c.value > 0.0 && c.value.is_finite()) {
            return Err(err(
                &field,
                format!("variance {} is not a positive finite number", c.value),
            ));
        }
        variances[j] = Some(c.value);
    }
    let any_variance = variances.iter().any(Option::is_some);

    let precision = raw.precision.unwrap_or_default();
    let matrix = match (precision.matrix, precision.features) {
        (Some(m), Some(keys)) => Some(read_matrix(path, line, m, keys, &index)?),
        (Some(_), None) => {
            return Err(err(
                "precision.features",
                "a precision matrix needs its feature order".into(),
            ))
        }
        (None, Some(_)) => return Err(err("precision.matrix", "missing".into())),
        (None, None) => None,
    };
    if let Some(diag) = &precision.diagonal {
        if diag.len() != d {
            return Err(err(
                "precision.diagonal",
                format!("{} values for {d} coefficients", diag.len()),
            ));
        }
        if let Some(v) = diag.iter().find(|v| !(**v > 0.0 && v.is_finite())) {
            return Err(err(
                "precision.diagonal",
                format!("{v} is not a positive finite precision"),
            ));
        }
    }

    let hessian = tag.unwrap_or(match (&matrix, &precision.diagonal, any_variance) {
        (Some(_), _, _) => HessianType::Full,
        (None, Some(_), _) | (None, None, true) => HessianType::Diagonal,
        // Lambda Learner's form without any variance: as a prior, every coefficient gets λ.
        (None, None, false) if missing_precision.is_some() => HessianType::Diagonal,
        (None, None, false) => HessianType::None,
    });
    let precision = match hessian {
        HessianType::Full => Precision::Full(matrix.ok_or_else(|| {
            err(
                "precision",
                "hessian \"full\" needs precision.matrix and precision.features".into(),
            )
        })?),
        HessianType::Identity => Precision::Diagonal(vec![1.0; d]),
        HessianType::None => Precision::None,
        HessianType::Diagonal => match precision.diagonal {
            Some(diag) => Precision::Diagonal(diag),
            None => {
                let mut h = Vec::with_capacity(d);
                for (j, v) in variances.iter().enumerate() {
                    h.push(match (v, missing_precision) {
                        (Some(v), _) => 1.0 / v,
                        (None, Some(p)) => p,
                        (None, None) => {
                            let k = &features[j];
                            return Err(err(
                                "variances",
                                format!("coefficient ({}, {}) has no variance", k.name, k.term),
                            ));
                        }
                    });
                }
                Precision::Diagonal(h)
            }
        },
    };
    Ok(EntityModel {
        entity,
        objective,
        hessian,
        features,
        means,
        precision,
        last_seen: raw.last_seen,
    })
}

/// Read a precision matrix in its own feature order and reorder it to the means' order.
fn read_matrix(
    path: &Path,
    line: usize,
    m: Vec<Vec<f64>>,
    keys: Vec<RawKey>,
    index: &HashMap<FeatureKey, usize>,
) -> Result<Vec<f64>> {
    let err = |field: &str, msg: String| Error::input(path, line, field, msg);
    let d = index.len();
    if keys.len() != d || m.len() != d {
        return Err(err(
            "precision",
            format!(
                "a {}×? matrix over {} features for {d} coefficients",
                m.len(),
                keys.len()
            ),
        ));
    }
    let mut perm = Vec::with_capacity(d);
    let mut seen = vec![false; d];
    for (k, key) in keys.into_iter().enumerate() {
        let key = FeatureKey::new(key.name, key.term);
        let j = *index.get(&key).ok_or_else(|| {
            err(
                &format!("precision.features[{k}]"),
                format!("({}, {}) has no mean", key.name, key.term),
            )
        })?;
        if std::mem::replace(&mut seen[j], true) {
            return Err(err(
                &format!("precision.features[{k}]"),
                "duplicate feature".into(),
            ));
        }
        perm.push(j);
    }
    let mut out = vec![0.0; d * d];
    for (r, row) in m.iter().enumerate() {
        if row.len() != d {
            return Err(err(
                &format!("precision.matrix[{r}]"),
                format!("{} values, expected {d}", row.len()),
            ));
        }
        for (c, &v) in row.iter().enumerate() {
            out[perm[r] * d + perm[c]] = v;
        }
    }
    for a in 0..d {
        for b in 0..a {
            let (x, y) = (out[a * d + b], out[b * d + a]);
            if (x - y).abs() > 1e-12 * x.abs().max(y.abs()).max(1.0) {
                return Err(err(
                    "precision.matrix",
                    format!("not symmetric: {x} vs {y}"),
                ));
            }
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct OutModel<'a> {
    entity: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    objective: Option<&'static str>,
    hessian: &'static str,
    means: Vec<RawCoefficient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variances: Option<Vec<RawCoefficient>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    precision: Option<RawPrecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<f64>,
}

fn coefficients(keys: &[FeatureKey], values: &[f64]) -> Vec<RawCoefficient> {
    keys.iter()
        .zip(values)
        .map(|(k, &value)| RawCoefficient {
            name: k.name.clone(),
            term: k.term.clone(),
            value,
        })
        .collect()
}

/// Write one model as a JSON line. Non-finite values are refused (JSON cannot hold them).
pub fn write_model_line(model: &EntityModel, out: &mut dyn Write) -> std::io::Result<()> {
    let d = model.means.len();
    let variances = model.writable_variances().map_err(|why| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("entity {:?}: {why}", model.entity),
        )
    })?;
    let precision = match &model.precision {
        Precision::None => None,
        Precision::Diagonal(h) if model.hessian == HessianType::Identity => {
            debug_assert!(h.iter().all(|&v| v == 1.0));
            None
        }
        Precision::Diagonal(h) => Some(RawPrecision {
            diagonal: Some(h.clone()),
            ..Default::default()
        }),
        Precision::Full(h) => Some(RawPrecision {
            features: Some(
                model
                    .features
                    .iter()
                    .map(|k| RawKey {
                        name: k.name.clone(),
                        term: k.term.clone(),
                    })
                    .collect(),
            ),
            matrix: Some(h.chunks(d.max(1)).map(<[f64]>::to_vec).collect()),
            ..Default::default()
        }),
    };
    let line = OutModel {
        entity: &model.entity,
        objective: model.objective.map(|o| o.name()),
        hessian: model.hessian.name(),
        means: coefficients(&model.features, &model.means),
        variances: variances.map(|v| coefficients(&model.features, &v)),
        precision,
        last_seen: model.last_seen,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Write models atomically: as Parquet to a `.parquet` path (with the cargo feature
/// `parquet`), else as JSON lines.
pub fn write_models<'a>(
    path: &Path,
    models: impl IntoIterator<Item = &'a EntityModel>,
) -> Result<()> {
    let mut writer = ModelWriter::create(path)?;
    let models: Vec<&EntityModel> = models.into_iter().collect();
    writer.write(&models)?;
    writer.commit()
}

/// Model lines formatted at once (their text is held until written), and per task.
const LINES_AT_ONCE: usize = 8192;
const LINES_PER_TASK: usize = 256;

/// Models written batch after batch to one output file: Parquet for a `.parquet` path
/// (with the cargo feature `parquet`; `model/parquet.rs`), else JSON lines. Nothing is in
/// place until [`ModelWriter::commit`]; dropped before, it leaves the target as it was.
pub struct ModelWriter {
    inner: Inner,
}

enum Inner {
    Lines(OutputFile),
    #[cfg(feature = "parquet")]
    Parquet(Box<super::parquet::ParquetModels>),
}

impl ModelWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let out = OutputFile::create(path)?;
        #[cfg(feature = "parquet")]
        if path.extension().is_some_and(|e| e == "parquet") {
            return Ok(ModelWriter {
                inner: Inner::Parquet(Box::new(super::parquet::ParquetModels::new(out)?)),
            });
        }
        Ok(ModelWriter {
            inner: Inner::Lines(out),
        })
    }

    /// Append `models`; a model that cannot be written (a non-finite value) is an error
    /// naming the file and the entity.
    pub fn write(&mut self, models: &[&EntityModel]) -> Result<()> {
        match &mut self.inner {
            Inner::Lines(out) => {
                use rayon::prelude::*;
                let path = out.path().to_path_buf();
                // Lines are formatted in parallel, a bounded group of models at a time.
                for group in models.chunks(LINES_AT_ONCE) {
                    let texts: Vec<std::io::Result<Vec<u8>>> = group
                        .par_chunks(LINES_PER_TASK)
                        .map(|models| {
                            let mut text = Vec::new();
                            for m in models {
                                write_model_line(m, &mut text)?;
                            }
                            Ok(text)
                        })
                        .collect();
                    for text in texts {
                        let text = text.map_err(|e| Error::io(&path, e))?;
                        out.write_all(&text).map_err(|e| Error::io(&path, e))?;
                    }
                }
                Ok(())
            }
            #[cfg(feature = "parquet")]
            Inner::Parquet(p) => p.write(models),
        }
    }

    /// Finish the file and put it in place.
    pub fn commit(self) -> Result<()> {
        match self.inner {
            Inner::Lines(out) => out.commit(),
            #[cfg(feature = "parquet")]
            Inner::Parquet(p) => p.commit(),
        }
    }
}
