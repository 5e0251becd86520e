//! GAME models: coordinate descent recovers a known fixed + per-user + per-item structure,
//! a one-coordinate configuration is plain `glmix train`, the data controls report what
//! they did, and the CLI round trip (train → score → eval) and its errors.

mod common;

use common::{glmix, glmix_output, Dir};
use glmix::game::{self, GameConfig, GameData};
use glmix::train::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;
use std::fs;
use std::io::Write;
use std::path::Path;

const FIXED: [f64; 5] = [0.5, 1.0, -2.0, 0.7, 0.3]; // intercept, f0..f3
const NOISE: f64 = 0.1;

/// The true model: fixed effect, then per-user and per-item (intercept, slope).
struct Truth {
    users: Vec<[f64; 2]>,
    items: Vec<[f64; 2]>,
}

/// Random effects (intercept, slope) ~ N(0, 0.5²) for `users` users and `items` items.
fn truth(users: usize, items: usize, seed: u64) -> Truth {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let effect = Normal::new(0.0, 0.5).unwrap();
    let mut draw = |n: usize| -> Vec<[f64; 2]> {
        (0..n)
            .map(|_| [effect.sample(&mut rng), effect.sample(&mut rng)])
            .collect()
    };
    let users = draw(users);
    let items = draw(items);
    Truth { users, items }
}

/// Linear GAME records: `y = β·x + a_u + b_u·u + c_i + d_i·v + N(0, 0.1²)`, every record
/// with features f0..f3 (fixed effect), `u` (per-user) and `v` (per-item).
fn write_linear_game(path: &Path, truth: &Truth, records: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let (users, items) = (truth.users.len(), truth.items.len());
    let mut out = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for r in 0..records {
        let (user, item) = (r % users, rng.gen_range(0..items));
        let f: Vec<f64> = (0..4).map(|_| normal.sample(&mut rng)).collect();
        let (u, v) = (normal.sample(&mut rng), normal.sample(&mut rng));
        let y = FIXED[0]
            + f.iter().zip(&FIXED[1..]).map(|(x, b)| x * b).sum::<f64>()
            + truth.users[user][0]
            + truth.users[user][1] * u
            + truth.items[item][0]
            + truth.items[item][1] * v
            + NOISE * normal.sample(&mut rng);
        let mut features: Vec<serde_json::Value> = f
            .iter()
            .enumerate()
            .map(|(k, x)| json!({"name": format!("f{k}"), "term": "", "value": x}))
            .collect();
        features.push(json!({"name": "u", "term": "", "value": u}));
        features.push(json!({"name": "v", "term": "", "value": v}));
        let record =
            json!({"user": format!("u{user}"), "item": item, "label": y, "features": features});
        writeln!(out, "{record}").unwrap();
    }
}

fn config(passes: usize, penalty: f64) -> String {
    json!({
        "passes": passes,
        "feature_sets": {"fixed": ["f0", "f1", "f2", "f3"], "user": ["u"], "item": ["v"]},
        "coordinates": [
            {"name": "global", "type": "fixed", "feature_set": "fixed", "objective": "linear",
             "penalty": penalty, "intercept_penalty": false},
            {"name": "per-user", "type": "random", "entity_key": "user", "feature_set": "user",
             "objective": "linear", "penalty": penalty},
            {"name": "per-item", "type": "random", "entity_key": "item", "feature_set": "item",
             "objective": "linear", "penalty": penalty},
        ]
    })
    .to_string()
}

/// Coefficient `name` of a model (0 when it has none).
fn mean(model: &glmix::model::EntityModel, name: &str) -> f64 {
    model
        .features
        .iter()
        .position(|k| k.name == name)
        .map_or(0.0, |j| model.means[j])
}

#[test]
fn coordinate_descent_recovers_a_known_game_structure() {
    let dir = Dir::new();
    let (users, items, records) = (40, 25, 20_000);
    let truth = truth(users, items, 7);
    write_linear_game(&dir.path("train.jsonl"), &truth, records, 8);
    let config = GameConfig::parse(Path::new("config.json"), &config(8, 0.1)).unwrap();
    let data = GameData::read(&dir.path("train.jsonl"), &config.entity_keys()).unwrap();
    let out = game::train(&config, &data, None, Backend::Cpu, &mut |_| {}).unwrap();

    // Each step minimises the objective over one block with the others fixed, so the
    // objective never goes up (up to the solver's relative-reduction tolerance, 1e7·ε).
    for w in out.steps.windows(2) {
        assert!(
            w[1].objective <= w[0].objective * (1.0 + 1e-8),
            "objective went up: {:?} → {:?}",
            w[0],
            w[1]
        );
    }
    assert_eq!(out.steps.len(), 8 * 3);

    // Tolerances: a slope estimated from n records with unit-variance features and noise
    // σ = 0.1 has standard error σ/√n — 7e-4 for the fixed effect (n = 20,000), 7e-3 for a
    // user (500 records) and 1e-2 for an item (~800 records, a ~20 % spread in counts);
    // ridge λ = 0.1 shrinks a slope by λ/n ≤ 2e-4 relative. 0.05 is over 5 standard errors
    // of the noisiest slope. Intercepts are confounded (only β₀ + a_u + c_i is identified,
    // each block's ridge decides the split), so the check is on their sum, per cell.
    let [global, per_user, per_item] = &out.model.coordinates[..] else {
        panic!("three coordinates")
    };
    let g = &global.models()[0];
    for (k, want) in FIXED[1..].iter().enumerate() {
        let got = mean(g, &format!("f{k}"));
        assert!((got - want).abs() < 0.01, "fixed f{k}: {got} vs {want}");
    }
    for (u, t) in truth.users.iter().enumerate() {
        let m = per_user
            .get(&format!("u{u}"))
            .expect("every user has a model");
        assert!(
            (mean(m, "u") - t[1]).abs() < 0.05,
            "user {u} slope {} vs {}",
            mean(m, "u"),
            t[1]
        );
    }
    for (i, t) in truth.items.iter().enumerate() {
        let m = per_item
            .get(&i.to_string())
            .expect("every item has a model");
        assert!(
            (mean(m, "v") - t[1]).abs() < 0.05,
            "item {i} slope {} vs {}",
            mean(m, "v"),
            t[1]
        );
    }
    for (u, tu) in truth.users.iter().enumerate() {
        for (i, ti) in truth.items.iter().enumerate() {
            let got = mean(g, "intercept")
                + mean(per_user.get(&format!("u{u}")).unwrap(), "intercept")
                + mean(per_item.get(&i.to_string()).unwrap(), "intercept");
            let want = FIXED[0] + tu[0] + ti[0];
            assert!(
                (got - want).abs() < 0.05,
                "cell ({u}, {i}): intercepts sum to {got}, truth {want}"
            );
        }
    }
}

#[test]
fn data_controls_leave_out_small_entities_and_sample_large_ones() {
    let dir = Dir::new();
    // 30 users: user k has k + 1 records.
    let mut text = String::new();
    for k in 0..30 {
        for r in 0..=k {
            let x = ((k * 7 + r) as f64).sin();
            text += &format!(
                "{{\"user\":\"u{k}\",\"label\":{},\"features\":[{{\"name\":\"x\",\"value\":{x}}}]}}\n",
                2.0 * x + 0.1 * k as f64
            );
        }
    }
    fs::write(dir.path("data.jsonl"), text).unwrap();
    let text = json!({
        "feature_sets": {"x": ["x"]},
        "coordinates": [{"name": "per-user", "type": "random", "entity_key": "user",
            "feature_set": "x", "objective": "linear", "min_rows": 5, "max_rows": 20, "seed": 3}]
    })
    .to_string();
    let config = GameConfig::parse(Path::new("c.json"), &text).unwrap();
    let data = GameData::read(&dir.path("data.jsonl"), &config.entity_keys()).unwrap();
    let out = game::train(&config, &data, None, Backend::Cpu, &mut |_| {}).unwrap();
    let report = &out.data[0].active;
    // Users 0..=3 have 1–4 records (10 in all); users 20..=29 have 21–30 (255 in all, 200 kept).
    assert_eq!(report.entities_below_min_rows, 4);
    assert_eq!(report.rows_below_min_rows, 10);
    assert_eq!(report.entities_capped, 10);
    assert_eq!(report.rows_dropped_by_cap, 255 - 200);
    assert_eq!(report.entities_trained, 26);
    assert_eq!(out.model.coordinates[0].len(), 26);
    assert!(out.model.coordinates[0].get("u3").is_none());
    assert!(out.model.coordinates[0].get("u4").is_some());
    // The sample is seeded: the same seed gives the same sample, another seed another one.
    let again = game::active_rows(data.ids("user"), 5, Some(20), 3);
    assert_eq!(again, *report);
    let other = game::active_rows(data.ids("user"), 5, Some(20), 4);
    assert_ne!(other.rows, report.rows);
}

fn write_small_game(dir: &Dir) -> (String, String) {
    let truth = truth(12, 9, 11);
    write_linear_game(&dir.path("train.jsonl"), &truth, 3_000, 12);
    write_linear_game(&dir.path("valid.jsonl"), &truth, 600, 13);
    (dir.arg("train.jsonl"), dir.arg("valid.jsonl"))
}

/// `glmix game train --device cpu --config CONFIG --data DATA --out OUT` and `extra`,
/// which must succeed.
fn game_train(config: &str, data: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut argv = vec![
        "game", "train", "--device", "cpu", "--config", config, "--data", data, "--out", out,
    ];
    argv.extend(extra);
    glmix(&argv)
}

#[test]
fn a_one_coordinate_config_is_plain_glmix_train() {
    let dir = Dir::new();
    let (train, _) = write_small_game(&dir);
    let all = ["f0", "f1", "f2", "f3", "u", "v"];
    for (kind, key, flag) in [
        ("random", Some("user"), vec!["--entity-key", "user"]),
        ("fixed", None, vec!["--single-entity", "solo"]),
    ] {
        let mut c = json!({"name": "solo", "type": kind, "feature_set": "all",
            "objective": "linear", "penalty": 2.0, "hessian": "full"});
        if let Some(k) = key {
            c["entity_key"] = json!(k);
        }
        let config = dir.write(
            "one.json",
            &json!({"feature_sets": {"all": all}, "coordinates": [c]}).to_string(),
        );
        game_train(&config, &train, &dir.arg("game"), &[]);
        let mut argv = vec![
            "train",
            "--device",
            "cpu",
            "--data",
            &train,
            "--objective",
            "linear",
            "--penalty",
            "2",
            "--hessian",
            "full",
            "--out",
        ];
        let plain = dir.arg("plain.jsonl");
        argv.push(&plain);
        argv.extend(flag);
        glmix(&argv);
        assert_eq!(
            fs::read(dir.path("game/solo.jsonl")).unwrap(),
            fs::read(dir.path("plain.jsonl")).unwrap(),
            "{kind}: the GAME coordinate's models differ from glmix train's"
        );
    }
}

#[test]
fn game_train_score_and_eval_round_trip() {
    let dir = Dir::new();
    let (train, valid) = write_small_game(&dir);
    let config = dir.write("config.json", &config(2, 1.0));
    let model = dir.arg("model");
    let out = game_train(&config, &train, &model, &["--validation", &valid]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    let last_rmse = steps[5]["validation"]["rmse"].as_f64().unwrap();
    let first_rmse = steps[0]["validation"]["rmse"].as_f64().unwrap();
    // The fixed effect alone leaves the random effects' variance (≈ 4 × 0.5²); all three
    // coordinates leave little more than the noise.
    assert!(first_rmse > 0.7, "fixed effect alone: RMSE {first_rmse}");
    assert!(last_rmse < 0.3, "whole model: RMSE {last_rmse}");
    for f in [
        "config.json",
        "game.json",
        "global.jsonl",
        "per-user.jsonl",
        "per-item.jsonl",
    ] {
        assert!(dir.path("model").join(f).is_file(), "{f} missing");
    }

    let scores = dir.arg("scores.jsonl");
    glmix(&[
        "game", "score", "--model", &model, "--data", &valid, "--out", &scores,
    ]);
    let lines: Vec<serde_json::Value> = fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 600);
    let labels: Vec<f64> = fs::read_to_string(&valid)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["label"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let mut sse = 0.0;
    for (line, y) in lines.iter().zip(&labels) {
        let terms: f64 = line["terms"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        let score = line["score"].as_f64().unwrap();
        assert!(
            (terms - score).abs() < 1e-9,
            "the terms add up to the score (offsets are 0)"
        );
        sse += (score - y) * (score - y);
    }
    let rmse = (sse / 600.0).sqrt();
    assert!(
        (rmse - last_rmse).abs() < 1e-9,
        "score and train agree: {rmse} vs {last_rmse}"
    );

    let out = glmix(&["game", "eval", "--model", &model, "--data", &valid]);
    let eval: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((eval["rmse"].as_f64().unwrap() - last_rmse).abs() < 1e-9);
    assert_eq!(eval["coordinates"][1]["models"], 12);

    // A second run replaces the model directory; a directory that is not a GAME model is
    // never replaced.
    game_train(&config, &train, &model, &[]);
    fs::create_dir(dir.path("precious")).unwrap();
    fs::write(dir.path("precious/keep.txt"), "x").unwrap();
    let out = glmix_output(&[
        "game",
        "train",
        "--config",
        &config,
        "--data",
        &train,
        "--out",
        &dir.arg("precious"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to replace it"));
    assert_eq!(
        fs::read_to_string(dir.path("precious/keep.txt")).unwrap(),
        "x"
    );
}

#[test]
fn game_errors_name_the_file_and_field_and_write_nothing() {
    let dir = Dir::new();
    let (train, _) = write_small_game(&dir);
    let fail = |config: &str, data: &str, expected: &[&str]| {
        let out = glmix_output(&[
            "game",
            "train",
            "--device",
            "cpu",
            "--config",
            config,
            "--data",
            data,
            "--out",
            &dir.arg("model"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        for e in expected {
            assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
        }
        assert!(
            !dir.path("model").exists(),
            "a failed run left a model behind"
        );
    };
    let good = config(1, 1.0);
    let unknown_set = dir.write(
        "c1.json",
        &good.replace("\"feature_set\":\"item\"", "\"feature_set\":\"items\""),
    );
    fail(
        &unknown_set,
        &train,
        &["c1.json", "feature_set", "unknown feature set \"items\""],
    );
    let duplicate = dir.write(
        "c2.json",
        &good.replace("\"name\":\"per-item\"", "\"name\":\"per-user\""),
    );
    fail(
        &duplicate,
        &train,
        &["c2.json", "duplicate coordinate \"per-user\""],
    );
    let typo_feature = dir.write("c3.json", &good.replace("[\"v\"]", "[\"w\"]"));
    fail(
        &typo_feature,
        &train,
        &[
            "feature set \"item\" names [\"w\"], which no record of",
            "train.jsonl",
        ],
    );
    // A record without a random effect's key.
    let bad = dir.write("bad.jsonl", "{\"user\":\"a\",\"item\":1,\"label\":1,\"features\":[{\"name\":\"v\",\"value\":1}]}\n{\"user\":\"b\",\"label\":1,\"features\":[]}\n");
    let c = dir.write("c4.json", &good);
    fail(&c, &bad, &["bad.jsonl:2: item: missing entity field"]);
}

#[test]
fn game_train_on_the_gpu_matches_the_cpu() {
    let dir = Dir::new();
    let (train, valid) = write_small_game(&dir);
    let config = dir.write("config.json", &config(2, 1.0));
    let run = |device: &str, solver_on: &str| {
        glmix_output(&[
            "game",
            "train",
            "--device",
            device,
            "--solver-on",
            solver_on,
            "--config",
            &config,
            "--data",
            &train,
            "--validation",
            &valid,
            "--out",
            &dir.arg(&format!("{device}-{solver_on}")),
        ])
    };
    let cpu = run("cpu", "host");
    let rmse = |out: &std::process::Output| {
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        summary["steps"][5]["validation"]["rmse"].as_f64().unwrap()
    };
    for solver_on in ["host", "device"] {
        let gpu = run("gpu", solver_on);
        if !common::gpu_ran(&gpu, "game_train_on_the_gpu_matches_the_cpu") {
            return;
        }
        let (g, c) = (rmse(&gpu), rmse(&cpu));
        // f32 data terms on the GPU: the optima agree to about 1e-4 relative, far below
        // the noise floor (0.1) the RMSE sits at.
        assert!(
            (g - c).abs() <= 1e-3 * c,
            "GPU validation RMSE {g} (step on the {solver_on}), CPU {c}"
        );
    }
}

#[test]
fn a_logistic_game_reports_labels_other_than_0_and_1() {
    let dir = Dir::new();
    // The linear workload's labels are continuous: a logistic model would read them as
    // negatives, which `game train` must point out.
    let (train, _) = write_small_game(&dir);
    let c = json!({"name": "fixed", "type": "fixed", "feature_set": "all",
        "objective": "logistic", "penalty": 1.0});
    let config = dir.write(
        "logistic.json",
        &json!({"feature_sets": {"all": ["f0", "f1"]}, "coordinates": [c]}).to_string(),
    );
    let out = game_train(&config, &train, &dir.arg("game"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("records have a label other than 0 or 1 (the first is record 1 of"),
        "{stderr}"
    );
}
