//! `glmix score`.

use super::{models_for, DataArgs};
use anyhow::Result;
use clap::Args;
use glmix::io::write_atomic;
use glmix::score::{score, Thompson};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Trained models: model JSON lines or a model store (`glmix stream --store`).
    #[arg(long, value_name = "MODELS")]
    model: PathBuf,
    /// Thompson sampling: score each record with its own posterior draw θ̃ ~ N(θ, t·H⁻¹),
    /// t being this exploration multiplier (1 = the posterior itself).
    #[arg(long, value_name = "T")]
    thompson: Option<f64>,
    /// Seed of the Thompson draws.
    #[arg(long, default_value_t = 0, requires = "thompson")]
    seed: u64,
    /// Output scores (JSON lines: entity, row — the 0-based record number — and score, the margin).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(a: ScoreArgs) -> Result<()> {
    let data = a.data.read()?;
    let models = models_for(&data, &a.model)?;
    let thompson = a.thompson.map(|multiplier| Thompson {
        multiplier,
        seed: a.seed,
    });
    let scores = score(&data, &models, thompson)?;
    write_atomic(&a.out, |f| {
        for (i, s) in scores.iter().enumerate() {
            writeln!(
                f,
                "{}",
                json!({"entity": data.entities.key(data.entity[i]), "row": i, "score": s})
            )?;
        }
        Ok(())
    })?;
    eprintln!(
        "scored {} records of {} entities into {}",
        scores.len(),
        data.entities.len(),
        a.out.display()
    );
    Ok(())
}
