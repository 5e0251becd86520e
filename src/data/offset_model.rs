//! A global (fixed-effect) linear model whose score `β₀ + x·β` becomes each record's offset.
//!
//! Two file forms are read:
//! - dense text: one coefficient per line, the intercept first, then the dense features
//!   `"1"`, `"2"`, … in column order (the Lambda Learner fixture's form);
//! - model JSON lines ([`crate::model`]) holding exactly one model, whose means are used.

use super::tsv::dense_feature;
use super::FeatureKey;
use crate::error::{Error, Result};
use crate::model::read_models;
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
                    values.push(super::finite(path, n + 1, "coefficient", v)?);
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
}
