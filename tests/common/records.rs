//! The seeded records of the columnar tests (Parquet, Arrow IPC, Avro): as JSON lines,
//! as Arrow columns, and the commands that train and score them.

use super::{glmix, glmix_output, Dir};
use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{ArrayRef, Float64Array, StringArray};
use arrow_schema::{DataType, Field, Fields};
use rand::{Rng, SeedableRng};
use std::fs;
use std::sync::Arc;

pub const FEATURES: usize = 6;

/// Seeded records: (entity, label, weight, offset, dense feature values with zeros).
pub fn records() -> Vec<(String, f64, f64, f64, [f64; FEATURES])> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    (0..600)
        .map(|i| {
            let mut x = [0.0f64; FEATURES];
            for v in &mut x {
                if rng.gen_bool(0.6) {
                    *v = rng.gen_range(-2.0..2.0);
                }
            }
            let label = f64::from(u8::from(rng.gen_bool(0.4 + 0.1 * x[0].signum())));
            (
                format!("u{}", i % 40),
                label,
                rng.gen_range(0.5..2.0),
                rng.gen_range(-0.5..0.5),
                x,
            )
        })
        .collect()
}

pub fn write_jsonl(dir: &Dir, name: &str) -> String {
    let mut text = String::new();
    for (entity, label, weight, offset, x) in records() {
        let features: Vec<String> = (0..FEATURES)
            .filter(|&k| x[k] != 0.0)
            .map(|k| format!(r#"{{"name":"x{k}","term":"","value":{}}}"#, x[k]))
            .collect();
        text += &format!(
            r#"{{"entity":"{entity}","label":{label},"weight":{weight},"offset":{offset},"features":[{}]}}"#,
            features.join(",")
        );
        text += "\n";
    }
    dir.write(name, &text)
}

pub fn base_columns() -> Vec<(&'static str, ArrayRef)> {
    let r = records();
    vec![
        (
            "entity",
            Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.0.clone()))) as ArrayRef,
        ),
        (
            "label",
            Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.1))),
        ),
        (
            "weight",
            Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.2))),
        ),
        (
            "offset",
            Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.3))),
        ),
    ]
}

/// A builder of NTV lists `list<struct<name, term, value>>`, every field nullable or none.
pub fn ntv_builder(nullable: bool) -> ListBuilder<StructBuilder> {
    let fields = Fields::from(vec![
        Field::new("name", DataType::Utf8, nullable),
        Field::new("term", DataType::Utf8, nullable),
        Field::new("value", DataType::Float64, nullable),
    ]);
    let item = StructBuilder::new(
        fields.clone(),
        vec![
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
            Box::new(Float64Builder::new()),
        ],
    );
    ListBuilder::new(item).with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        nullable,
    )))
}

/// Append one feature to the current list of `list` (a `None` term is a null).
pub fn push_feature(list: &mut ListBuilder<StructBuilder>, name: &str, term: Option<&str>, v: f64) {
    let s = list.values();
    s.field_builder::<StringBuilder>(0)
        .unwrap()
        .append_value(name);
    s.field_builder::<StringBuilder>(1)
        .unwrap()
        .append_option(term);
    s.field_builder::<Float64Builder>(2)
        .unwrap()
        .append_value(v);
    s.append(true);
}

pub fn ntv_column() -> ArrayRef {
    let mut list = ntv_builder(true);
    for (_, _, _, _, x) in records() {
        for (k, &v) in x.iter().enumerate().filter(|(_, v)| **v != 0.0) {
            // A null term is "", as in JSON lines.
            let term = (k % 2 == 1).then_some("");
            push_feature(&mut list, &format!("x{k}"), term, v);
        }
        list.append(true);
    }
    Arc::new(list.finish())
}

pub fn train(dir: &Dir, data: &str, out: &str, extra: &[&str]) -> Vec<u8> {
    let out = dir.arg(out);
    let mut argv = vec![
        "train",
        "--data",
        data,
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
        "--out",
        &out,
    ];
    argv.extend(extra);
    glmix(&argv);
    fs::read(&out).unwrap()
}

pub fn score(dir: &Dir, data: &str, model: &str, out: &str, extra: &[&str]) -> Vec<u8> {
    let out = dir.arg(out);
    let mut argv = vec!["score", "--data", data, "--model", model, "--out", &out];
    argv.extend(extra);
    glmix(&argv);
    fs::read(&out).unwrap()
}

/// The records with a second id, `item` (an integer), as GAME reads them.
pub fn write_game_jsonl(dir: &Dir, name: &str) -> String {
    let mut text = String::new();
    for (i, (entity, label, weight, offset, x)) in records().into_iter().enumerate() {
        let features: Vec<String> = (0..FEATURES)
            .filter(|&k| x[k] != 0.0)
            .map(|k| format!(r#"{{"name":"x{k}","term":"","value":{}}}"#, x[k]))
            .collect();
        text += &format!(
            r#"{{"user":"{entity}","item":{},"label":{label},"weight":{weight},"offset":{offset},"features":[{}]}}"#,
            i % 7,
            features.join(",")
        );
        text += "\n";
    }
    dir.write(name, &text)
}

/// Train on `data`, which must fail with every one of `words` in its message and leave
/// no output.
pub fn refused(dir: &Dir, data: &str, extra: &[&str], words: &[&str]) {
    let out = dir.arg("refused.jsonl");
    let mut argv = vec![
        "train",
        "--data",
        data,
        "--objective",
        "logistic",
        "--out",
        &out,
    ];
    argv.extend(extra);
    let o = glmix_output(&argv);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{argv:?} succeeded");
    for w in words {
        assert!(stderr.contains(w), "{argv:?}: no {w:?} in {stderr}");
    }
    assert!(!dir.path("refused.jsonl").exists(), "{argv:?} left output");
}

/// A GAME configuration over the records of [`write_game_jsonl`]: a fixed effect, and
/// random effects per `user` and per `item`.
pub fn write_game_config(dir: &Dir) -> String {
    dir.write(
        "config.json",
        &serde_json::json!({
            "passes": 2,
            "feature_sets": {"fixed": ["x0", "x1", "x2"], "user": ["x3", "x4"], "item": ["x5"]},
            "coordinates": [
                {"name": "global", "type": "fixed", "feature_set": "fixed",
                 "objective": "logistic", "penalty": 1.0},
                {"name": "per-user", "type": "random", "entity_key": "user",
                 "feature_set": "user", "objective": "logistic", "penalty": 1.0},
                {"name": "per-item", "type": "random", "entity_key": "item",
                 "feature_set": "item", "objective": "logistic", "penalty": 1.0},
            ]
        })
        .to_string(),
    )
}

/// The Python of `GLMIX_TEST_PYTHON`, with the packages of `tests/python/requirements.txt`.
pub fn test_python() -> String {
    std::env::var("GLMIX_TEST_PYTHON")
        .expect("GLMIX_TEST_PYTHON names a python with tests/python/requirements.txt")
}

/// Train GAME models of [`write_game_config`] from the JSON lines `jsonl` and from `other`
/// (the same records in another format) and require the same coordinate files.
pub fn assert_game_models_equal(dir: &Dir, jsonl: &str, other: &str) {
    let config = write_game_config(dir);
    for (data, out) in [(jsonl, "from-json"), (other, "from-other")] {
        glmix(&[
            "game",
            "train",
            "--device",
            "cpu",
            "--config",
            &config,
            "--data",
            data,
            "--out",
            &dir.arg(out),
        ]);
    }
    for f in ["global.jsonl", "per-user.jsonl", "per-item.jsonl"] {
        let (a, b) = (
            fs::read(dir.path("from-json").join(f)).unwrap(),
            fs::read(dir.path("from-other").join(f)).unwrap(),
        );
        assert!(!a.is_empty() && a == b, "{f} differs");
    }
}
