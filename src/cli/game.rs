//! `glmix game train | score | eval`: GAME models (a fixed effect plus random effects of
//! several types) trained by coordinate descent; see `glmix::game`.

use super::notice_non_binary_labels;
use super::train::{Compute, Device, SolverOnArg};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use glmix::game::{self, CoordinateKind, CoordinateStep, GameConfig, GameData, GameModel, Metrics};
use glmix::io::{check_paths, write_output, PathRole};
use glmix::metrics::{entity_auc, is_positive, non_binary_labels};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct GameArgs {
    #[command(subcommand)]
    command: GameCommand,
}

#[derive(Subcommand, Debug)]
enum GameCommand {
    /// Train every coordinate of a configuration by coordinate descent into a model directory.
    Train(TrainArgs),
    /// Score records with a GAME model: the margin and each coordinate's term.
    Score(ScoreArgs),
    /// Evaluate a GAME model on labelled records: AUC, log-loss, RMSE, per-entity AUC.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// The GAME configuration (JSON): feature sets, coordinates, passes.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Training records: NTV JSON lines with a field per random effect's entity key.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Validation records, scored after every coordinate step.
    #[arg(long, value_name = "FILE")]
    validation: Option<PathBuf>,
    /// Output model directory (written atomically; a previous GAME model there is replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Where to evaluate: auto (a GPU when one works, else the CPU), cpu or gpu.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// On the GPU, where the random effects' L-BFGS step runs: host or device.
    #[arg(long, value_enum, default_value = "host")]
    solver_on: SolverOnArg,
}

#[derive(Args, Debug)]
struct ScoreArgs {
    /// A model directory written by `glmix game train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Records to score (NTV JSON lines).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Output scores (JSON lines: row — the 0-based record number —, score — the margin —,
    /// and terms: each coordinate's share of it).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A model directory written by `glmix game train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Labelled records (NTV JSON lines).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Also report the per-entity AUC (averaged over entities with both classes) for the
    /// entities of this record field, e.g. a random effect's entity key.
    #[arg(long, value_name = "KEY")]
    entity_auc: Option<String>,
}

pub fn run(a: GameArgs) -> Result<()> {
    match a.command {
        GameCommand::Train(a) => train(a),
        GameCommand::Score(a) => score(a),
        GameCommand::Eval(a) => eval(a),
    }
}

fn metrics_json(m: &Metrics) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in m.defined() {
        out.insert(k.into(), json!(v));
    }
    Value::Object(out)
}

fn step_json(s: &CoordinateStep) -> Value {
    json!({
        "pass": s.pass,
        "coordinate": s.coordinate,
        "seconds": s.seconds,
        "models": s.models,
        "not_converged": s.not_converged,
        "objective": s.objective,
        "validation": s.validation.as_ref().map(metrics_json),
    })
}

fn train(a: TrainArgs) -> Result<()> {
    let mut paths = vec![
        PathRole::input("--config", &a.config),
        PathRole::input("--data", &a.data),
        PathRole::output_dir("--out", &a.out),
    ];
    paths.extend(
        a.validation
            .as_deref()
            .map(|p| PathRole::input("--validation", p)),
    );
    check_paths(&paths)?;
    let clock = Instant::now();
    let mut config = GameConfig::read(&a.config)?;
    for c in &mut config.coordinates {
        c.train.solver_on = a.solver_on.into();
    }
    let compute = Compute::choose(a.device)?;
    let keys = config.entity_keys();
    let data = GameData::read(&a.data, &keys)?;
    let validation = a
        .validation
        .as_deref()
        .map(|v| GameData::read(v, &keys))
        .transpose()?;
    let read_seconds = clock.elapsed().as_secs_f64();
    if config.objective().loss() == glmix::objective::Loss::Logistic {
        if let (count, Some(first)) = non_binary_labels(&data.records.label) {
            notice_non_binary_labels(
                count,
                data.num_records(),
                first + 1,
                &a.data,
                data.records.label[first],
                "a logistic model reads them as negatives",
            );
        }
    }
    eprintln!(
        "glmix: {} training records{}, {} coordinates, {} pass(es), device {}",
        data.num_records(),
        validation.as_ref().map_or(String::new(), |v| format!(
            ", {} validation records",
            v.num_records()
        )),
        config.coordinates.len(),
        config.passes,
        compute.name()
    );
    let clock = Instant::now();
    let out = game::train(
        &config,
        &data,
        validation.as_ref(),
        compute.backend(),
        &mut |s| {
            let validation = s.validation.as_ref().map_or(String::new(), |m| {
                let parts: Vec<String> = m.defined().map(|(k, v)| format!("{k} {v:.4}")).collect();
                format!(", validation {}", parts.join(" "))
            });
            eprintln!(
            "glmix: pass {} {}: {} model(s) in {:.2} s ({} not converged), objective {:.6e}{validation}",
            s.pass, s.coordinate, s.models, s.seconds, s.not_converged, s.objective
        );
        },
    )?;
    let train_seconds = clock.elapsed().as_secs_f64();
    for d in &out.data {
        let r = &d.active;
        if r.entities_below_min_rows + r.entities_capped > 0 {
            eprintln!(
                "glmix: {}: {} entities trained; {} below min_rows ({} records scored by the other coordinates only); {} capped at max_rows ({} records left out of training)",
                d.coordinate, r.entities_trained, r.entities_below_min_rows, r.rows_below_min_rows, r.entities_capped, r.rows_dropped_by_cap
            );
        }
    }
    let summary = json!({
        "device": compute.name(),
        "training_records": data.num_records(),
        "validation_records": validation.as_ref().map(|v| v.num_records()),
        "read_seconds": read_seconds,
        "train_seconds": train_seconds,
        "data": out.data.iter().map(|d| json!({
            "coordinate": d.coordinate,
            "entities_trained": d.active.entities_trained,
            "entities_below_min_rows": d.active.entities_below_min_rows,
            "rows_below_min_rows": d.active.rows_below_min_rows,
            "entities_capped": d.active.entities_capped,
            "rows_dropped_by_cap": d.active.rows_dropped_by_cap,
        })).collect::<Vec<_>>(),
        "steps": out.steps.iter().map(step_json).collect::<Vec<_>>(),
    });
    out.model.write(&a.out, &summary)?;
    eprintln!(
        "glmix: trained in {train_seconds:.2} s (read {read_seconds:.2} s); model written to {}",
        a.out.display()
    );
    println!("{summary}");
    Ok(())
}

fn score(a: ScoreArgs) -> Result<()> {
    check_paths(&[
        PathRole::input("--model", &a.model),
        PathRole::input("--data", &a.data),
        PathRole::output("--out", &a.out),
    ])?;
    let model = GameModel::read(&a.model)?;
    let data = GameData::read(&a.data, &model.config.entity_keys())?;
    let (scores, terms) = model.score(&data)?;
    let names: Vec<&str> = model
        .config
        .coordinates
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    write_output(&a.out, |f| {
        for (i, s) in scores.iter().enumerate() {
            let t: serde_json::Map<String, Value> = names
                .iter()
                .zip(&terms)
                .map(|(n, t)| (n.to_string(), json!(t[i])))
                .collect();
            writeln!(f, "{}", json!({"row": i, "score": s, "terms": t}))?;
        }
        Ok(())
    })?;
    eprintln!(
        "glmix: scored {} records into {}",
        scores.len(),
        a.out.display()
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let model = GameModel::read(&a.model)?;
    let mut keys = model.config.entity_keys();
    if let Some(k) = &a.entity_auc {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let data = GameData::read(&a.data, &keys)?;
    let (scores, _) = model.score(&data)?;
    let loss = model.config.objective().loss();
    let m = game::metrics(loss, &data.records.label, &scores);
    let mut out = metrics_json(&m);
    if let Some(key) = &a.entity_auc {
        if loss != glmix::objective::Loss::Logistic {
            bail!("--entity-auc needs a logistic model");
        }
        let positive: Vec<bool> = data.records.label.iter().map(|&y| is_positive(y)).collect();
        let (value, entities) = entity_auc(&data.ids(key).of_record, &scores, &positive);
        out["entity_auc"] = json!({"key": key, "value": value, "entities": entities});
    }
    let trained: Vec<Value> = model
        .config
        .coordinates
        .iter()
        .zip(&model.coordinates)
        .map(|(c, m)| {
            json!({"coordinate": c.name, "models": m.len(), "type": match c.kind {
                CoordinateKind::Fixed => "fixed", CoordinateKind::Random { .. } => "random" }})
        })
        .collect();
    out["records"] = json!(data.num_records());
    out["coordinates"] = json!(trained);
    println!("{out}");
    Ok(())
}
