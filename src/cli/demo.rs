//! `glmix demo`: the main job on a built-in default workload.
//!
//! A seeded synthetic stream (per-user random effects on top of a global model's offsets)
//! is written as NTV JSON lines in time order and run through `glmix stream`: cut into
//! time windows, each first scored with the models as they stand (progressive
//! validation), then trained with `bayes-logistic`, the previous models serving as the
//! prior, and committed to a model store.

use super::stream::{stream_into, Outputs};
use super::train::{Compute, Device};
use anyhow::Result;
use clap::Args;
use glmix::data::{write_jsonl, EntityMode, ReadOptions};
use glmix::io::write_output;
use glmix::objective::{Loss, ObjectiveKind};
use glmix::stream::{Batching, CommitPolicy, OnBadRecord, Source, StreamConfig, Update};
use glmix::synth::{generate, time_slice, SyntheticSpec};
use glmix::train::TrainConfig;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the generated stream, the model store, its metrics and their plot.
    #[arg(long, default_value = "glmix-demo")]
    out_dir: PathBuf,
    /// Entities (users) in the workload.
    #[arg(long, default_value_t = 20_000)]
    entities: usize,
    /// Mean records per entity over the whole stream.
    #[arg(long, default_value_t = 40)]
    rows: usize,
    /// Time windows the stream is cut into (mini-batches).
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

pub fn run(a: DemoArgs) -> Result<()> {
    let compute = Compute::choose(a.device)?;
    std::fs::create_dir_all(&a.out_dir)?;
    let spec = SyntheticSpec {
        entities: a.entities,
        rows_per_entity: a.rows,
        features: 24,
        density: 0.25,
        ragged: true,
        zipf: None,
        loss: Loss::Logistic,
        seed: a.seed,
    };
    println!(
        "glmix demo: {} users, ~{} records each, 24 sparse binary features, {} time windows",
        a.entities, a.rows, a.batches
    );
    // Timestamps are uniform on [0, 1): in time order they form the stream.
    let stream = time_slice(&generate(&spec).data, 0.0, 1.0);
    let stream_path = a.out_dir.join("stream.jsonl");
    write_output(&stream_path, |f| write_jsonl(&stream, "entity", f))?;
    println!(
        "wrote {} records to {}\n",
        stream.num_rows(),
        stream_path.display()
    );

    let mut train = TrainConfig::new(ObjectiveKind::BayesLogistic);
    train.regularization.penalty = a.penalty;
    train.regularization.delta = a.delta;
    let config = StreamConfig {
        train,
        batching: Batching::Window(1.0 / a.batches as f64),
        read: ReadOptions {
            default_label: None,
            entity: EntityMode::Key("entity".into()),
            timestamp_field: Some("timestamp".into()),
            feature_columns: Vec::new(),
            feature_bags: Vec::new(),
        },
        offset_model: None,
        on_bad_record: OnBadRecord::Fail,
        strict_keys: false,
        update: Update::Incremental,
        commit: CommitPolicy::EVERY_MINI_BATCH,
    };
    let outputs = Outputs {
        store: a.out_dir.join("models.redb"),
        metrics: Some(a.out_dir.join("metrics.csv")),
        plot: Some(a.out_dir.join("metrics.svg")),
    };
    // A fresh run every time: the demo's store is its own.
    match std::fs::remove_file(&outputs.store) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    stream_into(
        &Source::File(stream_path.clone()),
        &config,
        &compute,
        &outputs,
    )?;

    println!("\nEach row is progressive validation: the mini-batch is scored by the models of the");
    println!(
        "batches before it, and only then trained (bayes-logistic, λ = {}, δ = {},",
        a.penalty, a.delta
    );
    println!(
        "diagonal Hessian, device {}); the running columns cover the stream so far.",
        compute.name()
    );
    println!(
        "\nfiles: {} (records), {} (model store), metrics.csv and metrics.svg",
        stream_path.display(),
        outputs.store.display()
    );
    println!(
        "next:  glmix eval --data {} --model {}",
        stream_path.display(),
        outputs.store.display()
    );
    println!(
        "       glmix store export --store {} --out models.jsonl",
        outputs.store.display()
    );
    Ok(())
}
