//! Training and scoring records (DESIGN §2) held column-wise, with interned entity ids
//! and feature keys.
//!
//! A record has an entity, a label, a weight (default 1), an offset (default 0; the
//! fixed-effect score) and sparse features keyed by `(name, term)`. Duplicate keys in a
//! record are summed. The intercept is implicit: it is not a stored feature, and the key
//! `("intercept", "intercept")` is reserved for it.

#[cfg(any(feature = "parquet", feature = "avro"))]
mod columnar;
#[cfg(any(feature = "parquet", feature = "avro"))]
pub use columnar::{for_each_columnar_batch, read_columnar_chunks, read_record_batches};
mod fast_record;
mod grouped;
pub mod json_path;
mod jsonl;
mod raw_record;
mod scan;
mod tsv;
mod with_ids;

#[cfg(feature = "avro")]
pub use columnar::{avro_parts, avro_reader, read_avro_with_ids};
#[cfg(feature = "parquet")]
pub use columnar::{
    read_arrow_ipc_with_ids, read_parquet, read_parquet_with_ids, records_batch, scores_batch,
    write_records_parquet, write_scores as write_scores_parquet,
};
pub use fast_record::{parse_fast, FastRecord};
pub use grouped::{group_by_entity, EntityChunks};
pub use jsonl::{
    entity_of, number_field, parse_line, parse_object, push_record, read_jsonl, write_jsonl,
    write_jsonl_record, ParsedLine, LINES_PER_CHUNK,
};
pub use tsv::{dense_feature, read_tsv};
pub use with_ids::read_records_with_ids;

use crate::error::{Error, Result};
use compact_str::CompactString;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Name and term of a feature; the intercept is `("intercept", "intercept")`.
///
/// Both are [`CompactString`]s: up to 24 bytes are held inline, so the keys of a model
/// (one per coefficient, cloned into every trained model) cost no allocation each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureKey {
    pub name: CompactString,
    pub term: CompactString,
}

/// The rows of every entity, grouped: see [`Dataset::rows_by_entity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRows {
    pub ptr: Vec<usize>,
    pub rows: Vec<usize>,
}

impl EntityRows {
    pub fn num_entities(&self) -> usize {
        self.ptr.len() - 1
    }

    /// The rows of entity `e`, in file order.
    pub fn of(&self, e: usize) -> &[usize] {
        &self.rows[self.ptr[e]..self.ptr[e + 1]]
    }
}

impl FeatureKey {
    pub fn new(name: impl Into<CompactString>, term: impl Into<CompactString>) -> Self {
        FeatureKey {
            name: name.into(),
            term: term.into(),
        }
    }

    pub fn intercept() -> Self {
        FeatureKey::new("intercept", "intercept")
    }

    pub fn is_intercept(&self) -> bool {
        self.name == "intercept" && self.term == "intercept"
    }
}

/// A string ↔ dense id table: ids are handed out in order of first appearance. Keys are
/// hashed with foldhash, several times faster than std's SipHash on short keys (interning
/// is the sequential part of reading); ids do not depend on the hash.
#[derive(Debug, Clone)]
pub struct Interner<K> {
    keys: Vec<K>,
    ids: HashMap<K, u32, foldhash::fast::RandomState>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            keys: Vec::new(),
            ids: HashMap::default(),
        }
    }
}

impl<K: Clone + Eq + std::hash::Hash> Interner<K> {
    /// Forget every key, keeping the room.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.ids.clear();
    }

    pub fn id(&mut self, key: &K) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key.clone());
        self.ids.insert(key.clone(), id);
        id
    }

    pub fn get(&self, key: &K) -> Option<u32> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: u32) -> &K {
        &self.keys[id as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[K] {
        &self.keys
    }
}

/// How records name their entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityMode {
    /// The entity id is the value of this field of each record (default `entity`).
    Key(String),
    /// Every record of the file belongs to one entity with this id.
    Single(String),
}

impl Default for EntityMode {
    fn default() -> Self {
        EntityMode::Key("entity".into())
    }
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// NTV JSON lines.
    Jsonl,
    /// Dense TSV: `timestamp, label, v1 … vK`.
    Tsv,
    /// Parquet: one record per row (`read_parquet`, with the cargo feature `parquet`).
    Parquet,
    /// Arrow IPC (Feather v2): the columns Parquet has.
    ArrowIpc,
    /// Avro object container files, one or a directory of parts (`read_avro_with_ids`,
    /// with the cargo feature `avro`): Photon-ML's `TrainingExampleAvro`.
    Avro,
}

impl Format {
    /// The format a file's name or first bytes say: Parquet (`.parquet`, or `PAR1`), Arrow
    /// IPC (`.arrow`, `.feather`, `.ipc`, or `ARROW1`), Avro (`.avro`, or `Obj` 1), TSV
    /// (`.tsv`), else JSON lines. A directory is Avro when it holds `*.avro` parts.
    pub fn of_file(path: &Path) -> Format {
        let extension = path.extension().and_then(|e| e.to_str());
        if path.is_dir() {
            let has_avro = std::fs::read_dir(path).is_ok_and(|mut entries| {
                entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".avro")))
            });
            return if has_avro {
                Format::Avro
            } else {
                Format::Jsonl
            };
        }
        if extension == Some("parquet") || crate::io::starts_with(path, b"PAR1") {
            Format::Parquet
        } else if matches!(extension, Some("arrow" | "feather" | "ipc"))
            || crate::io::starts_with(path, b"ARROW1")
        {
            Format::ArrowIpc
        } else if extension == Some("avro") || crate::io::starts_with(path, b"Obj\x01") {
            Format::Avro
        } else if extension == Some("tsv") {
            Format::Tsv
        } else {
            Format::Jsonl
        }
    }

    /// Whether the format holds columns (Parquet, Arrow IPC, Avro), which the
    /// line-by-line readers (`stream`, `group`, `train --chunk-entities`) refuse by name.
    pub fn is_columnar(self) -> bool {
        matches!(self, Format::Parquet | Format::ArrowIpc | Format::Avro)
    }
}

/// Records held column-wise: row `i` has entity `entity[i]`, features
/// `feature_ids[nz_ptr[i]..nz_ptr[i+1]]` (strictly ascending ids) with `values[..]`, and so on.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub entities: Interner<String>,
    pub features: Interner<FeatureKey>,
    pub entity: Vec<u32>,
    pub label: Vec<f64>,
    pub weight: Vec<f64>,
    pub offset: Vec<f64>,
    /// Optional per-record timestamp (TSV column 1, or a JSON field when asked for).
    pub timestamp: Vec<Option<f64>>,
    pub nz_ptr: Vec<usize>,
    pub feature_ids: Vec<u32>,
    pub values: Vec<f64>,
    /// Keys of the records that no field reads (a typo like `ofset`, or the entity id
    /// under another key than `--entity-key`): per key, its records and its first line.
    pub unread_keys: std::collections::BTreeMap<CompactString, UnreadKey>,
}

/// Where a key no field reads was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadKey {
    pub records: usize,
    pub first_line: usize,
}

impl Dataset {
    /// Count a record (line `line`) holding `key`, which no field reads.
    pub fn note_unread(&mut self, key: &str, line: usize) {
        self.unread_keys
            .entry(key.into())
            .and_modify(|u| u.records += 1)
            .or_insert(UnreadKey {
                records: 1,
                first_line: line,
            });
    }

    pub fn new() -> Self {
        Dataset {
            entities: Interner::default(),
            features: Interner::default(),
            entity: Vec::new(),
            label: Vec::new(),
            weight: Vec::new(),
            offset: Vec::new(),
            timestamp: Vec::new(),
            nz_ptr: vec![0],
            feature_ids: Vec::new(),
            values: Vec::new(),
            unread_keys: Default::default(),
        }
    }

    /// Empty, its room kept for the records to come.
    pub fn clear(&mut self) {
        self.entities.clear();
        self.features.clear();
        self.entity.clear();
        self.label.clear();
        self.weight.clear();
        self.offset.clear();
        self.timestamp.clear();
        self.nz_ptr.truncate(1);
        self.feature_ids.clear();
        self.values.clear();
        self.unread_keys.clear();
    }

    /// Room for `rows` more rows holding `nnz` more feature values in all.
    pub fn reserve(&mut self, rows: usize, nnz: usize) {
        self.entity.reserve(rows);
        self.label.reserve(rows);
        self.weight.reserve(rows);
        self.offset.reserve(rows);
        self.timestamp.reserve(rows);
        self.nz_ptr.reserve(rows);
        self.feature_ids.reserve(nnz);
        self.values.reserve(nnz);
    }

    pub fn num_rows(&self) -> usize {
        self.label.len()
    }

    pub fn row_features(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.nz_ptr[i]..self.nz_ptr[i + 1];
        (&self.feature_ids[r.clone()], &self.values[r])
    }

    /// Append one record; duplicate feature keys are summed.
    pub fn push(
        &mut self,
        entity: &str,
        label: f64,
        weight: f64,
        offset: f64,
        timestamp: Option<f64>,
        features: impl IntoIterator<Item = (FeatureKey, f64)>,
    ) {
        let e = self.entities.id_str(entity);
        let mut row: Vec<(u32, f64)> = features
            .into_iter()
            .map(|(key, value)| (self.features.id(&key), value))
            .collect();
        self.push_ids(e, label, weight, offset, timestamp, &mut row);
    }

    /// Append one record by interned ids in any order; repeated ids are summed.
    pub fn push_ids(
        &mut self,
        entity: u32,
        label: f64,
        weight: f64,
        offset: f64,
        timestamp: Option<f64>,
        row: &mut Vec<(u32, f64)>,
    ) {
        if !row.is_sorted_by_key(|&(f, _)| f) {
            row.sort_by_key(|&(f, _)| f);
        }
        row.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        self.push_interned(entity, label, weight, offset, timestamp, row);
    }

    /// Append a copy of record `i` of `from` (re-interned in this dataset).
    pub fn push_row_of(&mut self, from: &Dataset, i: usize) {
        let (ids, vals) = from.row_features(i);
        let features = ids
            .iter()
            .zip(vals)
            .map(|(&f, &v)| (from.features.key(f).clone(), v));
        self.push(
            from.entities.key(from.entity[i]),
            from.label[i],
            from.weight[i],
            from.offset[i],
            from.timestamp[i],
            features,
        );
    }

    /// Append one record by interned ids; `features` must hold strictly ascending ids.
    pub fn push_interned(
        &mut self,
        entity: u32,
        label: f64,
        weight: f64,
        offset: f64,
        timestamp: Option<f64>,
        features: &[(u32, f64)],
    ) {
        assert!((entity as usize) < self.entities.len());
        assert!(
            features.windows(2).all(|w| w[0].0 < w[1].0),
            "feature ids of a row must be strictly ascending"
        );
        self.entity.push(entity);
        self.label.push(label);
        self.weight.push(weight);
        self.offset.push(offset);
        self.timestamp.push(timestamp);
        for &(f, v) in features {
            debug_assert!((f as usize) < self.features.len());
            self.feature_ids.push(f);
            self.values.push(v);
        }
        self.nz_ptr.push(self.feature_ids.len());
    }

    /// Rows of each entity, entities in order of first appearance, rows in file order:
    /// entity `e`'s rows are `rows[ptr[e]..ptr[e + 1]]`. A counting sort, two passes over
    /// the entity column and no allocation per entity.
    pub fn rows_by_entity(&self) -> EntityRows {
        let mut ptr = vec![0usize; self.entities.len() + 1];
        for &e in &self.entity {
            ptr[e as usize + 1] += 1;
        }
        for e in 0..self.entities.len() {
            ptr[e + 1] += ptr[e];
        }
        let mut next = ptr[..self.entities.len()].to_vec();
        let mut rows = vec![0usize; self.entity.len()];
        for (i, &e) in self.entity.iter().enumerate() {
            rows[next[e as usize]] = i;
            next[e as usize] += 1;
        }
        EntityRows { ptr, rows }
    }

    /// Renumber the features so that their ids ascend with their keys `(name, term)`.
    /// An entity's coefficients follow the ids, so after this they no longer depend on
    /// which other records the dataset holds: a file trained whole or in chunks gives the
    /// same models, bit for bit. Readers call it on every dataset they return.
    pub fn sort_features(&mut self) {
        let keys = self.features.keys();
        if keys.windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
        let mut new_id = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_id[old as usize] = new as u32;
        }
        let mut features = Interner::default();
        for &old in &order {
            features.id(&keys[old as usize]);
        }
        self.features = features;
        // Rows in parallel, in pieces of about a million features; each piece sorts a row
        // only when its ids differ from the row before it, whose order it reuses.
        const PIECE_FEATURES: usize = 1 << 20;
        let mut pieces = Vec::new();
        let (mut ids, mut values) = (&mut self.feature_ids[..], &mut self.values[..]);
        let mut start = 0;
        while start < self.nz_ptr.len() - 1 {
            let base = self.nz_ptr[start];
            let end = self.nz_ptr[start + 1..]
                .partition_point(|&p| p - base < PIECE_FEATURES)
                .max(1)
                + start;
            let len = self.nz_ptr[end] - base;
            let (piece_ids, rest_ids) = std::mem::take(&mut ids).split_at_mut(len);
            let (piece_values, rest_values) = std::mem::take(&mut values).split_at_mut(len);
            (ids, values) = (rest_ids, rest_values);
            pieces.push((&self.nz_ptr[start..=end], piece_ids, piece_values));
            start = end;
        }
        pieces.into_par_iter().for_each(|(ptr, ids, values)| {
            let base = ptr[0];
            let mut old: Vec<u32> = Vec::new();
            let mut order: Vec<usize> = Vec::new();
            let mut row: Vec<(u32, f64)> = Vec::new();
            for w in ptr.windows(2) {
                let r = w[0] - base..w[1] - base;
                if ids[r.clone()] != old[..] {
                    old.clear();
                    old.extend_from_slice(&ids[r.clone()]);
                    order.clear();
                    order.extend(0..old.len());
                    order.sort_unstable_by_key(|&k| new_id[old[k] as usize]);
                }
                row.clear();
                row.extend(
                    order
                        .iter()
                        .map(|&k| (new_id[old[k] as usize], values[r.start + k])),
                );
                for (k, (f, v)) in r.zip(&row) {
                    ids[k] = *f;
                    values[k] = *v;
                }
            }
        });
    }
}

/// The empty dataset (the same as [`Dataset::new`]).
impl Default for Dataset {
    fn default() -> Self {
        Dataset::new()
    }
}

impl Interner<String> {
    /// [`Interner::id`] of a borrowed string: no allocation when it is already known.
    pub fn id_str(&mut self, key: &str) -> u32 {
        match self.ids.get(key) {
            Some(&id) => id,
            None => self.id(&key.to_string()),
        }
    }
}

/// Options for reading records.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub entity: EntityMode,
    /// A JSON field holding each record's timestamp (optional).
    pub timestamp_field: Option<String>,
    /// Columnar files only: numeric columns read as features named after them (term
    /// `""`); an entry ending in `*` takes every column whose name starts with what
    /// precedes it. Empty: the features are NTV feature bags.
    pub feature_columns: Vec<String>,
    /// Columnar files only: the NTV list columns whose features a record has, merged
    /// (Photon-ML's feature bags). Empty: the column `features`.
    pub feature_bags: Vec<String>,
    /// The label of a record without one (JSON lines, columnar files), for jobs that do
    /// not read labels (scoring, ranking candidates); `None`: a missing label is an error.
    pub default_label: Option<f64>,
}

impl ReadOptions {
    /// The field naming each record's entity, unless every record has one entity.
    pub fn entity_key(&self) -> Option<&str> {
        match &self.entity {
            EntityMode::Key(k) => Some(k.as_str()),
            EntityMode::Single(_) => None,
        }
    }
}

/// One id column of a columnar file: its distinct ids, and each record's.
pub type Ids = (Interner<String>, Vec<u32>);

/// Records and the id columns `id_keys` of a columnar file (Parquet, Arrow IPC, Avro), as
/// GAME reads them (see `read_parquet_with_ids`).
pub fn read_columnar_with_ids(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    id_keys: &[String],
) -> Result<(Dataset, Vec<Ids>)> {
    #[cfg(not(all(feature = "parquet", feature = "avro")))]
    let unbuilt = |feature: &str| {
        let _ = (options, id_keys);
        Err(Error::Config(format!(
            "{}: {format:?} records need glmix built with the cargo feature `{feature}`",
            path.display()
        )))
    };
    match format {
        #[cfg(feature = "parquet")]
        Format::Parquet => read_parquet_with_ids(path, options, id_keys),
        #[cfg(feature = "parquet")]
        Format::ArrowIpc => read_arrow_ipc_with_ids(path, options, id_keys),
        #[cfg(not(feature = "parquet"))]
        Format::Parquet | Format::ArrowIpc => unbuilt("parquet"),
        #[cfg(feature = "avro")]
        Format::Avro => read_avro_with_ids(path, options, id_keys),
        #[cfg(not(feature = "avro"))]
        Format::Avro => unbuilt("avro"),
        Format::Jsonl | Format::Tsv => unreachable!("{format:?} is read line by line"),
    }
}

/// [`for_each_columnar_batch`] where glmix is built with a columnar format, else the error
/// [`read_columnar_with_ids`] gives.
pub(crate) fn read_columnar_batches(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    each: &mut dyn FnMut(&Dataset) -> Result<()>,
) -> Result<()> {
    #[cfg(any(feature = "parquet", feature = "avro"))]
    return for_each_columnar_batch(path, format, options, each);
    #[cfg(not(any(feature = "parquet", feature = "avro")))]
    {
        let _ = each;
        read_columnar_with_ids(path, format, options, &[]).map(|_| ())
    }
}

/// Read a records file in `format`; an empty file is an error.
pub fn read_records(path: &Path, format: Format, options: &ReadOptions) -> Result<Dataset> {
    let data = match format {
        Format::Jsonl => read_jsonl(path, options)?,
        Format::Tsv => {
            let entity = match &options.entity {
                EntityMode::Single(id) => id.clone(),
                EntityMode::Key(_) => "global".to_string(),
            };
            read_tsv(path, &entity)?
        }
        Format::Parquet | Format::ArrowIpc | Format::Avro => {
            read_columnar_with_ids(path, format, options, &[])?.0
        }
    };
    let mut data = data;
    data.sort_features();
    if data.num_rows() == 0 {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            message: "no records".into(),
        });
    }
    Ok(data)
}

/// Require a finite number.
pub(crate) fn finite(path: &Path, line: usize, field: &str, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::input(
            path,
            line,
            field,
            format!("{v} is not a finite number"),
        ))
    }
}
