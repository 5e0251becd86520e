//! Avro object container files, as Photon-ML's `TrainingExampleAvro` records are kept
//! (`../shared/PHOTON-AVRO.md`): one file, or a directory of part files as Spark and
//! Photon-ML write them, one piece per file. Codecs null, deflate and snappy.
//!
//! Avro unions with `null` (`weight`, `offset`, `metadataMap`) decode to nullable
//! columns, `array<FeatureAvro>` to a list of structs: the columns of [`super`]. Record
//! numbers in errors count from 1 in each part file, which the error names.
//!
//! arrow-avro's reader ends quietly at a file cut inside a block, so every file's block
//! frames are checked first ([`check_blocks`]: every block's count, size and sync marker,
//! seeking over the data): a truncated file is an error, not fewer records.

use super::plan::Plan;
use super::{append_in_order, AfterBatch, Batches, Decode, BATCH_ROWS};
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

/// A reader of the Avro container file `path` (of its `projection` fields, or all), in
/// batches of `batch_rows`, once every block's frame was found whole (see the module
/// doc). A header schema whose named types carry dotted full names (as fastavro writes
/// them) is given to arrow-avro with each name split into a namespace and a short name,
/// which it resolves references by.
pub fn avro_reader(
    path: &Path,
    projection: Option<Vec<usize>>,
    batch_rows: usize,
) -> Result<Reader<Box<dyn BufRead + Send>>> {
    check_blocks(path)?;
    unchecked_reader(path, projection, batch_rows)
}

/// [`avro_reader`] without the check of the block frames: for the schema alone.
fn unchecked_reader(
    path: &Path,
    projection: Option<Vec<usize>>,
    batch_rows: usize,
) -> Result<Reader<Box<dyn BufRead + Send>>> {
    let unreadable = |message: String| Error::Schema {
        path: path.to_path_buf(),
        field: "file".into(),
        message: format!("not a readable Avro container file: {message}"),
    };
    let mut file =
        BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let header = read_header(&mut file).map_err(|e| unreadable(e.to_string()))?;
    let normalized = header
        .metadata
        .iter()
        .find(|(k, _)| k == SCHEMA_KEY)
        .and_then(|(_, v)| normalized_schema(v));
    let input: Box<dyn BufRead + Send> = match normalized {
        None => {
            file.seek(SeekFrom::Start(0))
                .map_err(|e| Error::io(path, e))?;
            Box::new(file)
        }
        Some(schema) => {
            let mut metadata = header.metadata.clone();
            for (k, v) in &mut metadata {
                if k == SCHEMA_KEY {
                    *v = schema.clone().into_bytes();
                }
            }
            let head = std::io::Cursor::new(write_header(&metadata, &header.sync));
            // `file` stands at the first block.
            Box::new(BufReader::with_capacity(1 << 20, head.chain(file)))
        }
    };
    let mut builder = ReaderBuilder::new().with_batch_size(batch_rows);
    if let Some(projection) = projection {
        builder = builder.with_projection(projection);
    }
    builder.build(input).map_err(|e| unreadable(e.to_string()))
}

const SCHEMA_KEY: &str = "avro.schema";
const MAGIC: &[u8; 4] = b"Obj\x01";

/// An Avro container file's header: its metadata map and sync marker.
struct Header {
    metadata: Vec<(String, Vec<u8>)>,
    sync: [u8; 16],
}

/// Read a header, leaving `r` at the first block.
fn read_header(r: &mut impl Read) -> std::io::Result<Header> {
    let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("no Avro magic bytes"));
    }
    let mut metadata = Vec::new();
    // Blocks of entries (key string, value bytes), ended by an empty block.
    loop {
        let count = long(r)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            long(r)?;
        }
        for _ in 0..count.unsigned_abs() {
            let key = bytes(r)?;
            let value = bytes(r)?;
            let key = String::from_utf8(key).map_err(|_| invalid("a metadata key is not UTF-8"))?;
            metadata.push((key, value));
        }
    }
    let mut sync = [0u8; 16];
    r.read_exact(&mut sync)?;
    Ok(Header { metadata, sync })
}

fn bytes(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let len = long(r)?;
    if !(0..1 << 30).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a header string of {len} bytes"),
        ));
    }
    let mut out = vec![0u8; len as usize];
    r.read_exact(&mut out)?;
    Ok(out)
}

fn write_header(metadata: &[(String, Vec<u8>)], sync: &[u8; 16]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put_long(&mut out, metadata.len() as i64);
    for (k, v) in metadata {
        put_long(&mut out, k.len() as i64);
        out.extend_from_slice(k.as_bytes());
        put_long(&mut out, v.len() as i64);
        out.extend_from_slice(v);
    }
    put_long(&mut out, 0);
    out.extend_from_slice(sync);
    out
}

fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The schema with every dotted name of a record, enum or fixed split into `namespace`
/// and `name`; `None` when it has none (or is not JSON, for arrow-avro to report).
fn normalized_schema(schema: &[u8]) -> Option<String> {
    fn split(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(o) => {
                let mut changed = false;
                let named = matches!(
                    o.get("type").and_then(|t| t.as_str()),
                    Some("record" | "enum" | "fixed" | "error")
                );
                if let (true, Some(full)) = (named, o.get("name").and_then(|n| n.as_str())) {
                    if let Some((ns, name)) = full.rsplit_once('.') {
                        let (ns, name) = (ns.to_string(), name.to_string());
                        o.insert("namespace".into(), ns.into());
                        o.insert("name".into(), name.into());
                        changed = true;
                    }
                }
                for (_, child) in o.iter_mut() {
                    changed |= split(child);
                }
                changed
            }
            serde_json::Value::Array(a) => a.iter_mut().fold(false, |c, x| split(x) | c),
            _ => false,
        }
    }
    let mut json: serde_json::Value = serde_json::from_slice(schema).ok()?;
    split(&mut json).then(|| json.to_string())
}

/// Records of an Avro file or directory of part files, with the id columns `id_keys`
/// (top-level fields or `metadataMap` keys), as [`super::read_parquet_with_ids`] reads
/// Parquet.
pub fn read_avro_with_ids(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<(Dataset, Vec<Ids>)> {
    read_avro_into(path, options, id_keys, None)
}

/// [`read_avro_with_ids`], calling `after` (when given) after every batch.
pub(super) fn read_avro_into(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
    mut after: Option<AfterBatch>,
) -> Result<(Dataset, Vec<Ids>)> {
    let parts = avro_parts(path)?;
    // Each part's own header says its schema, and each schema is checked before any
    // record is read; the block frames are checked as each part is decoded.
    let plans = parts
        .iter()
        .map(|part| {
            Plan::new(
                part,
                &unchecked_reader(part, None, 1)?.schema(),
                options,
                id_keys,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let decoders: Vec<Decode> = parts
        .iter()
        .zip(&plans)
        .map(|(part, plan)| {
            let projection = plan.roots();
            Box::new(
                move |queue: &Batches| match avro_reader(part, Some(projection), BATCH_ROWS) {
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
                },
            ) as Decode
        })
        .collect();
    let mut data = Dataset::new();
    let mut ids: Vec<Ids> = id_keys.iter().map(|_| Ids::default()).collect();
    let mut state = plans[0].state();
    append_in_order(decoders, |k, before, batch| {
        plans[k].append(&parts[k], &batch, before, &mut data, &mut ids, &mut state)?;
        if let Some(after) = after.as_mut() {
            if after(&mut data, &parts[k], before + 1, batch.num_rows())? {
                state = plans[k].state();
            }
        }
        Ok(())
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
    let sync = read_header(&mut r)
        .map_err(|e| bad(0, format!("not a readable Avro header: {e}")))?
        .sync;
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
