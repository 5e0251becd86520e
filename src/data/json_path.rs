//! Where in a JSON line a parse error happened, as a field path like `features[2].value`,
//! so that a malformed record or model is reported by file, line *and* field.

/// One open container while scanning.
enum Frame {
    Object {
        key: Option<String>,
        expecting_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The field path of the value being read at byte `offset` of `text` (`"record"` at top
/// level). serde_json reports 1-based columns; pass `column - 1`.
pub fn path_at(text: &str, offset: usize) -> String {
    let bytes = text.as_bytes();
    let end = offset.min(bytes.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let s = &text[start.min(text.len())..i.min(text.len())];
                if let Some(Frame::Object {
                    key,
                    expecting_key: true,
                }) = stack.last_mut()
                {
                    *key = Some(s.to_string());
                }
            }
            b'{' => stack.push(Frame::Object {
                key: None,
                expecting_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(Frame::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = false;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() {
        "record".to_string()
    } else {
        path
    }
}

/// The field a serde_json error on a one-line document points at, and the error's message
/// without serde's own "at line 1 column N". A "missing field" error is reported at the end
/// of its object, so it names the object, not the object's last key.
pub fn error_field(text: &str, e: &serde_json::Error) -> (String, String) {
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(p) => full[..p].to_string(),
        None => full,
    };
    let path = path_at(text, e.column().saturating_sub(1));
    let field = if message.starts_with("missing field") && !path.ends_with(']') {
        path.rfind(['.', '['])
            .map_or("record", |p| &path[..p])
            .to_string()
    } else {
        path
    };
    let message = if message == "number out of range" {
        "number out of range (not a finite double)".to_string()
    } else {
        message
    };
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        let e = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
        error_field(text, &e).0
    }

    #[test]
    fn names_the_field_of_an_out_of_range_number() {
        let t = r#"{"entity":"a","features":[{"name":"x","value":1},{"name":"y","value":1e999}]}"#;
        assert_eq!(field_of(t), "features[1].value");
        assert_eq!(field_of(r#"{"label":1e999}"#), "label");
    }

    #[test]
    fn truncated_and_garbled_lines() {
        assert_eq!(field_of(r#"{"entity":"a","label":"#), "label");
        assert_eq!(field_of("nonsense"), "record");
        assert_eq!(field_of(r#"{"a":{"b":[1,2,}"#), "a.b[2]");
    }

    #[test]
    fn a_missing_field_names_its_object() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            name: String,
            value: f64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct M {
            means: Vec<C>,
        }
        let t = r#"{"means":[{"name":"a","value":1},{"name":"b"}]}"#;
        let e = serde_json::from_str::<M>(t).unwrap_err();
        let (field, message) = error_field(t, &e);
        assert_eq!(field, "means[1]");
        assert_eq!(message, "missing field `value`");
    }

    #[test]
    fn keys_with_escapes_and_brackets_inside_strings() {
        let t = r#"{"na\"me[":"x{","v":tru}"#;
        assert_eq!(field_of(t), "v");
    }
}
