//! Records of a GAME model: NTV JSON lines (or Parquet, by the `.parquet` extension) with
//! one id field per random-effect type, and each coordinate's view of them.
//!
//! ```json
//! {"user_id":"196","movie_id":"242","label":0,"offset":0.0,
//!  "features":[{"name":"age","term":"","value":0.49},{"name":"genre","term":"Comedy","value":1}]}
//! ```
//!
//! A coordinate sees every record through its feature set (features whose name is in the
//! set) and its entity key (the fixed effect has one entity, named after the coordinate).

use crate::data::{read_records_with_ids, Dataset, EntityMode, Format, Interner, ReadOptions};
use crate::error::Result;
use crate::io::{fnv1a, FNV1A_EMPTY};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The entity ids of one key, one per record.
#[derive(Debug, Clone)]
pub struct IdColumn {
    pub key: String,
    pub ids: Interner<String>,
    pub of_record: Vec<u32>,
}

/// Every record of a file, with the id columns a GAME configuration needs.
#[derive(Debug, Clone)]
pub struct GameData {
    pub path: PathBuf,
    /// Labels, weights, base offsets and features (all records under one entity).
    pub records: Dataset,
    pub id_columns: Vec<IdColumn>,
}

impl GameData {
    /// Read NTV JSON lines (or a columnar file, by its name or first bytes), keeping the
    /// id fields named by `keys`; every record must have each of them. An empty file is an
    /// error.
    pub fn read(path: &Path, keys: &[String]) -> Result<Self> {
        let options = ReadOptions {
            default_label: None,
            entity: EntityMode::Single("all".into()),
            timestamp_field: None,
            feature_columns: Vec::new(),
            feature_bags: Vec::new(),
        };
        let (records, ids) = read_records_with_ids(
            path,
            Format::of_file(path),
            &options,
            keys,
            "missing entity field (a random effect of the configuration uses it)",
        )?;
        let id_columns = keys
            .iter()
            .zip(ids)
            .map(|(key, (ids, of_record))| IdColumn {
                key: key.clone(),
                ids,
                of_record,
            })
            .collect();
        Ok(GameData {
            path: path.to_path_buf(),
            records,
            id_columns,
        })
    }

    pub fn num_records(&self) -> usize {
        self.records.num_rows()
    }

    /// The id column of `key` (it was read).
    pub fn ids(&self, key: &str) -> &IdColumn {
        self.id_columns
            .iter()
            .find(|c| c.key == key)
            .expect("the id column of every configured key is read")
    }

    /// Whether record feature `f` belongs to a feature set of these names.
    fn in_set(&self, names: &HashSet<&str>) -> Vec<bool> {
        self.records
            .features
            .keys()
            .iter()
            .map(|k| names.contains(k.name.as_str()))
            .collect()
    }

    /// Feature names of `names` that no record has.
    pub fn missing_names<'n>(&self, names: &'n [String]) -> Vec<&'n str> {
        let present: HashSet<&str> = self
            .records
            .features
            .keys()
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        names
            .iter()
            .map(String::as_str)
            .filter(|n| !present.contains(n))
            .collect()
    }

    /// The records `rows` (ascending) as one coordinate sees them: features of the set
    /// `names`, entity `entity(record)`, offsets 0 (the caller sets them). Features are
    /// numbered in key order, as [`crate::data::read_records`] numbers them.
    pub fn view<'a>(
        &'a self,
        names: &[String],
        rows: impl ExactSizeIterator<Item = usize>,
        entity: impl Fn(usize) -> &'a str,
    ) -> Dataset {
        let names: HashSet<&str> = names.iter().map(String::as_str).collect();
        let keep = self.in_set(&names);
        let mut local: Vec<u32> = vec![u32::MAX; keep.len()];
        let mut out = Dataset::new();
        out.reserve(rows.len(), 0);
        let mut row: Vec<(u32, f64)> = Vec::new();
        for i in rows {
            let e = out.entities.id_str(entity(i));
            row.clear();
            let (ids, vals) = self.records.row_features(i);
            for (&f, &v) in ids.iter().zip(vals) {
                if keep[f as usize] {
                    if local[f as usize] == u32::MAX {
                        local[f as usize] = out.features.id(self.records.features.key(f));
                    }
                    row.push((local[f as usize], v));
                }
            }
            row.sort_by_key(|&(f, _)| f);
            let r = &self.records;
            out.push_interned(e, r.label[i], r.weight[i], 0.0, None, &row);
        }
        out.sort_features();
        out
    }
}

/// Which records of a random effect train it (Photon-ML's active data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveRows {
    /// Training records, ascending.
    pub rows: Vec<usize>,
    /// Entities with at least `min_rows` records (each gets a model).
    pub entities_trained: usize,
    /// Entities with fewer: no model, scored by the other coordinates only.
    pub entities_below_min_rows: usize,
    pub rows_below_min_rows: usize,
    /// Entities with more than `max_rows` records, and the records left out of training.
    pub entities_capped: usize,
    pub rows_dropped_by_cap: usize,
}

/// Select the training records of the id column: entities with fewer than `min_rows`
/// records are left out; of an entity with more than `max_rows`, a uniform sample of
/// `max_rows` is kept (reservoir sampling, Algorithm R, in record order, from a ChaCha8
/// stream seeded by `seed` and the entity id, so the sample does not depend on the others).
pub fn active_rows(
    column: &IdColumn,
    min_rows: usize,
    max_rows: Option<usize>,
    seed: u64,
) -> ActiveRows {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); column.ids.len()];
    for (i, &e) in column.of_record.iter().enumerate() {
        groups[e as usize].push(i);
    }
    let mut out = ActiveRows::default();
    for (e, rows) in groups.into_iter().enumerate() {
        if rows.len() < min_rows {
            out.entities_below_min_rows += 1;
            out.rows_below_min_rows += rows.len();
            continue;
        }
        out.entities_trained += 1;
        match max_rows {
            Some(max) if rows.len() > max => {
                out.entities_capped += 1;
                out.rows_dropped_by_cap += rows.len() - max;
                let id = column.ids.key(e as u32);
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(FNV1A_EMPTY, id.as_bytes()));
                let mut sample: Vec<usize> = rows[..max].to_vec();
                for (seen, &i) in rows.iter().enumerate().skip(max) {
                    let j = rng.gen_range(0..=seen);
                    if j < max {
                        sample[j] = i;
                    }
                }
                out.rows.extend(sample);
            }
            _ => out.rows.extend(rows),
        }
    }
    out.rows.sort_unstable();
    out
}
