//! A log of what a policy showed and the rewards it saw: `glmix rank`'s output with a
//! `reward` added to each line.
//!
//! One JSON object per line: `request` (the request's id, a string or an integer),
//! `row` (the shown candidate's 0-based record number in the candidate file),
//! `position` (0 is the top), `propensity` (the logging policy's probability of that
//! candidate at that position, in (0, 1]) and `reward` (a finite number). Other fields —
//! rank's `entity` and `score` — are ignored. Blank lines are skipped.

use crate::error::{Error, Result};
use crate::io::LineReader;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// One logged line: a candidate shown at a position, and its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub request: String,
    pub row: usize,
    pub position: usize,
    pub propensity: f64,
    pub reward: f64,
    /// The line it was read from (1-based), for errors about it later.
    pub line: usize,
}

/// A log file's lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub path: PathBuf,
    pub logged: Vec<Logged>,
}

/// Read the log at `path`; a line that is not such an object is an error naming the line
/// and the field.
pub fn read_log(path: &Path) -> Result<Log> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = LineReader::new(BufReader::new(file), path);
    let mut line = String::new();
    let mut log = Vec::new();
    while reader.read_line(&mut line)? {
        let number = reader.number();
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, message: &str| Error::input(path, number, field, message);
        let object: Map<String, Value> =
            serde_json::from_str(&line).map_err(|e| bad("", &format!("not a JSON object: {e}")))?;
        let field = |name: &str| {
            object.get(name).ok_or_else(|| {
                bad(
                    name,
                    "missing (a log line has request, row, position, propensity and reward)",
                )
            })
        };
        let count = |name: &str| {
            field(name)?
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad(name, "must be an integer ≥ 0"))
        };
        let request = match field("request")? {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return Err(bad("request", "must be a string or an integer")),
        };
        let propensity = field("propensity")?
            .as_f64()
            .filter(|p| *p > 0.0 && *p <= 1.0)
            .ok_or_else(|| bad("propensity", "must be a number in (0, 1]"))?;
        let reward = field("reward")?
            .as_f64()
            .filter(|r| r.is_finite())
            .ok_or_else(|| bad("reward", "must be a finite number"))?;
        log.push(Logged {
            request,
            row: count("row")?,
            position: count("position")?,
            propensity,
            reward,
            line: number,
        });
    }
    if log.is_empty() {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            message: "no logged rounds".into(),
        });
    }
    Ok(Log {
        path: path.to_path_buf(),
        logged: log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn rank_output_with_rewards_is_read() {
        let (_dir, path) = written(concat!(
            r#"{"request":"q1","position":0,"row":4,"entity":"e","score":0.5,"propensity":0.25,"reward":1}"#,
            "\n\n",
            r#"{"request":7,"position":2,"row":0,"propensity":1,"reward":0.0}"#,
            "\n"
        ));
        let log = read_log(&path).unwrap();
        assert_eq!(
            log.logged,
            [
                Logged {
                    request: "q1".into(),
                    row: 4,
                    position: 0,
                    propensity: 0.25,
                    reward: 1.0,
                    line: 1
                },
                Logged {
                    request: "7".into(),
                    row: 0,
                    position: 2,
                    propensity: 1.0,
                    reward: 0.0,
                    line: 3
                }
            ]
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_field() {
        let good = r#"{"request":"q","position":0,"row":1,"propensity":0.5,"reward":1}"#;
        for (line, field) in [
            (
                r#"{"request":"q","position":0,"row":1,"reward":1}"#,
                "propensity",
            ),
            (
                r#"{"request":"q","position":0,"row":1,"propensity":0,"reward":1}"#,
                "propensity",
            ),
            (
                r#"{"request":"q","position":-1,"row":1,"propensity":0.5,"reward":1}"#,
                "position",
            ),
            (
                r#"{"request":1.5,"position":0,"row":1,"propensity":0.5,"reward":1}"#,
                "request",
            ),
            (
                r#"{"request":"q","position":0,"row":1,"propensity":0.5}"#,
                "reward",
            ),
            ("[1, 2]", ""),
        ] {
            let (_dir, path) = written(&format!("{good}\n{line}\n"));
            match read_log(&path) {
                Err(Error::Input {
                    line: 2, field: f, ..
                }) => assert_eq!(f, field, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        let (_dir, path) = written("\n");
        assert!(matches!(read_log(&path), Err(Error::EmptyInput { .. })));
    }
}
