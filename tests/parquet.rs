#![cfg(feature = "parquet")]
//! Parquet records through the real binary: the same records as JSON lines, as Parquet with
//! an NTV `features` list column and as Parquet with one column per feature give
//! byte-identical models and scores; bad files are refused with the file, record and column
//! named, and leave no output.

mod common;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use common::records::*;
use common::{glmix, glmix_output, sorted_lines, Dir};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::fs;
use std::sync::Arc;

/// Write `columns` as a Parquet file of row groups of 128 rows (so that it has several).
fn write_parquet(dir: &Dir, name: &str, columns: Vec<(&str, ArrayRef)>) -> String {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(128))
        .build();
    write_parquet_with(dir, name, columns, props)
}

fn write_parquet_with(
    dir: &Dir,
    name: &str,
    columns: Vec<(&str, ArrayRef)>,
    props: WriterProperties,
) -> String {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let file = fs::File::create(dir.path(name)).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    dir.arg(name)
}

#[test]
fn json_lines_ntv_parquet_and_wide_parquet_give_the_same_models_and_scores() {
    let dir = Dir::new();
    let jsonl = write_jsonl(&dir, "r.jsonl");
    let mut ntv = base_columns();
    ntv.push(("features", ntv_column()));
    let ntv = write_parquet(&dir, "ntv.parquet", ntv);
    let mut wide = base_columns();
    let r = records();
    let names: Vec<String> = (0..FEATURES).map(|k| format!("x{k}")).collect();
    for (k, name) in names.iter().enumerate() {
        let column = Float64Array::from_iter_values(r.iter().map(|x| x.4[k]));
        wide.push((name.as_str(), Arc::new(column) as ArrayRef));
    }
    let wide = write_parquet(&dir, "wide.parquet", wide);

    let from_json = train(&dir, &jsonl, "json.models.jsonl", &[]);
    let from_ntv = train(&dir, &ntv, "ntv.models.jsonl", &[]);
    let from_wide = train(
        &dir,
        &wide,
        "wide.models.jsonl",
        &["--feature-columns", "x*"],
    );
    assert!(!from_json.is_empty());
    assert!(
        from_ntv == from_json,
        "NTV Parquet models differ from JSON lines'"
    );
    assert!(
        from_wide == from_json,
        "wide Parquet models differ from JSON lines'"
    );
    // Named columns, and --format given explicitly, read the same.
    let listed = names.join(",");
    let named = train(
        &dir,
        &wide,
        "named.models.jsonl",
        &["--format", "parquet", "--feature-columns", &listed],
    );
    assert!(named == from_json);

    let model = dir.arg("json.models.jsonl");
    let s_json = score(&dir, &jsonl, &model, "s1.jsonl", &[]);
    let s_ntv = score(&dir, &ntv, &model, "s2.jsonl", &[]);
    let s_wide = score(
        &dir,
        &wide,
        &model,
        "s3.jsonl",
        &["--feature-columns", "x*"],
    );
    assert!(s_ntv == s_json && s_wide == s_json, "scores differ");

    // Scores written as Parquet hold the JSON lines' entity, row and score.
    score(&dir, &ntv, &model, "s.parquet", &[]);
    let file = fs::File::open(dir.path("s.parquet")).unwrap();
    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let mut from_parquet = Vec::new();
    for b in &batches {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Float64Type, UInt64Type};
        let (e, r, s) = (b.column(0).as_string::<i32>(), b.column(1), b.column(2));
        for i in 0..b.num_rows() {
            from_parquet.push((
                e.value(i).to_string(),
                r.as_primitive::<UInt64Type>().value(i),
                s.as_primitive::<Float64Type>().value(i),
            ));
        }
    }
    let from_json: Vec<(String, u64, f64)> = String::from_utf8(s_json)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["entity"].as_str().unwrap().to_string(),
                v["row"].as_u64().unwrap(),
                v["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_parquet, from_json);
}

/// Feature names and terms are read by their dictionary codes where every page of them is
/// dictionary-encoded, and as strings where not: row groups whose dictionaries list the
/// names in other orders, a file without dictionaries, and null terms among coded ones
/// all read to the JSON lines' models, and a reserved name met by its code is refused.
#[test]
fn coded_and_plain_feature_names_read_to_the_same_models() {
    let dir = Dir::new();
    let from_json = train(
        &dir,
        &write_jsonl(&dir, "r.jsonl"),
        "json.models.jsonl",
        &[],
    );
    // Rows of odd row groups (128 rows each) list their features backwards, so that each
    // row group's dictionary has its own order; odd features have null terms.
    let ntv = |reserved_at: Option<usize>| -> ArrayRef {
        let mut list = ntv_builder(true);
        for (i, (_, _, _, _, x)) in records().into_iter().enumerate() {
            let mut present: Vec<usize> = (0..FEATURES).filter(|&k| x[k] != 0.0).collect();
            if (i / 128) % 2 == 1 {
                present.reverse();
            }
            for k in present {
                push_feature(
                    &mut list,
                    &format!("x{k}"),
                    (k % 2 == 0).then_some(""),
                    x[k],
                );
            }
            if reserved_at == Some(i) {
                push_feature(&mut list, "intercept", Some("intercept"), 1.0);
            }
            list.append(true);
        }
        Arc::new(list.finish())
    };
    let groups = || WriterProperties::builder().set_max_row_group_row_count(Some(128));
    let mut cols = base_columns();
    cols.push(("features", ntv(None)));
    let coded = write_parquet_with(&dir, "coded.parquet", cols, groups().build());
    assert!(train(&dir, &coded, "coded.models.jsonl", &[]) == from_json);
    let mut cols = base_columns();
    cols.push(("features", ntv(None)));
    let props = groups().set_dictionary_enabled(false).build();
    let plain = write_parquet_with(&dir, "plain.parquet", cols, props);
    assert!(train(&dir, &plain, "plain.models.jsonl", &[]) == from_json);

    let mut cols = base_columns();
    cols.push(("features", ntv(Some(300))));
    let p = write_parquet_with(&dir, "reserved.parquet", cols, groups().build());
    refused(
        &dir,
        &p,
        &[],
        &[
            "reserved.parquet:301: features[",
            "].name: (intercept, intercept) is reserved",
        ],
    );
}

#[test]
fn bad_parquet_files_are_refused_naming_file_record_and_column() {
    let dir = Dir::new();
    let mut cols = base_columns();
    cols.push(("features", ntv_column()));
    let good = write_parquet(&dir, "good.parquet", cols);

    // Truncated: the footer is gone.
    let bytes = fs::read(&good).unwrap();
    fs::write(dir.path("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    refused(
        &dir,
        &dir.arg("cut.parquet"),
        &[],
        &["cut.parquet", "not a readable Parquet file"],
    );

    // No label column.
    let mut cols = base_columns();
    cols.remove(1);
    cols.push(("features", ntv_column()));
    let p = write_parquet(&dir, "nolabel.parquet", cols);
    refused(&dir, &p, &[], &["nolabel.parquet: label: no such column"]);

    // A label column of strings.
    let mut cols = base_columns();
    cols[1] = (
        "label",
        Arc::new(StringArray::from_iter_values(
            records().iter().map(|_| "yes"),
        )) as ArrayRef,
    );
    cols.push(("features", ntv_column()));
    let p = write_parquet(&dir, "strlabel.parquet", cols);
    refused(
        &dir,
        &p,
        &[],
        &["strlabel.parquet: label: expected a numeric column, got Utf8"],
    );

    // A null label in record 130 (the second row group).
    let mut cols = base_columns();
    let labels: Vec<Option<f64>> = records()
        .iter()
        .enumerate()
        .map(|(i, r)| (i != 129).then_some(r.1))
        .collect();
    cols[1] = ("label", Arc::new(Float64Array::from(labels)) as ArrayRef);
    cols.push(("features", ntv_column()));
    let p = write_parquet(&dir, "null.parquet", cols);
    refused(&dir, &p, &[], &["null.parquet:130: label: null label"]);

    // --feature-columns with a prefix no column has, and on a JSON lines file.
    refused(
        &dir,
        &good,
        &["--feature-columns", "z*"],
        &["z*: no column has this prefix"],
    );
    let jsonl = write_jsonl(&dir, "r.jsonl");
    refused(
        &dir,
        &jsonl,
        &["--feature-columns", "x1"],
        &["--feature-columns names columns"],
    );
}

/// Parquet files written by pyarrow (snappy and gzip, integer labels) read to the models
/// of the same records as JSON lines.
#[test]
#[ignore = "needs pyarrow: GLMIX_TEST_PYTHON=/path/to/python with tests/python/requirements.txt (.ci/run sets it)"]
fn parquet_files_written_by_pyarrow_give_the_json_lines_models() {
    let python = test_python();
    let dir = Dir::new();
    let jsonl = write_jsonl(&dir, "r.jsonl");
    let (ntv, wide) = (dir.arg("ntv.parquet"), dir.arg("wide.parquet"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/write_records.py");
    let status = std::process::Command::new(python)
        .args([script, &jsonl, &ntv, &wide])
        .status()
        .unwrap();
    assert!(status.success(), "pyarrow could not write the files");
    let from_json = train(&dir, &jsonl, "json.models.jsonl", &[]);
    assert!(train(&dir, &ntv, "ntv.models.jsonl", &[]) == from_json);
    let from_wide = train(
        &dir,
        &wide,
        "wide.models.jsonl",
        &["--feature-columns", "x*"],
    );
    assert!(from_wide == from_json);
}

#[test]
fn game_models_from_parquet_equal_those_from_json_lines() {
    let dir = Dir::new();
    let jsonl = write_game_jsonl(&dir, "g.jsonl");
    let mut cols = base_columns();
    cols[0].0 = "user";
    let items =
        arrow_array::Int64Array::from_iter_values((0..records().len() as i64).map(|i| i % 7));
    cols.push(("item", Arc::new(items) as ArrayRef));
    cols.push(("features", ntv_column()));
    let parquet = write_parquet(&dir, "g.parquet", cols);
    assert_game_models_equal(&dir, &jsonl, &parquet);
}

#[test]
fn a_parquet_file_is_known_by_its_bytes_and_glmix_group_groups_it() {
    let dir = Dir::new();
    let mut cols = base_columns();
    cols.push(("features", ntv_column()));
    write_parquet(&dir, "records", cols);
    let data = dir.arg("records");
    // No extension: read as Parquet by its first bytes.
    let models = train(&dir, &data, "m.jsonl", &[]);
    assert!(!models.is_empty());
    // Its records (40 entities, interleaved) grouped as JSON lines train in chunks to the
    // same models (in the grouped file's entity order).
    let grouped = dir.arg("g.jsonl");
    glmix(&["group", "--data", &data, "--out", &grouped, "--parts", "3"]);
    let chunked = train(&dir, &grouped, "c.jsonl", &["--chunk-entities", "3"]);
    assert_eq!(sorted_lines(chunked), sorted_lines(models));
}

#[test]
fn an_arrow_ipc_file_gives_the_json_lines_models() {
    let dir = Dir::new();
    let jsonl = write_jsonl(&dir, "r.jsonl");
    let mut cols = base_columns();
    cols.push(("features", ntv_column()));
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let file = fs::File::create(dir.path("r.arrow")).unwrap();
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &schema).unwrap();
    // Two batches, so that record numbers carry over from one to the next.
    writer.write(&batch.slice(0, 250)).unwrap();
    writer
        .write(&batch.slice(250, batch.num_rows() - 250))
        .unwrap();
    writer.finish().unwrap();
    let from_json = train(&dir, &jsonl, "json.models.jsonl", &[]);
    assert!(train(&dir, &dir.arg("r.arrow"), "arrow.models.jsonl", &[]) == from_json);
    // Known by its bytes too, whatever its name.
    fs::rename(dir.path("r.arrow"), dir.path("records")).unwrap();
    assert!(train(&dir, &dir.arg("records"), "named.models.jsonl", &[]) == from_json);
}

/// Models written to a `.parquet` path read back bit for bit: as a store's import, as a
/// prior and as the models that score.
#[test]
fn models_written_as_parquet_read_back_bit_for_bit() {
    let dir = Dir::new();
    let jsonl = write_jsonl(&dir, "r.jsonl");
    for hessian in ["diagonal", "full", "identity", "none"] {
        let h = ["--hessian", hessian];
        let as_lines = train(&dir, &jsonl, "m.jsonl", &h);
        train(&dir, &jsonl, "m.parquet", &h);
        assert!(common::starts_with_par1(&dir.path("m.parquet")));
        let store = dir.arg(&format!("{hessian}.redb"));
        let (models, back) = (dir.arg("m.parquet"), dir.arg("back.jsonl"));
        glmix(&["store", "import", "--store", &store, "--models", &models]);
        glmix(&["store", "export", "--store", &store, "--out", &back]);
        assert_eq!(
            sorted_lines(fs::read(&back).unwrap()),
            sorted_lines(as_lines.clone()),
            "{hessian}"
        );
        // As a prior and as the scoring models, the same as the JSON lines.
        let prior = |m: &str, out: &str| {
            train(
                &dir,
                &jsonl,
                out,
                &["--prior", &dir.arg(m), "--hessian", hessian],
            )
        };
        // (A bayes-* prior needs a precision.)
        if hessian != "none" {
            assert!(
                prior("m.parquet", "p1.jsonl") == prior("m.jsonl", "p2.jsonl"),
                "{hessian}"
            );
        }
        let s1 = score(&dir, &jsonl, &models, "s1.jsonl", &[]);
        assert!(s1 == score(&dir, &jsonl, &dir.arg("m.jsonl"), "s2.jsonl", &[]));
    }
    // A records file is not a model table.
    let mut cols = base_columns();
    cols.push(("features", ntv_column()));
    let records = write_parquet(&dir, "records.parquet", cols);
    let o = glmix_output(&[
        "score",
        "--data",
        &jsonl,
        "--model",
        &records,
        "--out",
        &dir.arg("s3.jsonl"),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("records.parquet: means"),
        "{stderr}"
    );
    assert!(!dir.path("s3.jsonl").exists());
}
