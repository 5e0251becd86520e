//! A byte scanner for the plain shape of an NTV record, the first of the reading paths.
//!
//! Most files hold records of one plain shape: an object whose keys are the entity field,
//! `label`, `weight`, `offset`, the timestamp field and `features`, each at most once, with
//! numbers for numbers, a string entity id, and features that are `{name, term, value}`
//! objects with string name and term; other keys hold a string, a number, `true`, `false`
//! or `null`, and are skipped. Strings hold no escapes and no control characters.
//! [`scan_record`] reads exactly that shape in one pass over the bytes, with no tokenizer
//! underneath, and answers `None` for anything else — a repeated key, a `null` where a
//! field is read, an object or array under another key, an escape, an integer entity id, a
//! malformed number — so that the caller falls back to the serde
//! visitor of [`super::fast_record`], which accepts more and declines in turn to the checked
//! path. Numbers follow JSON's grammar and are converted by `f64::from_str`, correctly
//! rounded as serde_json's `float_roundtrip` conversion is, so every path gives the same
//! bits (the tests compare them).

use super::raw_record::{note_unread, RawRecord};
use super::{FeatureKey, ReadOptions};

/// Scan `text` as a plain record under `options` (no extra id fields); `None` when it is
/// not one.
pub(super) fn scan_record(text: &str, options: &ReadOptions) -> Option<RawRecord> {
    let entity_key = options.entity_key();
    let timestamp_key = options.timestamp_field.as_deref();
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut r = RawRecord::empty(0);
    // Keys the record has that no field reads: a repeated one declines the record too.
    let mut others: [&str; 8] = [""; 8];
    let mut other_count = 0;
    s.expect(b'{')?;
    if !s.eat(b'}') {
        loop {
            let key = s.string()?;
            s.expect(b':')?;
            if Some(key) == entity_key {
                once(&mut r.entity, s.string()?.into())?;
            } else if Some(key) == timestamp_key {
                once(&mut r.timestamp, s.number()?)?;
            } else {
                match key {
                    "label" => once(&mut r.label, s.number()?)?,
                    "weight" => once(&mut r.weight, s.number()?)?,
                    "offset" => once(&mut r.offset, s.number()?)?,
                    "features" => once(&mut r.features, s.features()?)?,
                    _ => {
                        if other_count == others.len() || others[..other_count].contains(&key) {
                            return None;
                        }
                        others[other_count] = key;
                        other_count += 1;
                        note_unread(&mut r.unread, key);
                        s.skip_scalar()?
                    }
                }
            }
            if !s.eat(b',') {
                break;
            }
        }
        s.expect(b'}')?;
    }
    s.skip_whitespace();
    (s.at == s.bytes.len()).then_some(r)
}

/// Set a field seen for the first time; a repeated one declines the record.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
}

impl<'t> Scanner<'t> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Skip whitespace, then take `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// A string with no escapes and no control characters.
    fn string(&mut self) -> Option<&'t str> {
        self.expect(b'"')?;
        let start = self.at;
        let mut end = start;
        loop {
            match *self.bytes.get(end)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => end += 1,
            }
        }
        self.at = end + 1;
        // Cut at ASCII quotes: character boundaries, so no UTF-8 to validate again.
        self.text.get(start..end)
    }

    /// Skip the value of a key the record does not use: a string, a number, `true`,
    /// `false` or `null` (an object or array declines the record).
    fn skip_scalar(&mut self) -> Option<()> {
        self.skip_whitespace();
        match self.bytes.get(self.at)? {
            b'"' => self.string().map(|_| ()),
            b't' | b'f' | b'n' => {
                let rest = &self.bytes[self.at..];
                let literal = ["true", "false", "null"]
                    .into_iter()
                    .find(|l| rest.starts_with(l.as_bytes()))?;
                self.at += literal.len();
                Some(())
            }
            // Out of f64's range, the checked path refuses the record: so does this.
            _ => self.number().filter(|x| x.is_finite()).map(|_| ()),
        }
    }

    /// A JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<f64> {
        self.skip_whitespace();
        let start = self.at;
        let digits = |s: &mut Self| {
            let from = s.at;
            while s.bytes.get(s.at).is_some_and(u8::is_ascii_digit) {
                s.at += 1;
            }
            s.at - from
        };
        self.at += usize::from(self.bytes.get(self.at) == Some(&b'-'));
        let first = *self.bytes.get(self.at)?;
        let integer = digits(self);
        if integer == 0 || (first == b'0' && integer > 1) {
            return None;
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        self.text.get(start..self.at)?.parse().ok()
    }

    /// `[{"name": …, "term": …, "value": …}, …]`, each key once (`term` may be left out).
    fn features(&mut self) -> Option<Vec<(FeatureKey, f64)>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        if self.eat(b']') {
            return Some(out);
        }
        loop {
            self.expect(b'{')?;
            let (mut name, mut term, mut value) = (None, None, None);
            loop {
                let key = self.string()?;
                self.expect(b':')?;
                match key {
                    "name" => once(&mut name, self.string()?)?,
                    "term" => once(&mut term, self.string()?)?,
                    "value" => once(&mut value, self.number()?)?,
                    _ => return None,
                }
                if !self.eat(b',') {
                    break;
                }
            }
            self.expect(b'}')?;
            out.push((FeatureKey::new(name?, term.unwrap_or("")), value?));
            if !self.eat(b',') {
                break;
            }
        }
        self.expect(b']')?;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::EntityMode;
    use super::*;

    fn options() -> ReadOptions {
        ReadOptions {
            default_label: None,
            entity: EntityMode::Key("uid".into()),
            timestamp_field: Some("ts".into()),
            feature_columns: Vec::new(),
            feature_bags: Vec::new(),
        }
    }

    #[test]
    fn reads_a_plain_record_with_any_key_order_and_whitespace() {
        let line = " { \"extra\": null, \"more\":\"x\", \"n\": -1.5e3, \"flag\":true, \"features\" : [ {\"value\":-2.5e-3,\"name\":\"a\"} , {\"name\":\"b\",\"term\":\"x\",\"value\":0} ],\t\"label\":1,\"uid\":\"u 1\",\"ts\":-3 ,\"offset\":0.25,\"weight\":2}\n";
        let r = scan_record(line, &options()).unwrap();
        assert_eq!(r.entity.as_deref(), Some("u 1"));
        assert_eq!(
            (r.label, r.weight, r.offset, r.timestamp),
            (Some(1.0), Some(2.0), Some(0.25), Some(-3.0))
        );
        assert_eq!(
            r.features.unwrap(),
            vec![
                (FeatureKey::new("a", ""), -2.5e-3),
                (FeatureKey::new("b", "x"), 0.0)
            ]
        );
    }

    #[test]
    fn declines_what_it_does_not_read_plainly() {
        let declined = [
            r#"{"uid":"u\"q","label":1,"features":[]}"#,
            r#"{"uid":7,"label":1,"features":[]}"#,
            r#"{"uid":"u","label":1,"label":2,"features":[]}"#,
            r#"{"uid":"u","label":null,"features":[]}"#,
            r#"{"uid":"u","label":1,"extra":{"x":1},"features":[]}"#,
            r#"{"uid":"u","label":1,"extra":[1],"features":[]}"#,
            r#"{"uid":"u","label":1,"extra":nul,"features":[]}"#,
            r#"{"uid":"u","label":1,"extra":1e999,"features":[]}"#,
            r#"{"uid":"u","label":01,"features":[]}"#,
            r#"{"uid":"u","label":1.,"features":[]}"#,
            r#"{"uid":"u","label":.5,"features":[]}"#,
            r#"{"uid":"u","label":1e,"features":[]}"#,
            r#"{"uid":"u","label":+1,"features":[]}"#,
            r#"{"uid":"u","label":NaN,"features":[]}"#,
            r#"{"uid":"u","label":1,"features":[{"name":"a","value":1,"x":2}]}"#,
            r#"{"uid":"u","label":1,"features":[{"name":"a","name":"b","value":1}]}"#,
            r#"{"uid":"u","label":1,"features":[{"name":"a","value":1},]}"#,
            r#"{"uid":"u","label":1,"features":[]} x"#,
            r#"{"uid":"u","label":1,"features":[],}"#,
            "{\"uid\":\"a\tb\",\"label\":1,\"features\":[]}",
        ];
        for line in declined {
            assert_eq!(scan_record(line, &options()), None, "{line}");
        }
    }
}
