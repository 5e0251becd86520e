//! `glmix demo`: the main job on a built-in default workload.
//!
//! A seeded synthetic stream (per-user random effects on top of a global model's offsets)
//! is written as NTV JSON lines and cut into time-ordered mini-batches. Each mini-batch is
//! first scored with the models as they stand (progressive validation), then trained with
//! `bayes-logistic`, the previous models serving as the prior.

use super::train::{Compute, Device};
use anyhow::Result;
use clap::Args;
use glmix::data::{write_jsonl, Dataset};
use glmix::io::write_atomic;
use glmix::metrics::{auc, entity_auc, is_positive, logloss};
use glmix::model::{write_models, ModelSet};
use glmix::objective::{Loss, ObjectiveKind};
use glmix::score::score;
use glmix::synth::{generate, time_slice, SyntheticSpec};
use glmix::train::{fit_on, untouched_priors, TrainConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the generated data and the models of every mini-batch.
    #[arg(long, default_value = "glmix-demo")]
    out_dir: PathBuf,
    /// Entities (users) in the workload.
    #[arg(long, default_value_t = 20_000)]
    entities: usize,
    /// Mean records per entity over the whole stream.
    #[arg(long, default_value_t = 40)]
    rows: usize,
    /// Time-ordered mini-batches.
    #[arg(long, default_value_t = 4)]
    batches: usize,
    /// L2 penalty λ.
    #[arg(long, default_value_t = 10.0)]
    penalty: f64,
    /// Forgetting factor δ.
    #[arg(long, default_value_t = 0.8)]
    delta: f64,
    /// Seed of the workload.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Evaluator: auto, cpu or gpu.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
}

struct Metrics {
    auc: Option<f64>,
    logloss: Option<f64>,
    entity_auc: Option<f64>,
}

fn metrics(data: &Dataset, scores: &[f64]) -> Metrics {
    let positive: Vec<bool> = data.label.iter().map(|&y| is_positive(y)).collect();
    Metrics {
        auc: auc(scores, &positive),
        logloss: logloss(scores, &positive),
        entity_auc: entity_auc(&data.entity, scores, &positive).0,
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

pub fn run(a: DemoArgs) -> Result<()> {
    let compute = Compute::choose(a.device)?;
    let device = compute.name();
    std::fs::create_dir_all(&a.out_dir)?;
    let spec = SyntheticSpec {
        entities: a.entities,
        rows_per_entity: a.rows,
        features: 24,
        density: 0.25,
        ragged: true,
        loss: Loss::Logistic,
        seed: a.seed,
    };
    println!("glmix demo: {} users, ~{} records each, 24 sparse binary features, {} time-ordered mini-batches", a.entities, a.rows, a.batches);
    let stream = generate(&spec).data;
    let stream_path = a.out_dir.join("stream.jsonl");
    write_atomic(&stream_path, |f| write_jsonl(&stream, "entity", f))?;
    println!(
        "wrote {} records to {}\n",
        stream.num_rows(),
        stream_path.display()
    );

    let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
    config.regularization.penalty = a.penalty;
    config.regularization.delta = a.delta;
    let mut models = ModelSet::new();
    println!(
        "{:>5} {:>9} {:>8} | {:>11} {:>11} | {:>10} {:>10} {:>10} | {:>8} {:>11}",
        "batch",
        "records",
        "users",
        "AUC offset",
        "AUC glmix",
        "logloss o",
        "logloss g",
        "user-AUC g",
        "train s",
        "users/s"
    );
    let mut last_models = PathBuf::new();
    for k in 0..a.batches {
        let (from, to) = (
            k as f64 / a.batches as f64,
            (k + 1) as f64 / a.batches as f64,
        );
        let batch = time_slice(&stream, from, to);
        let offsets_only = metrics(&batch, &batch.offset);
        let before = metrics(&batch, &score(&batch, &models, None)?);

        let clock = Instant::now();
        let out = fit_on(compute.backend(), Some(&models), &batch, &config, &|_| {})?;
        compute.report_fallbacks(&out);
        let seconds = clock.elapsed().as_secs_f64();
        let carried: Vec<_> = untouched_priors(&models, &batch).cloned().collect();
        models = out.models.into_iter().chain(carried).collect();
        last_models = a.out_dir.join(format!("models-{}.jsonl", k + 1));
        write_models(&last_models, models.models())?;
        println!(
            "{:>5} {:>9} {:>8} | {:>11} {:>11} | {:>10} {:>10} {:>10} | {:>8.2} {:>11.0}",
            k + 1,
            batch.num_rows(),
            batch.entities.len(),
            fmt(offsets_only.auc),
            fmt(before.auc),
            fmt(offsets_only.logloss),
            fmt(before.logloss),
            fmt(before.entity_auc),
            seconds,
            out.reports.len() as f64 / seconds,
        );
    }
    println!("\nEach row is progressive validation: the mini-batch is scored by the models of the");
    println!(
        "batches before it (\"glmix\"), or by the global model's offsets alone, and only then"
    );
    println!(
        "trained (bayes-logistic, λ = {}, δ = {}, diagonal Hessian, device {device}).",
        a.penalty, a.delta
    );
    println!(
        "\nfiles: {} (records), {} (latest models; models-N.jsonl after each batch)",
        stream_path.display(),
        last_models.display()
    );
    println!(
        "next:  glmix train --data {} --objective bayes-logistic --prior {} --out updated.jsonl",
        stream_path.display(),
        last_models.display()
    );
    println!(
        "       glmix eval --data {} --model {}",
        stream_path.display(),
        last_models.display()
    );
    Ok(())
}
