//! Parquet files: one piece per row group.

use super::plan::Plan;
use super::{append_in_order, AfterBatch, Batches, Decode, BATCH_ROWS};
use crate::data::{Dataset, Ids, ReadOptions};
use crate::error::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::fs::File;
use std::path::Path;

/// Read every record of the Parquet file `path`.
pub fn read_parquet(path: &Path, options: &ReadOptions) -> Result<Dataset> {
    Ok(read_parquet_with_ids(path, options, &[])?.0)
}

/// [`read_parquet`], also reading the id columns `id_keys` (strings or integers, never
/// null), as GAME's random effects need them.
pub fn read_parquet_with_ids(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<(Dataset, Vec<Ids>)> {
    read_parquet_into(path, options, id_keys, None)
}

/// [`read_parquet_with_ids`], calling `after` (when given) after every batch.
pub(super) fn read_parquet_into(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
    mut after: Option<AfterBatch>,
) -> Result<(Dataset, Vec<Ids>)> {
    let open = || File::open(path).map_err(|e| Error::io(path, e));
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(|e| unreadable(path, e))?;
    let plan = Plan::new(path, builder.schema(), options, id_keys)?;
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let projection = ProjectionMask::roots(builder.parquet_schema(), plan.roots());
    let metadata = builder.metadata().clone();
    let groups = metadata.num_row_groups();
    let mut first_row = Vec::with_capacity(groups + 1);
    first_row.push(0usize);
    for g in 0..groups {
        first_row.push(first_row[g] + metadata.row_group(g).num_rows() as usize);
    }
    let decoders: Vec<Decode> = (0..groups)
        .map(|g| {
            let projection = projection.clone();
            Box::new(move |queue: &Batches| {
                let reader = open().and_then(|file| {
                    ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|b| {
                            b.with_projection(projection)
                                .with_row_groups(vec![g])
                                .with_batch_size(BATCH_ROWS)
                                .build()
                        })
                        .map_err(|e| unreadable(path, e))
                });
                match reader {
                    Ok(reader) => {
                        for batch in reader {
                            if queue.send(batch.map_err(|e| in_group(path, g, e))).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => drop(queue.send(Err(e))),
                }
            }) as Decode
        })
        .collect();

    let mut data = Dataset::new();
    let whole = after.is_none();
    if whole {
        // Room for every record.
        data.reserve(first_row[groups], 0);
    }
    let mut state = plan.state();
    append_in_order(decoders, |g, before, batch| {
        let row = first_row[g] + before;
        plan.append(path, &batch, row, &mut data, &mut ids, &mut state)?;
        if let Some(after) = after.as_mut() {
            if after(&mut data, path, row + 1, batch.num_rows())? {
                state = plan.state();
            }
        } else if row == 0 {
            // Room for the whole file's features at the first batch's density, so that
            // they are not copied as they grow.
            let rows = data.num_rows().max(1);
            let nnz = data.values.len() * first_row[groups] / rows;
            data.reserve(0, (nnz + nnz / 20).saturating_sub(data.values.len()));
        }
        Ok(())
    })?;
    Ok((data, ids))
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Schema {
        path: path.to_path_buf(),
        field: "file".into(),
        message: format!("not a readable Parquet file: {e}"),
    }
}

fn in_group(path: &Path, group: usize, e: impl std::fmt::Display) -> Error {
    Error::Schema {
        path: path.to_path_buf(),
        field: format!("row group {group}"),
        message: format!("cannot be decoded: {e}"),
    }
}
