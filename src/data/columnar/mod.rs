//! Records from columnar files, one record per row: Parquet, Arrow IPC (Feather v2) and
//! Avro object container files (Photon-ML's `TrainingExampleAvro`).
//!
//! Every format is decoded into Arrow record batches, and one [`plan::Plan`] says which
//! columns are read and turns a batch into records, so the formats share their column
//! rules and error messages:
//! - the entity id: the `--entity-key` column (strings, or integers written as decimal),
//!   or, when no column has that name, the key of that name in a `metadataMap` column
//!   (a map of strings, as Photon-ML keeps ids); unless every record is one entity;
//! - `label` (or Photon's `response`, required), `weight` (default 1) and `offset`
//!   (default 0): any numeric or boolean column; a null weight or offset takes the default;
//! - the features, in one of two layouts:
//!   - **NTV** (the default): feature bags, list columns of structs `(name, term, value)`
//!     as Photon-ML's `TrainingExampleAvro` and glmix's JSON lines hold them (a null term
//!     is `""`): `features`, or the bags named by [`ReadOptions::feature_bags`], merged;
//!   - **wide**: the numeric columns named by [`ReadOptions::feature_columns`], each a
//!     feature named after its column with term `""`; zeros and nulls are absent
//!     features, as in a sparse record;
//! - the timestamp column, when one is asked for.
//!
//! A file is read in *pieces* (a Parquet row group, an Avro part file of a directory),
//! each decoded on a thread of its own while one thread appends their batches in order
//! ([`append_in_order`]), so entities are numbered by first appearance as in any other
//! format. Errors name the file, the record number (1-based within the file, in place of a
//! line) and the column; a missing or mistyped column is refused before any record is
//! read. Other columns are reported as keys no field reads.

#[cfg(feature = "parquet")]
mod arrow_ipc;
#[cfg(feature = "avro")]
mod avro;
mod batches;
mod chunks;
mod columns;
mod feature_ids;
#[cfg(feature = "parquet")]
mod parquet;
#[cfg(feature = "parquet")]
mod parquet_records;
#[cfg(feature = "parquet")]
mod parquet_scores;
mod plan;

#[cfg(feature = "parquet")]
pub use arrow_ipc::read_arrow_ipc_with_ids;
#[cfg(feature = "avro")]
pub use avro::{avro_parts, avro_reader, read_avro_with_ids};
pub use batches::read_record_batches;
pub use chunks::{for_each_columnar_batch, read_columnar_chunks};
#[cfg(feature = "parquet")]
pub use parquet::{read_parquet, read_parquet_with_ids};
#[cfg(feature = "parquet")]
pub use parquet_records::{records_batch, write_records_parquet};
#[cfg(feature = "parquet")]
pub use parquet_scores::{scores_batch, write_scores};

#[cfg(doc)]
use super::ReadOptions;
use crate::data::Dataset;
use crate::error::Result;
use arrow_array::RecordBatch;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};

/// Rows per decoded batch, and batches a piece may hold ahead of the appending thread:
/// 8,192 and 4 gave an NTV Parquet file a peak RSS 5–20% above JSON lines' on the peers'
/// data; these give no more than JSON lines' at no loss of speed (README, Formats).
const BATCH_ROWS: usize = 4096;
const QUEUED_BATCHES: usize = 2;

/// Called after each batch is appended, with the dataset, the file and the record number
/// (1-based) of the batch's first record and its number of records; returns whether it
/// replaced the dataset's records (so that what was memoised of its feature ids is
/// forgotten).
type AfterBatch<'a> = &'a mut dyn FnMut(&mut Dataset, &Path, usize, usize) -> Result<bool>;

/// Decodes one piece, sending its batches in order; it stops when a send fails (the
/// appending thread gave up on an error elsewhere).
type Decode<'a> = Box<dyn FnOnce(&Batches) + Send + 'a>;

/// Where a piece's decoder sends its batches.
type Batches = SyncSender<Result<RecordBatch>>;

/// Decode `pieces` on threads of their own, a wave of as many as rayon has threads at a
/// time, each into a short queue of batches, and hand every batch to `append` in order
/// with its piece's index and the number of rows of that piece before it. Decoding
/// overlaps appending, and memory holds a few batches per piece in flight rather than
/// whole pieces.
fn append_in_order(
    pieces: Vec<Decode<'_>>,
    mut append: impl FnMut(usize, usize, RecordBatch) -> Result<()>,
) -> Result<()> {
    let wave = rayon::current_num_threads().max(1);
    let mut pieces = pieces.into_iter().enumerate().peekable();
    std::thread::scope(|scope| -> Result<()> {
        while pieces.peek().is_some() {
            let queues: Vec<_> = pieces
                .by_ref()
                .take(wave)
                .map(|(k, decode)| {
                    let (queue, batches) = sync_channel(QUEUED_BATCHES);
                    scope.spawn(move || decode(&queue));
                    (k, batches)
                })
                .collect();
            for (k, batches) in queues {
                let mut before = 0;
                for batch in batches {
                    let batch = batch?;
                    let rows = batch.num_rows();
                    append(k, before, batch)?;
                    before += rows;
                }
            }
        }
        Ok(())
    })
}

/// Write the batches `batch(rows)` of `pieces` (one empty batch gives the schema when
/// there are none) as snappy-compressed row groups of at most 1 Mi rows.
#[cfg(feature = "parquet")]
fn write_parquet_batches(
    out: impl std::io::Write + Send,
    batch: impl Fn(std::ops::Range<usize>) -> std::result::Result<RecordBatch, arrow_schema::ArrowError>,
    pieces: impl Iterator<Item = std::ops::Range<usize>>,
) -> std::io::Result<()> {
    use ::parquet::arrow::ArrowWriter;
    use ::parquet::basic::Compression;
    use ::parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let io = |e: ::parquet::errors::ParquetError| std::io::Error::other(e.to_string());
    let schema = batch(0..0).map_err(std::io::Error::other)?.schema();
    let mut writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(io)?;
    for rows in pieces {
        writer
            .write(&batch(rows).map_err(std::io::Error::other)?)
            .map_err(io)?;
    }
    writer.close().map_err(io)?;
    Ok(())
}
