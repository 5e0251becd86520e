//! Records as Parquet: one row per record, the NTV layout every reader of [`super`]
//! takes by default: the entity column (strings, named by the caller), `label`, `weight`
//! and `offset` (double), `timestamp` (double, null where a record has none) and
//! `features: list<struct<name, term, value>>`, as the JSON lines hold them.
//! Written as the scores are (`parquet_scores.rs`); the writer dictionary-encodes the
//! names and terms, so the reader takes them by code.

use super::write_parquet_batches;
use crate::data::Dataset;
use arrow_array::{ArrayRef, Float64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema};
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 65_536;

fn feature_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("term", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ])
}

/// Records `rows` of `data` as one batch, the entity id in column `entity_key`.
pub fn records_batch(
    data: &Dataset,
    entity_key: &str,
    rows: Range<usize>,
) -> Result<RecordBatch, ArrowError> {
    let item = Field::new("item", DataType::Struct(feature_fields()), false);
    let schema = Arc::new(Schema::new(vec![
        Field::new(entity_key, DataType::Utf8, false),
        Field::new("label", DataType::Float64, false),
        Field::new("weight", DataType::Float64, false),
        Field::new("offset", DataType::Float64, false),
        Field::new("timestamp", DataType::Float64, true),
        Field::new("features", DataType::List(Arc::new(item.clone())), false),
    ]));
    let (mut names, mut terms, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let mut ends = vec![0i32];
    for i in rows.clone() {
        let (ids, vals) = data.row_features(i);
        for (&f, &v) in ids.iter().zip(vals) {
            let key = data.features.key(f);
            names.push(key.name.as_str());
            terms.push(key.term.as_str());
            values.push(v);
        }
        let end = i32::try_from(values.len())
            .map_err(|_| ArrowError::ComputeError("a batch holds over 2³¹ features".into()))?;
        ends.push(end);
    }
    let bag = StructArray::try_new(
        feature_fields(),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(terms)),
            Arc::new(Float64Array::from(values)),
        ],
        None,
    )?;
    let bags = ListArray::try_new(
        Arc::new(item),
        OffsetBuffer::new(ScalarBuffer::from(ends)),
        Arc::new(bag),
        None,
    )?;
    let doubles = |column: &[f64]| -> ArrayRef {
        Arc::new(Float64Array::from(column[rows.clone()].to_vec()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.clone()
                .map(|i| data.entities.key(data.entity[i]).as_str()),
        )),
        doubles(&data.label),
        doubles(&data.weight),
        doubles(&data.offset),
        Arc::new(Float64Array::from(data.timestamp[rows.clone()].to_vec())),
        Arc::new(bags),
    ];
    RecordBatch::try_new(schema, columns)
}

/// Write every record of `data` to `out`, the entity id in column `entity_key`.
pub fn write_records_parquet(
    data: &Dataset,
    entity_key: &str,
    out: impl Write + Send,
) -> std::io::Result<()> {
    let rows = data.num_rows();
    write_parquet_batches(
        out,
        |r| records_batch(data, entity_key, r),
        (0..rows)
            .step_by(BATCH_ROWS)
            .map(|start| start..(start + BATCH_ROWS).min(rows)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{read_parquet, FeatureKey, ReadOptions};

    #[test]
    fn records_written_as_parquet_read_back_as_they_were() {
        let mut data = Dataset::new();
        let f = |n: &str, t: &str, v| (FeatureKey::new(n, t), v);
        data.push(
            "u1",
            1.0,
            2.0,
            -0.5,
            Some(3.25),
            [f("g", "a", 1.5), f("h", "", -2.0)],
        );
        // No features, no timestamp.
        data.push("u2", 0.0, 1.0, 0.0, None, []);
        data.push("u1", 0.0, 0.5, 1.0, Some(0.0), [f("h", "", 4.0)]);
        let file = tempfile::NamedTempFile::new().unwrap();
        write_records_parquet(&data, "user", file.as_file()).unwrap();
        let options = ReadOptions {
            entity: crate::data::EntityMode::Key("user".into()),
            timestamp_field: Some("timestamp".into()),
            ..ReadOptions::default()
        };
        // The record without a timestamp holds a null, which a reader asking for the
        // timestamps refuses by record and field.
        let refused = read_parquet(file.path(), &options).unwrap_err().to_string();
        assert!(refused.contains(":2: timestamp: null"), "{refused}");
        let back = read_parquet(
            file.path(),
            &ReadOptions {
                timestamp_field: None,
                ..options
            },
        )
        .unwrap();
        assert_eq!(back.num_rows(), 3);
        for i in 0..3 {
            let key = |d: &Dataset| d.entities.key(d.entity[i]).clone();
            assert_eq!(key(&back), key(&data));
            assert_eq!(
                (back.label[i], back.weight[i], back.offset[i]),
                (data.label[i], data.weight[i], data.offset[i])
            );
            let features = |d: &Dataset| {
                let (ids, values) = d.row_features(i);
                ids.iter()
                    .map(|&id| d.features.key(id).clone())
                    .zip(values.to_vec())
                    .collect::<Vec<_>>()
            };
            assert_eq!(features(&back), features(&data));
        }
    }
}
