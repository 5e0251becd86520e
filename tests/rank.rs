//! `glmix rank` end to end: the real binary on models it trained.

mod common;

use common::records::test_python;
use common::{glmix, glmix_output, Dir};
use serde_json::Value;
use std::collections::BTreeMap;

/// A deterministic value in [−1, 1) from a counter (no RNG crate: the numbers are the
/// test's own).
fn unit(k: u64) -> f64 {
    let x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) >> 11;
    x as f64 / (1u64 << 52) as f64 - 1.0
}

/// `n` records of entity `e{i mod entities}`, three dense features and a request field
/// `q{i / per_request}` (every record of a request of another entity).
fn records(n: usize, entities: usize, per_request: usize, seed: u64) -> String {
    (0..n)
        .map(|i| {
            let k = seed * 1_000_003 + i as u64 * 7;
            let x = [unit(k), unit(k + 1), unit(k + 2)];
            let label = u8::from(x[0] - 0.5 * x[1] + 0.3 * unit(k + 3) > 0.0);
            let features: Vec<Value> = x
                .iter()
                .enumerate()
                .map(|(j, v)| serde_json::json!({"name": format!("f{j}"), "term": "", "value": v}))
                .collect();
            serde_json::json!({
                "entity": format!("e{}", (i * 7 + i / per_request) % entities),
                "request": format!("q{}", i / per_request),
                "label": label,
                "offset": 0.1 * unit(k + 4),
                "features": features,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// Train `bayes-logistic` models with `hessian` on generated records.
fn trained(dir: &Dir, hessian: &str) -> String {
    let data = dir.write("train.jsonl", &records(1200, 20, 5, 1));
    let model = dir.arg(&format!("models-{hessian}.jsonl"));
    glmix(&[
        "train",
        "--data",
        &data,
        "--objective",
        "bayes-logistic",
        "--hessian",
        hessian,
        "--device",
        "cpu",
        "--out",
        &model,
    ]);
    model
}

fn rank(dir: &Dir, data: &str, model: &str, out: &str, extra: &[&str]) -> Vec<Value> {
    let out = dir.arg(out);
    let mut argv = vec![
        "rank",
        "--data",
        data,
        "--model",
        model,
        "--request-key",
        "request",
        "--out",
        &out,
    ];
    argv.extend(extra);
    glmix(&argv);
    lines(&out)
}

fn lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn thompson_shows_each_requests_top_candidates_reproducibly() {
    let dir = Dir::new();
    let model = trained(&dir, "diagonal");
    // 100 requests of 6 candidates; entities e20…e22 have no model.
    let candidates = dir.write("candidates.jsonl", &records(600, 23, 6, 2));
    let shown = rank(
        &dir,
        &candidates,
        &model,
        "a.jsonl",
        &["--top", "3", "--seed", "5"],
    );
    assert_eq!(shown.len(), 300);
    let mut positions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in &shown {
        let request = s["request"].as_str().unwrap().to_string();
        let row = s["row"].as_u64().unwrap();
        assert_eq!(request, format!("q{}", row / 6), "{s}");
        let p = s["propensity"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{s}");
        positions
            .entry(request)
            .or_default()
            .push(s["position"].as_u64().unwrap());
    }
    assert_eq!(positions.len(), 100);
    assert!(positions.values().all(|p| p == &[0, 1, 2]));
    // The same with one thread; another seed chooses otherwise.
    let out = dir.arg("b.jsonl");
    let one_thread = std::process::Command::new(env!("CARGO_BIN_EXE_glmix"))
        .env("RAYON_NUM_THREADS", "1")
        .args([
            "rank",
            "--data",
            &candidates,
            "--model",
            &model,
            "--request-key",
            "request",
        ])
        .args(["--top", "3", "--seed", "5", "--out", &out])
        .output()
        .unwrap();
    assert!(one_thread.status.success());
    assert_eq!(lines(&out), shown);
    assert_ne!(
        rank(
            &dir,
            &candidates,
            &model,
            "c.jsonl",
            &["--top", "3", "--seed", "6"]
        ),
        shown
    );
}

#[test]
fn greedy_shows_the_candidate_glmix_score_scores_highest() {
    let dir = Dir::new();
    let model = trained(&dir, "diagonal");
    let candidates = dir.write("candidates.jsonl", &records(400, 20, 4, 3));
    let shown = rank(
        &dir,
        &candidates,
        &model,
        "shown.jsonl",
        &["--policy", "greedy"],
    );
    let scores = dir.arg("scores.jsonl");
    glmix(&[
        "score",
        "--data",
        &candidates,
        "--model",
        &model,
        "--device",
        "cpu",
        "--out",
        &scores,
    ]);
    let scores: Vec<f64> = lines(&scores)
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    assert_eq!(shown.len(), 100);
    for s in &shown {
        let row = s["row"].as_u64().unwrap() as usize;
        let request = &scores[row / 4 * 4..row / 4 * 4 + 4];
        let best = request.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(scores[row], best, "{s}");
        assert_eq!(s["score"].as_f64().unwrap(), best);
        assert_eq!(s["propensity"].as_f64(), Some(1.0));
    }
}

#[test]
#[ignore = "needs numpy: GLMIX_TEST_PYTHON=/path/to/python with tests/python/requirements.txt (.ci/run sets it)"]
fn ucb_bounds_match_numpy_on_a_full_precision() {
    let dir = Dir::new();
    let model = trained(&dir, "full");
    let candidates = dir.write("candidates.jsonl", &records(200, 20, 4, 4));
    let out = dir.arg("ucb.jsonl");
    rank(
        &dir,
        &candidates,
        &model,
        "ucb.jsonl",
        &["--policy", "ucb", "--alpha", "1.5", "--top", "4"],
    );
    let script = r#"
import json, sys
import numpy as np
models = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    keys = [(f["name"], f["term"]) for f in m["precision"]["features"]]
    means = {(c["name"], c["term"]): c["value"] for c in m["means"]}
    models[m["entity"]] = (keys, np.array([means[k] for k in keys]), np.array(m["precision"]["matrix"]))
records = [json.loads(l) for l in open(sys.argv[2])]
worst = 0.0
for s in map(json.loads, open(sys.argv[3])):
    r = records[s["row"]]
    keys, theta, h = models[r["entity"]]
    values = {("intercept", "intercept"): 1.0}
    values.update({(f["name"], f["term"]): f["value"] for f in r["features"]})
    x = np.array([values.get(k, 0.0) for k in keys])
    bound = r["offset"] + x @ theta + 1.5 * np.sqrt(x @ np.linalg.inv(h) @ x)
    worst = max(worst, abs(bound - s["score"]) / abs(bound))
print(worst)
"#;
    let py = std::process::Command::new(test_python())
        .args(["-c", script, &model, &candidates, &out])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let worst: f64 = String::from_utf8(py.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(worst < 1e-10, "largest relative difference {worst}");
}

#[test]
fn a_candidate_without_a_request_is_an_error_and_leaves_no_output() {
    let dir = Dir::new();
    let model = trained(&dir, "diagonal");
    let mut text = records(8, 20, 4, 5);
    text.push_str(r#"{"entity":"e1","label":0,"features":[]}"#);
    let candidates = dir.write("candidates.jsonl", &text);
    let out = dir.arg("shown.jsonl");
    let run = glmix_output(&[
        "rank",
        "--data",
        &candidates,
        "--model",
        &model,
        "--request-key",
        "request",
        "--out",
        &out,
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("candidates.jsonl:9")
            && err.contains("request")
            && err.contains("--request-key"),
        "{err}"
    );
    assert!(!dir.path("shown.jsonl").exists());
}

/// `shown` (rank's output) with each shown candidate's label, from `candidates`, as its
/// reward: the log `glmix ope` reads.
fn with_rewards(shown: &[Value], candidates: &str) -> (String, f64) {
    let labels: Vec<f64> = lines(candidates)
        .iter()
        .map(|r| r["label"].as_f64().unwrap())
        .collect();
    let mut sum = 0.0;
    let text = shown
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let reward = labels[s["row"].as_u64().unwrap() as usize];
            sum += reward;
            s["reward"] = reward.into();
            s.to_string() + "\n"
        })
        .collect();
    (text, sum / shown.len() as f64)
}

fn ope(dir: &Dir, candidates: &str, model: &str, log: &str, out: &str, policy: &[&str]) -> Value {
    let out = dir.arg(out);
    let mut argv = vec![
        "ope",
        "--data",
        candidates,
        "--model",
        model,
        "--request-key",
        "request",
        "--log",
        log,
        "--out",
        &out,
    ];
    argv.extend(policy);
    glmix(&argv);
    lines(&out).remove(0)
}

#[test]
fn ope_of_the_logging_policy_on_its_own_log_is_the_logs_mean_reward() {
    let dir = Dir::new();
    let model = trained(&dir, "diagonal");
    let candidates = dir.write("candidates.jsonl", &records(1200, 20, 6, 6));
    let policy = [
        "--policy",
        "epsilon-greedy",
        "--epsilon",
        "0.3",
        "--seed",
        "5",
    ];
    let shown = rank(
        &dir,
        &candidates,
        &model,
        "shown.jsonl",
        &[&policy[..], &["--top", "2"]].concat(),
    );
    let (text, mean) = with_rewards(&shown, &candidates);
    let log = dir.write("log.jsonl", &text);
    // ε-greedy's propensities are exact, so every importance weight is 1.
    let own = ope(&dir, &candidates, &model, &log, "own.json", &policy);
    assert_eq!(own["rounds"], 400);
    assert_eq!(own["logged_reward"].as_f64().unwrap(), mean);
    for estimator in ["ips", "snips"] {
        let e = &own["estimates"][estimator];
        let value = e["value"].as_f64().unwrap();
        assert!((value - mean).abs() < 1e-12, "{estimator}: {e}");
        assert!(e["low"].as_f64().unwrap() < value && value < e["high"].as_f64().unwrap());
    }
    assert!((own["effective_rounds"].as_f64().unwrap() - 400.0).abs() < 1e-9);
    // Greedy agrees with the log on the rounds ε-greedy did not explore (and some it did):
    // its weights are 0 or 1/(0.7 + 0.05), so the log is worth fewer of its rounds.
    let greedy = ope(
        &dir,
        &candidates,
        &model,
        &log,
        "greedy.json",
        &["--policy", "greedy"],
    );
    let effective = greedy["effective_rounds"].as_f64().unwrap();
    assert!(effective > 200.0 && effective < 400.0, "{greedy}");
    assert!(greedy["unsupported_rounds"].as_u64().unwrap() > 0);
}

#[test]
fn a_log_line_of_another_request_is_an_error_and_leaves_no_output() {
    let dir = Dir::new();
    let model = trained(&dir, "diagonal");
    let candidates = dir.write("candidates.jsonl", &records(60, 20, 6, 7));
    let log = dir.write(
        "log.jsonl",
        concat!(
            r#"{"request":"q0","row":2,"position":0,"propensity":0.5,"reward":1}"#,
            "\n",
            r#"{"request":"q0","row":7,"position":0,"propensity":0.5,"reward":0}"#,
            "\n"
        ),
    );
    let out = dir.arg("report.json");
    let run = glmix_output(&[
        "ope",
        "--data",
        &candidates,
        "--model",
        &model,
        "--request-key",
        "request",
        "--log",
        &log,
        "--out",
        &out,
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("log.jsonl:2") && err.contains("request") && err.contains("q1"),
        "{err}"
    );
    assert!(!dir.path("report.json").exists());
}

#[test]
fn candidates_and_records_to_score_need_no_label() {
    let dir = Dir::new();
    let model = trained(&dir, "diagonal");
    let text = records(120, 20, 4, 8);
    let unlabelled: String = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("label");
            v.to_string() + "\n"
        })
        .collect();
    let labelled = dir.write("labelled.jsonl", &text);
    let bare = dir.write("bare.jsonl", &unlabelled);
    let policy = ["--policy", "thompson", "--top", "2", "--seed", "3"];
    assert_eq!(
        rank(&dir, &bare, &model, "a.jsonl", &policy),
        rank(&dir, &labelled, &model, "b.jsonl", &policy)
    );
    let score = |data: &str, out: &str| {
        let out = dir.arg(out);
        glmix(&[
            "score", "--data", data, "--model", &model, "--device", "cpu", "--out", &out,
        ]);
        lines(&out)
    };
    assert_eq!(score(&bare, "s1.jsonl"), score(&labelled, "s2.jsonl"));
    // Training still needs every label.
    let run = glmix_output(&[
        "train",
        "--data",
        &bare,
        "--objective",
        "logistic",
        "--device",
        "cpu",
        "--out",
        &dir.arg("m.jsonl"),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("label"));
}
