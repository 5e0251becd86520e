//! Parquet files: one piece per row group.

use super::plan::Plan;
use super::{append_in_order, AfterBatch, Batches, Decode, BATCH_ROWS};
use crate::data::{Dataset, Ids, ReadOptions};
use crate::error::{Error, Result};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::basic::Encoding;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

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
    let file = ArrowReaderMetadata::load(&open()?, ArrowReaderOptions::new())
        .map_err(|e| unreadable(path, e))?;
    let plan = Plan::new(path, file.schema(), options, id_keys)?;
    let file = with_coded_names(file, &plan).map_err(|e| unreadable(path, e))?;
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let projection = ProjectionMask::roots(file.parquet_schema(), plan.roots());
    let metadata = file.metadata().clone();
    let groups = metadata.num_row_groups();
    let mut first_row = Vec::with_capacity(groups + 1);
    first_row.push(0usize);
    for g in 0..groups {
        first_row.push(first_row[g] + metadata.row_group(g).num_rows() as usize);
    }
    let decoders: Vec<Decode> = (0..groups)
        .map(|g| {
            let (projection, file) = (projection.clone(), file.clone());
            Box::new(move |queue: &Batches| {
                let reader = open().and_then(|f| {
                    ParquetRecordBatchReaderBuilder::new_with_metadata(f, file)
                        .with_projection(projection)
                        .with_row_groups(vec![g])
                        .with_batch_size(BATCH_ROWS)
                        .build()
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

/// `file` with the `name` and `term` strings of the plan's NTV bags read as Arrow
/// dictionaries wherever every data page of them is dictionary-encoded in every row group
/// (which most writers do for such repetitive strings): their codes then find feature ids
/// without the strings being copied out or compared ([`super::feature_ids`]). Elsewhere
/// the reader would have to build a dictionary by hashing, so those stay plain strings.
fn with_coded_names(
    file: ArrowReaderMetadata,
    plan: &Plan,
) -> parquet::errors::Result<ArrowReaderMetadata> {
    let parquet = file.metadata();
    let leaves = parquet.file_metadata().schema_descr();
    let all_coded = |bag: &str, field: &str| {
        let leaf = (0..leaves.num_columns()).find(|&i| {
            let column = leaves.column(i);
            let parts = column.path().parts();
            parts.first().map(String::as_str) == Some(bag)
                && parts.last().map(String::as_str) == Some(field)
                && parts.len() > 2
        });
        leaf.is_some_and(|i| {
            parquet.row_groups().iter().all(|g| {
                let c = g.column(i);
                c.dictionary_page_offset().is_some()
                    && c.page_encoding_stats_mask().is_some_and(|m| {
                        m.is_only(Encoding::RLE_DICTIONARY) || m.is_only(Encoding::PLAIN_DICTIONARY)
                    })
            })
        })
    };
    let coded = |f: &Field, bag: &str| -> Field {
        let (DataType::Utf8 | DataType::LargeUtf8) = f.data_type() else {
            return f.clone();
        };
        if !matches!(f.name().as_str(), "name" | "term") || !all_coded(bag, f.name()) {
            return f.clone();
        }
        let dictionary =
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone()));
        f.clone().with_data_type(dictionary)
    };
    let schema = file.schema();
    let mut changed = false;
    let fields: Vec<Field> = (schema.fields().iter())
        .map(|root| {
            let bag = root.name();
            if !plan.bags().contains(bag) {
                return root.as_ref().clone();
            }
            let item = match root.data_type() {
                DataType::List(item) | DataType::LargeList(item) => item,
                _ => return root.as_ref().clone(),
            };
            let DataType::Struct(members) = item.data_type() else {
                return root.as_ref().clone();
            };
            let members: Fields = members.iter().map(|m| coded(m, bag)).collect();
            let item = Arc::new(
                item.as_ref()
                    .clone()
                    .with_data_type(DataType::Struct(members)),
            );
            let list = match root.data_type() {
                DataType::List(_) => DataType::List(item),
                _ => DataType::LargeList(item),
            };
            changed |= &list != root.data_type();
            root.as_ref().clone().with_data_type(list)
        })
        .collect();
    if !changed {
        return Ok(file);
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    ArrowReaderMetadata::try_new(
        parquet.clone(),
        ArrowReaderOptions::new().with_schema(Arc::new(schema)),
    )
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
