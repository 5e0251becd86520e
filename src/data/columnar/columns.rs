//! Arrow columns as glmix reads them: numbers (any numeric or boolean type) as f64,
//! ids (strings or integers, or a key of a map of strings) as text, and NTV feature bags
//! as feature ids.

use super::feature_ids::{codes, Memo};
use crate::data::{finite, Dataset, FeatureKey};
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use std::borrow::Cow;
use std::path::Path;

pub(super) fn is_integer(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
    )
}

pub(super) fn is_numeric(t: &DataType) -> bool {
    is_integer(t) || matches!(t, DataType::Float32 | DataType::Float64 | DataType::Boolean)
}

/// Strings, plain or as an Arrow dictionary with 32-bit keys (as Parquet's dictionary
/// pages are read).
pub(super) fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(key, value) => **key == DataType::Int32 && is_string(value),
        _ => false,
    }
}

/// A map of strings to strings, as Avro's `map<string>` (Photon-ML's `metadataMap`) is
/// decoded.
pub(super) fn is_string_map(t: &DataType) -> bool {
    let DataType::Map(entries, _) = t else {
        return false;
    };
    let DataType::Struct(fields) = entries.data_type() else {
        return false;
    };
    fields.len() == 2 && fields.iter().all(|f| is_string(f.data_type()))
}

pub(super) fn is_ntv_list(t: &DataType) -> bool {
    let item = match t {
        DataType::List(f) | DataType::LargeList(f) => f.data_type(),
        _ => return false,
    };
    let DataType::Struct(fields) = item else {
        return false;
    };
    let of = |name: &str| {
        fields
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.data_type())
    };
    of("name").is_some_and(is_string)
        && of("term").is_none_or(is_string)
        && of("value").is_some_and(is_numeric)
}

/// A numeric or boolean column read as f64 (`None` where null).
pub(super) enum Numbers<'a> {
    F64(&'a arrow_array::Float64Array),
    F32(&'a arrow_array::Float32Array),
    I64(&'a arrow_array::Int64Array),
    I32(&'a arrow_array::Int32Array),
    I16(&'a arrow_array::Int16Array),
    I8(&'a arrow_array::Int8Array),
    U64(&'a arrow_array::UInt64Array),
    U32(&'a arrow_array::UInt32Array),
    U16(&'a arrow_array::UInt16Array),
    U8(&'a arrow_array::UInt8Array),
    Bool(&'a arrow_array::BooleanArray),
}

impl<'a> Numbers<'a> {
    /// The column as numbers; its type was checked by [`Plan::new`].
    pub(super) fn of(a: &'a ArrayRef) -> Self {
        match a.data_type() {
            DataType::Float64 => Numbers::F64(a.as_primitive::<Float64Type>()),
            DataType::Float32 => Numbers::F32(a.as_primitive::<Float32Type>()),
            DataType::Int64 => Numbers::I64(a.as_primitive::<Int64Type>()),
            DataType::Int32 => Numbers::I32(a.as_primitive::<Int32Type>()),
            DataType::Int16 => Numbers::I16(a.as_primitive::<Int16Type>()),
            DataType::Int8 => Numbers::I8(a.as_primitive::<Int8Type>()),
            DataType::UInt64 => Numbers::U64(a.as_primitive::<UInt64Type>()),
            DataType::UInt32 => Numbers::U32(a.as_primitive::<UInt32Type>()),
            DataType::UInt16 => Numbers::U16(a.as_primitive::<UInt16Type>()),
            DataType::UInt8 => Numbers::U8(a.as_primitive::<UInt8Type>()),
            DataType::Boolean => Numbers::Bool(a.as_boolean()),
            other => unreachable!("a checked numeric column, not {other}"),
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<f64> {
        macro_rules! at {
            ($a:expr) => {
                ($a.is_valid(i)).then(|| $a.value(i) as f64)
            };
        }
        match self {
            Numbers::F64(a) => at!(a),
            Numbers::F32(a) => at!(a),
            Numbers::I64(a) => at!(a),
            Numbers::I32(a) => at!(a),
            Numbers::I16(a) => at!(a),
            Numbers::I8(a) => at!(a),
            Numbers::U64(a) => at!(a),
            Numbers::U32(a) => at!(a),
            Numbers::U16(a) => at!(a),
            Numbers::U8(a) => at!(a),
            Numbers::Bool(a) => a.is_valid(i).then(|| f64::from(u8::from(a.value(i)))),
        }
    }
}

/// A string or integer column read as text (`None` where null).
pub(super) enum Strings<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Dict(&'a arrow_array::Int32Array, Box<Strings<'a>>),
    Integer(&'a ArrayRef),
}

impl<'a> Strings<'a> {
    pub(super) fn of(a: &'a ArrayRef) -> Self {
        match a.data_type() {
            DataType::Utf8 => Strings::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Strings::Large(a.as_string::<i64>()),
            DataType::Utf8View => Strings::View(a.as_string_view()),
            DataType::Dictionary(..) => match codes(a) {
                Some(d) => Strings::Dict(d.keys(), Box::new(Strings::of(d.values()))),
                None => unreachable!("a checked string column, not {}", a.data_type()),
            },
            _ => Strings::Integer(a),
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<Cow<'a, str>> {
        match self {
            Strings::Utf8(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Strings::Large(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Strings::View(a) => a.is_valid(i).then(|| Cow::Borrowed(a.value(i))),
            Strings::Dict(keys, values) => match keys.is_valid(i) {
                true => values.get(keys.value(i) as usize),
                false => None,
            },
            Strings::Integer(a) => {
                if !a.is_valid(i) {
                    return None;
                }
                let text = match a.data_type() {
                    DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
                    DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
                    DataType::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
                    DataType::Int8 => a.as_primitive::<Int8Type>().value(i).to_string(),
                    DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
                    DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
                    DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).to_string(),
                    DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).to_string(),
                    other => unreachable!("a checked id column, not {other}"),
                };
                Some(Cow::Owned(text))
            }
        }
    }
}

/// An id per row: from a column, or under one key of a map column.
pub(super) enum IdColumn<'a> {
    Column(Strings<'a>),
    InMap {
        map: &'a arrow_array::MapArray,
        keys: Strings<'a>,
        values: Strings<'a>,
        key: &'a str,
    },
}

impl<'a> IdColumn<'a> {
    pub(super) fn of(a: &'a ArrayRef) -> Self {
        IdColumn::Column(Strings::of(a))
    }

    /// The value under `key` of each row's map (checked by [`is_string_map`]).
    pub(super) fn in_map(a: &'a ArrayRef, key: &'a str) -> Self {
        let map = a.as_map();
        IdColumn::InMap {
            map,
            keys: Strings::of(map.keys()),
            values: Strings::of(map.values()),
            key,
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<Cow<'a, str>> {
        match self {
            IdColumn::Column(ids) => ids.get(i),
            IdColumn::InMap {
                map,
                keys,
                values,
                key,
            } => {
                if !map.is_valid(i) {
                    return None;
                }
                let offsets = map.value_offsets();
                (offsets[i] as usize..offsets[i + 1] as usize)
                    .find(|&j| keys.get(j).as_deref() == Some(*key))
                    .and_then(|j| values.get(j))
            }
        }
    }
}

/// An NTV feature bag: per row, the range of its items in the struct arrays.
pub(super) struct Ntv<'a> {
    /// Its place among the plan's bags (its code table's in the [`Memo`]).
    index: usize,
    bag: &'a str,
    list: &'a ArrayRef,
    offsets: Vec<usize>,
    name: Strings<'a>,
    term: Option<Strings<'a>>,
    value: Numbers<'a>,
    /// The name and term codes, when both are dictionaries (or there is no term) and the
    /// memo has a code table for them.
    codes: Option<(Codes<'a>, Option<Codes<'a>>)>,
}

type Codes<'a> = &'a arrow_array::DictionaryArray<arrow_array::types::Int32Type>;

impl<'a> Ntv<'a> {
    /// Bag number `index`, `bag`, of a batch; binds its code table in `memo`.
    pub(super) fn of(index: usize, bag: &'a str, list: &'a ArrayRef, memo: &mut Memo) -> Self {
        let (offsets, items): (Vec<usize>, &'a arrow_array::StructArray) = match list.data_type() {
            DataType::List(_) => {
                let l = list.as_list::<i32>();
                (
                    l.value_offsets().iter().map(|&o| o as usize).collect(),
                    l.values().as_struct(),
                )
            }
            _ => {
                let l = list.as_list::<i64>();
                (
                    l.value_offsets().iter().map(|&o| o as usize).collect(),
                    l.values().as_struct(),
                )
            }
        };
        let name = items.column_by_name("name").expect("checked");
        let term = items.column_by_name("term");
        let coded = match (codes(name), term.map(codes)) {
            (Some(names), None) => Some((names, None)),
            (Some(names), Some(Some(terms))) => Some((names, Some(terms))),
            _ => None,
        };
        Ntv {
            index,
            bag,
            list,
            offsets,
            name: Strings::of(name),
            term: term.map(Strings::of),
            value: Numbers::of(items.column_by_name("value").expect("checked")),
            codes: coded.filter(|&(names, terms)| memo.bind(index, names, terms)),
        }
    }

    /// Append row `i`'s features to `out` as ids of `data` (a null list is none).
    pub(super) fn row(
        &self,
        path: &Path,
        line: usize,
        i: usize,
        data: &mut Dataset,
        memo: &mut Memo,
        out: &mut Vec<(u32, f64)>,
    ) -> Result<()> {
        if !self.list.is_valid(i) {
            return Ok(());
        }
        let at = |k: usize, f: &str| format!("{}[{k}].{f}", self.bag);
        // The memo's position: after the features of the bags before this one.
        let base = out.len();
        for (k, j) in (self.offsets[i]..self.offsets[i + 1]).enumerate() {
            let value = self
                .value
                .get(j)
                .ok_or_else(|| Error::input(path, line, at(k, "value"), "null value"))?;
            if !value.is_finite() {
                finite(path, line, &at(k, "value"), value)?;
            }
            let code = self.codes.and_then(|(names, terms)| {
                let name = names.keys();
                let term = match terms {
                    Some(t) => t.keys().is_valid(j).then(|| t.keys().value(j) as usize)?,
                    None => 0,
                };
                name.is_valid(j).then(|| (name.value(j) as usize, term))
            });
            if let Some(id) = code.and_then(|(n, t)| memo.coded(self.index, n, t)) {
                out.push((id, value));
                continue;
            }
            let name = self
                .name
                .get(j)
                .ok_or_else(|| Error::input(path, line, at(k, "name"), "null name"))?;
            let term = self
                .term
                .as_ref()
                .and_then(|t| t.get(j))
                .unwrap_or_default();
            if name == "intercept" && term == "intercept" {
                return Err(Error::input(
                    path,
                    line,
                    at(k, "name"),
                    "(intercept, intercept) is reserved for the implicit intercept",
                ));
            }
            let id = match code {
                Some((n, t)) => {
                    let id = data
                        .features
                        .id(&FeatureKey::new(name.as_ref(), term.as_ref()));
                    memo.set_coded(self.index, n, t, id);
                    id
                }
                None => memo.id(base + k, &name, &term, data),
            };
            out.push((id, value));
        }
        Ok(())
    }
}
