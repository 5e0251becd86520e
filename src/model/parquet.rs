//! Models as a Parquet table, one row per entity, for Spark and pandas users:
//!
//! | column | type | |
//! |---|---|---|
//! | `entity` | utf8 | |
//! | `objective` | utf8, nullable | as in model JSON lines |
//! | `hessian` | utf8 | `full`, `diagonal`, `identity` or `none` |
//! | `means` | `list<struct<name, term, value>>` | the intercept is `("intercept", "intercept")` |
//! | `variances` | `list<struct<name, term, value>>`, nullable | for people |
//! | `precision` | `list<double>`, nullable | diagonal, or d×d row-major, in the order of `means` |
//!
//! A row is read through the same checks as a model line (`file.rs`), with the row number
//! in place of the line, so a model reads back bit for bit what was written.

use super::columns;
use super::file::{convert, RawCoefficient, RawKey, RawModel, RawPrecision};
use super::{EntityModel, HessianType, Precision};
use crate::error::{Error, Result};
use crate::io::OutputFile;
use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Models per batch handed to the Parquet writer.
const BATCH_MODELS: usize = 8192;

/// A Parquet model file being written (snappy).
pub(super) struct ParquetModels {
    path: PathBuf,
    writer: ArrowWriter<OutputFile>,
}

impl ParquetModels {
    pub(super) fn new(out: OutputFile) -> Result<Self> {
        let path = out.path().to_path_buf();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let schema = to_batch(&[]).map_err(|e| invalid(&path, e))?.schema();
        let writer = ArrowWriter::try_new(out, schema, Some(props))
            .map_err(|e| invalid(&path, e.to_string()))?;
        Ok(ParquetModels { path, writer })
    }

    pub(super) fn write(&mut self, models: &[&EntityModel]) -> Result<()> {
        for chunk in models.chunks(BATCH_MODELS) {
            let batch = to_batch(chunk).map_err(|e| invalid(&self.path, e))?;
            self.writer
                .write(&batch)
                .map_err(|e| invalid(&self.path, e.to_string()))?;
        }
        Ok(())
    }

    pub(super) fn commit(self) -> Result<()> {
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| invalid(&path, e.to_string()))?
            .commit()
    }
}

fn invalid(path: &Path, message: String) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    )
}

fn to_batch(models: &[&EntityModel]) -> Result<RecordBatch, String> {
    let (mut entity, mut objective, mut hessian) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut means, mut variances) = (columns::builder(), columns::builder());
    let mut precision = columns::doubles_builder();
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
    }
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("entity", Arc::new(entity.finish()), false),
        ("objective", Arc::new(objective.finish()), true),
        ("hessian", Arc::new(hessian.finish()), false),
        ("means", Arc::new(means.finish()), false),
        ("variances", Arc::new(variances.finish()), true),
        ("precision", Arc::new(precision.finish()), true),
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

/// The models of a Parquet model table, each with its row number (1-based).
pub(super) fn read_rows(
    path: &Path,
    missing_precision: Option<f64>,
) -> Result<Vec<(usize, EntityModel)>> {
    let schema_error = |field: &str, message: String| Error::Schema {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| schema_error("file", format!("not a readable Parquet file: {e}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| schema_error("file", format!("cannot be decoded: {e}")))?;
        let entity = columns::strings(&batch, "entity").ok_or_else(|| {
            schema_error(
                "entity",
                "no column of strings; is this a model table?".into(),
            )
        })?;
        let (objective, hessian) = (
            columns::strings(&batch, "objective"),
            columns::strings(&batch, "hessian"),
        );
        let means = columns::coefficient_list(&batch, "means").ok_or_else(|| {
            schema_error("means", "no list of (name, term, value) structs".into())
        })?;
        let variances = columns::coefficient_list(&batch, "variances");
        let precision = columns::double_list(&batch, "precision");
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
            };
            out.push((row, convert(path, row, raw, missing_precision)?));
        }
    }
    Ok(out)
}
