//! `glmix store`: look into a model store, and move models between a store and model
//! JSON lines.

use anyhow::Result;
use clap::{Args, Subcommand};
use glmix::io::{check_paths, PathRole};
use glmix::model::{read_models, write_models};
use glmix::store::{Commit, ModelStore};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Print the number of models, the stream position and the last batch's metrics.
    Info {
        #[arg(long, value_name = "STORE")]
        store: PathBuf,
    },
    /// Read every stored model and table: print how many models are sound (what `export`
    /// would write) and each damaged one; exit 1 when any is damaged or the file cannot
    /// be read.
    Check {
        #[arg(long, value_name = "STORE")]
        store: PathBuf,
    },
    /// Write every model of the store as model JSON lines (atomically).
    Export {
        #[arg(long, value_name = "STORE")]
        store: PathBuf,
        #[arg(long, value_name = "MODELS")]
        out: PathBuf,
    },
    /// Add the models of a model JSON-lines file to a store (created when missing),
    /// replacing those of the same entities, in one transaction: e.g. the priors a
    /// stream starts from.
    Import {
        #[arg(long, value_name = "STORE")]
        store: PathBuf,
        #[arg(long, value_name = "MODELS")]
        models: PathBuf,
        /// Precision of a coefficient the file gives no variance for (like `train
        /// --penalty` for a prior).
        #[arg(long, value_name = "LAMBDA")]
        missing_precision: Option<f64>,
    },
}

pub fn run(a: StoreArgs) -> Result<()> {
    match a.command {
        StoreCommand::Info { store } => {
            let s = ModelStore::open_read_only(&store)?;
            let batches = s.batches()?;
            let position = glmix::stream::committed_position(&s)?;
            let last: Option<serde_json::Value> = batches
                .last()
                .map(|(_, r)| serde_json::from_str(r))
                .transpose()?;
            println!(
                "{}",
                json!({
                    "store": store,
                    "models": s.len()?,
                    "batches": batches.len(),
                    "position": position,
                    "last_batch": last,
                    "closed_cleanly": s.closed_cleanly(),
                })
            );
        }
        StoreCommand::Check { store } => {
            let opened = ModelStore::open_read_only(&store)?;
            let check = opened.check()?;
            let damaged: Vec<_> = check
                .damaged
                .iter()
                .map(|(entity, why)| json!({"entity": entity, "why": why}))
                .collect();
            println!(
                "{}",
                json!({
                    "store": store,
                    "sound_models": check.models,
                    "damaged_models": damaged,
                    "batches": check.batches,
                    "closed_cleanly": opened.closed_cleanly(),
                })
            );
            if !check.damaged.is_empty() {
                anyhow::bail!(
                    "{}: {} of {} stored models are damaged (the first: entity {:?})",
                    store.display(),
                    check.damaged.len(),
                    check.models + check.damaged.len(),
                    check.damaged[0].0
                );
            }
        }
        StoreCommand::Export { store, out } => {
            check_paths(&[
                PathRole::input("--store", &store),
                PathRole::output("--out", &out),
            ])?;
            let models = ModelStore::open_read_only(&store)?.all_models()?;
            write_models(&out, models.models())?;
            eprintln!("exported {} models to {}", models.len(), out.display());
        }
        StoreCommand::Import {
            store,
            models,
            missing_precision,
        } => {
            check_paths(&[
                PathRole::store("--store", &store),
                PathRole::input("--models", &models),
            ])?;
            let set = read_models(&models, missing_precision)?;
            let s = ModelStore::open(&store)?;
            s.commit(Commit {
                models: set.models().iter().collect(),
                ..Default::default()
            })?;
            eprintln!(
                "imported {} models into {} ({} in all)",
                set.len(),
                store.display(),
                s.len()?
            );
        }
    }
    Ok(())
}
