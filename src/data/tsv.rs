//! Dense TSV records: `timestamp, label, v1 … vK` per line, tab-separated (any run of
//! whitespace is accepted). Feature `k` is named `"k"` (1-based column number among the
//! features) with an empty term; the intercept is implicit. Every line must have the same
//! number of columns. All records belong to one entity.

use super::{finite, Dataset, FeatureKey};
use crate::error::{Error, Result};
use crate::io::LineReader;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// The key of dense feature column `k` (1-based).
pub fn dense_feature(k: usize) -> FeatureKey {
    FeatureKey::new(k.to_string(), "")
}

pub fn read_tsv(path: &Path, entity: &str) -> Result<Dataset> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut data = Dataset::new();
    let mut width: Option<usize> = None;
    let mut keys: Vec<FeatureKey> = Vec::new();
    let mut reader = LineReader::new(BufReader::new(file), path);
    let mut line = String::new();
    while reader.read_line(&mut line)? {
        let number = reader.number();
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 2 {
            return Err(Error::input(
                path,
                number,
                "line",
                format!(
                    "expected timestamp, label and features, got {} column(s)",
                    cols.len()
                ),
            ));
        }
        match width {
            None => {
                width = Some(cols.len());
                keys = (1..cols.len() - 1).map(dense_feature).collect();
            }
            Some(w) if w != cols.len() => {
                return Err(Error::input(
                    path,
                    number,
                    "line",
                    format!("{} columns where earlier lines have {w}", cols.len()),
                ));
            }
            _ => {}
        }
        let parse = |k: usize, field: String| -> Result<f64> {
            let v = cols[k].parse::<f64>().map_err(|_| {
                Error::input(
                    path,
                    number,
                    field.clone(),
                    format!("expected a number, got {:?}", cols[k]),
                )
            })?;
            finite(path, number, &field, v)
        };
        let timestamp = parse(0, "timestamp".into())?;
        let label = parse(1, "label".into())?;
        let mut features = Vec::with_capacity(cols.len() - 2);
        for k in 2..cols.len() {
            features.push((keys[k - 2].clone(), parse(k, format!("v{}", k - 1))?));
        }
        data.push(entity, label, 1.0, 0.0, Some(timestamp), features);
    }
    Ok(data)
}
