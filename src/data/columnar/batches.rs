//! Records from Arrow record batches a caller already holds (the Python package's tables
//! and record batches), batch after batch on the calling thread; Arrow IPC files read
//! through the same loop.

use super::plan::Plan;
use super::AfterBatch;
use crate::data::{Dataset, Ids, ReadOptions};
use crate::error::Result;
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use std::path::Path;

/// The records of `batches`, all of schema `schema`, under the same column rules as a
/// Parquet file's ([`super::read_parquet_with_ids`]); errors name `name` in place of a
/// file, with the record number counted over the batches.
pub fn read_record_batches(
    name: &Path,
    schema: &Schema,
    batches: impl IntoIterator<Item = RecordBatch>,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<(Dataset, Vec<Ids>)> {
    let (mut data, ids) = append_batches(
        name,
        schema,
        batches.into_iter().map(Ok),
        options,
        id_keys,
        None,
    )?;
    data.sort_features();
    Ok((data, ids))
}

/// Append the records of `batches` to a new dataset, calling `after` (when given) after
/// every batch.
pub(super) fn append_batches(
    name: &Path,
    schema: &Schema,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    options: &ReadOptions,
    id_keys: &[String],
    mut after: Option<AfterBatch>,
) -> Result<(Dataset, Vec<Ids>)> {
    let plan = Plan::new(name, schema, options, id_keys)?;
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let (mut data, mut state, mut row) = (Dataset::new(), plan.state(), 0);
    for batch in batches {
        let batch = batch?;
        plan.append(name, &batch, row, &mut data, &mut ids, &mut state)?;
        if let Some(after) = after.as_mut() {
            if after(&mut data, name, row + 1, batch.num_rows())? {
                state = plan.state();
            }
        }
        row += batch.num_rows();
    }
    Ok((data, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::EntityMode;
    use arrow_array::{ArrayRef, Float64Array, StringArray};
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;

    /// Two records of wide feature `x`, with a `label` column holding `labels` when given.
    fn batch(labels: Option<Vec<Option<f64>>>) -> RecordBatch {
        let mut fields = vec![
            Field::new("entity", DataType::Utf8, false),
            Field::new("x", DataType::Float64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ];
        if let Some(labels) = labels {
            fields.push(Field::new("label", DataType::Float64, true));
            columns.push(Arc::new(Float64Array::from(labels)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn read(batch: RecordBatch, default_label: Option<f64>) -> Result<Dataset> {
        let options = ReadOptions {
            entity: EntityMode::Key("entity".into()),
            feature_columns: vec!["x".into()],
            default_label,
            ..ReadOptions::default()
        };
        let schema = batch.schema();
        Ok(read_record_batches(Path::new("<t>"), &schema, [batch], &options, &[])?.0)
    }

    #[test]
    fn a_default_label_stands_in_for_a_missing_or_null_one() {
        assert_eq!(read(batch(None), Some(0.0)).unwrap().label, [0.0, 0.0]);
        let err = read(batch(None), None).unwrap_err().to_string();
        assert!(
            err.contains("label") && err.contains("every record needs a label"),
            "{err}"
        );
        let with_null = || batch(Some(vec![Some(1.0), None]));
        assert_eq!(read(with_null(), Some(0.0)).unwrap().label, [1.0, 0.0]);
        let err = read(with_null(), None).unwrap_err().to_string();
        assert!(err.contains("<t>:2: label: null label"), "{err}");
    }
}
