//! Photon-ML's GAME model directory, read and written (`../shared/PHOTON-AVRO.md`):
//!
//! ```text
//! <root>/model-metadata.json                      {"modelType": "LOGISTIC_REGRESSION", …}
//! <root>/fixed-effect/<coordinate>/id-info        the feature shard id
//! <root>/fixed-effect/<coordinate>/coefficients/part-00000.avro   one model, modelId "fixed-effect"
//! <root>/random-effect/<coordinate>/id-info       the random-effect type, then the feature shard id
//! <root>/random-effect/<coordinate>/coefficients/part-*.avro      one model per entity
//! ```
//!
//! Each model is a `BayesianLinearModelAvro` record ([`record`]); GDMix writes the same.
//! Photon's loader drops the variances; glmix keeps them as the precision `1/variance`, so
//! a Photon model can be the prior of a `bayes-*` update. A fixed effect's model is named
//! after its coordinate, as in a glmix GAME model directory.

pub mod record;

use crate::data::{avro_parts, avro_reader};
use crate::error::{Error, Result};
use crate::io::{write_dir, write_output};
use crate::model::ModelSet;
use crate::objective::{Loss, ObjectiveKind};
use arrow_avro::compression::CompressionCodec;
use arrow_avro::writer::{format::AvroOcfFormat, WriterBuilder};
use std::io::Write;
use std::path::Path;

/// The file of a Photon model directory that [`write_photon_model`] may replace.
pub const METADATA_FILE: &str = "model-metadata.json";
/// Photon's model id of a fixed effect's one model.
const FIXED_EFFECT_ID: &str = "fixed-effect";

/// One coordinate of a Photon GAME model.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotonCoordinate {
    pub name: String,
    /// `None` for a fixed effect; for a random effect, the id its entities are keyed by.
    pub random_effect_type: Option<String>,
    pub feature_shard: String,
    pub models: ModelSet,
}

/// A Photon GAME model: its task type (`LOGISTIC_REGRESSION`, `LINEAR_REGRESSION`) and
/// coordinates, fixed effects first, each in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotonModel {
    pub model_type: Option<String>,
    pub coordinates: Vec<PhotonCoordinate>,
}

/// Photon's task type of an objective.
pub fn task_type(objective: ObjectiveKind) -> &'static str {
    match objective.loss() {
        Loss::Logistic => "LOGISTIC_REGRESSION",
        Loss::Squared => "LINEAR_REGRESSION",
    }
}

fn schema_error(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Schema {
        path: path.to_path_buf(),
        field: field.into(),
        message: message.into(),
    }
}

/// Read a Photon GAME model directory.
pub fn read_photon_model(root: &Path) -> Result<PhotonModel> {
    let mut coordinates = Vec::new();
    for (kind, fixed) in [("fixed-effect", true), ("random-effect", false)] {
        let dir = root.join(kind);
        if !dir.is_dir() {
            continue;
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            coordinates.push(read_coordinate(&dir.join(&name), name, fixed)?);
        }
    }
    if coordinates.is_empty() {
        return Err(Error::EmptyInput {
            path: root.to_path_buf(),
            message: "no fixed-effect/ or random-effect/ coordinates: not a Photon-ML GAME model directory".into(),
        });
    }
    let metadata = root.join(METADATA_FILE);
    let model_type = match std::fs::read_to_string(&metadata) {
        Ok(text) => {
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| schema_error(&metadata, "file", format!("not JSON: {e}")))?;
            json["modelType"].as_str().map(str::to_string)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&metadata, e)),
    };
    Ok(PhotonModel {
        model_type,
        coordinates,
    })
}

fn read_coordinate(dir: &Path, name: String, fixed: bool) -> Result<PhotonCoordinate> {
    let id_info = dir.join("id-info");
    let text = std::fs::read_to_string(&id_info).map_err(|e| Error::io(&id_info, e))?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let (random_effect_type, feature_shard) = match (fixed, &lines[..]) {
        (true, [shard]) => (None, shard.to_string()),
        (false, [re_type, shard]) => (Some(re_type.to_string()), shard.to_string()),
        _ => {
            return Err(schema_error(
                &id_info,
                "file",
                match fixed {
                    true => "expected one line, the feature shard id",
                    false => "expected two lines, the random-effect type and the feature shard id",
                },
            ))
        }
    };
    let mut models = ModelSet::new();
    for part in avro_parts(&dir.join("coefficients"))? {
        let reader = avro_reader(&part, None, 4096)?;
        let mut before = 0;
        for batch in reader {
            let batch = batch
                .map_err(|e| schema_error(&part, "block", format!("cannot be decoded: {e}")))?;
            let named = |id: &str| match fixed {
                true => name.clone(),
                false => id.to_string(),
            };
            let read = record::from_batch(&batch, &named).map_err(|(record, field, message)| {
                Error::input(&part, before + record, field, message)
            })?;
            before += batch.num_rows();
            for model in read {
                if models.contains(&model.entity) {
                    return Err(Error::input(
                        &part,
                        before,
                        "modelId",
                        format!("a second model of {:?} in coordinate {name}", model.entity),
                    ));
                }
                models.insert(model);
            }
        }
    }
    if fixed && models.len() != 1 {
        return Err(schema_error(
            dir,
            "coefficients",
            format!("a fixed effect has one model, not {}", models.len()),
        ));
    }
    Ok(PhotonCoordinate {
        name,
        random_effect_type,
        feature_shard,
        models,
    })
}

/// Write `model` as a Photon GAME model directory at `root` (replacing one this wrote
/// before, never anything else), with means below `threshold` in magnitude left out
/// (Photon's sparsity threshold; 0 keeps every coefficient). Every model must carry its
/// objective, all of one loss.
pub fn write_photon_model(root: &Path, model: &PhotonModel, threshold: f64) -> Result<()> {
    let mut losses = model
        .coordinates
        .iter()
        .flat_map(|c| c.models.models().iter().map(move |m| (c, m)));
    let objective = |(c, m): (&PhotonCoordinate, &crate::model::EntityModel)| {
        m.objective.ok_or_else(|| {
            Error::Config(format!(
                "coordinate {}, entity {:?}: the model names no objective, so its Photon model class is unknown (give --objective)",
                c.name, m.entity
            ))
        })
    };
    let first = losses
        .next()
        .map(objective)
        .transpose()?
        .ok_or_else(|| Error::Config("no models to write".into()))?;
    for cm in losses {
        let o = objective(cm)?;
        if o.loss() != first.loss() {
            return Err(Error::Config(format!(
                "coordinate {}: {o} models beside {first} ones; a Photon GAME model has one task type",
                cm.0.name
            )));
        }
    }
    write_dir(root, METADATA_FILE, |tmp| {
        for c in &model.coordinates {
            let kind = match c.random_effect_type {
                None => "fixed-effect",
                Some(_) => "random-effect",
            };
            let dir = tmp.join(kind).join(&c.name);
            let coefficients = dir.join("coefficients");
            std::fs::create_dir_all(&coefficients).map_err(|e| Error::io(&coefficients, e))?;
            let id_info = match &c.random_effect_type {
                None => format!("{}\n", c.feature_shard),
                Some(t) => format!("{t}\n{}\n", c.feature_shard),
            };
            write_output(&dir.join("id-info"), |f| f.write_all(id_info.as_bytes()))?;
            let classes: Vec<String> = c
                .models
                .models()
                .iter()
                .map(|m| record::model_class(m.objective.expect("checked above")))
                .collect();
            let rows: Vec<record::Row> = c
                .models
                .models()
                .iter()
                .zip(&classes)
                .map(|(m, class)| record::Row {
                    model_id: match c.random_effect_type {
                        None => FIXED_EFFECT_ID,
                        Some(_) => &m.entity,
                    },
                    class,
                    model: m,
                    threshold,
                })
                .collect();
            let part = coefficients.join("part-00000.avro");
            write_output(&part, |f| {
                let other = std::io::Error::other;
                let mut w = WriterBuilder::new(
                    record::to_batch(&[])
                        .map_err(other)?
                        .schema()
                        .as_ref()
                        .clone(),
                )
                .with_compression(Some(CompressionCodec::Deflate))
                .build::<_, AvroOcfFormat>(&mut *f)
                .map_err(|e| other(e.to_string()))?;
                for chunk in rows.chunks(4096) {
                    let batch = record::to_batch(chunk).map_err(other)?;
                    w.write(&batch).map_err(|e| other(e.to_string()))?;
                }
                w.finish().map_err(|e| other(e.to_string()))
            })?;
        }
        let metadata = serde_json::json!({
            "modelType": task_type(first),
            "modelName": "glmix",
        });
        write_output(&tmp.join(METADATA_FILE), |f| {
            writeln!(
                f,
                "{}",
                serde_json::to_string_pretty(&metadata).expect("JSON")
            )
        })
    })
}
