//! GDMix's MovieLens-100K benchmark with `glmix game train`: a global logistic model, then
//! per-user, then per-movie random effects, each on the residual of the ones before.
//!
//! ```text
//! cargo run --release --example ml100k_game -- --data ../shared/data/ml-100k --out target/ml100k-game
//! ```
//!
//! Protocol — GDMix's `scripts/download_process_movieLens_data.py` and its
//! `lr-single-node-movieLens.config`, as far as this copy of the data allows:
//! - label 1 when the rating is > 3, else 0;
//! - user features: age / 100, gender (one-hot), occupation (one-hot); movie features:
//!   genres (one-hot) and release year / 2000 (GDMix parses the year out of the release
//!   date; this copy has the year itself; a movie without one gets no such feature);
//! - `global` on all of them, `per-user` on the movie features, `per-movie` on the user
//!   features; every model logistic with an unpenalised intercept, λ = 1, at most 100
//!   L-BFGS iterations and 10 correction pairs; one coordinate-descent pass;
//! - a uniformly random 80/20 split of the ratings (GDMix draws it unseeded; here it is
//!   seeded with `--seed`).
//!
//! The validation AUC after each coordinate is GDMix's table row by row. Prints a Markdown
//! table beside GDMix's published figures, with glmix's wall time.

#[path = "common/recbole.rs"]
mod recbole;

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// The ml-100k folder (ml-100k.inter, .item, .user).
    #[arg(long, default_value = "../shared/data/ml-100k")]
    data: PathBuf,
    /// Output folder: records, configuration, model.
    #[arg(long, default_value = "target/ml100k-game")]
    out: PathBuf,
    /// Seeds of the 80/20 split: one run per seed, and the table gives the mean and range.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
    seeds: Vec<u64>,
    /// Coordinate-descent passes (GDMix runs one).
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// Fail (exit 1) unless the whole model's mean validation AUC after the last step is at
    /// least this (CI checks GDMix's 0.7599).
    #[arg(long)]
    require_auc: Option<f64>,
    /// The glmix binary (default: the one built beside this example).
    #[arg(long)]
    glmix: Option<PathBuf>,
}

/// GDMix's published validation AUCs (README, "Try out the movieLens example").
const GDMIX: [(&str, f64); 3] = [
    ("global", 0.6237),
    ("per-user", 0.7058),
    ("per-movie", 0.7599),
];

fn feature(name: &str, term: &str, value: f64) -> Value {
    json!({"name": name, "term": term, "value": value})
}

/// One split: writes the records and the configuration under `out`, runs `glmix game
/// train`, and returns its summary and wall seconds.
fn run(a: &Args, seed: u64, out: &Path) -> Result<(Value, f64), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let mut users: HashMap<String, Vec<Value>> = HashMap::new();
    for r in recbole::table(&a.data.join("ml-100k.user")) {
        let age: f64 = r[1].parse()?;
        users.insert(
            r[0].clone(),
            vec![
                feature("age", "", age / 100.0),
                feature("gender", &r[2], 1.0),
                feature("occupation", &r[3], 1.0),
            ],
        );
    }
    let mut movies: HashMap<String, Vec<Value>> = HashMap::new();
    for r in recbole::table(&a.data.join("ml-100k.item")) {
        let mut f: Vec<Value> = r
            .get(3)
            .map(|g| {
                g.split_whitespace()
                    .map(|g| feature("genre", g, 1.0))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(year) = r.get(2).and_then(|y| y.parse::<f64>().ok()) {
            f.push(feature("release_year", "", year / 2000.0));
        }
        movies.insert(r[0].clone(), f);
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (train_path, valid_path) = (out.join("train.jsonl"), out.join("validation.jsonl"));
    let mut train = std::io::BufWriter::new(std::fs::File::create(&train_path)?);
    let mut valid = std::io::BufWriter::new(std::fs::File::create(&valid_path)?);
    let (mut n_train, mut n_valid) = (0, 0);
    for r in recbole::table(&a.data.join("ml-100k.inter")) {
        let rating: f64 = r[2].parse()?;
        let mut features = users[&r[0]].clone();
        features.extend(movies[&r[1]].iter().cloned());
        let record = json!({
            "user_id": r[0], "movie_id": r[1],
            "label": if rating > 3.0 { 1 } else { 0 },
            "features": features,
        });
        if rng.gen::<f64>() < 0.8 {
            writeln!(train, "{record}")?;
            n_train += 1;
        } else {
            writeln!(valid, "{record}")?;
            n_valid += 1;
        }
    }
    train.flush()?;
    valid.flush()?;

    let coordinate = |name: &str, set: &str, key: Option<&str>| {
        let mut c = json!({
            "name": name, "type": if key.is_some() { "random" } else { "fixed" },
            "feature_set": set, "objective": "logistic", "penalty": 1.0,
            "intercept_penalty": false, "max_iterations": 100, "memory": 10,
        });
        if let Some(k) = key {
            c["entity_key"] = json!(k);
        }
        c
    };
    let config = json!({
        "passes": a.passes,
        "feature_sets": {
            "global": ["age", "gender", "occupation", "genre", "release_year"],
            "movie": ["genre", "release_year"],
            "user": ["age", "gender", "occupation"],
        },
        "coordinates": [
            coordinate("global", "global", None),
            coordinate("per-user", "movie", Some("user_id")),
            coordinate("per-movie", "user", Some("movie_id")),
        ],
    });
    let config_path = out.join("game-config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;

    let glmix = a.glmix.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("target/release"))
            .join("glmix")
    });
    let clock = Instant::now();
    let output = Command::new(&glmix)
        .args(["game", "train", "--device", "cpu", "--config"])
        .arg(&config_path)
        .arg("--data")
        .arg(&train_path)
        .arg("--validation")
        .arg(&valid_path)
        .arg("--out")
        .arg(out.join("model"))
        .output()
        .map_err(|e| {
            format!(
                "{}: {e} (build it with cargo build --release)",
                glmix.display()
            )
        })?;
    let wall = clock.elapsed().as_secs_f64();
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(format!("glmix game train failed: {}", output.status).into());
    }
    let summary: Value = serde_json::from_slice(&output.stdout)?;
    eprintln!("seed {seed}: {n_train} training and {n_valid} validation ratings, {wall:.2} s");
    Ok((summary, wall))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    // (pass, coordinate) → validation AUC per seed, in step order.
    let mut rows: Vec<((u64, String), Vec<f64>)> = Vec::new();
    let mut walls = Vec::new();
    let mut steps_seconds: Vec<Vec<f64>> = Vec::new();
    for &seed in &a.seeds {
        let (summary, wall) = run(&a, seed, &a.out.join(format!("seed-{seed}")))?;
        walls.push(wall);
        let steps = summary["steps"].as_array().ok_or("summary without steps")?;
        for (k, s) in steps.iter().enumerate() {
            let key = (
                s["pass"].as_u64().unwrap_or(0),
                s["coordinate"].as_str().unwrap_or("?").to_string(),
            );
            let auc = s["validation"]["auc"].as_f64().unwrap_or(f64::NAN);
            let seconds = s["seconds"].as_f64().unwrap_or(f64::NAN);
            match rows.get_mut(k) {
                Some((_, v)) => {
                    v.push(auc);
                    steps_seconds[k].push(seconds);
                }
                None => {
                    rows.push((key, vec![auc]));
                    steps_seconds.push(vec![seconds]);
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "MovieLens-100K, GDMix's protocol, {} pass(es); validation AUC over {} random 80/20 splits (seeds {:?})\n",
        a.passes,
        a.seeds.len(),
        a.seeds
    );
    println!("| pass | model added | glmix AUC, mean | glmix AUC, range | GDMix AUC (one split) | glmix step seconds (median) |");
    println!("|---|---|---|---|---|---|");
    for (((pass, name), aucs), seconds) in rows.iter().zip(steps_seconds.iter_mut()) {
        let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
        let (lo, hi) = aucs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        let gdmix = GDMIX
            .iter()
            .find(|(n, _)| n == name && *pass == 1)
            .map_or(String::new(), |(_, v)| format!("{v:.4}"));
        println!(
            "| {pass} | {name} | {mean:.4} | {lo:.4} – {hi:.4} | {gdmix} | {:.3} |",
            median(seconds)
        );
    }
    let (_, last) = rows.last().ok_or("no steps")?;
    let final_auc = last.iter().sum::<f64>() / last.len() as f64;
    println!(
        "\nglmix wall time of one whole `glmix game train` process (read, train, validate, write), median over the splits: {:.2} s on {} threads. GDMix: about 2 minutes on 16 cores.",
        median(&mut walls),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Some(want) = a.require_auc {
        if final_auc.is_nan() || final_auc < want {
            return Err(
                format!("mean validation AUC {final_auc:.4} is below the required {want}").into(),
            );
        }
    }
    Ok(())
}
