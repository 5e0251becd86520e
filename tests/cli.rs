//! The real `glmix` binary on real files in a temporary directory: the train → score →
//! eval round trip, incremental updates, exact model round trips, and bad input.

mod common;

use common::{assert_means_close, glmix, glmix_output, gpu_ran, read_models, Dir};
use glmix::model::{read_models as read_model_set, write_models};
use std::fs;
use std::path::Path;

fn run(args: &[String]) -> std::process::Output {
    glmix(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `glmix train --data DATA --out OUT` and `options`.
fn train_args(data: &str, out: &str, options: &[&str]) -> Vec<String> {
    let mut argv = args(&["train", "--data", data, "--out", out]);
    argv.extend(args(options));
    argv
}

/// A seeded logistic workload of `entities` entities written by `glmix generate`.
fn generated(dir: &Dir, name: &str, entities: usize, seed: u64) -> String {
    let out = dir.arg(name);
    run(&args(&[
        "generate",
        "--entities",
        &entities.to_string(),
        "--rows",
        "30",
        "--features",
        "5",
        "--ragged",
        "--seed",
        &seed.to_string(),
        "--out",
        &out,
    ]));
    out
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_score_eval_round_trip() {
    let dir = Dir::new();
    let data = generated(&dir, "train.jsonl", 40, 1);
    let models = dir.arg("models.jsonl");
    let (report, summary) = (dir.arg("report.jsonl"), dir.arg("summary.json"));
    let out = run(&train_args(
        &data,
        &models,
        &[
            "--objective",
            "logistic",
            "--penalty",
            "2",
            "--hessian",
            "full",
            "--report",
            &report,
            "--summary",
            &summary,
        ],
    ));

    // The summary goes to the file and to stderr.
    let s = json(&fs::read(&summary).unwrap());
    for key in [
        "entities",
        "rows",
        "device",
        "read_seconds",
        "solve_seconds",
        "write_seconds",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    assert_eq!(s["entities"], 40);
    assert_eq!(s["device"], "cpu");
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"entities\":40"));

    let reports = jsonl(&dir.path("report.jsonl"));
    assert_eq!(reports.len(), 40);
    let total_rows: u64 = reports.iter().map(|r| r["rows"].as_u64().unwrap()).sum();
    assert_eq!(s["rows"].as_u64().unwrap(), total_rows);
    for r in &reports {
        for key in [
            "entity",
            "rows",
            "features",
            "initial_loss",
            "final_loss",
            "iterations",
            "evaluations",
            "gradient_norm",
            "reason",
        ] {
            assert!(r.get(key).is_some(), "report lacks {key}: {r}");
        }
        assert!(r["final_loss"].as_f64() <= r["initial_loss"].as_f64());
        assert_eq!(r["features"], 6, "intercept + 5 features: {r}");
    }

    let m = read_models(&dir.path("models.jsonl"));
    assert_eq!(m.len(), 40);
    assert_eq!(m[0].means[0].name, "intercept");
    assert_eq!(m[0].means[0].term, "intercept");
    assert_eq!(m[0].variances.len(), 6);

    // Scores: one line per record, in record order, the margin.
    let scores = dir.arg("scores.jsonl");
    run(&args(&[
        "score", "--data", &data, "--model", &models, "--out", &scores,
    ]));
    let lines = jsonl(&dir.path("scores.jsonl"));
    let records = fs::read_to_string(&data).unwrap().lines().count();
    assert_eq!(lines.len(), records);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["row"], i);
    }
    let first: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&data).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(lines[0]["entity"], first["entity"]);

    // Thompson: reproducible by seed, different from the margins and between seeds.
    let thompson = |seed: &str, name: &str| {
        let out = dir.arg(name);
        run(&args(&[
            "score",
            "--data",
            &data,
            "--model",
            &models,
            "--thompson",
            "1",
            "--seed",
            seed,
            "--out",
            &out,
        ]));
        jsonl(&dir.path(name))
    };
    let (a, b, c) = (
        thompson("7", "t1"),
        thompson("7", "t2"),
        thompson("8", "t3"),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, lines);

    // Eval on the training data: a fitted model ranks well above chance.
    let out = run(&args(&["eval", "--data", &data, "--model", &models]));
    let e = json(&out.stdout);
    assert!(e["auc"].as_f64().unwrap() > 0.7, "{e}");
    assert!(e["entity_auc"].as_f64().unwrap() > 0.6, "{e}");
    assert!(
        e["logloss"].as_f64().unwrap() < std::f64::consts::LN_2,
        "{e}"
    );
    let out = run(&args(&[
        "eval",
        "--data",
        &data,
        "--model",
        &models,
        "--metrics",
        "rmse",
    ]));
    assert!(json(&out.stdout)["rmse"].as_f64().is_some());
}

#[test]
fn incremental_update_uses_the_prior_and_keeps_untouched_entities() {
    let dir = Dir::new();
    let first = generated(&dir, "first.jsonl", 30, 2);
    let prior = dir.arg("prior.jsonl");
    run(&train_args(
        &first,
        &prior,
        &["--objective", "logistic", "--penalty", "5"],
    ));
    // The second mini-batch holds only the first 10 entities' records.
    let text = fs::read_to_string(&first).unwrap();
    let keep: Vec<String> = (0..10).map(|e| format!("\"entity\":\"e{e}\"")).collect();
    let second: Vec<&str> = text
        .lines()
        .filter(|l| keep.iter().any(|k| l.contains(k.as_str())))
        .collect();
    let second = dir.write("second.jsonl", &second.join("\n"));
    let posterior = dir.arg("posterior.jsonl");
    run(&train_args(
        &second,
        &posterior,
        &[
            "--objective",
            "bayes-logistic",
            "--penalty",
            "5",
            "--delta",
            "0.8",
            "--prior",
            &prior,
        ],
    ));
    let before = read_models(&dir.path("prior.jsonl"));
    let after = read_models(&dir.path("posterior.jsonl"));
    assert_eq!(after.len(), 30, "untouched entities are carried over");
    for m in &after {
        let old = before.iter().find(|b| b.entity == m.entity).unwrap();
        let id: usize = m.entity[1..].parse().unwrap();
        if id < 10 {
            // Seeing the same records again sharpens the posterior.
            for (v, w) in m.variances.iter().zip(&old.variances) {
                assert!(v.value < w.value, "{}: {v:?} vs {w:?}", m.entity);
            }
            assert_ne!(m.means, old.means);
        } else {
            assert_eq!(m.means, old.means);
            assert_eq!(m.variances, old.variances);
        }
    }
}

#[test]
fn a_prior_feature_absent_from_the_data_keeps_its_mean_and_precision() {
    let dir = Dir::new();
    let prior = dir.write(
        "prior.jsonl",
        r#"{"entity":"u","means":[{"name":"intercept","term":"intercept","value":0.25},{"name":"old","term":"x","value":1.5}],"variances":[{"name":"intercept","term":"intercept","value":0.5},{"name":"old","term":"x","value":0.125}]}"#,
    );
    let data = dir.write(
        "data.jsonl",
        "{\"entity\":\"u\",\"label\":1,\"features\":[{\"name\":\"new\",\"term\":\"\",\"value\":1}]}\n\
         {\"entity\":\"u\",\"label\":0,\"features\":[{\"name\":\"new\",\"term\":\"\",\"value\":-1}]}\n",
    );
    let out = dir.arg("out.jsonl");
    run(&train_args(
        &data,
        &out,
        &["--objective", "bayes-logistic", "--prior", &prior],
    ));
    let m = &read_models(&dir.path("out.jsonl"))[0];
    let old = m.means.iter().find(|c| c.name == "old").unwrap();
    assert_eq!(old.value, 1.5);
    let old_var = m.variances.iter().find(|c| c.name == "old").unwrap();
    assert_eq!(old_var.value, 0.125);
    assert!(m.means.iter().any(|c| c.name == "new" && c.value > 0.0));
}

#[test]
fn model_files_round_trip_exactly_for_every_hessian_type() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 8, 3);
    for hessian in ["full", "diagonal", "identity", "none"] {
        let out = dir.arg(&format!("{hessian}.jsonl"));
        run(&train_args(
            &data,
            &out,
            &["--objective", "logistic", "--hessian", hessian],
        ));
        let set = read_model_set(Path::new(&out), None).unwrap();
        let again = dir.path(&format!("{hessian}-again.jsonl"));
        write_models(&again, set.models().iter()).unwrap();
        assert_eq!(
            fs::read(&out).unwrap(),
            fs::read(&again).unwrap(),
            "{hessian} models do not round-trip byte for byte"
        );
        assert_eq!(read_model_set(&again, None).unwrap(), set);
    }
}

/// Run a failing command: non-zero exit, the message names what it must, and the output
/// path is left as it was (absent, or with its old content) with no temporary file beside it.
fn assert_fails(dir: &Dir, argv: &[String], out: &str, expected: &[&str]) {
    let before = dir.files();
    let had = fs::read(out).ok();
    let o = glmix_output(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{argv:?} succeeded");
    for e in expected {
        assert!(
            stderr.contains(e),
            "{argv:?}: stderr lacks {e:?}:\n{stderr}"
        );
    }
    assert_eq!(fs::read(out).ok(), had, "{out} changed");
    assert_eq!(dir.files(), before, "files left behind");
}

#[test]
fn bad_records_name_file_line_and_field_and_write_nothing() {
    let dir = Dir::new();
    let good = r#"{"entity":"a","label":1,"features":[{"name":"x","term":"","value":1}]}"#;
    let cases: [(&str, String, &str); 9] = [
        ("malformed.jsonl", format!("{good}\n{good}\n{{\"entity\":\"a\",\"label\":"), ":3:"),
        ("no-label.jsonl", format!("{good}\n{{\"entity\":\"a\",\"features\":[]}}\n"), ":2: label"),
        ("no-entity.jsonl", format!("{{\"label\":0,\"features\":[]}}\n{good}\n"), ":1: entity"),
        (
            "infinite.jsonl",
            format!("{good}\n{{\"entity\":\"a\",\"label\":0,\"features\":[{{\"name\":\"x\",\"term\":\"\",\"value\":1e999}}]}}\n"),
            ":2: features[0].value",
        ),
        (
            "nan-offset.jsonl",
            format!("{good}\n{good}\n{{\"entity\":\"a\",\"label\":0,\"offset\":\"NaN\",\"features\":[]}}\n"),
            ":3: offset",
        ),
        ("empty.jsonl", String::new(), "empty.jsonl"),
        // A repeated key, read or not, at the top or in a feature, is an error.
        (
            "twice.jsonl",
            format!("{good}\n{{\"entity\":\"a\",\"label\":1,\"label\":0,\"features\":[]}}\n"),
            ":2: label: key \"label\" appears twice",
        ),
        (
            "typo-twice.jsonl",
            r#"{"entity":"a","ofset":1,"label":0,"ofset":2,"features":[]}"#.to_string() + "\n",
            ":1: ofset: key \"ofset\" appears twice",
        ),
        (
            "feature-twice.jsonl",
            r#"{"entity":"a","label":0,"features":[{"name":"x","value":1,"value":2}]}"#.to_string()
                + "\n",
            ":1: features[0].value: key \"value\" appears twice",
        ),
    ];
    let out = dir.arg("models.jsonl");
    for (name, text, expected) in cases {
        let data = dir.write(name, &text);
        let argv = train_args(&data, &out, &["--objective", "logistic"]);
        assert_fails(&dir, &argv, &out, &[name, expected]);
    }
    // A failing run does not touch an existing output file either.
    fs::write(&out, "old models\n").unwrap();
    let data = dir.arg("infinite.jsonl");
    let argv = train_args(&data, &out, &["--objective", "logistic"]);
    assert_fails(&dir, &argv, &out, &["features[0].value"]);
}

#[test]
fn logistic_training_reports_labels_other_than_0_and_1() {
    let dir = Dir::new();
    let row = |entity: &str, label: &str| {
        format!(
            r#"{{"entity":"{entity}","label":{label},"features":[{{"name":"x","term":"","value":1}}]}}"#
        )
    };
    let rows = [
        row("a", "1"),
        row("a", "0"),
        row("b", "4"),
        row("b", "-1"),
        row("b", "5"),
    ];
    let data = dir.write("ratings.jsonl", &rows.join("\n"));
    let out = dir.arg("models.jsonl");
    let notice = "2 of 5 records have a label other than 0 or 1 (the first is record 3 of";
    for chunks in [&[][..], &["--chunk-entities", "1"][..]] {
        let mut options = vec!["--objective", "bayes-logistic"];
        options.extend(chunks);
        let o = run(&train_args(&data, &out, &options));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(notice) && stderr.contains("label 4"),
            "{stderr}"
        );
        assert!(stderr.contains("\"non_binary_labels\":2"), "{stderr}");
    }
    let o = run(&train_args(&data, &out, &["--objective", "linear"]));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("non_binary"));
}

#[test]
fn bad_tsv_names_line_and_column() {
    let dir = Dir::new();
    let data = dir.write("u.tsv", "1\t5\t0.5\t0.25\n2\t4\t0.5\n");
    let out = dir.arg("m.jsonl");
    let argv = train_args(&data, &out, &["--format", "tsv", "--objective", "linear"]);
    assert_fails(&dir, &argv, &out, &["u.tsv:2"]);
}

#[test]
fn bad_options_fail_clearly() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 3, 4);
    let out = dir.arg("m.jsonl");
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--objective", "probit"], &["probit", "logistic"]),
        (&["--objective", "logistic", "--penalty=-1"], &["penalty"]),
        (
            &["--objective", "bayes-logistic", "--delta", "1.5"],
            &["delta"],
        ),
        (
            &["--objective", "logistic", "--device", "tpu"],
            &["tpu", "gpu"],
        ),
    ];
    for (options, expected) in cases {
        let argv = train_args(&data, &out, options);
        assert_fails(&dir, &argv, &out, expected);
    }
}

#[test]
fn a_prior_without_the_needed_hessian_is_refused_with_its_file_and_line() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 5, 5);
    let prior = dir.arg("prior.jsonl");
    run(&train_args(
        &data,
        &prior,
        &["--objective", "logistic", "--hessian", "none"],
    ));
    let out = dir.arg("m.jsonl");
    let argv = train_args(
        &data,
        &out,
        &["--objective", "bayes-logistic", "--prior", &prior],
    );
    assert_fails(&dir, &argv, &out, &["prior.jsonl:1: hessian", "none"]);

    // A full-precision prior cannot silently lose its correlations.
    run(&train_args(
        &data,
        &prior,
        &["--objective", "logistic", "--hessian", "full"],
    ));
    let argv = train_args(
        &data,
        &out,
        &[
            "--objective",
            "bayes-logistic",
            "--hessian",
            "diagonal",
            "--prior",
            &prior,
        ],
    );
    assert_fails(&dir, &argv, &out, &["prior.jsonl:1: hessian", "full"]);
}

#[test]
fn bad_model_files_name_line_and_field() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 2, 6);
    let out = dir.arg("s.jsonl");
    let models = dir.write(
        "m.jsonl",
        "{\"entity\":\"e0\",\"means\":[{\"name\":\"intercept\",\"term\":\"intercept\",\"value\":0}]}\n\
         {\"entity\":\"e1\",\"means\":[{\"name\":\"intercept\",\"term\":\"intercept\"}]}\n",
    );
    let argv = args(&["score", "--data", &data, "--model", &models, "--out", &out]);
    assert_fails(&dir, &argv, &out, &["m.jsonl:2", "means"]);
}

/// `WGPU_BACKEND=metal` on a host without Metal: wgpu finds no adapter.
fn without_gpu(argv: &[String]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_glmix"))
        .args(argv)
        .env("WGPU_BACKEND", "metal")
        .output()
        .unwrap()
}

#[test]
#[cfg(not(target_os = "macos"))]
fn without_a_gpu_auto_uses_the_cpu_silently_and_gpu_fails_clearly() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 5, 8);
    let out = dir.arg("m.jsonl");
    let train = |device: &str| {
        let argv = train_args(
            &data,
            &out,
            &["--objective", "logistic", "--device", device],
        );
        without_gpu(&argv)
    };
    let auto = train("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    // The user asked for no GPU: no word of one.
    assert!(!stderr.contains("GPU"), "{stderr}");
    assert!(stderr.contains("\"device\":\"cpu\""), "{stderr}");
    assert_eq!(read_models(&dir.path("m.jsonl")).len(), 5);
    let scores = dir.arg("s.jsonl");
    let scored = without_gpu(&args(&[
        "score", "--data", &data, "--model", &out, "--out", &scores,
    ]));
    let stderr = String::from_utf8_lossy(&scored.stderr);
    assert!(scored.status.success(), "{stderr}");
    assert!(!stderr.contains("GPU"), "{stderr}");
    assert!(stderr.contains(" (cpu)"), "{stderr}");

    fs::remove_file(&out).unwrap();
    let gpu = train("gpu");
    let stderr = String::from_utf8_lossy(&gpu.stderr);
    assert!(!gpu.status.success());
    assert!(stderr.contains("--device gpu: no GPU adapter"), "{stderr}");
    assert!(!dir.path("m.jsonl").exists());

    let info = without_gpu(&args(&["info"]));
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success());
    assert!(stdout.contains("gpu: none (no GPU adapter"), "{stdout}");
}

/// A model file whose full precisions came from the GPU reads back: as the prior of the
/// next update and for scoring (the reader refuses a precision that is not symmetric).
#[test]
fn gpu_full_precisions_read_back_as_a_prior_and_for_scoring() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 20, 4);
    let full = [
        "--objective",
        "bayes-logistic",
        "--hessian",
        "full",
        "--device",
        "gpu",
        // The full Hessians from the GPU kernel, not from the f64 finish.
        "--finish",
        "none",
    ];
    let first = dir.arg("first.jsonl");
    let trained = glmix_output(
        &train_args(&data, &first, &full)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    if !gpu_ran(&trained, "GPU full-precision CLI test") {
        return;
    }
    let mut update = train_args(&data, &dir.arg("second.jsonl"), &full);
    update.extend(args(&["--prior", &first]));
    run(&update);
    let scores = dir.arg("scores.jsonl");
    run(&args(&[
        "score", "--data", &data, "--model", &first, "--out", &scores,
    ]));
    let records = fs::read_to_string(&data).unwrap().lines().count();
    assert_eq!(jsonl(&dir.path("scores.jsonl")).len(), records);
}

/// With a GPU (Mesa's software driver in CI, where `GLMIX_REQUIRE_GPU=1`), `--device gpu`
/// trains the same models as the CPU within f32-level differences.
#[test]
fn device_gpu_trains_like_the_cpu() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 20, 9);
    let train = |device: &str, out: &str, extra: &[&str]| {
        let out = dir.arg(out);
        let mut argv = train_args(
            &data,
            &out,
            &[
                "--objective",
                "logistic",
                "--penalty",
                "3",
                "--device",
                device,
            ],
        );
        argv.extend(args(extra));
        glmix_output(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let gpu = train("gpu", "gpu.jsonl", &["--verify", "--polish", "3"]);
    if !gpu_ran(&gpu, "GPU CLI test") {
        return;
    }
    let stderr = String::from_utf8_lossy(&gpu.stderr);
    assert!(stderr.contains("\"device\":\"gpu: "), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stderr.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    // Checked in f64 after the polish, the optima are as stationary as the CPU's own.
    let worst = summary["verify_worst_gradient_norm"].as_f64().unwrap();
    assert!(worst <= 1e-4, "{summary}");
    assert!(train("cpu", "cpu.jsonl", &[]).status.success());
    let (g, c) = (
        read_models(&dir.path("gpu.jsonl")),
        read_models(&dir.path("cpu.jsonl")),
    );
    assert_means_close(&g, &c, 1e-3);
    for (mg, mc) in g.iter().zip(&c) {
        // The posterior precision's diagonal came from the GPU's Hessian kernel.
        assert_eq!(mg.variances.len(), mc.variances.len());
        for (a, b) in mg.variances.iter().zip(&mc.variances) {
            assert!(
                (a.value - b.value).abs() <= 1e-3 * b.value,
                "{a:?} vs {b:?}"
            );
        }
    }
}

/// `glmix score --device gpu` writes the CPU's scores within f32 rounding; Thompson
/// sampling there is refused with the reason, and nothing is written.
#[test]
fn device_gpu_scores_like_the_cpu() {
    let dir = Dir::new();
    let data = generated(&dir, "d.jsonl", 30, 12);
    let models = dir.arg("m.jsonl");
    run(&train_args(&data, &models, &["--objective", "logistic"]));
    let score = |device: &str, out: &str, extra: &[&str]| {
        let out = dir.arg(out);
        let mut argv = vec![
            "score", "--data", &data, "--model", &models, "--out", &out, "--device", device,
        ];
        argv.extend(extra);
        glmix_output(&argv)
    };
    let gpu = score("gpu", "gpu.jsonl", &[]);
    if !gpu_ran(&gpu, "GPU score test") {
        return;
    }
    let stderr = String::from_utf8_lossy(&gpu.stderr);
    assert!(stderr.contains("(gpu: "), "{stderr}");
    assert!(score("cpu", "cpu.jsonl", &[]).status.success());
    let (g, c) = (jsonl(&dir.path("gpu.jsonl")), jsonl(&dir.path("cpu.jsonl")));
    assert_eq!(g.len(), c.len());
    for (a, b) in g.iter().zip(&c) {
        assert_eq!((&a["entity"], &a["row"]), (&b["entity"], &b["row"]));
        let (a, b) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    let thompson = score("gpu", "t.jsonl", &["--thompson", "1"]);
    assert!(!thompson.status.success());
    let stderr = String::from_utf8_lossy(&thompson.stderr);
    assert!(
        stderr.contains("--thompson draws each record's coefficients on the CPU"),
        "{stderr}"
    );
    assert!(!dir.path("t.jsonl").exists());
}

#[test]
fn bench_prints_a_table_per_device() {
    let both = std::env::var("GLMIX_REQUIRE_GPU").as_deref() == Ok("1");
    let device = if both { "both" } else { "cpu" };
    let out = glmix(&[
        "bench",
        "--entities",
        "60",
        "--rows",
        "10",
        "--features",
        "3",
        "--repeat",
        "1",
        "--device",
        device,
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("device 1: cpu"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("converged entities"))
        .unwrap();
    assert_eq!(
        line.matches("60/60").count(),
        if both { 2 } else { 1 },
        "{table}"
    );
    if both {
        assert!(table.contains("device 2: gpu: "), "{table}");
        assert!(table.contains("gpu kernel seconds"), "{table}");
    }
}

/// `bench --json` writes the workload, each device's medians and the memory figures; a
/// Zipf workload holds the requested rows on average, a few entities most of them.
#[test]
fn bench_json_reports_throughput_and_memory() {
    let dir = Dir::new();
    let json = dir.path("bench.json");
    glmix(&[
        "bench",
        "--entities",
        "400",
        "--rows",
        "20",
        "--features",
        "5",
        "--zipf",
        "1",
        "--repeat",
        "1",
        "--device",
        "cpu",
        "--json",
        json.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_u64().unwrap();
    assert!((7_000..=9_000).contains(&rows), "{v}");
    assert_eq!(v["zipf"], 1.0);
    let device = &v["devices"][0];
    assert_eq!(device["device"], "cpu");
    assert_eq!(device["converged entities"], 400);
    assert!(device["entities/s (end to end)"].as_f64().unwrap() > 0.0);
    // Dense: 8 bytes a value and 24 a row (label, weight, offset).
    let packed = v["data MiB (packed)"].as_f64().unwrap() * 1024.0 * 1024.0;
    assert!(
        (packed - rows as f64 * (5.0 * 8.0 + 24.0)).abs() < 1.0,
        "{v}"
    );
    assert!(v["peak RSS MiB"].as_f64().unwrap() > 1.0, "{v}");
}

/// `--chunk-entities` trains a grouped file a few entities at a time into exactly the
/// models of a whole-file run; an ungrouped file is refused with its line, and `glmix
/// group` makes it trainable in chunks.
#[test]
fn chunked_training_equals_whole_file_training() {
    let dir = Dir::new();
    let data = generated(&dir, "g.jsonl", 120, 5);
    let prior = dir.arg("prior.jsonl");
    run(&train_args(
        &data,
        &prior,
        &["--objective", "logistic", "--device", "cpu"],
    ));
    let options = [
        "--objective",
        "bayes-logistic",
        "--device",
        "cpu",
        "--prior",
        &prior,
    ];
    let whole = dir.arg("whole.jsonl");
    run(&train_args(&data, &whole, &options));
    let chunked = dir.arg("chunked.jsonl");
    let mut chunk_options = options.to_vec();
    chunk_options.extend(["--chunk-entities", "7"]);
    let out = run(&train_args(&data, &chunked, &chunk_options));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"chunks\":18"));
    assert_eq!(fs::read(&whole).unwrap(), fs::read(&chunked).unwrap());

    // Records in time order are not grouped by entity.
    let shuffled = dir.arg("t.jsonl");
    run(&args(&[
        "generate",
        "--entities",
        "120",
        "--rows",
        "30",
        "--features",
        "5",
        "--ragged",
        "--seed",
        "5",
        "--time-ordered",
        "--out",
        &shuffled,
    ]));
    let refused = dir.arg("refused.jsonl");
    let out = glmix_output(
        &train_args(&shuffled, &refused, &chunk_options)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("t.jsonl:") && err.contains("not grouped by entity"),
        "{err}"
    );
    assert!(!dir.path("refused.jsonl").exists());

    let grouped = dir.arg("grouped.jsonl");
    run(&args(&[
        "group", "--data", &shuffled, "--out", &grouped, "--parts", "5",
    ]));
    let from_groups = dir.arg("from-groups.jsonl");
    run(&train_args(&grouped, &from_groups, &chunk_options));
    let in_memory = dir.arg("in-memory.jsonl");
    run(&train_args(&shuffled, &in_memory, &options));
    let lines = |p: &str| {
        let mut v: Vec<String> = fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(lines(&from_groups), lines(&in_memory));
}
