//! A global (fixed-effect) linear model whose score `β₀ + x·β` becomes each record's offset.
//!
//! Two file forms are read:
//! - dense text: one coefficient per line, the intercept first, then the dense features
//!   `"1"`, `"2"`, … in column order (the Lambda Learner fixture's form);
//! - model JSON lines ([`crate::model`]) holding exactly one model, whose means are used.
//!
//! [`OffsetModel::add_to`] adds its score to every record's offset.

use super::read_models;
use crate::data::{dense_feature, finite, Dataset, FeatureKey};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The coefficients are kept in key order, so that the model's description (a stream's
/// settings hold it) is the same in every process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetModel {
    pub intercept: f64,
    pub coefficients: BTreeMap<FeatureKey, f64>,
    /// For dense text, the number of feature coefficients: the records may have no dense
    /// column past it.
    pub dense_columns: Option<usize>,
}

impl OffsetModel {
    pub fn coefficient(&self, key: &FeatureKey) -> f64 {
        self.coefficients.get(key).copied().unwrap_or(0.0)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let first = text.lines().find(|l| !l.trim().is_empty());
        match first {
            None => Err(Error::EmptyInput {
                path: path.to_path_buf(),
                message: "no coefficients".into(),
            }),
            Some(l) if l.trim_start().starts_with('{') => {
                let models = read_models(path, None)?;
                if models.len() != 1 {
                    return Err(Error::input(
                        path,
                        1,
                        "entity",
                        format!(
                            "an offset model file holds one model, found {}",
                            models.len()
                        ),
                    ));
                }
                let m = &models.models()[0];
                let mut out = OffsetModel::default();
                for (k, &v) in m.features.iter().zip(&m.means) {
                    if k.is_intercept() {
                        out.intercept = v;
                    } else {
                        out.coefficients.insert(k.clone(), v);
                    }
                }
                Ok(out)
            }
            Some(_) => {
                let mut values = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    let t = line.trim();
                    if t.is_empty() {
                        continue;
                    }
                    let v: f64 = t.parse().map_err(|_| {
                        Error::input(
                            path,
                            n + 1,
                            "coefficient",
                            format!("expected a number, got {t:?}"),
                        )
                    })?;
                    values.push(finite(path, n + 1, "coefficient", v)?);
                }
                Ok(OffsetModel {
                    intercept: values[0],
                    dense_columns: Some(values.len() - 1),
                    coefficients: values[1..]
                        .iter()
                        .enumerate()
                        .map(|(k, &v)| (dense_feature(k + 1), v))
                        .collect(),
                })
            }
        }
    }

    /// Add the score `β₀ + x·β` to every record's offset of `data`. A dense-text model
    /// must cover every dense column of the records (`"1"`, `"2"`, … with term `""`).
    pub fn add_to(&self, data: &mut Dataset) -> Result<()> {
        if let Some(columns) = self.dense_columns {
            let past = data.features.keys().iter().find_map(|k| {
                let j: usize = k.term.is_empty().then(|| k.name.parse().ok())??;
                (j > columns).then_some(j)
            });
            if let Some(j) = past {
                return Err(Error::Config(format!(
                    "the offset model has {columns} feature coefficients (one per line after the intercept), but the records have column {j}"
                )));
            }
        }
        let beta: Vec<f64> = (data.features.keys().iter())
            .map(|k| self.coefficient(k))
            .collect();
        for i in 0..data.num_rows() {
            let (ids, vals) = data.row_features(i);
            let s: f64 = ids
                .iter()
                .zip(vals)
                .map(|(&f, &v)| beta[f as usize] * v)
                .sum();
            data.offset[i] += self.intercept + s;
        }
        Ok(())
    }
}
