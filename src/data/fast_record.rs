//! A fast path for reading one NTV record: the byte scanner of [`super::scan`] for plain
//! records, else a typed serde visitor that takes the fields it needs straight from the
//! text (no `serde_json::Value` tree, no map per object).
//!
//! It accepts only records the checked path ([`super::jsonl::push_record`]) accepts with the
//! same result, and answers `None` for anything else — a missing or mistyped field, a
//! non-finite number, a feature name given as a number… — so that the caller falls back to
//! the checked path, which then accepts the record or names the file, line and field of
//! its error. Errors therefore read the same whichever path met the record first.

use super::raw_record::{note_unread, RawRecord};
use super::scan::scan_record;
use super::{EntityMode, FeatureKey, ReadOptions};
use compact_str::CompactString;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The fields of one record, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FastRecord {
    pub entity: CompactString,
    pub label: f64,
    pub weight: f64,
    pub offset: f64,
    pub timestamp: Option<f64>,
    pub features: Vec<(FeatureKey, f64)>,
    /// The values of the extra id fields asked for, in their order.
    pub ids: Vec<String>,
    /// The first (in key order) of the record's keys that no field reads, if any.
    pub unread: Option<CompactString>,
}

impl FastRecord {
    /// Append the record, line `line` of its file, to `data` (its id fields are the
    /// caller's business).
    pub fn append_to(self, data: &mut super::Dataset, line: usize) {
        if let Some(key) = &self.unread {
            data.note_unread(key, line);
        }
        data.push(
            &self.entity,
            self.label,
            self.weight,
            self.offset,
            self.timestamp,
            self.features,
        );
    }
}

/// Parse `text` as a record under `options`, with the extra id fields `id_keys`; `None`
/// when the record is not plainly valid.
pub fn parse_fast(text: &str, options: &ReadOptions, id_keys: &[String]) -> Option<FastRecord> {
    // The byte scanner first (plain records, no extra id fields), then the serde visitor.
    let scanned = id_keys
        .is_empty()
        .then(|| scan_record(text, options))
        .flatten();
    let raw = match scanned {
        Some(r) => r,
        None => serde_record(text, options, id_keys)?,
    };
    let finite = |x: f64| x.is_finite().then_some(x);
    let entity = match &options.entity {
        EntityMode::Single(id) => id.as_str().into(),
        EntityMode::Key(_) => raw.entity?,
    };
    let weight = finite(raw.weight.unwrap_or(1.0)).filter(|&w| w >= 0.0)?;
    let timestamp = match options.timestamp_field {
        Some(_) => Some(finite(raw.timestamp?)?),
        None => None,
    };
    let features = raw.features?;
    if features
        .iter()
        .any(|(k, v)| !v.is_finite() || k.is_intercept())
    {
        return None;
    }
    Some(FastRecord {
        entity,
        label: finite(raw.label.or(options.default_label)?)?,
        weight,
        offset: finite(raw.offset.unwrap_or(0.0))?,
        timestamp,
        features,
        ids: raw.ids.into_iter().collect::<Option<_>>()?,
        unread: raw.unread,
    })
}

/// The fields of `text` read by the serde visitor.
fn serde_record(text: &str, options: &ReadOptions, id_keys: &[String]) -> Option<RawRecord> {
    let seed = RecordSeed { options, id_keys };
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(raw)
}

struct RecordSeed<'a> {
    options: &'a ReadOptions,
    id_keys: &'a [String],
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = RawRecord;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawRecord, D::Error> {
        d.deserialize_map(self)
    }
}

/// Which field a key names.
enum Field {
    Entity,
    Label,
    Weight,
    Offset,
    Timestamp,
    Features,
    Id(usize),
    /// A key no field reads.
    Other(CompactString),
}

impl Field {
    /// A bit per known field, to see repeats; `None` for the others.
    fn bit(&self) -> Option<u32> {
        Some(match self {
            Field::Entity => 1,
            Field::Label => 2,
            Field::Weight => 4,
            Field::Offset => 8,
            Field::Timestamp => 16,
            Field::Features => 32,
            Field::Id(k) => 64u32.checked_shl(*k as u32).filter(|&b| b != 0)?,
            Field::Other(_) => return None,
        })
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = RawRecord;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord, A::Error> {
        let mut r = RawRecord::empty(self.id_keys.len());
        let entity_key = self.options.entity_key();
        let timestamp = self.options.timestamp_field.as_deref();
        let keys = KeySeed {
            entity_key,
            timestamp,
            id_keys: self.id_keys,
        };
        let (mut seen, mut others) = (0u32, Vec::new());
        while let Some((field, id)) = map.next_key_seed(keys)? {
            // A repeated key declines the record: the checked path names it.
            let repeated = match (&field, field.bit()) {
                (_, Some(bit)) => {
                    let before = seen;
                    seen |= bit;
                    before & bit != 0
                }
                (Field::Other(key), None) => {
                    others.contains(key) || {
                        note_unread(&mut r.unread, key);
                        others.push(key.clone());
                        false
                    }
                }
                _ => false,
            };
            if repeated {
                return Err(de::Error::custom("a repeated key"));
            }
            match field {
                Field::Entity => {
                    let v = map.next_value::<Option<Id>>()?.map(|i| i.0);
                    if let Some(k) = id {
                        r.ids[k] = v.clone();
                    }
                    r.entity = v.map(CompactString::from);
                }
                Field::Id(k) => r.ids[k] = map.next_value::<Option<Id>>()?.map(|i| i.0),
                Field::Label => r.label = map.next_value()?,
                Field::Weight => r.weight = map.next_value()?,
                Field::Offset => r.offset = map.next_value()?,
                Field::Timestamp => r.timestamp = map.next_value()?,
                Field::Features => {
                    r.features = map.next_value::<Option<Vec<RawFeature>>>()?.map(|v| {
                        v.into_iter()
                            .map(|f| (FeatureKey::new(f.name, f.term.unwrap_or_default()), f.value))
                            .collect()
                    })
                }
                Field::Other(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

/// Classifies a key without allocating: its [`Field`], and its position among the id keys
/// (a key may be both the entity key and an id key).
#[derive(Clone, Copy)]
struct KeySeed<'a> {
    entity_key: Option<&'a str>,
    timestamp: Option<&'a str>,
    id_keys: &'a [String],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (Field, Option<usize>);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = (Field, Option<usize>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let id = self.id_keys.iter().position(|k| k == key);
        let field = if Some(key) == self.entity_key {
            Field::Entity
        } else {
            match key {
                "label" => Field::Label,
                "weight" => Field::Weight,
                "offset" => Field::Offset,
                "features" => Field::Features,
                _ if Some(key) == self.timestamp => Field::Timestamp,
                _ => id.map_or_else(|| Field::Other(key.into()), Field::Id),
            }
        };
        Ok((field, id))
    }
}

/// An entity id: a string, or an integer written as its decimal digits.
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// One `{name, term, value}` feature; a name or term that is not a string, a missing or
/// null value, or a repeated field fails here and sends the record to the checked path.
#[derive(Deserialize)]
struct RawFeature {
    name: String,
    #[serde(default)]
    term: Option<String>,
    value: f64,
}

#[cfg(test)]
mod tests {
    use super::super::{parse_object, push_record, Dataset};
    use super::*;
    use std::path::Path;

    /// The checked path's reading of `text`, as a `FastRecord`.
    fn checked(text: &str, options: &ReadOptions) -> Option<FastRecord> {
        let obj = parse_object(Path::new("t"), 1, text).ok()?;
        let mut d = Dataset::new();
        push_record(Path::new("t"), 1, &obj, options, &mut d).ok()?;
        let (ids, vals) = d.row_features(0);
        let mut features: Vec<(FeatureKey, f64)> = ids
            .iter()
            .zip(vals)
            .map(|(&f, &v)| (d.features.key(f).clone(), v))
            .collect();
        features.sort_by(|a, b| a.0.cmp(&b.0));
        Some(FastRecord {
            entity: d.entities.key(d.entity[0]).as_str().into(),
            label: d.label[0],
            weight: d.weight[0],
            offset: d.offset[0],
            timestamp: d.timestamp[0],
            features,
            ids: Vec::new(),
            unread: d.unread_keys.keys().next().cloned(),
        })
    }

    #[test]
    fn the_fast_path_reads_what_the_checked_path_reads_or_declines() {
        let options = ReadOptions {
            default_label: None,
            entity: EntityMode::Key("uid".into()),
            timestamp_field: Some("ts".into()),
            feature_columns: Vec::new(),
            feature_bags: Vec::new(),
        };
        let f = r#"[{"name":"a","term":"x","value":1.5},{"name":"b","value":-2}]"#;
        let lines = [
            format!(r#"{{"uid":"u1","label":1,"ts":3,"features":{f}}}"#),
            format!(r#"{{"uid":7,"label":0.0,"weight":2,"offset":-0.5,"ts":1e3,"features":{f},"extra":{{"x":[1,2]}}}}"#),
            r#"{"uid":"u\"q","label":1,"ts":3,"weight":null,"offset":null,"features":[]}"#.to_string(),
            // Declined by both: each breaks one rule.
            format!(r#"{{"label":1,"ts":3,"features":{f}}}"#),
            format!(r#"{{"uid":1.5,"label":1,"ts":3,"features":{f}}}"#),
            format!(r#"{{"uid":"u","label":"1","ts":3,"features":{f}}}"#),
            format!(r#"{{"uid":"u","label":1,"weight":-1,"ts":3,"features":{f}}}"#),
            format!(r#"{{"uid":"u","label":1,"features":{f}}}"#),
            r#"{"uid":"u","label":1,"ts":3}"#.to_string(),
            r#"{"uid":"u","label":1,"ts":3,"features":[{"name":"a"}]}"#.to_string(),
            r#"{"uid":"u","label":1,"ts":3,"features":[{"name":"intercept","term":"intercept","value":1}]}"#.to_string(),
            r#"{"uid":"u","label":1e999,"ts":3,"features":[]}"#.to_string(),
            r#"{"uid":"u","label":1,"ts":3,"features":[]} trailing"#.to_string(),
            "[1,2]".to_string(),
        ];
        for (k, line) in lines.iter().enumerate() {
            let fast = parse_fast(line, &options, &[]).map(|mut r| {
                r.features.sort_by(|a, b| a.0.cmp(&b.0));
                r
            });
            let slow = checked(line, &options);
            assert_eq!(fast, slow, "line {k}: {line}");
            assert_eq!(fast.is_some(), k < 3, "line {k}: {line}");
        }
    }

    /// A number as a file might spell it: shortest, exponent forms, many digits, an integer.
    fn spelled(x: f64, form: u8) -> String {
        match form % 5 {
            0 => format!("{x}"),
            1 => format!("{x:e}"),
            2 => format!("{x:.17e}").replace('e', "E+").replace("E+-", "E-"),
            3 => format!("{x:.25}"),
            _ => format!("{}", x.trunc() as i64),
        }
    }

    proptest::proptest! {
        /// On plain records the scanner reads every field with the serde visitor's bits.
        #[test]
        fn the_scanner_reads_plain_records_as_the_serde_visitor(
            entity in "[a-zA-Z0-9 _é-]{0,12}",
            label in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
            weight in 0.0f64..1e6,
            features in proptest::collection::vec(
                ("[a-z]{1,6}", proptest::option::of("[a-z0-9]{0,4}"), -1e300f64..1e300, 0u8..5),
                0..6,
            ),
            forms in proptest::collection::vec(0u8..5, 3),
            space in proptest::sample::select(vec!["", " ", "\t", "  \n"]),
        ) {
            let options = ReadOptions {
                default_label: None,
                entity: EntityMode::Key("uid".into()),
                timestamp_field: None,
                feature_columns: Vec::new(),
                feature_bags: Vec::new(),
            };
            let feature = |(name, term, value, form): &(String, Option<String>, f64, u8)| {
                let term = term.as_ref().map(|t| format!(r#","term":"{t}""#)).unwrap_or_default();
                format!(r#"{{"name":"{name}"{term},{space}"value":{}}}"#, spelled(*value, *form))
            };
            let list: Vec<String> = features.iter().map(feature).collect();
            let text = format!(
                r#"{{"uid":"{entity}",{space}"label":{},"weight":{}, "features":[{}],"offset":{}}}{space}"#,
                spelled(label, forms[0]),
                spelled(weight, forms[1]),
                list.join(&format!(",{space}")),
                spelled(-label / 3.0, forms[2]),
            );
            let scanned = scan_record(&text, &options);
            proptest::prop_assert!(scanned.is_some(), "declined: {}", text);
            let by_serde = serde_record(&text, &options, &[]);
            let bits = |r: &RawRecord| {
                let v = [r.label, r.weight, r.offset].map(|x| x.map(f64::to_bits));
                let f: Vec<_> = r.features.iter().flatten().map(|(k, v)| (k.clone(), v.to_bits())).collect();
                (r.entity.clone(), v, f)
            };
            proptest::prop_assert_eq!(scanned.as_ref().map(bits), by_serde.as_ref().map(bits), "{}", text);
        }
    }

    #[test]
    fn extra_id_fields_are_read_and_required() {
        let options = ReadOptions {
            default_label: None,
            entity: EntityMode::Single("all".into()),
            timestamp_field: None,
            feature_columns: Vec::new(),
            feature_bags: Vec::new(),
        };
        let keys = ["user".to_string(), "item".to_string()];
        let r = parse_fast(
            r#"{"user":"a","item":12,"label":1,"features":[]}"#,
            &options,
            &keys,
        )
        .unwrap();
        assert_eq!(r.ids, vec!["a".to_string(), "12".to_string()]);
        assert_eq!(r.entity, "all");
        assert!(parse_fast(r#"{"user":"a","label":1,"features":[]}"#, &options, &keys).is_none());
    }
}
