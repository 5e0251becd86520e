//! Records together with extra id fields: a GAME configuration's random-effect keys, or
//! the request a ranked candidate belongs to (`glmix rank --request-key`).

use super::{parse_line, read_columnar_with_ids, Dataset, Format, Ids, Interner, ReadOptions};
use crate::error::{Error, Result};
use crate::io::LineReader;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Read the records of `path` under `options` and, per key of `id_keys`, each record's id
/// (a string or an integer under that field, or in a columnar file that column). A record
/// without one is an error naming the line and the key, with `missing` as its message. The
/// keys are not noted as unread. An empty file is an error; TSV files have no id fields.
pub fn read_records_with_ids(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    id_keys: &[String],
    missing: &str,
) -> Result<(Dataset, Vec<Ids>)> {
    let (mut data, ids) = match format {
        Format::Jsonl => read_jsonl_with_ids(path, options, id_keys, missing)?,
        Format::Tsv => {
            return Err(Error::Config(format!(
                "{}: TSV records have no id fields ({} asked for)",
                path.display(),
                id_keys.join(", ")
            )))
        }
        Format::Parquet | Format::ArrowIpc | Format::Avro => {
            read_columnar_with_ids(path, format, options, id_keys)?
        }
    };
    if data.num_rows() == 0 {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            message: "no records".into(),
        });
    }
    data.unread_keys
        .retain(|k, _| !id_keys.iter().any(|id| id == k.as_str()));
    data.sort_features();
    Ok((data, ids))
}

fn read_jsonl_with_ids(
    path: &Path,
    options: &ReadOptions,
    id_keys: &[String],
    missing: &str,
) -> Result<(Dataset, Vec<Ids>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = LineReader::new(BufReader::with_capacity(1 << 20, file), path);
    let mut data = Dataset::new();
    let mut columns: Vec<Ids> = id_keys
        .iter()
        .map(|_| (Interner::default(), Vec::new()))
        .collect();
    let mut line = String::new();
    let mut ids = Vec::with_capacity(id_keys.len());
    while reader.read_line(&mut line)? {
        let number = reader.number();
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_line(path, number, &line, options, id_keys)?;
        ids.clear();
        for k in 0..id_keys.len() {
            ids.push(
                record
                    .id(path, number, id_keys, k)
                    .map_err(|e| missing_id(e, missing))?,
            );
        }
        record.push(path, number, options, &mut data)?;
        for ((interner, of_record), id) in columns.iter_mut().zip(&ids) {
            of_record.push(interner.id(id));
        }
    }
    Ok((data, columns))
}

/// An id field's "missing entity field" error, reworded as `missing`.
fn missing_id(e: Error, missing: &str) -> Error {
    match e {
        Error::Input {
            path,
            line,
            field,
            message,
        } if message.starts_with("missing") => Error::input(path, line, field, missing),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::jsonl::test_files::{options, write};

    #[test]
    fn ids_are_read_per_record_and_not_noted_as_unread() {
        let lines = [
            r#"{"entity":"a","req":7,"label":1,"features":[]}"#,
            r#"{"entity":"b","req":"x","label":0,"features":[{"name":"f","term":"","value":2}]}"#,
            r#"{"entity":"a","req":7,"label":0,"weight":2,"features":[]}"#,
        ]
        .map(String::from);
        let (_dir, path) = write(&lines);
        let keys = ["req".to_string()];
        let (data, ids) =
            read_records_with_ids(&path, Format::Jsonl, &options(), &keys, "no request").unwrap();
        assert_eq!(data.num_rows(), 3);
        assert!(data.unread_keys.is_empty());
        let (interner, of_record) = &ids[0];
        let names: Vec<&str> = of_record
            .iter()
            .map(|&i| interner.key(i).as_str())
            .collect();
        assert_eq!(names, ["7", "x", "7"]);
    }

    #[test]
    fn a_record_without_the_id_names_its_line_and_key() {
        let lines = [
            r#"{"entity":"a","req":1,"label":1,"features":[]}"#,
            r#"{"entity":"a","label":1,"features":[]}"#,
        ]
        .map(String::from);
        let (_dir, path) = write(&lines);
        let keys = ["req".to_string()];
        let e = read_records_with_ids(&path, Format::Jsonl, &options(), &keys, "no request")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:") && e.contains("req") && e.contains("no request"),
            "{e}"
        );
    }
}
