//! Records files larger than memory.
//!
//! [`EntityChunks`] reads a JSON-lines file whose records are grouped by entity (every
//! record of an entity on consecutive lines) as chunks of at most `n` whole entities, so
//! training holds one chunk at a time. It checks the grouping as it goes: an entity that
//! comes back after another one is an error naming its line, never a model trained on
//! part of its records.
//!
//! [`group_by_entity`] makes any file grouped with bounded memory: a first pass spreads
//! the lines (a columnar file's records, as NTV JSON lines) over `k` temporary files by a
//! hash of the entity id, a second pass reads one
//! of them at a time and writes its records entity by entity (entities in order of first
//! appearance within the part, records in file order). Memory holds one part, about
//! `1/k` of the file.

use super::jsonl::{ParsedLine, LINES_PER_CHUNK};
use super::{entity_of, parse_line, write_jsonl_record, Dataset, EntityMode, Format, ReadOptions};
use crate::error::{Error, Result};
use crate::io::{fnv1a, scratch_dir, write_output, LineReader, ReadAhead, FNV1A_EMPTY};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Chunks of at most `entities` whole entities from a file grouped by entity.
pub struct EntityChunks {
    path: PathBuf,
    options: ReadOptions,
    entities: usize,
    /// The first record of the next chunk, read past the end of this one (already in a
    /// dataset of its own).
    pending: Option<Dataset>,
    current: Option<String>,
    finished: HashSet<String>,
    /// Batches of parsed lines, read and parsed on their own thread ahead of their use.
    batches: ReadAhead<ParsedBatch>,
    /// The rest of the current batch, next first.
    parsed: std::vec::IntoIter<(usize, Result<ParsedLine>)>,
}

/// Up to [`LINES_PER_CHUNK`] non-blank lines, parsed, each with its line number; a line's
/// parse error waits in its place, so that the first bad line is the one reported.
type ParsedBatch = Vec<(usize, Result<ParsedLine>)>;

impl EntityChunks {
    pub fn open(path: &Path, options: &ReadOptions, entities: usize) -> Result<Self> {
        if entities == 0 {
            return Err(Error::Config("a chunk needs at least 1 entity".into()));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = LineReader::new(BufReader::with_capacity(1 << 20, file), path);
        let (read_path, read_options) = (path.to_path_buf(), options.clone());
        let mut lines = vec![String::new(); LINES_PER_CHUNK];
        let batches = ReadAhead::spawn(move || {
            next_batch(&mut reader, &read_path, &read_options, &mut lines)
        });
        Ok(EntityChunks {
            path: path.to_path_buf(),
            options: options.clone(),
            entities,
            pending: None,
            current: None,
            finished: HashSet::new(),
            batches,
            parsed: Vec::new().into_iter(),
        })
    }

    /// The next non-blank line, parsed, with its line number; `None` at the end.
    fn next_line(&mut self) -> Result<Option<(usize, ParsedLine)>> {
        if self.parsed.len() == 0 {
            // Batches are never empty: only the end gives none.
            if let Some(batch) = self.batches.next()? {
                self.parsed = batch.into_iter();
            }
        }
        self.parsed
            .next()
            .map(|(n, parsed)| Ok((n, parsed?)))
            .transpose()
    }

    /// The next chunk; `None` after the last.
    pub fn next_chunk(&mut self) -> Result<Option<Dataset>> {
        let mut data = self.pending.take().unwrap_or_default();
        while let Some((line, record)) = self.next_line()? {
            let entity = record.entity(&self.path, line, &self.options)?;
            if self.current.as_deref() != Some(entity.as_str()) {
                if self.finished.contains(&entity) {
                    let field = match &self.options.entity {
                        EntityMode::Key(key) => key.as_str(),
                        EntityMode::Single(_) => "entity",
                    };
                    return Err(Error::input(
                        &self.path,
                        line,
                        field,
                        format!(
                            "entity {entity:?} comes back after other entities: the file is not grouped by entity (group it with `glmix group`, or train without --chunk-entities)"
                        ),
                    ));
                }
                if let Some(done) = self.current.replace(entity.clone()) {
                    self.finished.insert(done);
                }
                if data.entities.len() == self.entities {
                    let mut opening = Dataset::new();
                    record.push(&self.path, line, &self.options, &mut opening)?;
                    self.pending = Some(opening);
                    data.sort_features();
                    return Ok(Some(data));
                }
            }
            record.push(&self.path, line, &self.options, &mut data)?;
        }
        data.sort_features();
        Ok((data.num_rows() > 0).then_some(data))
    }
}

/// Read the next [`LINES_PER_CHUNK`] non-blank lines of `reader` (fewer at the end) into
/// the buffers `lines` and parse them in parallel; `line` counts the lines read so far.
/// `None` at the end.
fn next_batch(
    reader: &mut LineReader<impl BufRead>,
    path: &Path,
    options: &ReadOptions,
    lines: &mut [String],
) -> Result<Option<ParsedBatch>> {
    use rayon::prelude::*;
    let mut numbers = Vec::with_capacity(lines.len());
    while numbers.len() < lines.len() {
        let text = &mut lines[numbers.len()];
        if !reader.read_line(text)? {
            break;
        }
        if !text.trim().is_empty() {
            numbers.push(reader.number());
        }
    }
    // Only the end leaves the batch short of one non-blank line.
    if numbers.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        lines[..numbers.len()]
            .par_iter()
            .zip(&numbers)
            .map(|(text, &n)| (n, parse_line(path, n, text, options, &[])))
            .collect(),
    ))
}

/// Write `input`'s records grouped by entity to `output` (atomically), through `parts`
/// temporary files in `output`'s directory. Returns the number of records.
pub fn group_by_entity(
    input: &Path,
    output: &Path,
    options: &ReadOptions,
    parts: usize,
) -> Result<usize> {
    if parts == 0 {
        return Err(Error::Config("grouping needs at least 1 part".into()));
    }
    let scratch = scratch_dir(output, "group")?;
    let part_path = |k: usize| scratch.path().join(format!("part-{k}.jsonl"));

    // Pass 1: spread the lines over the parts by entity.
    let mut writers = (0..parts)
        .map(|k| {
            File::create(part_path(k))
                .map(|f| BufWriter::with_capacity(1 << 16, f))
                .map_err(|e| Error::io(part_path(k), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut records = 0;
    let part_of = |entity: &str| (fnv1a(FNV1A_EMPTY, entity.as_bytes()) % parts as u64) as usize;
    let format = Format::of_file(input);
    if format.is_columnar() {
        // Each record as an NTV JSON line, under the entity key pass 2 reads.
        let key = options.entity_key().unwrap_or("entity");
        let mut each = |data: &Dataset| {
            for i in 0..data.num_rows() {
                let k = part_of(data.entities.key(data.entity[i]));
                write_jsonl_record(data, i, key, &mut writers[k])
                    .map_err(|e| Error::io(part_path(k), e))?;
            }
            records += data.num_rows();
            Ok(())
        };
        super::read_columnar_batches(input, format, options, &mut each)?;
    } else {
        let file = File::open(input).map_err(|e| Error::io(input, e))?;
        let mut reader = LineReader::new(BufReader::with_capacity(1 << 20, file), input);
        let mut text = String::new();
        while reader.read_line(&mut text)? {
            if text.trim().is_empty() {
                continue;
            }
            let text = text.trim_end_matches(['\n', '\r']);
            let line = reader.number();
            let entity =
                parse_line(input, line, text, options, &[])?.entity(input, line, options)?;
            let k = part_of(&entity);
            writeln!(writers[k], "{text}").map_err(|e| Error::io(part_path(k), e))?;
            records += 1;
        }
    }
    for (k, w) in writers.into_iter().enumerate() {
        w.into_inner()
            .map_err(|e| Error::io(part_path(k), e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(part_path(k), e))?;
    }

    // Pass 2: one part at a time, entity by entity.
    write_output(output, |out| {
        for k in 0..parts {
            let text = std::fs::read_to_string(part_path(k))?;
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut groups: Vec<Vec<&str>> = Vec::new();
            for l in text.lines() {
                let obj: Map<String, Value> = serde_json::from_str(l)?;
                let entity =
                    entity_of(input, 0, &obj, &options.entity).map_err(std::io::Error::other)?;
                let g = *index.entry(entity).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[g].push(l);
            }
            for l in groups.iter().flatten() {
                writeln!(out, "{l}")?;
            }
        }
        Ok(())
    })?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::super::jsonl::test_files::{options, records, write};
    use super::*;

    fn chunks(lines: &[String], entities: usize) -> Result<Vec<Dataset>> {
        let (_dir, path) = write(lines);
        let mut reader = EntityChunks::open(&path, &options(), entities)?;
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk()? {
            out.push(chunk);
        }
        Ok(out)
    }

    #[test]
    fn chunks_hold_whole_entities_in_file_order_across_read_batches() {
        let n = 2 * LINES_PER_CHUNK + 50;
        let read = chunks(&records(n, |i| i / 100), 7).unwrap();
        let values: Vec<f64> = read
            .iter()
            .flat_map(|c| (0..c.num_rows()).map(|r| c.row_features(r).1[0]))
            .collect();
        let expected: Vec<f64> = (0..n)
            .filter(|i| i % 1000 != 999)
            .map(|i| i as f64)
            .collect();
        assert_eq!(values, expected);
        assert!(read.iter().all(|c| c.entities.len() <= 7));
        assert_eq!(read.len(), n.div_ceil(100).div_ceil(7));
    }

    #[test]
    fn a_read_batch_of_blank_lines_only_is_not_the_end() {
        let mut lines = records(300, |i| i / 100);
        lines.splice(150..150, vec![String::new(); 2 * LINES_PER_CHUNK + 5]);
        let read = chunks(&lines, 2).unwrap();
        assert_eq!(read.iter().map(Dataset::num_rows).sum::<usize>(), 300);
    }

    #[test]
    fn errors_name_their_line_past_the_first_read_batch() {
        let mut lines = records(2 * LINES_PER_CHUNK, |i| i / 100);
        let bad = LINES_PER_CHUNK + 10;
        lines[bad - 1] = r#"{"entity":"e0","label":1,"features":[]}"#.into();
        match chunks(&lines, 3) {
            Err(Error::Input { line, message, .. }) => {
                assert_eq!(line, bad);
                assert!(message.contains("not grouped"), "{message}");
            }
            other => panic!("expected an input error, got {:?}", other.map(|c| c.len())),
        }
    }
}
