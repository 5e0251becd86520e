#![cfg(all(feature = "parquet", feature = "avro"))]
//! The jobs that read a file piece by piece, over columnar files, through the real binary:
//! `glmix stream` — the records of a time-ordered JSON-lines stream as Parquet and as Avro
//! (and as Parquet written by `glmix generate`) give the JSON lines' stores, by record
//! count and by time window; a run resumes after the records it committed; what a columnar stream cannot do is refused before anything
//! is written — and `glmix train --chunk-entities`, whose models are a whole run's.

mod common;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_avro::writer::{format::AvroOcfFormat, WriterBuilder};
use arrow_schema::{Field, Schema};
use common::{glmix, glmix_output, Dir};
use std::fs;
use std::sync::Arc;

/// The records of a JSON-lines file as columns.
fn columns(jsonl: &str) -> RecordBatch {
    let rows: Vec<serde_json::Value> = fs::read_to_string(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut features = common::records::ntv_builder(false);
    for r in &rows {
        for x in r["features"].as_array().unwrap() {
            let text = |k: &str| x[k].as_str().unwrap();
            let v = x["value"].as_f64().unwrap();
            common::records::push_feature(&mut features, text("name"), Some(text("term")), v);
        }
        features.append(true);
    }
    let number = |k: &str| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r[k].as_f64().unwrap()),
        ))
    };
    let entity: ArrayRef = Arc::new(StringArray::from_iter_values(
        rows.iter()
            .map(|r| r["entity"].as_str().unwrap().to_string()),
    ));
    let columns = vec![
        ("entity", entity),
        ("label", number("label")),
        ("weight", number("weight")),
        ("offset", number("offset")),
        ("timestamp", number("timestamp")),
        ("features", Arc::new(features.finish()) as ArrayRef),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), false))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn write_parquet(dir: &Dir, name: &str, batch: &RecordBatch) -> String {
    let file = fs::File::create(dir.path(name)).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    dir.arg(name)
}

fn write_avro(dir: &Dir, name: &str, batch: &RecordBatch) -> String {
    let file = fs::File::create(dir.path(name)).unwrap();
    let mut w = WriterBuilder::new(batch.schema().as_ref().clone())
        .build::<_, AvroOcfFormat>(file)
        .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    dir.arg(name)
}

/// Stream `data` into the store `store` (resuming what it holds).
fn stream_into(data: &str, store: &str, batching: &[&str]) {
    let mut argv = vec![
        "stream",
        "--data",
        data,
        "--store",
        store,
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
    ];
    argv.extend(batching);
    glmix(&argv);
}

/// The models of `store`, exported.
fn export(dir: &Dir, store: &str) -> Vec<u8> {
    let out = dir.arg(&format!("{}.jsonl", store.rsplit('/').next().unwrap()));
    glmix(&["store", "export", "--store", store, "--out", &out]);
    fs::read(&out).unwrap()
}

/// Stream `data` into a fresh store `name` and return its export.
fn stream(dir: &Dir, data: &str, name: &str, batching: &[&str]) -> Vec<u8> {
    let store = dir.arg(name);
    stream_into(data, &store, batching);
    export(dir, &store)
}

#[test]
fn parquet_and_avro_streams_give_the_json_lines_stores_and_resume() {
    let dir = Dir::new();
    // The workload as JSON lines, and as Parquet written by glmix itself.
    let (jsonl, generated) = (dir.arg("s.jsonl"), dir.arg("generated.parquet"));
    for out in [&jsonl, &generated] {
        glmix(&[
            "generate",
            "--entities",
            "120",
            "--rows",
            "20",
            "--time-ordered",
            "--out",
            out,
        ]);
    }
    let batch = columns(&jsonl);
    let parquet = write_parquet(&dir, "s.parquet", &batch);
    let avro = write_avro(&dir, "s.avro", &batch);
    for (k, batching) in [
        &["--batch-records", "500"][..],
        &["--batch-window", "0.1"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let from_json = stream(&dir, &jsonl, &format!("json{k}.redb"), batching);
        assert!(!from_json.is_empty());
        let from_parquet = stream(&dir, &parquet, &format!("parquet{k}.redb"), batching);
        assert!(from_parquet == from_json, "{batching:?}: Parquet differs");
        let from_avro = stream(&dir, &avro, &format!("avro{k}.redb"), batching);
        assert!(from_avro == from_json, "{batching:?}: Avro differs");
        let from_generated = stream(&dir, &generated, &format!("gen{k}.redb"), batching);
        assert!(
            from_generated == from_json,
            "{batching:?}: glmix's own Parquet differs"
        );
    }

    // A store trained on the first 1,000 records resumes after them on the whole file.
    let half = write_parquet(&dir, "half.parquet", &batch.slice(0, 1000));
    let store = dir.arg("resumed.redb");
    let batching = ["--batch-records", "500"];
    for data in [&half, &parquet] {
        stream_into(data, &store, &batching);
    }
    assert!(export(&dir, &store) == stream(&dir, &parquet, "whole.redb", &batching));
    // Other records under the same count are another input.
    let o = glmix_output(&[
        "stream",
        "--data",
        &jsonl,
        "--store",
        &store,
        "--objective",
        "bayes-logistic",
        "--batch-records",
        "500",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("is this the same input"),
        "{stderr}"
    );
}

#[test]
fn what_a_columnar_stream_cannot_do_is_refused_before_anything_is_written() {
    let dir = Dir::new();
    let jsonl = dir.arg("s.jsonl");
    glmix(&[
        "generate",
        "--entities",
        "10",
        "--rows",
        "5",
        "--out",
        &jsonl,
    ]);
    let parquet = write_parquet(&dir, "s.parquet", &columns(&jsonl));
    let store = dir.arg("s.redb");
    for (argv, words) in [
        (
            vec!["--data", parquet.as_str(), "--on-bad-record", "skip"],
            "--on-bad-record skip reads JSON lines only",
        ),
        (
            vec!["--data", "-", "--format", "parquet"],
            "cannot be read from stdin",
        ),
        (
            vec!["--data", jsonl.as_str(), "--feature-bags", "features"],
            "is not read as Parquet, Arrow or Avro",
        ),
    ] {
        let mut all = vec!["stream", "--store", &store, "--objective", "logistic"];
        all.extend(argv);
        let o = glmix_output(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && stderr.contains(words),
            "{all:?}: {stderr}"
        );
        assert!(!dir.path("s.redb").exists(), "{all:?} made a store");
    }
}

#[test]
fn chunked_training_of_parquet_and_avro_gives_a_whole_runs_models() {
    let dir = Dir::new();
    let jsonl = dir.arg("g.jsonl");
    // Grouped by entity, as `glmix generate` writes it.
    glmix(&[
        "generate",
        "--entities",
        "90",
        "--rows",
        "15",
        "--ragged",
        "--out",
        &jsonl,
    ]);
    let batch = columns(&jsonl);
    let parquet = write_parquet(&dir, "g.parquet", &batch);
    let avro = write_avro(&dir, "g.avro", &batch);
    // `train` is bayes-logistic on the CPU.
    let train =
        |data: &str, out: &str, extra: &[&str]| common::records::train(&dir, data, out, extra);
    let whole = train(&jsonl, "whole.jsonl", &[]);
    assert!(!whole.is_empty());
    for (data, name) in [(&parquet, "parquet"), (&avro, "avro")] {
        for n in ["1", "7", "1000"] {
            let chunked = train(data, &format!("{name}-{n}.jsonl"), &["--chunk-entities", n]);
            assert!(chunked == whole, "{name}, chunks of {n}: other models");
        }
    }
    // Not grouped, across batches of 4,096 records: refused where an entity comes back,
    // with no output. (Within a batch, an entity's records all go to its chunk.)
    let jsonl = dir.arg("big.jsonl");
    glmix(&[
        "generate",
        "--entities",
        "400",
        "--rows",
        "15",
        "--out",
        &jsonl,
    ]);
    let mut lines: Vec<String> = fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last = lines.len() - 1;
    lines.swap(3, last);
    let shuffled = dir.write("shuffled.jsonl", &(lines.join("\n") + "\n"));
    let shuffled = write_parquet(&dir, "shuffled.parquet", &columns(&shuffled));
    let out = dir.arg("refused.jsonl");
    let o = glmix_output(&[
        "train",
        "--data",
        &shuffled,
        "--objective",
        "logistic",
        "--chunk-entities",
        "5",
        "--out",
        &out,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("comes back after other entities"),
        "{stderr}"
    );
    assert!(stderr.contains("shuffled.parquet:"), "{stderr}");
    assert!(!dir.path("refused.jsonl").exists());
}
