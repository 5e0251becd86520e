//! `glmix eval`.

use super::{models_for, DataArgs};
use anyhow::Result;
use clap::Args;
use glmix::metrics::{evaluate, Metric};
use glmix::score::score;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Trained models: model JSON lines or a model store (`glmix stream --store`).
    #[arg(long, value_name = "MODELS")]
    model: PathBuf,
    /// Comma-separated metrics: auc, rmse, logloss, entity-auc. RMSE compares the margin
    /// with the label; the others count label 1 as positive. Default: auc, logloss and
    /// entity-auc when every label is 0/1 (or −1/1), else rmse.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let data = a.data.read()?;
    let models = models_for(&data, &a.model)?;
    let scores = score(&data, &models, None)?;
    let metrics = match a.metrics.is_empty() {
        true => Metric::defaults(&data.label),
        false => a
            .metrics
            .iter()
            .map(|m| Metric::parse(m))
            .collect::<Result<_, _>>()?,
    };
    let mut out = Map::new();
    for (metric, value) in evaluate(&data, &scores, &metrics) {
        if value.is_none() {
            eprintln!(
                "glmix: warning: {} is undefined on this data (AUC needs both classes) and is reported as null",
                metric.key()
            );
        }
        out.insert(
            metric.key().to_string(),
            value.map_or(Value::Null, Value::from),
        );
    }
    println!("{}", Value::Object(out));
    Ok(())
}
