//! `glmix stream` as a real process on real files: crash and resume under SIGKILL, bad
//! records, time windows, the retrain baseline, stdin, and the store's JSON-lines round
//! trip.

mod common;

use common::{assert_means_close, glmix, glmix_output, gpu_ran, read_models, sorted_lines, Dir};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A seeded, time-ordered logistic stream written by `glmix generate`.
fn stream_file(dir: &Dir, name: &str, entities: usize, rows: usize) -> String {
    let out = dir.arg(name);
    glmix(&[
        "generate",
        "--entities",
        &entities.to_string(),
        "--rows",
        &rows.to_string(),
        "--features",
        "6",
        "--density",
        "0.4",
        "--ragged",
        "--time-ordered",
        "--seed",
        "11",
        "--out",
        &out,
    ]);
    out
}

/// `glmix stream` arguments: bayes-logistic on the CPU, `batch` records per mini-batch,
/// each committed on its own (`extra` may group commits: the later option wins).
fn stream_args(data: &str, store: &str, batch: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "stream",
        "--data",
        data,
        "--store",
        store,
        "--objective",
        "bayes-logistic",
        "--penalty",
        "5",
        "--delta",
        "0.8",
        "--device",
        "cpu",
        "--batch-records",
        &batch.to_string(),
        "--commit-ms",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(args: &[String]) -> std::process::Output {
    glmix(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `glmix` with `args`, whether it succeeds or not.
fn run_output(args: &[String]) -> std::process::Output {
    glmix_output(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn export(dir: &Dir, store: &str, name: &str) -> Vec<u8> {
    let out = dir.arg(name);
    glmix(&["store", "export", "--store", store, "--out", &out]);
    fs::read(&out).unwrap()
}

fn store_info(store: &str) -> serde_json::Value {
    let out = glmix(&["store", "info", "--store", store]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The metrics CSV as rows of column → value.
fn metrics_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn data_lines(path: &str) -> usize {
    fs::read_to_string(path).unwrap().lines().count()
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_killed_stream_resumes_to_exactly_the_models_of_an_uninterrupted_run() {
    let dir = Dir::new();
    let data = stream_file(&dir, "s.jsonl", 4000, 30);
    let batch = 2000;
    let batches = data_lines(&data).div_ceil(batch);

    let whole = dir.arg("whole.redb");
    let whole_csv = dir.path("whole.csv");
    run(&stream_args(
        &data,
        &whole,
        batch,
        &["--metrics", whole_csv.to_str().unwrap()],
    ));
    let expected = export(&dir, &whole, "whole.jsonl");

    // Kill the second run twice, at different points, with SIGKILL; then let it finish.
    let store = dir.arg("killed.redb");
    let csv = dir.path("killed.csv");
    let args = stream_args(&data, &store, batch, &["--metrics", csv.to_str().unwrap()]);
    for kill_after in [3, batches / 2] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_glmix"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let clock = Instant::now();
        loop {
            let rows = fs::read_to_string(&csv).map_or(0, |t| t.lines().count().saturating_sub(1));
            if rows >= kill_after || clock.elapsed() > Duration::from_secs(120) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Reading the killed writer's store repairs it in memory only: the file, made
        // read-only, is left byte for byte as it was.
        let file = dir.path("killed.redb");
        let before = fs::read(&file).unwrap();
        set_mode(&file, 0o444);
        let info = store_info(&store);
        assert_eq!(info["closed_cleanly"], false, "{info}");
        let committed = info["batches"].as_u64().unwrap() as usize;
        export(&dir, &store, "read-while-killed.jsonl");
        assert!(
            fs::read(&file).unwrap() == before,
            "a read wrote to the store"
        );
        set_mode(&file, 0o644);
        assert!(
            committed >= kill_after - 1 && committed < batches,
            "killed after {committed} of {batches} batches: the kill must land mid-run"
        );
    }
    let out = run(&args);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        !summary.contains("\"resumed_after_batches\":0,"),
        "{summary}"
    );

    assert_eq!(export(&dir, &store, "killed.jsonl"), expected);
    // Every batch is in the metrics file exactly once, with the same measurements.
    let (got, want) = (metrics_rows(&csv), metrics_rows(&whole_csv));
    assert_eq!(got.len(), batches);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g["batch"], (k + 1).to_string());
        for column in [
            "records",
            "entities",
            "auc",
            "logloss",
            "running_auc",
            "entity_auc",
        ] {
            assert_eq!(g[column], w[column], "batch {} column {column}", k + 1);
        }
    }
}

#[test]
fn bad_records_stop_the_run_with_their_line_or_are_skipped_and_counted() {
    let dir = Dir::new();
    let clean = stream_file(&dir, "clean.jsonl", 300, 20);
    let text = fs::read_to_string(&clean).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2500, r#"{"entity":"u1","label":"yes","features":[]}"#);
    lines.insert(
        2700,
        r#"{"entity":"u1","label":1,"features":[{"name":"g","value":1e999}]}"#,
    );
    let dirty = dir.path("dirty.jsonl");
    fs::write(&dirty, lines.join("\n") + "\n").unwrap();
    let dirty = dirty.to_str().unwrap().to_string();

    let store = dir.arg("fail.redb");
    let out = glmix_output(
        &stream_args(&dirty, &store, 1000, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("dirty.jsonl:2501: label: expected a number"),
        "{err}"
    );
    assert!(err.contains("committed"), "{err}");
    // Batches 1 and 2 (records 1–2000) were committed; the one in progress was not.
    assert_eq!(store_info(&store)["batches"], 2);

    let skipped = dir.arg("skip.redb");
    let csv = dir.path("skip.csv");
    let out = run(&stream_args(
        &dirty,
        &skipped,
        1000,
        &[
            "--on-bad-record",
            "skip",
            "--metrics",
            csv.to_str().unwrap(),
        ],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped: ") && err.contains(":2701: features[0].value"),
        "{err}"
    );
    let rows = metrics_rows(&csv);
    let total: usize = rows
        .iter()
        .map(|r| r["skipped"].parse::<usize>().unwrap())
        .sum();
    assert_eq!(total, 2);
    // Skipping leaves exactly the models of the clean stream.
    let reference = dir.arg("clean.redb");
    run(&stream_args(&clean, &reference, 1000, &[]));
    assert_eq!(
        export(&dir, &skipped, "skip.jsonl"),
        export(&dir, &reference, "clean.jsonl")
    );

    // A resumed run must use the settings the store was built with.
    let mut other = stream_args(&clean, &reference, 1000, &[]);
    other[8] = "1".into(); // --penalty
    let out = run_output(&other);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("other settings"), "{stderr}");
    assert!(
        stderr.contains("penalty: stored 5.0, asked 1.0"),
        "{stderr}"
    );
}

/// Per-record mini-batches read a file ahead, many records at a time: a bad record still
/// stops the run after every record before it has trained and been committed, and
/// skipped records leave the models of the clean stream.
#[test]
fn a_bad_record_stops_a_per_record_stream_after_the_records_before_it() {
    let dir = Dir::new();
    let clean = stream_file(&dir, "clean.jsonl", 200, 20);
    let text = fs::read_to_string(&clean).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut dirty_lines = lines.clone();
    dirty_lines.insert(2500, r#"{"entity":"u1","label":"yes","features":[]}"#);
    let dirty = dir.path("dirty.jsonl");
    fs::write(&dirty, dirty_lines.join("\n") + "\n").unwrap();
    let dirty = dirty.to_str().unwrap().to_string();
    // Per-record mini-batches committed 700 at a time.
    let args = |data: &str, store: &str, extra: &[&str]| {
        let mut v = stream_args(data, store, 1, extra);
        let k = v.iter().position(|a| a == "--commit-ms").unwrap();
        v[k + 1] = "3600000".into();
        v.extend(["--commit-records".to_string(), "700".to_string()]);
        v
    };

    let failed = dir.arg("fail.redb");
    let out = run_output(&args(&dirty, &failed, &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("dirty.jsonl:2501: label: expected a number"),
        "{err}"
    );
    // The 2,500 records before it are in the store, as a clean stream of them leaves it.
    let prefix = dir.path("prefix.jsonl");
    fs::write(&prefix, lines[..2500].join("\n") + "\n").unwrap();
    let reference = dir.arg("prefix.redb");
    run(&args(prefix.to_str().unwrap(), &reference, &[]));
    assert_eq!(
        export(&dir, &failed, "failed.jsonl"),
        export(&dir, &reference, "prefix.jsonl")
    );

    let skipped = dir.arg("skip.redb");
    run(&args(&dirty, &skipped, &["--on-bad-record", "skip"]));
    let whole = dir.arg("clean.redb");
    run(&args(&clean, &whole, &[]));
    assert_eq!(
        export(&dir, &skipped, "skip.jsonl"),
        export(&dir, &whole, "clean.jsonl")
    );
}

#[test]
fn time_windows_cut_batches_and_count_late_records() {
    let dir = Dir::new();
    let rec = |e: &str, t: f64, y: u8| {
        format!(
            r#"{{"entity":"{e}","label":{y},"timestamp":{t},"features":[{{"name":"g","term":"a","value":1}}]}}"#
        )
    };
    let records = [
        rec("a", 0.0, 1),
        rec("b", 5.0, 0),
        rec("a", 12.0, 0),
        rec("b", 3.0, 1), // late: window 0 is over
        rec("a", 25.0, 1),
        rec("b", 26.0, 0),
        rec("a", 29.5, 1),
        // Windows of one record each, in the middle and at the end.
        rec("c", 33.0, 1),
        rec("a", 45.0, 0),
        rec("b", 51.0, 1),
    ];
    let data = dir.path("w.jsonl");
    fs::write(&data, records.join("\n") + "\n").unwrap();
    let metrics = dir.path("w.jsonl.metrics");
    let store = dir.arg("w.redb");
    glmix(&[
        "stream",
        "--data",
        data.to_str().unwrap(),
        "--store",
        &store,
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
        "--batch-window",
        "10",
        "--commit-ms",
        "0",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    let rows: Vec<serde_json::Value> = fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let col = |k: &str| rows.iter().map(|r| r[k].clone()).collect::<Vec<_>>();
    assert_eq!(col("records"), [2, 2, 3, 1, 1, 1]);
    assert_eq!(col("late"), [0, 1, 0, 0, 0, 0]);
    assert_eq!(col("window_start"), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
    assert_eq!(col("first_line"), [1, 3, 5, 8, 9, 10]);
    assert_eq!(col("last_line"), [2, 4, 7, 8, 9, 10]);
    assert_eq!(store_info(&store)["models"], 3);

    // Without a timestamp the record cannot be placed in a window.
    fs::write(
        &data,
        rec("a", 1.0, 1) + "\n" + r#"{"entity":"a","label":1,"features":[]}"#,
    )
    .unwrap();
    let out = glmix_output(&[
        "stream",
        "--data",
        data.to_str().unwrap(),
        "--store",
        &dir.arg("w2.redb"),
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
        "--batch-window",
        "10",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("w.jsonl:2: timestamp: missing field"));
}

#[test]
fn the_retrain_baseline_ends_with_a_cold_fit_on_every_record() {
    let dir = Dir::new();
    let data = stream_file(&dir, "r.jsonl", 200, 15);
    let store = dir.arg("r.redb");
    let mut args = stream_args(&data, &store, 700, &["--update", "retrain"]);
    args[6] = "logistic".into(); // --objective
    run(&args);
    export(&dir, &store, "streamed.jsonl");
    let trained = dir.arg("trained.jsonl");
    glmix(&[
        "train",
        "--data",
        &data,
        "--objective",
        "logistic",
        "--penalty",
        "5",
        "--device",
        "cpu",
        "--out",
        &trained,
    ]);
    let by_entity = |path: &Path| -> HashMap<String, HashMap<(String, String), f64>> {
        read_models(path)
            .into_iter()
            .map(|m| {
                let means = m
                    .means
                    .into_iter()
                    .map(|c| ((c.name, c.term), c.value))
                    .collect();
                (m.entity, means)
            })
            .collect()
    };
    let (s, t) = (
        by_entity(&dir.path("streamed.jsonl")),
        by_entity(Path::new(&trained)),
    );
    assert_eq!(s.len(), 200);
    assert_eq!(
        s.keys().collect::<std::collections::BTreeSet<_>>(),
        t.keys().collect()
    );
    for (entity, means) in &s {
        assert_eq!(means.len(), t[entity].len());
        for (key, v) in means {
            let w = t[entity][key];
            assert!(
                (v - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{entity} {key:?}: {v} vs {w}"
            );
        }
    }
}

#[test]
fn stdin_streams_like_a_file_and_the_store_round_trips_through_json_lines() {
    let dir = Dir::new();
    let data = stream_file(&dir, "s.jsonl", 300, 10);
    let from_file = dir.arg("file.redb");
    run(&stream_args(&data, &from_file, 500, &[]));

    let from_stdin = dir.arg("stdin.redb");
    let out = Command::new(env!("CARGO_BIN_EXE_glmix"))
        .args(stream_args("-", &from_stdin, 500, &[]))
        .stdin(fs::File::open(&data).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = export(&dir, &from_file, "a.jsonl");
    assert_eq!(export(&dir, &from_stdin, "b.jsonl"), exported);

    // JSON lines → a new store → JSON lines is exact.
    let imported = dir.arg("imported.redb");
    glmix(&[
        "store",
        "import",
        "--store",
        &imported,
        "--models",
        &dir.arg("a.jsonl"),
    ]);
    assert_eq!(export(&dir, &imported, "c.jsonl"), exported);

    // score and eval read a store as they read its export.
    let score = |model: &str, out: &str| {
        glmix(&[
            "score",
            "--data",
            &data,
            "--model",
            model,
            "--out",
            &dir.arg(out),
        ]);
        fs::read(dir.path(out)).unwrap()
    };
    assert_eq!(
        score(&from_file, "s1.jsonl"),
        score(&dir.arg("a.jsonl"), "s2.jsonl")
    );
    let eval = |model: &str| glmix(&["eval", "--data", &data, "--model", model]).stdout;
    assert_eq!(eval(&from_file), eval(&dir.arg("a.jsonl")));
}

/// With a GPU (Mesa's software driver in CI, where `GLMIX_REQUIRE_GPU=1`), a stream trained
/// with `--device gpu` ends with the CPU's models within f32-level differences, the L-BFGS
/// step on the host or on the device.
#[test]
fn a_gpu_stream_ends_with_the_cpu_models() {
    let dir = Dir::new();
    let data = stream_file(&dir, "g.jsonl", 150, 12);
    let cpu = dir.arg("cpu.redb");
    run(&stream_args(&data, &cpu, 600, &[]));
    export(&dir, &cpu, "cpu.jsonl");
    for solver_on in ["host", "device"] {
        let gpu = dir.arg(&format!("gpu-{solver_on}.redb"));
        let extra = ["--polish", "20", "--solver-on", solver_on];
        let mut args = stream_args(&data, &gpu, 600, &extra);
        args[12] = "gpu".into(); // --device
        let out = run_output(&args);
        if !gpu_ran(&out, "GPU stream test") {
            return;
        }
        assert!(String::from_utf8_lossy(&out.stderr).contains("\"device\":\"gpu: "));
        let models = format!("gpu-{solver_on}.jsonl");
        export(&dir, &gpu, &models);
        assert_means_close(
            &read_models(&dir.path(&models)),
            &read_models(&dir.path("cpu.jsonl")),
            1e-4,
        );
    }
}

#[test]
fn a_stream_with_a_multi_coefficient_offset_model_resumes() {
    let dir = Dir::new();
    let data = stream_file(&dir, "s.jsonl", 30, 10);
    let store = dir.arg("m.redb");
    let model = dir.write("fixed.txt", "0.1\n0.2\n-0.3\n0.4\n0.5\n");
    let argv = stream_args(&data, &store, 100, &["--offset-model", &model]);
    run(&argv);
    // Every resume (each a new process, each with its own hash seeds) takes the same
    // settings; several, so that an order that differed per process would show.
    for _ in 0..4 {
        run(&argv);
    }
}

/// Per-record mini-batches with commits grouped by count: a run killed twice with SIGKILL
/// (from a file, and from stdin) resumes after its last commit and ends with exactly the
/// models of an uninterrupted run that commits every mini-batch; a row of metrics per
/// commit, each once.
#[test]
fn a_killed_per_record_stream_with_grouped_commits_resumes_to_the_same_models() {
    let dir = Dir::new();
    let data = stream_file(&dir, "s.jsonl", 300, 12);
    let records = data_lines(&data);
    let args = |input: &str, store: &str, commit: usize, csv: &Path| -> Vec<String> {
        [
            "stream",
            "--data",
            input,
            "--store",
            store,
            "--objective",
            "bayes-logistic",
            "--penalty",
            "5",
            "--device",
            "cpu",
            "--batch-records",
            "1",
            "--commit-records",
            &commit.to_string(),
            // Commits by count only, so that the rows are the same in every run.
            "--commit-ms",
            "3600000",
            // Models that carry their time, through the in-memory overlay and the store.
            "--half-life",
            "0.25",
            "--metrics",
            csv.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = dir.arg("whole.redb");
    run(&args(&data, &whole, 1, &dir.path("whole.csv")));
    let expected = export(&dir, &whole, "whole.jsonl");

    for (commit, stdin) in [(7, false), (400, false), (40, true)] {
        let store = dir.arg(&format!("killed-{commit}.redb"));
        let csv = dir.path(&format!("killed-{commit}.csv"));
        let input = if stdin { "-".to_string() } else { data.clone() };
        let argv = args(&input, &store, commit, &csv);
        let commits = records.div_ceil(commit);
        // The stream, its input the file itself or the file on stdin.
        let spawn = |stderr: Stdio| {
            Command::new(env!("CARGO_BIN_EXE_glmix"))
                .args(&argv)
                .stdin(if stdin {
                    Stdio::from(fs::File::open(&data).unwrap())
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap()
        };
        for kill_after in [2, commits / 2] {
            let mut child = spawn(Stdio::null());
            let clock = Instant::now();
            loop {
                let rows =
                    fs::read_to_string(&csv).map_or(0, |t| t.lines().count().saturating_sub(1));
                if rows >= kill_after || clock.elapsed() > Duration::from_secs(120) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let committed = store_info(&store)["batches"].as_u64().unwrap() as usize;
            assert!(
                committed >= kill_after - 1 && committed < commits,
                "commits of {commit}: killed after {committed} of {commits}: the kill must land mid-run"
            );
        }
        let out = spawn(Stdio::piped()).wait_with_output().unwrap();
        let summary = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{summary}");
        assert!(
            !summary.contains("\"resumed_after_batches\":0,"),
            "{summary}"
        );
        assert!(
            export(&dir, &store, &format!("killed-{commit}.jsonl")) == expected,
            "commits of {commit} (stdin: {stdin}): the models differ from an uninterrupted run's"
        );
        let rows = metrics_rows(&csv);
        assert_eq!(rows.len(), commits, "commits of {commit}");
        let covered: usize = rows
            .iter()
            .map(|r| r["mini_batches"].parse::<usize>().unwrap())
            .sum();
        assert_eq!(covered, records);
        assert!(rows
            .iter()
            .all(|r| r["records"].parse::<usize>().unwrap() <= commit));
    }
}

/// Under `--half-life` every model keeps the newest timestamp of its records, through the
/// store, its JSON-lines and Parquet exports and a re-import; records without a time are
/// refused by name, and a resumed run must keep the half-life it began with.
#[test]
fn a_half_life_stream_keeps_each_models_newest_time() {
    let dir = Dir::new();
    let data = stream_file(&dir, "h.jsonl", 40, 6);
    let store = dir.arg("h.redb");
    run(&stream_args(&data, &store, 7, &["--half-life", "0.5"]));
    let mut newest: HashMap<String, f64> = HashMap::new();
    for line in fs::read_to_string(&data).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = r["timestamp"].as_f64().unwrap();
        let e = newest
            .entry(r["entity"].as_str().unwrap().into())
            .or_insert(t);
        *e = e.max(t);
    }
    let exported = export(&dir, &store, "h.models.jsonl");
    let lines: Vec<serde_json::Value> = String::from_utf8(exported.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), newest.len());
    for m in &lines {
        let entity = m["entity"].as_str().unwrap();
        assert_eq!(m["last_seen"].as_f64(), Some(newest[entity]), "{entity}");
    }
    // Without a half-life no time is kept.
    let plain = dir.arg("plain.redb");
    run(&stream_args(&data, &plain, 7, &[]));
    assert!(!String::from_utf8(export(&dir, &plain, "plain.jsonl"))
        .unwrap()
        .contains("last_seen"));
    // The times survive Parquet and a new store.
    let parquet = dir.arg("h.parquet");
    glmix(&["store", "export", "--store", &store, "--out", &parquet]);
    let again = dir.arg("again.redb");
    glmix(&["store", "import", "--store", &again, "--models", &parquet]);
    assert_eq!(
        sorted_lines(export(&dir, &again, "again.jsonl")),
        sorted_lines(exported)
    );

    // Resuming with another half-life, or none, is refused.
    for (extra, says) in [
        (
            &["--half-life", "2"][..],
            "half_life: stored 0.5, asked 2.0",
        ),
        (&[][..], "half_life: stored 0.5, asked null"),
    ] {
        let args = stream_args(&data, &store, 7, extra);
        let out = run_output(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
    }
    // A record without a time stops the run at its line.
    let untimed = dir.path("untimed.jsonl");
    let text = fs::read_to_string(&data).unwrap();
    let mut lines: Vec<String> = text.lines().map(Into::into).collect();
    lines[3] = lines[3].replace("\"timestamp\"", "\"ts\"");
    fs::write(&untimed, lines.join("\n") + "\n").unwrap();
    let args = stream_args(
        untimed.to_str().unwrap(),
        &dir.arg("untimed.redb"),
        7,
        &["--half-life", "0.5"],
    );
    let out = run_output(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("untimed.jsonl:4") && stderr.contains("timestamp"),
        "{stderr}"
    );
}

/// Under a half-life the prior's weight depends on time alone. For the squared loss with a
/// full precision, where each update is exact, a stream cut per record and the same stream
/// cut in windows whose records share one time end with the same models (the `stream`
/// module doc derives it); with a fixed δ, which forgets per update, they do not.
#[test]
fn under_a_half_life_how_the_stream_is_cut_does_not_change_exact_updates() {
    let dir = Dir::new();
    // Dense rows: an update then trains every coefficient of the entity (a feature only
    // its prior has is kept, not trained, which the exact sequence would not do).
    let data = dir.arg("c.jsonl");
    glmix(&[
        "generate",
        "--entities",
        "30",
        "--rows",
        "8",
        "--features",
        "4",
        "--ragged",
        "--time-ordered",
        "--seed",
        "5",
        "--out",
        &data,
    ]);
    // Ten whole times, so that a window of one unit holds records of one time.
    let floored: String = fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(|l| {
            let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = r["timestamp"].as_f64().unwrap();
            r["timestamp"] = serde_json::json!((10.0 * t).floor());
            r.to_string() + "\n"
        })
        .collect();
    let data = dir.write("floored.jsonl", &floored);
    let models = |name: &str, cut: &[&str], forget: &[&str]| {
        let store = dir.arg(&format!("{name}.redb"));
        let mut args = vec![
            "stream",
            "--data",
            &data,
            "--store",
            &store,
            "--objective",
            "bayes-linear",
            "--hessian",
            "full",
            "--penalty",
            "2",
            "--device",
            "cpu",
            "--factr",
            "0",
            "--pgtol",
            "1e-11",
            "--commit-ms",
            "0",
        ];
        args.extend(cut);
        args.extend(forget);
        glmix(&args);
        export(&dir, &store, &format!("{name}.jsonl"));
        read_models(&dir.path(&format!("{name}.jsonl")))
    };
    let per_record = ["--batch-records", "1"];
    let windows = ["--batch-window", "1"];
    let half_life = ["--half-life", "3"];
    let (a, b) = (
        models("records-h", &per_record, &half_life),
        models("windows-h", &windows, &half_life),
    );
    assert_means_close(&a, &b, 1e-8);
    for (x, y) in a.iter().zip(&b) {
        for (v, w) in x.variances.iter().zip(&y.variances) {
            assert!((v.value - w.value).abs() <= 1e-8 * w.value, "{}", x.entity);
        }
    }
    // A fixed δ forgets per update: the same cuts differ.
    let delta = ["--delta", "0.8"];
    let (a, b) = (
        models("records-d", &per_record, &delta),
        models("windows-d", &windows, &delta),
    );
    let worst = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| x.means.iter().zip(&y.means))
        .map(|(v, w)| (v.value - w.value).abs())
        .fold(0.0, f64::max);
    assert!(worst > 1e-2, "fixed δ: the cuts differ by {worst} only");
}
