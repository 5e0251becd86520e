//! Records from a Parquet file, one record per row.
//!
//! Columns, by name:
//! - the entity id: the `--entity-key` column (strings, or integers written as decimal),
//!   unless every record is one entity;
//! - `label` (required), `weight` (default 1) and `offset` (default 0): any numeric or
//!   boolean column; a null weight or offset takes the default;
//! - the features, in one of two layouts:
//!   - **NTV** (the default): a list column `features` of structs `(name, term, value)`,
//!     as Photon-ML's `TrainingExampleAvro` and glmix's JSON lines hold them (a null
//!     term is `""`);
//!   - **wide**: the numeric columns named by [`ReadOptions::feature_columns`], each a
//!     feature named after its column with term `""`; zeros and nulls are absent
//!     features, as in a sparse record;
//! - the timestamp column, when one is asked for.
//!
//! Row groups are decoded in parallel, each on a thread of its own, while one thread
//! appends their batches in file order, so entities are numbered by first appearance as
//! in any other format. Errors name the file, the record number (1-based over the whole
//! file, in place of a line) and the column; a missing or mistyped column is refused
//! before any record is read. Other columns are reported as keys no field reads.

mod columns;
mod write;

pub use write::write_scores;

use super::{finite, Dataset, EntityMode, FeatureKey, Ids, ReadOptions};
use crate::error::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use columns::{is_integer, is_ntv_list, is_numeric, is_string, Memo, Ntv, Numbers, Strings};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::borrow::Cow;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Rows per decoded batch, and batches a row group may hold ahead of the appending thread:
/// 8,192 and 4 gave an NTV file a peak RSS 5–20% above JSON lines' on the peers' data;
/// these give no more than JSON lines' at no loss of speed (README, Formats).
const BATCH_ROWS: usize = 4096;
const QUEUED_BATCHES: usize = 2;

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
    let open = || File::open(path).map_err(|e| Error::io(path, e));
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(|e| unreadable(path, e))?;
    let schema = builder.schema().clone();
    let plan = Plan::new(path, &schema, options, id_keys)?;
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let roots: Vec<usize> = plan.read.iter().map(|&(i, _)| i).collect();
    let projection = ProjectionMask::roots(builder.parquet_schema(), roots);
    let metadata = builder.metadata().clone();
    let groups = metadata.num_row_groups();
    let mut first_row = Vec::with_capacity(groups + 1);
    first_row.push(0usize);
    for g in 0..groups {
        first_row.push(first_row[g] + metadata.row_group(g).num_rows() as usize);
    }

    let mut data = Dataset::new();
    // Room for every record.
    data.reserve(first_row[groups], 0);
    let mut memo = Memo::default();
    // Row groups are decoded on threads of their own, a wave of them at a time, each
    // into a short queue of batches that this thread appends in file order: decoding
    // overlaps appending, and memory holds a few batches per row group in flight rather
    // than whole row groups.
    let wave = rayon::current_num_threads().max(1);
    let decode = |g: usize, queue: SyncSender<Result<RecordBatch>>| {
        let reader = ParquetRecordBatchReaderBuilder::try_new(match open() {
            Ok(file) => file,
            Err(e) => return drop(queue.send(Err(e))),
        })
        .and_then(|b| {
            b.with_projection(projection.clone())
                .with_row_groups(vec![g])
                .with_batch_size(BATCH_ROWS)
                .build()
        });
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => return drop(queue.send(Err(unreadable(path, e)))),
        };
        for batch in reader {
            // The reader stopped early (an error elsewhere): nothing more is wanted.
            if queue.send(batch.map_err(|e| in_group(path, g, e))).is_err() {
                return;
            }
        }
    };
    std::thread::scope(|scope| -> Result<()> {
        for start in (0..groups).step_by(wave) {
            let queues: Vec<Receiver<Result<RecordBatch>>> = (start..(start + wave).min(groups))
                .map(|g| {
                    let (queue, batches) = sync_channel(QUEUED_BATCHES);
                    scope.spawn(move || decode(g, queue));
                    batches
                })
                .collect();
            for (k, batches) in queues.into_iter().enumerate() {
                let mut row = first_row[start + k];
                for batch in batches {
                    let batch = batch?;
                    plan.append(path, &batch, row, &mut data, &mut ids, &mut memo)?;
                    if row == 0 {
                        // Room for the whole file's features at the first batch's density,
                        // so that they are not copied as they grow.
                        let rows = data.num_rows().max(1);
                        let nnz = data.values.len() * first_row[groups] / rows;
                        data.reserve(0, (nnz + nnz / 20).saturating_sub(data.values.len()));
                    }
                    row += batch.num_rows();
                }
            }
        }
        Ok(())
    })?;
    Ok((data, ids))
}

/// Records from an Arrow IPC file (Feather v2), the same columns as
/// [`read_parquet_with_ids`] reads, batch after batch.
pub fn read_arrow_ipc_with_ids(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
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
    let (mut data, mut memo, mut row) = (Dataset::new(), Memo::default(), 0);
    for batch in reader {
        let batch = batch.map_err(not_ipc)?;
        plan.append(path, &batch, row, &mut data, &mut ids, &mut memo)?;
        row += batch.num_rows();
    }
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

/// Which columns are read, and as what.
struct Plan {
    /// Root index in the file's schema and name of every column read.
    read: Vec<(usize, String)>,
    entity: Option<String>,
    single: Option<String>,
    /// Further id columns, one list of ids each.
    id_keys: Vec<String>,
    timestamp: Option<String>,
    /// Empty: the NTV `features` column.
    wide: Vec<String>,
    /// Columns no field reads.
    unread: Vec<String>,
}

const LABEL: &str = "label";
const WEIGHT: &str = "weight";
const OFFSET: &str = "offset";
const FEATURES: &str = "features";

impl Plan {
    fn new(
        path: &Path,
        schema: &Schema,
        options: &ReadOptions,
        id_keys: &[String],
    ) -> Result<Self> {
        let refuse = |field: &str, message: String| Error::Schema {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let column = |name: &str| schema.index_of(name).ok();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let require = |name: &str, what: &str| {
            column(name).ok_or_else(|| {
                refuse(
                    name,
                    format!(
                        "no such column ({what}); the columns are {}",
                        names.join(", ")
                    ),
                )
            })
        };
        let mut read: Vec<(usize, String)> = Vec::new();
        let want = |read: &mut Vec<(usize, String)>, i: usize| {
            if !read.iter().any(|&(j, _)| j == i) {
                read.push((i, names[i].to_string()));
            }
        };
        let id_column = |key: &str, what: &str| -> Result<usize> {
            let i = require(key, what)?;
            let t = schema.field(i).data_type();
            match is_string(t) || is_integer(t) {
                true => Ok(i),
                false => Err(refuse(
                    key,
                    format!("expected strings or integers, got {t}"),
                )),
            }
        };
        for key in id_keys {
            let i = id_column(key, "an id a random effect of the configuration uses")?;
            want(&mut read, i);
        }
        let (entity, single) = match &options.entity {
            EntityMode::Key(k) => {
                let i = id_column(k, "the entity id; see --entity-key")?;
                want(&mut read, i);
                (Some(k.clone()), None)
            }
            EntityMode::Single(id) => (None, Some(id.clone())),
        };
        let numeric = |name: &str, i: usize| {
            let t = schema.field(i).data_type();
            match is_numeric(t) {
                true => Ok(()),
                false => Err(refuse(name, format!("expected a numeric column, got {t}"))),
            }
        };
        let i = require(LABEL, "every record needs a label")?;
        numeric(LABEL, i)?;
        want(&mut read, i);
        for name in [WEIGHT, OFFSET] {
            if let Some(i) = column(name) {
                numeric(name, i)?;
                want(&mut read, i);
            }
        }
        if let Some(t) = &options.timestamp_field {
            let i = require(t, "the timestamp")?;
            numeric(t, i)?;
            want(&mut read, i);
        }
        let mut wide = Vec::new();
        if options.feature_columns.is_empty() {
            let i = require(
                FEATURES,
                "the NTV features list; wide columns are named by --feature-columns",
            )?;
            let t = schema.field(i).data_type();
            if !is_ntv_list(t) {
                return Err(refuse(
                    FEATURES,
                    format!("expected a list of structs (name, term, value), got {t}"),
                ));
            }
            want(&mut read, i);
        } else {
            for asked in &options.feature_columns {
                let matched: Vec<usize> = match asked.strip_suffix('*') {
                    Some(prefix) => (0..names.len())
                        .filter(|&i| names[i].starts_with(prefix))
                        .collect(),
                    None => vec![require(asked, "named by --feature-columns")?],
                };
                if matched.is_empty() {
                    return Err(refuse(asked, "no column has this prefix".into()));
                }
                for i in matched {
                    // A column read already (the label, say) is not a feature too.
                    if !read.iter().any(|&(j, _)| j == i) {
                        numeric(names[i], i)?;
                        wide.push(names[i].to_string());
                        want(&mut read, i);
                    }
                }
            }
        }
        let unread = (0..names.len())
            .filter(|i| !read.iter().any(|(j, _)| j == i))
            .map(|i| names[i].to_string())
            .collect();
        Ok(Plan {
            read,
            entity,
            single,
            timestamp: options.timestamp_field.clone(),
            id_keys: id_keys.to_vec(),
            wide,
            unread,
        })
    }

    /// Append the records of `batch`, whose first is record `first` (0-based) of the file.
    fn append(
        &self,
        path: &Path,
        batch: &RecordBatch,
        first: usize,
        data: &mut Dataset,
        ids_out: &mut [Ids],
        memo: &mut Memo,
    ) -> Result<()> {
        let col = |name: &str| batch.column_by_name(name).expect("projected");
        let id_columns: Vec<Strings> = self.id_keys.iter().map(|k| Strings::of(col(k))).collect();
        let ids = self.entity.as_deref().map(|k| Strings::of(col(k)));
        let label = Numbers::of(col(LABEL));
        let optional = |name: &str| batch.column_by_name(name).map(Numbers::of);
        let (weight, offset) = (optional(WEIGHT), optional(OFFSET));
        let timestamp = self.timestamp.as_deref().map(|t| Numbers::of(col(t)));
        let wide: Vec<(FeatureKey, Numbers)> = self
            .wide
            .iter()
            .map(|name| (FeatureKey::new(name.as_str(), ""), Numbers::of(col(name))))
            .collect();
        let ntv = self.wide.is_empty().then(|| Ntv::of(col(FEATURES)));
        let wide_ids: Vec<u32> = wide.iter().map(|(key, _)| data.features.id(key)).collect();
        let mut row = Vec::new();
        let mut last_entity: Option<(Cow<str>, u32)> = None;
        for i in 0..batch.num_rows() {
            let line = first + i + 1;
            let bad = |field: &str, message: String| Error::input(path, line, field, message);
            let entity: Cow<str> = match (&ids, &self.single) {
                (Some(ids), _) => ids
                    .get(i)
                    .ok_or_else(|| bad(self.entity.as_deref().expect("keyed"), "null id".into()))?,
                (None, Some(id)) => Cow::Borrowed(id.as_str()),
                (None, None) => unreachable!("an entity key or one entity"),
            };
            // Records of one entity usually come together: one lookup per run of them.
            let entity = match &last_entity {
                Some((name, id)) if *name == entity => *id,
                _ => {
                    let id = data.entities.id_str(&entity);
                    last_entity = Some((entity, id));
                    id
                }
            };
            let label = label
                .get(i)
                .ok_or_else(|| bad(LABEL, "null label".into()))?;
            let label = finite(path, line, LABEL, label)?;
            let weight = weight.as_ref().and_then(|w| w.get(i)).unwrap_or(1.0);
            let weight = finite(path, line, WEIGHT, weight)?;
            if weight < 0.0 {
                return Err(bad(WEIGHT, format!("{weight} is negative")));
            }
            let offset = offset.as_ref().and_then(|o| o.get(i)).unwrap_or(0.0);
            let offset = finite(path, line, OFFSET, offset)?;
            let timestamp = match (&timestamp, &self.timestamp) {
                (Some(t), Some(name)) => {
                    let v = t.get(i).ok_or_else(|| bad(name, "null timestamp".into()))?;
                    Some(finite(path, line, name, v)?)
                }
                _ => None,
            };
            row.clear();
            match &ntv {
                Some(ntv) => ntv.row(path, line, i, data, memo, &mut row)?,
                None => {
                    for ((key, column), &id) in wide.iter().zip(&wide_ids) {
                        match column.get(i) {
                            Some(v) if v != 0.0 => {
                                row.push((id, finite(path, line, &key.name, v)?));
                            }
                            _ => {}
                        }
                    }
                }
            }
            for ((column, key), (interned, of_record)) in
                id_columns.iter().zip(&self.id_keys).zip(ids_out.iter_mut())
            {
                let id = column.get(i).ok_or_else(|| {
                    bad(
                        key,
                        "null id (a random effect of the configuration uses it)".into(),
                    )
                })?;
                of_record.push(interned.id_str(&id));
            }
            data.push_ids(entity, label, weight, offset, timestamp, &mut row);
            for name in &self.unread {
                data.note_unread(name, line);
            }
        }
        Ok(())
    }
}
