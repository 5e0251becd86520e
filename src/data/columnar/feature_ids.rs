//! The feature id of each item of an NTV bag, found without hashing its strings where it
//! can be.
//!
//! Two shortcuts, both kept from one batch to the next in a [`Memo`] (and dropped with the
//! dataset whose ids they hold):
//! - **by code**: when a bag's `name` (and `term`, if any) arrive dictionary-encoded — as
//!   Parquet writers store string columns, read as Arrow dictionaries when every page of
//!   them is — the id of each (name code, term code) pair is found once and kept in a table
//!   for as long as the batches share those dictionaries;
//! - **by position**: otherwise records list their features in much the same order, so the
//!   id that position k of a record had last time is checked first, by comparing two short
//!   strings.

use crate::data::{Dataset, FeatureKey};
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray};
use arrow_schema::DataType;
use std::sync::Arc;

/// Code pairs a table holds at most (16 MiB of ids); past that a bag takes the path by
/// position.
const MAX_TABLE: usize = 1 << 22;

/// What finding feature ids keeps from one batch to the next.
#[derive(Default)]
pub(super) struct Memo {
    by_position: Vec<(FeatureKey, u32)>,
    /// One per bag, in the plan's order.
    tables: Vec<Option<CodeTable>>,
}

/// The feature id of each (name code, term code) of one pair of dictionaries.
struct CodeTable {
    /// The dictionaries it was built for, held so that their addresses cannot be reused by
    /// other dictionaries while the table stands.
    names: ArrayRef,
    terms: Option<ArrayRef>,
    /// Term codes per name code (1 without a term column).
    width: usize,
    /// `UNSEEN` where the pair has not been met yet.
    ids: Vec<u32>,
}

const UNSEEN: u32 = u32::MAX;

/// A bag's `name` or `term` column as dictionary codes, when it is one.
pub(super) fn codes(a: &ArrayRef) -> Option<&DictionaryArray<Int32Type>> {
    match a.data_type() {
        DataType::Dictionary(key, _) if **key == DataType::Int32 => {
            Some(a.as_dictionary::<Int32Type>())
        }
        _ => None,
    }
}

impl Memo {
    /// The id of `(name, term)` at position `k` of a record's features.
    pub(super) fn id(&mut self, k: usize, name: &str, term: &str, data: &mut Dataset) -> u32 {
        if let Some((key, id)) = self.by_position.get(k) {
            if key.name == name && key.term == term {
                return *id;
            }
        }
        let key = FeatureKey::new(name, term);
        let id = data.features.id(&key);
        if k < self.by_position.len() {
            self.by_position[k] = (key, id);
        } else if k == self.by_position.len() {
            self.by_position.push((key, id));
        }
        id
    }

    /// Make bag `bag`'s code table the one for the dictionaries `names` and `terms` (kept
    /// when the batch shares the last batch's); false when the bag has no table (its codes
    /// would need too large a one).
    pub(super) fn bind(
        &mut self,
        bag: usize,
        names: &DictionaryArray<Int32Type>,
        terms: Option<&DictionaryArray<Int32Type>>,
    ) -> bool {
        if self.tables.len() <= bag {
            self.tables.resize_with(bag + 1, || None);
        }
        let same = |held: &ArrayRef, now: &ArrayRef| Arc::ptr_eq(held, now);
        if let Some(t) = &self.tables[bag] {
            let terms_same = match (&t.terms, terms) {
                (Some(held), Some(now)) => same(held, now.values()),
                (None, None) => true,
                _ => false,
            };
            if same(&t.names, names.values()) && terms_same {
                return true;
            }
        }
        let width = terms.map_or(1, |t| t.values().len());
        let size = names.values().len().saturating_mul(width);
        self.tables[bag] = (size <= MAX_TABLE).then(|| CodeTable {
            names: names.values().clone(),
            terms: terms.map(|t| t.values().clone()),
            width,
            ids: vec![UNSEEN; size],
        });
        self.tables[bag].is_some()
    }

    /// The id already found for codes `(name, term)` of bag `bag`'s bound table.
    pub(super) fn coded(&self, bag: usize, name: usize, term: usize) -> Option<u32> {
        let t = self.tables[bag].as_ref().expect("bound");
        let id = t.ids[name * t.width + term];
        (id != UNSEEN).then_some(id)
    }

    /// Remember `id` for codes `(name, term)` of bag `bag`.
    pub(super) fn set_coded(&mut self, bag: usize, name: usize, term: usize, id: u32) {
        let t = self.tables[bag].as_mut().expect("bound");
        t.ids[name * t.width + term] = id;
    }
}
