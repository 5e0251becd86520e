//! A columnar file as chunks of at most N whole entities (`train --chunk-entities`), cut
//! as its batches arrive, so that memory holds a chunk or two rather than the file.
//!
//! The file must be grouped by entity, as for JSON lines (`data::grouped`): entities are
//! numbered by first appearance, so after each batch the rows of entities `0..N`,
//! `N..2N`, … form chunks, all but the group holding the newest entity (whose records
//! may go on in the next batch) complete. An entity whose records would fall into two
//! chunks is an error naming the record where it comes back.

use super::AfterBatch;
use crate::data::{Dataset, Format, ReadOptions};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Read the columnar file `path` and hand `emit` its records in chunks of at most
/// `entities` whole entities, in file order, features sorted.
pub fn read_columnar_chunks(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    entities: usize,
    emit: &mut dyn FnMut(Dataset) -> Result<()>,
) -> Result<()> {
    if entities == 0 {
        return Err(Error::Config("a chunk needs at least 1 entity".into()));
    }
    let mut cutter = Cutter {
        entities,
        options,
        finished: HashSet::new(),
        files: Vec::new(),
        origins: Vec::new(),
        unread_named: false,
        emit,
    };
    let mut after = |data: &mut Dataset, file: &Path, first: usize, rows: usize| {
        cutter.after(data, file, first, rows)
    };
    let (rest, _) = read_into(path, format, options, &mut after)?;
    cutter.last(rest)
}

/// Hand `each` the records of the columnar file `path` batch by batch (of up to 4,096
/// records, features unsorted), holding no more than a few batches at a time.
pub fn for_each_columnar_batch(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    each: &mut dyn FnMut(&Dataset) -> Result<()>,
) -> Result<()> {
    let mut after = |data: &mut Dataset, _: &Path, _: usize, _: usize| {
        each(data)?;
        let unread = std::mem::take(&mut data.unread_keys);
        *data = Dataset::new();
        data.unread_keys = unread;
        Ok(true)
    };
    read_into(path, format, options, &mut after).map(|_| ())
}

fn read_into(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    after: AfterBatch,
) -> Result<(Dataset, Vec<crate::data::Ids>)> {
    match format {
        #[cfg(feature = "parquet")]
        Format::Parquet => super::parquet::read_parquet_into(path, options, &[], Some(after)),
        #[cfg(feature = "parquet")]
        Format::ArrowIpc => super::arrow_ipc::read_arrow_ipc_into(path, options, &[], Some(after)),
        #[cfg(feature = "avro")]
        Format::Avro => super::avro::read_avro_into(path, options, &[], Some(after)),
        _ => {
            let _ = after;
            crate::data::read_columnar_with_ids(path, format, options, &[])
        }
    }
}

struct Cutter<'a> {
    entities: usize,
    options: &'a ReadOptions,
    /// Entities of the chunks emitted.
    finished: HashSet<String>,
    /// Each pending row's file (an index into `files`) and record number, for errors.
    files: Vec<PathBuf>,
    origins: Vec<(u32, usize)>,
    unread_named: bool,
    emit: &'a mut dyn FnMut(Dataset) -> Result<()>,
}

impl Cutter<'_> {
    fn after(
        &mut self,
        data: &mut Dataset,
        file: &Path,
        first: usize,
        rows: usize,
    ) -> Result<bool> {
        if self.files.last().map(PathBuf::as_path) != Some(file) {
            self.files.push(file.to_path_buf());
        }
        let f = (self.files.len() - 1) as u32;
        self.origins.extend((first..first + rows).map(|r| (f, r)));
        let n = self.entities;
        let groups = data.entities.len().div_ceil(n);
        if groups < 2 {
            return Ok(false);
        }
        // Every group but the newest is whole; the newest stays pending.
        let mut chunks: Vec<Dataset> = (0..groups).map(|_| Dataset::new()).collect();
        let mut origins: Vec<Vec<(u32, usize)>> = vec![Vec::new(); groups];
        for i in 0..data.num_rows() {
            let g = data.entity[i] as usize / n;
            chunks[g].push_row_of(data, i);
            origins[g].push(self.origins[i]);
        }
        let rest = chunks.pop().expect("two groups or more");
        self.origins = origins.pop().expect("as many as the chunks");
        let mut unread = std::mem::take(&mut data.unread_keys);
        for (chunk, origin) in chunks.into_iter().zip(origins) {
            self.send(chunk, &origin, &mut unread)?;
        }
        *data = rest;
        data.unread_keys = unread;
        Ok(true)
    }

    /// Emit `chunk`, checking that none of its entities was in an earlier one; the first
    /// chunk carries the file's unread columns (taken from `unread`).
    fn send(
        &mut self,
        mut chunk: Dataset,
        origin: &[(u32, usize)],
        unread: &mut Unread,
    ) -> Result<()> {
        for (i, &(f, record)) in origin.iter().enumerate() {
            let entity = chunk.entities.key(chunk.entity[i]);
            if self.finished.contains(entity) {
                let field = self.options.entity_key().unwrap_or("entity");
                return Err(Error::input(
                    &self.files[f as usize],
                    record,
                    field,
                    format!(
                        "entity {entity:?} comes back after other entities: the file is not grouped by entity (train without --chunk-entities)"
                    ),
                ));
            }
        }
        self.finished.extend(chunk.entities.keys().iter().cloned());
        if !self.unread_named {
            chunk.unread_keys = std::mem::take(unread);
            self.unread_named = true;
        }
        unread.clear();
        chunk.sort_features();
        (self.emit)(chunk)
    }

    /// Emit what is left at the end of the file.
    fn last(mut self, mut rest: Dataset) -> Result<()> {
        if rest.num_rows() == 0 {
            return Ok(());
        }
        let origins = std::mem::take(&mut self.origins);
        let mut unread = std::mem::take(&mut rest.unread_keys);
        self.send(rest, &origins, &mut unread)
    }
}

type Unread = std::collections::BTreeMap<compact_str::CompactString, crate::data::UnreadKey>;
