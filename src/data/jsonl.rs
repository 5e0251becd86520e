//! NTV JSON lines, one record per line:
//!
//! ```json
//! {"entity":"u42","label":1.0,"weight":1.0,"offset":-0.87,
//!  "features":[{"name":"genre","term":"comedy","value":1.0}]}
//! ```
//!
//! `label` and `features` are required; `weight` defaults to 1 and must be ≥ 0, `offset`
//! defaults to 0; a feature's `term` defaults to `""`. The entity id is a string or an
//! integer under the configured key. Blank lines are skipped.

use super::{finite, parse_fast, Dataset, EntityMode, FastRecord, FeatureKey, ReadOptions};
use crate::error::{Error, Result};
use crate::io::LineReader;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// Lines parsed together, in parallel.
pub const LINES_PER_CHUNK: usize = 8192;

/// Read a whole file of records. Lines are parsed in parallel chunks by the fast path and
/// appended in file order; a line it declines goes through the checked path at its turn,
/// so the first bad line is the one reported. While one chunk is appended (on the calling
/// thread: interning is sequential), the next is read and parsed on the others.
pub fn read_jsonl(path: &Path, options: &ReadOptions) -> Result<Dataset> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_bytes = file.metadata().map_or(0, |m| m.len());
    let mut reader = LineReader::new(BufReader::with_capacity(1 << 20, file), path);
    let mut data = Dataset::new();
    let mut number = 0;
    let mut chunk = Chunk::read(&mut reader, options, Vec::new())?;
    // Room for the whole file, judged by the first chunk: the columns then grow by no
    // copies (each would touch as much fresh memory again). Room not used is never touched.
    let (rows, nnz) = chunk.estimate_file(file_bytes);
    data.reserve(rows, nnz);
    let mut spare = Vec::new();
    while chunk.filled > 0 {
        let (appended, next) = rayon::join(
            || chunk.append(path, options, &mut number, &mut data),
            || Chunk::read(&mut reader, options, std::mem::take(&mut spare)),
        );
        appended?;
        spare = std::mem::replace(&mut chunk, next?).lines;
    }
    Ok(data)
}

/// Up to [`LINES_PER_CHUNK`] lines and what the fast path made of each.
struct Chunk {
    /// The lines, `filled` of them this time (the rest keep their buffers for reuse).
    lines: Vec<String>,
    filled: usize,
    fast: Vec<Option<FastRecord>>,
}

impl Chunk {
    /// Read the next lines of `reader` into the buffers `lines` and parse them.
    fn read(
        reader: &mut LineReader<impl BufRead>,
        options: &ReadOptions,
        mut lines: Vec<String>,
    ) -> Result<Chunk> {
        use rayon::prelude::*;
        lines.resize(LINES_PER_CHUNK, String::new());
        let mut filled = 0;
        while filled < LINES_PER_CHUNK {
            let line = &mut lines[filled];
            line.clear();
            if !reader.read_line(line)? {
                break;
            }
            filled += 1;
        }
        let fast = lines[..filled]
            .par_iter()
            .map(|l| parse_fast(l, options, &[]))
            .collect();
        Ok(Chunk {
            lines,
            filled,
            fast,
        })
    }

    /// Rows and feature values of a file of `file_bytes` bytes whose lines are like these
    /// (5% over, so that a slightly denser rest of the file fits too).
    fn estimate_file(&self, file_bytes: u64) -> (usize, usize) {
        let lines = &self.lines[..self.filled];
        let bytes: usize = lines.iter().map(String::len).sum();
        let values: usize = self.fast.iter().flatten().map(|r| r.features.len()).sum();
        if bytes == 0 {
            return (0, 0);
        }
        let scale = 1.05 * file_bytes as f64 / bytes as f64;
        let rows = (lines.len() as f64 * scale) as usize;
        let nnz = (values as f64 * scale) as usize;
        (rows, nnz)
    }

    /// Append the records to `data` in order; `number` counts lines over the file.
    fn append(
        &mut self,
        path: &Path,
        options: &ReadOptions,
        number: &mut usize,
        data: &mut Dataset,
    ) -> Result<()> {
        for (text, fast) in self.lines[..self.filled].iter().zip(self.fast.drain(..)) {
            *number += 1;
            match fast {
                Some(r) => r.append_to(data, *number),
                None if text.trim().is_empty() => {}
                None => push_record(
                    path,
                    *number,
                    &parse_object(path, *number, text)?,
                    options,
                    data,
                )?,
            }
        }
        Ok(())
    }
}

/// One line of records, read by the fast path when it can be (see [`parse_fast`]), else
/// as a JSON object for the checked path, which names the field of any error.
pub enum ParsedLine {
    Fast(FastRecord),
    Checked(Map<String, Value>),
}

/// Parse line `line` of `path`; `id_keys` are extra id fields the caller will ask for.
pub fn parse_line(
    path: &Path,
    line: usize,
    text: &str,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<ParsedLine> {
    match parse_fast(text, options, id_keys) {
        Some(r) => Ok(ParsedLine::Fast(r)),
        None => Ok(ParsedLine::Checked(parse_object(path, line, text)?)),
    }
}

impl ParsedLine {
    /// The record's entity id under `options`.
    pub fn entity(&self, path: &Path, line: usize, options: &ReadOptions) -> Result<String> {
        match self {
            ParsedLine::Fast(r) => Ok(r.entity.to_string()),
            ParsedLine::Checked(obj) => entity_of(path, line, obj, &options.entity),
        }
    }

    /// The value of id field `keys[k]`, where `keys` are the `id_keys` it was parsed with.
    pub fn id(&self, path: &Path, line: usize, keys: &[String], k: usize) -> Result<String> {
        match self {
            ParsedLine::Fast(r) => Ok(r.ids[k].clone()),
            ParsedLine::Checked(obj) => {
                entity_of(path, line, obj, &EntityMode::Key(keys[k].clone()))
            }
        }
    }

    /// Check the record and append it to `data`; on an error `data` is left as it was.
    pub fn push(
        self,
        path: &Path,
        line: usize,
        options: &ReadOptions,
        data: &mut Dataset,
    ) -> Result<()> {
        match self {
            ParsedLine::Fast(r) => {
                r.append_to(data, line);
                Ok(())
            }
            ParsedLine::Checked(obj) => push_record(path, line, &obj, options, data),
        }
    }
}

/// Parse one line of JSON into a record object (not yet checked field by field). A key
/// repeated in an object is an error (JSON parsers disagree on which value wins).
pub fn parse_object(path: &Path, line: usize, text: &str) -> Result<Map<String, Value>> {
    let value = serde_json::from_str::<UniqueKeys>(text).map_err(|e| {
        let (field, message) = super::json_path::error_field(text, &e);
        match message.strip_prefix(REPEATED) {
            Some(key) => Error::input(path, line, field, format!("key {key} appears twice")),
            None => Error::input(path, line, field, format!("malformed JSON: {message}")),
        }
    })?;
    let value = value.0;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(Error::input(path, line, "record", "expected a JSON object")),
    }
}

const REPEATED: &str = "repeated key ";

/// A JSON value whose objects have no repeated keys.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{self, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
                Ok(Value::from(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
                serde_json::Number::from_f64(v)
                    .map(Value::Number)
                    .ok_or_else(|| E::custom("number out of range (not a finite double)"))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
                Ok(Value::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
                Ok(Value::String(v))
            }
            fn visit_unit<E>(self) -> std::result::Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(UniqueKeys(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Value, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let UniqueKeys(v) = map.next_value()?;
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!("{REPEATED}{key:?}")));
                    }
                    out.insert(key, v);
                }
                Ok(Value::Object(out))
            }
        }
        d.deserialize_any(V).map(UniqueKeys)
    }
}

/// The finite number in field `name` of a record object.
pub fn number_field(path: &Path, line: usize, obj: &Map<String, Value>, name: &str) -> Result<f64> {
    match obj.get(name).filter(|v| !v.is_null()) {
        None => Err(Error::input(path, line, name, "missing field")),
        Some(v) => {
            let x = v.as_f64().ok_or_else(|| {
                Error::input(path, line, name, format!("expected a number, got {v}"))
            })?;
            finite(path, line, name, x)
        }
    }
}

/// The entity id of a record object (a string or an integer under the key).
pub fn entity_of(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    entity: &EntityMode,
) -> Result<String> {
    Ok(match entity {
        EntityMode::Single(id) => id.clone(),
        EntityMode::Key(key) => match obj.get(key.as_str()).filter(|v| !v.is_null()) {
            None => {
                return Err(Error::input(
                    path,
                    line,
                    key,
                    "missing entity field (set it with --entity-key)",
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(v) => {
                return Err(Error::input(
                    path,
                    line,
                    key,
                    format!("expected a string or integer id, got {v}"),
                ))
            }
        },
    })
}

/// Check a record object field by field and append it to `data`; on an error `data` is
/// left as it was.
pub fn push_record(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    options: &ReadOptions,
    data: &mut Dataset,
) -> Result<()> {
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
    let number = |name: &str, default: Option<f64>| -> Result<f64> {
        match (field(name), default) {
            (None, Some(d)) => Ok(d),
            _ => number_field(path, line, obj, name),
        }
    };

    let entity = entity_of(path, line, obj, &options.entity)?;
    let label = number("label", options.default_label)?;
    let weight = number("weight", Some(1.0))?;
    if weight < 0.0 {
        return Err(Error::input(
            path,
            line,
            "weight",
            format!("{weight} is negative"),
        ));
    }
    let offset = number("offset", Some(0.0))?;
    let timestamp = match &options.timestamp_field {
        Some(f) => Some(number(f, None)?),
        None => None,
    };
    let features = parse_features(path, line, field("features"))?;
    data.push(&entity, label, weight, offset, timestamp, features);
    let read = |key: &str| {
        ["label", "weight", "offset", "features"].contains(&key)
            || super::raw_record::QUIETLY_UNREAD.contains(&key)
            || Some(key) == options.entity_key()
            || Some(key) == options.timestamp_field.as_deref()
    };
    if let Some(key) = obj.keys().find(|k| !read(k)) {
        data.note_unread(key, line);
    }
    Ok(())
}

fn parse_features(
    path: &Path,
    line: usize,
    value: Option<&Value>,
) -> Result<Vec<(FeatureKey, f64)>> {
    let Some(value) = value else {
        return Err(Error::input(
            path,
            line,
            "features",
            "missing field (use [] for a record with no features)",
        ));
    };
    let Value::Array(items) = value else {
        return Err(Error::input(
            path,
            line,
            "features",
            format!("expected an array, got {value}"),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(k, item)| {
            let at = |f: &str| format!("features[{k}].{f}");
            let Value::Object(obj) = item else {
                return Err(Error::input(
                    path,
                    line,
                    format!("features[{k}]"),
                    "expected an object",
                ));
            };
            let name = string_field(obj, "name")
                .ok_or_else(|| Error::input(path, line, at("name"), "missing or not a string"))?;
            let term = match obj.get("term") {
                None | Some(Value::Null) => String::new(),
                Some(_) => string_field(obj, "term")
                    .ok_or_else(|| Error::input(path, line, at("term"), "not a string"))?,
            };
            let value = match obj.get("value") {
                None | Some(Value::Null) => {
                    return Err(Error::input(path, line, at("value"), "missing field"))
                }
                Some(v) => v.as_f64().ok_or_else(|| {
                    Error::input(
                        path,
                        line,
                        at("value"),
                        format!("expected a number, got {v}"),
                    )
                })?,
            };
            let value = finite(path, line, &at("value"), value)?;
            let key = FeatureKey::new(name, term);
            if key.is_intercept() {
                return Err(Error::input(
                    path,
                    line,
                    at("name"),
                    "(intercept, intercept) is reserved for the implicit intercept",
                ));
            }
            Ok((key, value))
        })
        .collect()
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    match obj.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Write records as NTV JSON lines under `entity_key`.
pub fn write_jsonl(data: &Dataset, entity_key: &str, out: &mut dyn Write) -> std::io::Result<()> {
    for i in 0..data.num_rows() {
        write_jsonl_record(data, i, entity_key, out)?;
    }
    Ok(())
}

/// Write record `i` of `data` as one NTV JSON line under `entity_key`.
pub fn write_jsonl_record(
    data: &Dataset,
    i: usize,
    entity_key: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let (ids, vals) = data.row_features(i);
    let features: Vec<Value> = ids
        .iter()
        .zip(vals)
        .map(|(&f, &v)| {
            let k = data.features.key(f);
            serde_json::json!({"name": k.name, "term": k.term, "value": v})
        })
        .collect();
    let mut obj = Map::new();
    obj.insert(
        entity_key.to_string(),
        Value::String(data.entities.key(data.entity[i]).clone()),
    );
    obj.insert("label".into(), data.label[i].into());
    obj.insert("weight".into(), data.weight[i].into());
    obj.insert("offset".into(), data.offset[i].into());
    if let Some(t) = data.timestamp[i] {
        obj.insert("timestamp".into(), t.into());
    }
    obj.insert("features".into(), Value::Array(features));
    serde_json::to_writer(&mut *out, &Value::Object(obj))?;
    out.write_all(b"\n")
}

/// Records files for the readers' tests.
#[cfg(test)]
pub(super) mod test_files {
    use super::*;

    /// `n` records: line `i + 1` is entity `e{entity(i)}`, label `i mod 2`, one feature
    /// `f{i mod 3}` of value `i`; every 1000th line is blank.
    pub fn records(n: usize, entity: fn(usize) -> usize) -> Vec<String> {
        (0..n)
            .map(|i| match i % 1000 {
                999 => String::new(),
                _ => format!(
                    r#"{{"entity":"e{}","label":{},"features":[{{"name":"f{}","value":{i}}}]}}"#,
                    entity(i),
                    i % 2,
                    i % 3,
                ),
            })
            .collect()
    }

    /// `lines` written to a file in a new temporary directory (kept while it lives).
    pub fn write(lines: &[String]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        (dir, path)
    }

    pub fn options() -> ReadOptions {
        ReadOptions {
            default_label: None,
            entity: EntityMode::Key("entity".into()),
            timestamp_field: None,
            feature_columns: Vec::new(),
            feature_bags: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_files::{options, records, write};
    use super::*;

    fn read(lines: &[String]) -> Result<Dataset> {
        let (_dir, path) = write(lines);
        read_jsonl(&path, &options())
    }

    #[test]
    fn records_over_several_chunks_are_read_in_file_order() {
        let lines = records(3 * LINES_PER_CHUNK + 5, |i| i % 7);
        let data = read(&lines).unwrap();
        let kept: Vec<usize> = (0..lines.len()).filter(|i| i % 1000 != 999).collect();
        assert_eq!(data.num_rows(), kept.len());
        for (row, &i) in kept.iter().enumerate() {
            assert_eq!(data.entities.key(data.entity[row]), &format!("e{}", i % 7));
            assert_eq!(data.row_features(row).1, &[i as f64]);
        }
    }

    #[test]
    fn the_first_bad_line_is_reported_though_a_later_chunk_is_bad_too() {
        let mut lines = records(3 * LINES_PER_CHUNK, |i| i % 7);
        let first = LINES_PER_CHUNK + 3;
        lines[first - 1] = r#"{"entity":"e1","label":"yes","features":[]}"#.into();
        lines[first + LINES_PER_CHUNK] = "{not json".into();
        match read(&lines) {
            Err(Error::Input { line, field, .. }) => {
                assert_eq!((line, field.as_str()), (first, "label"))
            }
            other => panic!("expected an input error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_default_label_stands_in_for_a_missing_or_null_one() {
        // The first line takes the fast path, the second the checked one.
        let lines = [
            r#"{"entity":"a","features":[{"name":"f","term":"","value":1}]}"#,
            r#"{"entity":"b","label":null,"extra":{"x":[1]},"features":[]}"#,
            r#"{"entity":"c","label":1,"features":[]}"#,
        ]
        .map(String::from);
        let (_dir, path) = write(&lines);
        let unlabelled = ReadOptions {
            default_label: Some(0.0),
            ..options()
        };
        assert_eq!(
            read_jsonl(&path, &unlabelled).unwrap().label,
            [0.0, 0.0, 1.0]
        );
        match read(&lines) {
            Err(Error::Input { line, field, .. }) => {
                assert_eq!((line, field.as_str()), (1, "label"))
            }
            other => panic!("expected an input error, got {:?}", other.map(|_| ())),
        }
    }
}
