//! The real `glmix` binary never writes a model it cannot read back, and one bad entity
//! does not stop the run: overflowing precisions are clamped, a singular full precision
//! becomes its diagonal (each said in the report), and options and offset models out of
//! range fail clearly before any output.

mod common;

use common::{glmix, glmix_output, Dir};
use std::fs;

fn report_notes(path: &std::path::Path) -> Vec<(String, Option<String>)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let note = v["precision_note"].as_str().map(str::to_string);
            (v["entity"].as_str().unwrap().to_string(), note)
        })
        .collect()
}

/// `models` read back for Thompson scoring of `data` (the reader checks every precision).
fn thompson_scores(dir: &Dir, data: &str, models: &str) {
    let out = dir.arg("scores.jsonl");
    glmix(&[
        "score",
        "--data",
        data,
        "--model",
        models,
        "--thompson",
        "1",
        "--out",
        &out,
    ]);
}

#[test]
fn an_overflowing_precision_is_clamped_and_the_model_reads_back() {
    let dir = Dir::new();
    let data = dir.write(
        "big.jsonl",
        concat!(
            r#"{"entity":"a","label":1,"features":[{"name":"x","term":"","value":1.5e154}]}"#,
            "\n",
            r#"{"entity":"a","label":0,"features":[{"name":"x","term":"","value":1}]}"#,
            "\n",
            r#"{"entity":"b","label":1,"features":[{"name":"x","term":"","value":1}]}"#,
            "\n",
        ),
    );
    let (models, report) = (dir.arg("models.jsonl"), dir.arg("report.jsonl"));
    let o = glmix(&[
        "train",
        "--data",
        &data,
        "--objective",
        "bayes-linear",
        "--device",
        "cpu",
        "--out",
        &models,
        "--report",
        &report,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("\"a\": precision clamped"), "{stderr}");
    let notes = report_notes(&dir.path("report.jsonl"));
    assert!(
        notes[0].1.as_deref().unwrap().contains("clamped"),
        "{notes:?}"
    );
    assert_eq!(notes[1].1, None);
    // Every model written reads back: as a prior, and for Thompson scoring.
    glmix(&[
        "train",
        "--data",
        &data,
        "--objective",
        "bayes-linear",
        "--device",
        "cpu",
        "--prior",
        &models,
        "--out",
        &dir.arg("again.jsonl"),
    ]);
    thompson_scores(&dir, &data, &models);
}

#[test]
fn a_zero_precision_is_raised_to_the_smallest_normal_and_the_run_goes_on() {
    let dir = Dir::new();
    // Entity "z" has only a zero-weight record and its intercept no penalty: nothing
    // informs its intercept, whose precision is 0.
    let data = dir.write(
        "zero.jsonl",
        concat!(
            r#"{"entity":"z","label":1,"weight":0,"features":[{"name":"x","term":"","value":1}]}"#,
            "\n",
            r#"{"entity":"y","label":1,"features":[{"name":"x","term":"","value":1}]}"#,
            "\n",
            r#"{"entity":"y","label":0,"features":[]}"#,
            "\n",
        ),
    );
    let (models, report) = (dir.arg("models.jsonl"), dir.arg("report.jsonl"));
    let train = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            &data,
            "--objective",
            "bayes-logistic",
            "--no-intercept-penalty",
            "--device",
            "cpu",
            "--out",
            out,
        ];
        args.extend(extra);
        glmix(&args)
    };
    let o = train(&models, &["--report", &report]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("\"z\": precision of about 0 raised"),
        "{stderr}"
    );
    let notes = report_notes(&dir.path("report.jsonl"));
    let note = |e: &str| notes.iter().find(|n| n.0 == e).unwrap().1.clone();
    assert!(note("z").unwrap().contains("smallest normal"), "{notes:?}");
    assert_eq!(note("y"), None);
    // The model reads back: as a prior, and for Thompson scoring.
    train(&dir.arg("again.jsonl"), &["--prior", &models]);
    thompson_scores(&dir, &data, &models);
}

#[test]
fn a_singular_entity_under_a_full_hessian_keeps_its_diagonal_and_the_run_goes_on() {
    let dir = Dir::new();
    // Entity "twin" has two identical columns and no penalty: its precision is singular.
    let mut lines = String::new();
    for i in 0..6 {
        let x = f64::from(i) - 2.5;
        lines += &format!(
            r#"{{"entity":"twin","label":{},"features":[{{"name":"x","term":"","value":{x}}},{{"name":"y","term":"","value":{x}}}]}}"#,
            i % 2
        );
        lines += "\n";
        lines += &format!(
            r#"{{"entity":"fine","label":{},"features":[{{"name":"x","term":"","value":{x}}},{{"name":"y","term":"","value":{}}}]}}"#,
            i % 2,
            (x * 1.7).sin()
        );
        lines += "\n";
    }
    let data = dir.write("twins.jsonl", &lines);
    let (models, report) = (dir.arg("models.jsonl"), dir.arg("report.jsonl"));
    glmix(&[
        "train",
        "--data",
        &data,
        "--objective",
        "linear",
        "--penalty",
        "0",
        "--hessian",
        "full",
        "--device",
        "cpu",
        "--out",
        &models,
        "--report",
        &report,
    ]);
    let notes = report_notes(&dir.path("report.jsonl"));
    assert_eq!(notes.len(), 2);
    let twin = notes.iter().find(|(e, _)| e == "twin").unwrap();
    assert!(
        twin.1.as_deref().unwrap().contains("not positive definite"),
        "{notes:?}"
    );
    assert_eq!(notes.iter().find(|(e, _)| e == "fine").unwrap().1, None);
    let written = fs::read_to_string(&models).unwrap();
    assert!(written.contains(r#""entity":"twin","objective":"linear","hessian":"diagonal""#));
    assert!(written.contains(r#""entity":"fine","objective":"linear","hessian":"full""#));
    thompson_scores(&dir, &data, &models);
}

#[test]
fn options_and_offset_models_out_of_range_fail_before_any_output() {
    let dir = Dir::new();
    let data = dir.write("d.tsv", "0\t1\t0.5\t2\t3\n1\t0\t1.5\t1\t0\n");
    let out = dir.arg("out.jsonl");
    let fails = |argv: &[&str], expected: &str| {
        let o = glmix_output(argv);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{argv:?}");
        assert!(stderr.contains(expected), "{argv:?}: {stderr}");
        assert!(!dir.path("out.jsonl").exists());
    };
    let train = [
        "train",
        "--data",
        &data,
        "--format",
        "tsv",
        "--objective",
        "logistic",
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        train
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .chain(["--out".into(), out.clone()])
            .collect()
    };
    fails(
        &strs(&with(&["--penalty", "-1"])),
        "penalty must be a finite number ≥ 0, got -1",
    );
    fails(
        &strs(&with(&["--memory", "18446744073709551615"])),
        "memory (L-BFGS correction pairs) must lie in 1..=1000",
    );
    fails(
        &strs(&with(&["--pgtol", "-1e-5"])),
        "factr and pgtol must be finite numbers ≥ 0",
    );
    // The TSV has 3 feature columns; the offset model covers 2.
    let model = dir.write("fixed.txt", "0.1\n0.2\n0.3\n");
    let mut argv = with(&[]);
    argv.extend(["--offset-model".to_string(), model.clone()]);
    fails(&strs(&argv), "the offset model has 2 feature coefficients");
    fails(&strs(&argv), "--offset-model");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
