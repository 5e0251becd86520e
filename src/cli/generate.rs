//! `glmix generate`: a seeded synthetic workload as a file, for tests, examples and the
//! peer benchmarks (every tool reads the same records).

use super::WorkloadArgs;
use anyhow::{ensure, Result};
use clap::{Args, ValueEnum};
use glmix::data::write_jsonl;
use glmix::io::{check_paths, write_output, PathRole};
use glmix::objective::Loss;
use glmix::synth::{generate, time_slice};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Label type: logistic (0/1 labels) or linear (real labels).
    #[arg(long, value_enum, default_value = "logistic")]
    labels: Labels,
    /// Write the records in timestamp order (a stream for `glmix stream`) instead of
    /// grouped by entity.
    #[arg(long)]
    time_ordered: bool,
    /// Output records, entity key `entity`, written atomically: NTV Parquet when the name
    /// ends in `.parquet`, else NTV JSON lines.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Labels {
    Logistic,
    Linear,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    ensure!(
        a.workload.density > 0.0 && a.workload.density <= 1.0,
        "--density must be in (0, 1], got {}",
        a.workload.density
    );
    let loss = match a.labels {
        Labels::Logistic => Loss::Logistic,
        Labels::Linear => Loss::Squared,
    };
    check_paths(&[PathRole::output("--out", &a.out)])?;
    let mut synthetic = generate(&a.workload.spec(loss));
    if a.time_ordered {
        synthetic.data = time_slice(&synthetic.data, 0.0, 1.0);
    }
    #[cfg(feature = "parquet")]
    let parquet = a.out.extension().is_some_and(|e| e == "parquet");
    #[cfg(not(feature = "parquet"))]
    let parquet = false;
    write_output(&a.out, |f| {
        #[cfg(feature = "parquet")]
        if parquet {
            return glmix::data::write_records_parquet(&synthetic.data, "entity", f);
        }
        write_jsonl(&synthetic.data, "entity", f)
    })?;
    eprintln!(
        "glmix: wrote {} records of {} entities to {}{}",
        synthetic.data.num_rows(),
        synthetic.data.entities.len(),
        a.out.display(),
        if parquet { " (Parquet)" } else { "" }
    );
    Ok(())
}
