//! Model files as Parquet: the model table of [`super::table`], snappy-compressed.

use super::table::{append_rows, to_batch};
use super::EntityModel;
use crate::error::{Error, Result};
use crate::io::OutputFile;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
/// Models per batch handed to the Parquet writer.
const BATCH_MODELS: usize = 8192;

/// A Parquet model file being written (snappy).
pub(super) struct ParquetModels {
    path: PathBuf,
    writer: ArrowWriter<OutputFile>,
}

impl ParquetModels {
    pub(super) fn new(out: OutputFile) -> Result<Self> {
        let path = out.path().to_path_buf();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let schema = to_batch(&[]).map_err(|e| invalid(&path, e))?.schema();
        let writer = ArrowWriter::try_new(out, schema, Some(props))
            .map_err(|e| invalid(&path, e.to_string()))?;
        Ok(ParquetModels { path, writer })
    }

    pub(super) fn write(&mut self, models: &[&EntityModel]) -> Result<()> {
        for chunk in models.chunks(BATCH_MODELS) {
            let batch = to_batch(chunk).map_err(|e| invalid(&self.path, e))?;
            self.writer
                .write(&batch)
                .map_err(|e| invalid(&self.path, e.to_string()))?;
        }
        Ok(())
    }

    pub(super) fn commit(self) -> Result<()> {
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| invalid(&path, e.to_string()))?
            .commit()
    }
}

fn invalid(path: &Path, message: String) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    )
}

/// The models of a Parquet model table, each with its row number (1-based).
pub(super) fn read_rows(
    path: &Path,
    missing_precision: Option<f64>,
) -> Result<Vec<(usize, EntityModel)>> {
    let schema_error = |field: &str, message: String| Error::Schema {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| schema_error("file", format!("not a readable Parquet file: {e}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| schema_error("file", format!("cannot be decoded: {e}")))?;
        append_rows(path, &batch, missing_precision, &mut out)?;
    }
    Ok(out)
}
