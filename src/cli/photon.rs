//! `glmix photon`: models between Photon-ML's GAME model directory (Avro) and glmix's model
//! JSON lines or GAME model directory.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use glmix::game::{CoordinateKind, GameModel};
use glmix::io::{check_paths, write_dir, write_output, PathRole};
use glmix::model::photon::{read_photon_model, write_photon_model, PhotonCoordinate, PhotonModel};
use glmix::model::{read_models, write_models, ModelSet};
use glmix::objective::ObjectiveKind;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PhotonArgs {
    #[command(subcommand)]
    command: PhotonCommand,
}

/// The file of an import directory that a later import may replace.
const IMPORT_SUMMARY: &str = "photon-import.json";

#[derive(Subcommand, Debug)]
enum PhotonCommand {
    /// Read a Photon-ML (or GDMix) GAME model directory into model JSON lines, variances
    /// kept as the precision (1/variance) so that the models can be priors of a bayes-*
    /// update: with --coordinate, that coordinate's models into the file --out; else every
    /// coordinate into the directory --out as `<coordinate>.jsonl`.
    Import {
        /// The Photon model directory (with fixed-effect/ and random-effect/).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[arg(long, value_name = "NAME")]
        coordinate: Option<String>,
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
    /// Write models as a Photon-ML GAME model directory (BayesianLinearModelAvro, deflate):
    /// a glmix GAME model directory or a `photon import` directory (--from), or one model
    /// JSON-lines file as one coordinate (--models with --coordinate; a random effect keyed
    /// by --random-effect-type, or --fixed-effect).
    Export {
        #[arg(long, value_name = "DIR", conflicts_with = "models")]
        from: Option<PathBuf>,
        #[arg(long, value_name = "MODELS", requires = "coordinate")]
        models: Option<PathBuf>,
        #[arg(long, value_name = "NAME")]
        coordinate: Option<String>,
        /// The id the entities of --models are keyed by (Photon's random-effect type).
        #[arg(
            long,
            value_name = "KEY",
            default_value = "entity",
            conflicts_with = "fixed_effect"
        )]
        random_effect_type: String,
        /// --models holds one fixed-effect model.
        #[arg(long)]
        fixed_effect: bool,
        /// Feature shard id of the --models coordinate (default: its name).
        #[arg(long, value_name = "ID")]
        feature_shard: Option<String>,
        /// The objective of models that name none (files written by other tools).
        #[arg(long, value_name = "OBJECTIVE", value_parser = clap::value_parser!(ObjectiveKind))]
        objective: Option<ObjectiveKind>,
        /// Leave out means of smaller magnitude (Photon's sparsity threshold); with it the
        /// export is no longer exact.
        #[arg(long, value_name = "T", default_value_t = 0.0)]
        sparsity_threshold: f64,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub fn run(a: PhotonArgs) -> Result<()> {
    match a.command {
        PhotonCommand::Import {
            from,
            coordinate,
            out,
        } => import(from, coordinate, out),
        PhotonCommand::Export {
            from,
            models,
            coordinate,
            random_effect_type,
            fixed_effect,
            feature_shard,
            objective,
            sparsity_threshold,
            out,
        } => {
            anyhow::ensure!(
                sparsity_threshold >= 0.0,
                "--sparsity-threshold: {sparsity_threshold} is negative"
            );
            let mut model = match (from, models) {
                (Some(dir), None) => {
                    check_paths(&[
                        PathRole::input("--from", &dir),
                        PathRole::output_dir("--out", &out),
                    ])?;
                    match dir.join(IMPORT_SUMMARY).is_file() {
                        true => from_import(&dir)?,
                        false => from_game(&GameModel::read(&dir)?),
                    }
                }
                (None, Some(file)) => {
                    check_paths(&[
                        PathRole::input("--models", &file),
                        PathRole::output_dir("--out", &out),
                    ])?;
                    let name = coordinate.expect("clap requires it");
                    PhotonModel {
                        model_type: None,
                        coordinates: vec![PhotonCoordinate {
                            feature_shard: feature_shard.unwrap_or_else(|| name.clone()),
                            name,
                            random_effect_type: (!fixed_effect).then_some(random_effect_type),
                            models: read_models(&file, None)?,
                        }],
                    }
                }
                _ => anyhow::bail!("give --from DIR, or --models FILE with --coordinate NAME"),
            };
            if let Some(o) = objective {
                for c in &mut model.coordinates {
                    c.models = c
                        .models
                        .models()
                        .iter()
                        .cloned()
                        .map(|mut m| {
                            m.objective.get_or_insert(o);
                            m
                        })
                        .collect();
                }
            }
            write_photon_model(&out, &model, sparsity_threshold)?;
            eprintln!(
                "exported {} models in {} coordinates to {}",
                model
                    .coordinates
                    .iter()
                    .map(|c| c.models.len())
                    .sum::<usize>(),
                model.coordinates.len(),
                out.display()
            );
            Ok(())
        }
    }
}

fn import(from: PathBuf, coordinate: Option<String>, out: PathBuf) -> Result<()> {
    let out_role = match coordinate {
        Some(_) => PathRole::output("--out", &out),
        None => PathRole::output_dir("--out", &out),
    };
    check_paths(&[PathRole::input("--from", &from), out_role])?;
    let model = read_photon_model(&from)?;
    let summary = json!({
        "from": from,
        "model_type": model.model_type,
        "coordinates": model.coordinates.iter().map(|c| json!({
            "name": c.name,
            "type": if c.random_effect_type.is_some() { "random" } else { "fixed" },
            "random_effect_type": c.random_effect_type,
            "feature_shard": c.feature_shard,
            "models": c.models.len(),
        })).collect::<Vec<_>>(),
    });
    match coordinate {
        Some(name) => {
            let c = model
                .coordinates
                .iter()
                .find(|c| c.name == name)
                .with_context(|| {
                    let names: Vec<&str> =
                        model.coordinates.iter().map(|c| c.name.as_str()).collect();
                    format!(
                        "{}: no coordinate {name:?}; it has {}",
                        from.display(),
                        names.join(", ")
                    )
                })?;
            write_models(&out, c.models.models())?;
        }
        None => write_dir(&out, IMPORT_SUMMARY, |tmp| {
            for c in &model.coordinates {
                write_models(&tmp.join(format!("{}.jsonl", c.name)), c.models.models())?;
            }
            let text = serde_json::to_string_pretty(&summary).expect("JSON");
            write_output(&tmp.join(IMPORT_SUMMARY), |f| writeln!(f, "{text}"))
        })?,
    }
    println!("{summary}");
    Ok(())
}

/// The coordinates a `photon import` directory holds, as its summary lists them.
fn from_import(dir: &std::path::Path) -> Result<PhotonModel> {
    let path = dir.join(IMPORT_SUMMARY);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{}: not JSON", path.display()))?;
    let listed = summary["coordinates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let coordinates = listed
        .iter()
        .map(|c| {
            let field = |k: &str| {
                c[k].as_str()
                    .map(str::to_string)
                    .with_context(|| format!("{}: a coordinate without {k:?}", path.display()))
            };
            let name = field("name")?;
            Ok(PhotonCoordinate {
                models: read_models(&dir.join(format!("{name}.jsonl")), None)?,
                random_effect_type: c["random_effect_type"].as_str().map(str::to_string),
                feature_shard: field("feature_shard")?,
                name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PhotonModel {
        model_type: summary["model_type"].as_str().map(str::to_string),
        coordinates,
    })
}

/// The coordinates of a glmix GAME model as Photon's: a random effect's type is its
/// entity key, its feature shard its feature set.
fn from_game(game: &GameModel) -> PhotonModel {
    let coordinates = game
        .config
        .coordinates
        .iter()
        .zip(&game.coordinates)
        .map(|(c, models): (_, &ModelSet)| PhotonCoordinate {
            name: c.name.clone(),
            random_effect_type: match &c.kind {
                CoordinateKind::Fixed => None,
                CoordinateKind::Random { entity_key, .. } => Some(entity_key.clone()),
            },
            feature_shard: c.feature_set.clone(),
            models: models.clone(),
        })
        .collect();
    PhotonModel {
        model_type: None,
        coordinates,
    }
}
