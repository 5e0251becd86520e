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
