//! Coefficient lists as Arrow columns, shared by the model tables (Parquet model files,
//! Photon-ML's Avro records): `list<struct<name: utf8, term: utf8, value: double>>`.

use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Fields};
use std::sync::Arc;

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("term", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ])
}

/// A builder of coefficient lists.
pub fn builder() -> ListBuilder<StructBuilder> {
    let item = StructBuilder::new(
        fields(),
        vec![
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
            Box::new(Float64Builder::new()),
        ],
    );
    ListBuilder::new(item).with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(fields()),
        false,
    )))
}

/// Append one list of `(name, term)` keys with their values.
pub fn push<'a>(
    list: &mut ListBuilder<StructBuilder>,
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    values: &[f64],
) {
    for ((name, term), &v) in keys.into_iter().zip(values) {
        let s = list.values();
        s.field_builder::<StringBuilder>(0)
            .expect("name")
            .append_value(name);
        s.field_builder::<StringBuilder>(1)
            .expect("term")
            .append_value(term);
        s.field_builder::<Float64Builder>(2)
            .expect("value")
            .append_value(v);
        s.append(true);
    }
    list.append(true);
}

/// A builder of lists of doubles (a precision).
pub fn doubles_builder() -> ListBuilder<Float64Builder> {
    ListBuilder::new(Float64Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Float64,
        false,
    )))
}

/// The column `name` of `batch` when it holds strings.
pub fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(name)
        .filter(|c| *c.data_type() == DataType::Utf8)
        .map(|c| c.as_string::<i32>())
}

/// The column `name` of `batch` when it is a list of `(name, term, value)` structs of
/// strings and doubles.
pub fn coefficient_list<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ListArray> {
    let c = batch.column_by_name(name)?;
    let DataType::List(item) = c.data_type() else {
        return None;
    };
    let DataType::Struct(f) = item.data_type() else {
        return None;
    };
    let has = |n: &str, t: DataType| f.iter().any(|x| x.name() == n && *x.data_type() == t);
    (has("name", DataType::Utf8) && has("term", DataType::Utf8) && has("value", DataType::Float64))
        .then(|| c.as_list::<i32>())
}

/// The column `name` of `batch` when it is a list of doubles.
pub fn double_list<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ListArray> {
    let c = batch.column_by_name(name)?;
    match c.data_type() {
        DataType::List(item) if *item.data_type() == DataType::Float64 => Some(c.as_list::<i32>()),
        _ => None,
    }
}

/// Row `i` of a [`coefficient_list`]: `(name, term, value)` each; nulls are `None`.
pub fn coefficients(
    list: &ListArray,
    i: usize,
) -> Vec<(Option<String>, Option<String>, Option<f64>)> {
    let items = list.value(i);
    let s = items.as_struct();
    let field = |name| s.column_by_name(name).expect("checked by coefficient_list");
    let (n, t) = (
        field("name").as_string::<i32>(),
        field("term").as_string::<i32>(),
    );
    let v = field("value").as_primitive::<Float64Type>();
    (0..s.len())
        .map(|k| {
            (
                n.is_valid(k).then(|| n.value(k).to_string()),
                t.is_valid(k).then(|| t.value(k).to_string()),
                v.is_valid(k).then(|| v.value(k)),
            )
        })
        .collect()
}

/// Row `i` of a [`double_list`] (`None` where the list is null; a null item is NaN, which
/// no precision accepts).
pub fn doubles(list: &ListArray, i: usize) -> Option<Vec<f64>> {
    list.is_valid(i).then(|| {
        let items = list.value(i);
        let values = items.as_primitive::<Float64Type>();
        values.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
    })
}
