//! Avro object container files, as Photon-ML's `TrainingExampleAvro` records are kept
//! (`../shared/PHOTON-AVRO.md`): one file, or a directory of part files as Spark and
//! Photon-ML write them, one piece per file. Codecs null, deflate and snappy.
//!
//! Avro unions with `null` (`weight`, `offset`, `metadataMap`) decode to nullable
//! columns, `array<FeatureAvro>` to a list of structs: the columns of [`super`]. Record
//! numbers in errors count from 1 in each part file, which the error names.
//!
//! arrow-avro's reader ends quietly at a file cut inside a block, so each part's block
//! frames are checked first ([`check_blocks`]: every block's count, size and sync marker,
//! seeking over the data): a truncated part is an error, not fewer records.

use super::plan::Plan;
use super::{append_in_order, Batches, Decode, BATCH_ROWS};
use crate::data::{Dataset, Ids, ReadOptions};
use crate::error::{Error, Result};
use arrow_avro::reader::{Reader, ReaderBuilder};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The part files of an Avro directory: every `*.avro` file whose name does not start with
/// `.` or `_` (Hadoop's checksums and markers), in name order; a file is its own part.
pub fn avro_parts(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".avro") && !name.starts_with(['.', '_']) && entry.path().is_file() {
            parts.push(entry.path());
        }
    }
    parts.sort();
    if parts.is_empty() {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            message: "a directory with no part files (*.avro)".into(),
        });
    }
    Ok(parts)
}

fn open(path: &Path, projection: Option<Vec<usize>>) -> Result<Reader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut builder = ReaderBuilder::new().with_batch_size(BATCH_ROWS);
    if let Some(projection) = projection {
        builder = builder.with_projection(projection);
    }
    builder
        .build(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| Error::Schema {
            path: path.to_path_buf(),
            field: "file".into(),
            message: format!("not a readable Avro container file: {e}"),
        })
}

/// Records of an Avro file or directory of part files, with the id columns `id_keys`
/// (top-level fields or `metadataMap` keys), as [`super::read_parquet_with_ids`] reads
/// Parquet.
pub fn read_avro_with_ids(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<(Dataset, Vec<Ids>)> {
    let parts = avro_parts(path)?;
    // Each part's own header says its schema, and each is checked before any is read.
    let plans = parts
        .iter()
        .map(|part| Plan::new(part, &open(part, None)?.schema(), options, id_keys))
        .collect::<Result<Vec<_>>>()?;
    let decoders: Vec<Decode> = parts
        .iter()
        .zip(&plans)
        .map(|(part, plan)| {
            let projection = plan.roots();
            Box::new(move |queue: &Batches| {
                match check_blocks(part).and_then(|()| open(part, Some(projection))) {
                    Ok(reader) => {
                        for batch in reader {
                            let batch = batch.map_err(|e| Error::Schema {
                                path: part.to_path_buf(),
                                field: "block".into(),
                                message: format!("cannot be decoded: {e}"),
                            });
                            if queue.send(batch).is_err() {
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
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let mut state = plans[0].state();
    append_in_order(decoders, |k, before, batch| {
        plans[k].append(&parts[k], &batch, before, &mut data, &mut ids, &mut state)
    })?;
    Ok((data, ids))
}

/// Check that `path` is a whole Avro container file: its header, then blocks of a record
/// count, a byte size, that many bytes and the header's sync marker, to the end.
fn check_blocks(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = BufReader::new(file);
    let bad = |at: u64, message: String| Error::Schema {
        path: path.to_path_buf(),
        field: format!("block at byte {at}"),
        message,
    };
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| Error::io(path, e))?;
    // The header's metadata map: blocks of entries (key string, value bytes), then 0.
    loop {
        let count = long(&mut r).map_err(|e| Error::io(path, e))?;
        if count == 0 {
            break;
        }
        if count < 0 {
            long(&mut r).map_err(|e| Error::io(path, e))?;
        }
        for _ in 0..count.unsigned_abs() * 2 {
            let len = long(&mut r).map_err(|e| Error::io(path, e))?;
            r.seek_relative(len).map_err(|e| Error::io(path, e))?;
        }
    }
    let mut sync = [0u8; 16];
    r.read_exact(&mut sync).map_err(|e| Error::io(path, e))?;
    loop {
        let at = r.stream_position().map_err(|e| Error::io(path, e))?;
        if r.fill_buf().map_err(|e| Error::io(path, e))?.is_empty() {
            return Ok(());
        }
        let frame = (|| -> std::io::Result<(i64, i64)> { Ok((long(&mut r)?, long(&mut r)?)) })();
        let Ok((count, size)) = frame else {
            return Err(bad(at, "the file ends inside the block's header".into()));
        };
        if count < 0 || size < 0 {
            return Err(bad(
                at,
                format!("a count of {count} records in {size} bytes"),
            ));
        }
        let data = r.stream_position().map_err(|e| Error::io(path, e))?;
        if data + size as u64 + 16 > length {
            return Err(bad(
                at,
                format!(
                    "{count} records in {size} bytes, but the file ends {} bytes on: it was cut",
                    length - data
                ),
            ));
        }
        r.seek(SeekFrom::Start(data + size as u64))
            .map_err(|e| Error::io(path, e))?;
        let mut marker = [0u8; 16];
        r.read_exact(&mut marker).map_err(|e| Error::io(path, e))?;
        if marker != sync {
            return Err(bad(
                at,
                "the block's sync marker is not the header's".into(),
            ));
        }
    }
}

/// An Avro `long`: a zig-zag varint.
fn long(r: &mut impl Read) -> std::io::Result<i64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        n |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok((n >> 1) as i64 ^ -((n & 1) as i64));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "a varint of more than 10 bytes",
    ))
}
