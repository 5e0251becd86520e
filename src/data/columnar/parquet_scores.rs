//! Scores as Parquet: one row per record, columns `entity` (string), `row` (the 0-based
//! record number, uint64) and `score` (the margin, double), as the JSON-lines scores hold
//! them; snappy-compressed row groups of at most 1 Mi rows.

use super::write_parquet_batches;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 65_536;

/// The scores of records `rows` as one batch of the scores table: `scores[i]` of record
/// `i`, whose entity is `entity(i)`.
pub fn scores_batch<'a>(
    entity: impl Fn(usize) -> &'a str,
    rows: Range<usize>,
    scores: &[f64],
) -> Result<RecordBatch, ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("entity", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("score", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.clone().map(entity))),
        Arc::new(UInt64Array::from_iter_values(
            rows.clone().map(|i| i as u64),
        )),
        Arc::new(Float64Array::from(scores[rows].to_vec())),
    ];
    RecordBatch::try_new(schema, columns)
}

/// Write `scores[i]` of record `i`, whose entity is `entity(i)`, to `out`.
pub fn write_scores<'a>(
    out: impl Write + Send,
    entity: impl Fn(usize) -> &'a str,
    scores: &[f64],
) -> std::io::Result<()> {
    let pieces = (0..scores.len()).step_by(BATCH_ROWS);
    write_parquet_batches(
        out,
        |rows| scores_batch(&entity, rows, scores),
        pieces.map(|start| start..(start + BATCH_ROWS).min(scores.len())),
    )
}
