//! Arrow IPC files (Feather v2): batch after batch, on the reading thread
//! ([`super::batches`]).

use super::batches::append_batches;
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
    after: Option<AfterBatch>,
) -> Result<(Dataset, Vec<Ids>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let not_ipc = |e: arrow_schema::ArrowError| Error::Schema {
        path: path.to_path_buf(),
        field: "file".into(),
        message: format!("not a readable Arrow IPC file: {e}"),
    };
    let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, None).map_err(not_ipc)?;
    let schema = reader.schema();
    let batches = reader.map(|b| b.map_err(not_ipc));
    append_batches(path, &schema, batches, options, id_keys, after)
}
