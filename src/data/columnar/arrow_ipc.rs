//! Arrow IPC files (Feather v2): batch after batch, on the reading thread.

use super::plan::Plan;
use super::AfterBatch;
use crate::data::{Dataset, Ids, ReadOptions};
use crate::error::{Error, Result};
use std::fs::File;
use std::path::Path;

/// Records from an Arrow IPC file, the same columns as Parquet's
/// ([`super::read_parquet_with_ids`]).
pub fn read_arrow_ipc_with_ids(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<(Dataset, Vec<Ids>)> {
    read_arrow_ipc_into(path, options, id_keys, None)
}

/// [`read_arrow_ipc_with_ids`], calling `after` (when given) after every batch.
pub(super) fn read_arrow_ipc_into(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
    mut after: Option<AfterBatch>,
) -> Result<(Dataset, Vec<Ids>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let not_ipc = |e: arrow_schema::ArrowError| Error::Schema {
        path: path.to_path_buf(),
        field: "file".into(),
        message: format!("not a readable Arrow IPC file: {e}"),
    };
    let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, None).map_err(not_ipc)?;
    let plan = Plan::new(path, &reader.schema(), options, id_keys)?;
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let (mut data, mut state, mut row) = (Dataset::new(), plan.state(), 0);
    for batch in reader {
        let batch = batch.map_err(not_ipc)?;
        plan.append(path, &batch, row, &mut data, &mut ids, &mut state)?;
        if let Some(after) = after.as_mut() {
            if after(&mut data, path, row + 1, batch.num_rows())? {
                state = plan.state();
            }
        }
        row += batch.num_rows();
    }
    Ok((data, ids))
}
