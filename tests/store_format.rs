//! A store written by an earlier version stays readable: `tests/fixtures/store-format2.redb.gz`
//! was written by glmix with store codec format 2 on redb 4.6 (made by
//! `tests/fixtures/make-store-fixture.sh`: a three-mini-batch stream of full-precision
//! models, then a diagonal and a precision-less model imported). Every later version must
//! read it to the same models, position and batches.

mod common;

use common::{glmix, Dir};
use std::fs;
use std::io::Read;

fn fixture(dir: &Dir) -> String {
    let gz = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/store-format2.redb.gz"
    ))
    .unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap();
    fs::write(dir.path("old.redb"), bytes).unwrap();
    dir.arg("old.redb")
}

#[test]
fn a_format_2_store_reads_to_the_models_position_and_batches_it_was_written_with() {
    let dir = Dir::new();
    let store = fixture(&dir);
    let before = fs::read(dir.path("old.redb")).unwrap();

    let out = dir.arg("models.jsonl");
    glmix(&["store", "export", "--store", &store, "--out", &out]);
    let expected = include_str!("fixtures/store-format2.models.jsonl");
    assert_eq!(fs::read_to_string(&out).unwrap(), expected);

    let info: serde_json::Value =
        serde_json::from_slice(&glmix(&["store", "info", "--store", &store]).stdout).unwrap();
    assert_eq!(info["models"], 8);
    assert_eq!(info["batches"], 3);
    assert_eq!(info["closed_cleanly"], true);
    assert_eq!(info["position"]["lines"], 71);
    assert_eq!(info["position"]["records"], 71);
    assert_eq!(info["last_batch"]["batch"], 3);
    assert_eq!(info["last_batch"]["records"], 11);

    let check: serde_json::Value =
        serde_json::from_slice(&glmix(&["store", "check", "--store", &store]).stdout).unwrap();
    assert_eq!(check["sound_models"], 8);
    assert_eq!(check["damaged_models"], serde_json::json!([]));

    // Scoring straight from the old store gives the exported models' scores.
    let data = dir.write(
        "r.jsonl",
        r#"{"entity":"diag","label":1,"features":[{"name":"f1","term":"","value":2.0}]}
{"entity":"plain","label":0,"features":[{"name":"f2","term":"t","value":1.0}]}"#,
    );
    let scores = dir.arg("scores.jsonl");
    glmix(&[
        "score", "--data", &data, "--model", &store, "--out", &scores,
    ]);
    let text = fs::read_to_string(&scores).unwrap();
    let margins: Vec<f64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["score"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // 0.25 − 1.5·2 and −0.75 + 3·1.
    assert_eq!(margins, [-2.75, 2.25], "{text}");

    assert_eq!(
        fs::read(dir.path("old.redb")).unwrap(),
        before,
        "a read wrote"
    );
}
