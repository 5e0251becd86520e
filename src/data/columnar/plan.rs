//! Which columns of a columnar file are read, and as what ([`Plan`]), and the records of
//! a batch of them. The columns are those of the module doc of [`super`].

use super::columns::{
    is_integer, is_ntv_list, is_numeric, is_string, is_string_map, IdColumn, Ntv, Numbers,
};
use super::feature_ids::Memo;
use crate::data::{finite, Dataset, EntityMode, FeatureKey, Ids, ReadOptions};
use crate::error::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use std::borrow::Cow;
use std::path::Path;

/// Where an id is read: a column, or a key of the `metadataMap` column.
#[derive(Debug, Clone)]
enum IdAt {
    Column(String),
    Metadata(String),
}

impl IdAt {
    fn of<'a>(&'a self, batch: &'a RecordBatch) -> IdColumn<'a> {
        match self {
            IdAt::Column(name) => IdColumn::of(column(batch, name)),
            IdAt::Metadata(key) => IdColumn::in_map(column(batch, METADATA), key),
        }
    }

    /// How errors name it: `userId`, or `metadataMap.userId`.
    fn field(&self) -> Cow<'_, str> {
        match self {
            IdAt::Column(name) => Cow::Borrowed(name),
            IdAt::Metadata(key) => Cow::Owned(format!("{METADATA}.{key}")),
        }
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a arrow_array::ArrayRef {
    batch.column_by_name(name).expect("projected")
}

/// Which columns are read, and as what.
pub(super) struct Plan {
    /// Root index in the file's schema and name of every column read.
    read: Vec<(usize, String)>,
    entity: Option<IdAt>,
    single: Option<String>,
    /// Further id columns, one list of ids each.
    id_keys: Vec<IdAt>,
    /// `label` or `response`; `None` when the file has neither and a default label is
    /// given.
    label: Option<&'static str>,
    /// The label of a record with a null label, or of every record without a column.
    default_label: Option<f64>,
    timestamp: Option<String>,
    /// The NTV feature bags; empty when the features are `wide` columns.
    bags: Vec<String>,
    wide: Vec<String>,
    /// Columns no field reads.
    unread: Vec<String>,
}

/// The label's column: glmix's and Photon-ML's name, or Photon's `response`.
const LABELS: [&str; 2] = ["label", "response"];
const WEIGHT: &str = "weight";
const OFFSET: &str = "offset";
const FEATURES: &str = "features";
/// Photon-ML's map of a record's ids and other metadata.
const METADATA: &str = "metadataMap";

impl Plan {
    pub(super) fn new(
        path: &Path,
        schema: &Schema,
        options: &ReadOptions,
        id_keys: &[String],
    ) -> Result<Self> {
        let refuse = |field: &str, message: String| Error::Schema {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let column = |name: &str| schema.index_of(name).ok();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let missing = |name: &str, what: &str| {
            refuse(
                name,
                format!(
                    "no such column ({what}); the columns are {}",
                    names.join(", ")
                ),
            )
        };
        let require = |name: &str, what: &str| column(name).ok_or_else(|| missing(name, what));
        let mut read: Vec<(usize, String)> = Vec::new();
        let want = |read: &mut Vec<(usize, String)>, i: usize| {
            if !read.iter().any(|&(j, _)| j == i) {
                read.push((i, names[i].to_string()));
            }
        };
        let metadata = column(METADATA).filter(|&i| is_string_map(schema.field(i).data_type()));
        let id_at = |read: &mut Vec<(usize, String)>, key: &str, what: &str| {
            let Some(i) = column(key) else {
                return match metadata {
                    Some(m) => {
                        want(read, m);
                        Ok(IdAt::Metadata(key.to_string()))
                    }
                    None => Err(missing(key, what)),
                };
            };
            let t = schema.field(i).data_type();
            match is_string(t) || is_integer(t) {
                true => {
                    want(read, i);
                    Ok(IdAt::Column(key.to_string()))
                }
                false => Err(refuse(
                    key,
                    format!("expected strings or integers, got {t}"),
                )),
            }
        };
        let id_keys = id_keys
            .iter()
            .map(|key| {
                id_at(
                    &mut read,
                    key,
                    "an id a random effect of the configuration uses",
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let (entity, single) = match &options.entity {
            EntityMode::Key(k) => (
                Some(id_at(&mut read, k, "the entity id; see --entity-key")?),
                None,
            ),
            EntityMode::Single(id) => (None, Some(id.clone())),
        };
        let numeric = |name: &str, i: usize| {
            let t = schema.field(i).data_type();
            match is_numeric(t) {
                true => Ok(()),
                false => Err(refuse(name, format!("expected a numeric column, got {t}"))),
            }
        };
        let label = match LABELS
            .iter()
            .find_map(|&name| column(name).map(|i| (name, i)))
        {
            Some((label, i)) => {
                numeric(label, i)?;
                want(&mut read, i);
                Some(label)
            }
            None if options.default_label.is_some() => None,
            None => Err(missing(
                LABELS[0],
                "every record needs a label (or `response`)",
            ))?,
        };
        for name in [WEIGHT, OFFSET] {
            if let Some(i) = column(name) {
                numeric(name, i)?;
                want(&mut read, i);
            }
        }
        if let Some(t) = &options.timestamp_field {
            let i = require(t, "the timestamp")?;
            numeric(t, i)?;
            want(&mut read, i);
        }
        let (mut bags, mut wide) = (Vec::new(), Vec::new());
        if options.feature_columns.is_empty() {
            let default = [FEATURES.to_string()];
            let asked = match options.feature_bags.is_empty() {
                true => &default[..],
                false => &options.feature_bags[..],
            };
            for bag in asked {
                let i = require(
                    bag,
                    match options.feature_bags.is_empty() {
                        true => {
                            "the NTV features list; wide columns are named by --feature-columns"
                        }
                        false => "a feature bag named by --feature-bags",
                    },
                )?;
                let t = schema.field(i).data_type();
                if !is_ntv_list(t) {
                    return Err(refuse(
                        bag,
                        format!("expected a list of structs (name, term, value), got {t}"),
                    ));
                }
                want(&mut read, i);
                bags.push(bag.clone());
            }
        } else {
            for asked in &options.feature_columns {
                let matched: Vec<usize> = match asked.strip_suffix('*') {
                    Some(prefix) => (0..names.len())
                        .filter(|&i| names[i].starts_with(prefix))
                        .collect(),
                    None => vec![require(asked, "named by --feature-columns")?],
                };
                if matched.is_empty() {
                    return Err(refuse(asked, "no column has this prefix".into()));
                }
                for i in matched {
                    // A column read already (the label, say) is not a feature too.
                    if !read.iter().any(|&(j, _)| j == i) {
                        numeric(names[i], i)?;
                        wide.push(names[i].to_string());
                        want(&mut read, i);
                    }
                }
            }
        }
        // As in JSON lines, `timestamp` goes unread without a notice.
        let unread = (0..names.len())
            .filter(|i| !read.iter().any(|(j, _)| j == i))
            .filter(|&i| !crate::data::raw_record::QUIETLY_UNREAD.contains(&names[i]))
            .map(|i| names[i].to_string())
            .collect();
        Ok(Plan {
            read,
            entity,
            single,
            id_keys,
            label,
            default_label: options.default_label,
            timestamp: options.timestamp_field.clone(),
            bags,
            wide,
            unread,
        })
    }

    /// The schema indices of the columns read, for a reader's projection.
    pub(super) fn roots(&self) -> Vec<usize> {
        let mut roots: Vec<usize> = self.read.iter().map(|&(i, _)| i).collect();
        roots.sort_unstable();
        roots
    }

    /// The NTV feature bags read (none when the features are wide columns).
    #[cfg(feature = "parquet")]
    pub(super) fn bags(&self) -> &[String] {
        &self.bags
    }

    /// What [`Self::append`] keeps from one batch to the next.
    pub(super) fn state(&self) -> Memo {
        Memo::default()
    }

    /// Append the records of `batch`, whose first is record `first` (0-based) of `path`.
    pub(super) fn append(
        &self,
        path: &Path,
        batch: &RecordBatch,
        first: usize,
        data: &mut Dataset,
        ids_out: &mut [Ids],
        memo: &mut Memo,
    ) -> Result<()> {
        let col = |name: &str| column(batch, name);
        let id_columns: Vec<IdColumn> = self.id_keys.iter().map(|k| k.of(batch)).collect();
        let ids = self.entity.as_ref().map(|k| k.of(batch));
        let label = self.label.map(|l| Numbers::of(col(l)));
        let optional = |name: &str| batch.column_by_name(name).map(Numbers::of);
        let (weight, offset) = (optional(WEIGHT), optional(OFFSET));
        let timestamp = self.timestamp.as_deref().map(|t| Numbers::of(col(t)));
        let wide: Vec<(FeatureKey, Numbers)> = self
            .wide
            .iter()
            .map(|name| (FeatureKey::new(name.as_str(), ""), Numbers::of(col(name))))
            .collect();
        let bags: Vec<Ntv> = (self.bags.iter().enumerate())
            .map(|(k, b)| Ntv::of(k, b, col(b), memo))
            .collect();
        let wide_ids: Vec<u32> = wide.iter().map(|(key, _)| data.features.id(key)).collect();
        let mut row = Vec::new();
        let mut last_entity: Option<(Cow<str>, u32)> = None;
        for i in 0..batch.num_rows() {
            let line = first + i + 1;
            let bad = |field: &str, message: String| Error::input(path, line, field, message);
            let entity: Cow<str> = match (&ids, &self.single) {
                (Some(ids), _) => ids.get(i).ok_or_else(|| {
                    let at = self.entity.as_ref().expect("keyed");
                    bad(&at.field(), "no id".into())
                })?,
                (None, Some(id)) => Cow::Borrowed(id.as_str()),
                (None, None) => unreachable!("an entity key or one entity"),
            };
            // Records of one entity usually come together: one lookup per run of them.
            let entity = match &last_entity {
                Some((name, id)) if *name == entity => *id,
                _ => {
                    let id = data.entities.id_str(&entity);
                    last_entity = Some((entity, id));
                    id
                }
            };
            let name = self.label.unwrap_or(LABELS[0]);
            let label = label
                .as_ref()
                .and_then(|l| l.get(i))
                .or(self.default_label)
                .ok_or_else(|| bad(name, "null label".into()))?;
            let label = finite(path, line, name, label)?;
            let weight = weight.as_ref().and_then(|w| w.get(i)).unwrap_or(1.0);
            let weight = finite(path, line, WEIGHT, weight)?;
            if weight < 0.0 {
                return Err(bad(WEIGHT, format!("{weight} is negative")));
            }
            let offset = offset.as_ref().and_then(|o| o.get(i)).unwrap_or(0.0);
            let offset = finite(path, line, OFFSET, offset)?;
            let timestamp = match (&timestamp, &self.timestamp) {
                (Some(t), Some(name)) => {
                    let v = t.get(i).ok_or_else(|| bad(name, "null timestamp".into()))?;
                    Some(finite(path, line, name, v)?)
                }
                _ => None,
            };
            row.clear();
            for bag in &bags {
                bag.row(path, line, i, data, memo, &mut row)?;
            }
            for ((key, column), &id) in wide.iter().zip(&wide_ids) {
                match column.get(i) {
                    Some(v) if v != 0.0 => {
                        row.push((id, finite(path, line, &key.name, v)?));
                    }
                    _ => {}
                }
            }
            for ((column, at), (interned, of_record)) in
                id_columns.iter().zip(&self.id_keys).zip(ids_out.iter_mut())
            {
                let id = column.get(i).ok_or_else(|| {
                    bad(
                        &at.field(),
                        "no id (a random effect of the configuration uses it)".into(),
                    )
                })?;
                of_record.push(interned.id_str(&id));
            }
            data.push_ids(entity, label, weight, offset, timestamp, &mut row);
            for name in &self.unread {
                data.note_unread(name, line);
            }
        }
        Ok(())
    }
}
