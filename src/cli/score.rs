//! `glmix score`.

use super::train::{Compute, Device};
use super::{models_for, DataArgs};
use anyhow::{bail, Result};
use clap::Args;
use glmix::io::{check_paths, write_output, PathRole};
use glmix::score::{MarginPlan, Thompson};
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
    /// Where to sum the margins: auto (a hardware GPU when one works, else the CPU), cpu
    /// (f64) or gpu (f32 sums, about 7 significant digits; the offsets are added in f64).
    /// Thompson sampling always runs on the CPU: every record draws its own coefficients.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Output scores (JSON lines: entity, row — the 0-based record number — and score, the
    /// margin; Parquet with the same columns when FILE ends in `.parquet`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(a: ScoreArgs) -> Result<()> {
    let mut paths = a.data.inputs();
    paths.push(PathRole::input("--model", &a.model));
    paths.push(PathRole::output("--out", &a.out));
    check_paths(&paths)?;
    let data = a.data.read_unlabelled()?;
    let models = models_for(&data, &a.model)?;
    let plan = MarginPlan::new(&data, &models);
    let (scores, device) = match a.thompson {
        Some(multiplier) => {
            if a.device == Device::Gpu {
                bail!("--thompson draws each record's coefficients on the CPU; use --device cpu or auto");
            }
            let t = Thompson {
                multiplier,
                seed: a.seed,
            };
            (plan.thompson_margins(t)?, "cpu".to_string())
        }
        None => {
            let compute = Compute::choose(a.device)?;
            match compute.gpu() {
                Some(ctx) => match plan.margins_gpu(ctx) {
                    Ok(scores) => (scores, compute.name()),
                    Err(e) => {
                        eprintln!("glmix: notice: the GPU failed ({e}); scoring on the CPU");
                        (plan.margins(), "cpu".to_string())
                    }
                },
                None => (plan.margins(), compute.name()),
            }
        }
    };
    #[cfg(feature = "parquet")]
    if a.out.extension().is_some_and(|e| e == "parquet") {
        let entity = |i: usize| data.entities.key(data.entity[i]).as_str();
        write_output(&a.out, |f| {
            glmix::data::write_scores_parquet(f, entity, &scores)
        })?;
        eprintln!(
            "scored {} records of {} entities into {} ({device}, Parquet)",
            scores.len(),
            data.entities.len(),
            a.out.display()
        );
        return Ok(());
    }
    write_output(&a.out, |f| {
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
        "scored {} records of {} entities into {} ({device})",
        scores.len(),
        data.entities.len(),
        a.out.display()
    );
    Ok(())
}
