//! `glmix eval`.

use super::{models_for, DataArgs};
use anyhow::{bail, Result};
use clap::Args;
use glmix::metrics::{auc, entity_auc, is_binary_label, is_positive, logloss, rmse};
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
    let positive: Vec<bool> = data.label.iter().map(|&y| is_positive(y)).collect();
    let binary = data.label.iter().all(|&y| is_binary_label(y));
    let metrics: Vec<String> = match (a.metrics.is_empty(), binary) {
        (false, _) => a.metrics.clone(),
        (true, true) => vec!["auc".into(), "logloss".into(), "entity-auc".into()],
        (true, false) => vec!["rmse".into()],
    };
    let mut out = Map::new();
    for m in &metrics {
        let (key, value) = match m.as_str() {
            "auc" => ("auc", auc(&scores, &positive)),
            "rmse" => ("rmse", rmse(&scores, &data.label)),
            "logloss" => ("logloss", logloss(&scores, &positive)),
            "entity-auc" => ("entity_auc", entity_auc(&data.entity, &scores, &positive).0),
            other => bail!("unknown metric {other:?}: expected auc, rmse, logloss or entity-auc"),
        };
        if value.is_none() {
            eprintln!("glmix: warning: {key} is undefined on this data (AUC needs both classes) and is reported as null");
        }
        out.insert(key.to_string(), value.map_or(Value::Null, Value::from));
    }
    println!("{}", Value::Object(out));
    Ok(())
}
