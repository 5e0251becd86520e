//! The GAME configuration file (JSON): named feature sets, the coordinates trained on
//! them, and the number of coordinate-descent passes.
//!
//! ```json
//! {
//!   "passes": 2,
//!   "feature_sets": {
//!     "global": ["age", "gender", "occupation", "genre", "release_year"],
//!     "movie": ["genre", "release_year"],
//!     "user": ["age", "gender", "occupation"]
//!   },
//!   "coordinates": [
//!     {"name": "global", "type": "fixed", "feature_set": "global",
//!      "objective": "logistic", "penalty": 1.0, "intercept_penalty": false},
//!     {"name": "per-user", "type": "random", "entity_key": "user_id",
//!      "feature_set": "movie", "objective": "logistic", "penalty": 1.0,
//!      "intercept_penalty": false, "min_rows": 1, "max_rows": 1000, "seed": 7}
//!   ]
//! }
//! ```
//!
//! A feature set lists feature *names* (the `name` of NTV features; every term of a name
//! belongs to the set). Coordinates are trained in the order listed. Fields and defaults
//! of a coordinate:
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `name` | required | unique; also the model file `<name>.jsonl` (letters, digits, `-`, `_`, `.`) |
//! | `type` | required | `fixed` (one model over all records) or `random` (one per entity) |
//! | `entity_key` | required for `random` | the record field holding the entity id |
//! | `feature_set` | required | a key of `feature_sets` |
//! | `objective` | required | `linear` or `logistic`, the same for every coordinate |
//! | `penalty` | 1.0 | L2 penalty λ |
//! | `intercept_penalty` | true | penalise the intercept (Photon-ML and GDMix: false) |
//! | `hessian` | `diagonal` | posterior precision kept: full, diagonal, identity, none |
//! | `min_rows` | 1 | `random` only: entities with fewer rows get no model |
//! | `max_rows` | none | `random` only: rows kept per entity, by seeded reservoir sampling |
//! | `seed` | 0 | seed of the reservoir sampling |
//! | `max_iterations`, `factr`, `pgtol`, `memory` | 15000, 1e7, 1e-5, 10 | L-BFGS settings |
//!
//! `passes` defaults to 1. Unknown fields are errors, so a misspelt setting never passes
//! silently.

use crate::data::json_path::error_field;
use crate::error::{Error, Result};
use crate::model::HessianType;
use crate::objective::{ObjectiveKind, Regularization};
use crate::solver::LbfgsOptions;
use crate::train::TrainConfig;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// A validated GAME configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GameConfig {
    pub passes: usize,
    pub feature_sets: BTreeMap<String, Vec<String>>,
    pub coordinates: Vec<Coordinate>,
}

/// Fixed effect: one model over every record. Random effect: one model per entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinateKind {
    Fixed,
    Random {
        entity_key: String,
        min_rows: usize,
        max_rows: Option<usize>,
        seed: u64,
    },
}

/// One coordinate of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordinate {
    pub name: String,
    pub kind: CoordinateKind,
    pub feature_set: String,
    pub train: TrainConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "one")]
    passes: usize,
    feature_sets: BTreeMap<String, Vec<String>>,
    coordinates: Vec<RawCoordinate>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoordinate {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    entity_key: Option<String>,
    feature_set: String,
    objective: String,
    penalty: Option<f64>,
    intercept_penalty: Option<bool>,
    hessian: Option<String>,
    min_rows: Option<usize>,
    max_rows: Option<usize>,
    seed: Option<u64>,
    max_iterations: Option<usize>,
    factr: Option<f64>,
    pgtol: Option<f64>,
    memory: Option<usize>,
}

impl GameConfig {
    /// Read and validate a configuration file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parse and validate configuration text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            let (field, message) = error_field(text, &e);
            Error::input(path, e.line(), field, message)
        })?;
        // Errors about the meaning of a field name the field; line 0 = the whole file.
        let bad = |field: String, message: String| Error::input(path, 0, field, message);

        if raw.passes == 0 {
            return Err(bad("passes".into(), "must be at least 1".into()));
        }
        if raw.coordinates.is_empty() {
            return Err(bad(
                "coordinates".into(),
                "no coordinate is configured".into(),
            ));
        }
        for (set, names) in &raw.feature_sets {
            if names.is_empty() {
                return Err(bad(
                    format!("feature_sets.{set}"),
                    "lists no feature".into(),
                ));
            }
        }
        let mut seen = HashSet::new();
        let mut coordinates = Vec::with_capacity(raw.coordinates.len());
        for (k, c) in raw.coordinates.into_iter().enumerate() {
            let at = |f: &str| format!("coordinates[{k}].{f}");
            let valid_name = !c.name.is_empty()
                && !c.name.starts_with('.')
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !valid_name {
                return Err(bad(
                    at("name"),
                    format!("{:?} is not a valid name (letters, digits, '-', '_', '.'; not starting with '.')", c.name),
                ));
            }
            if !seen.insert(c.name.clone()) {
                return Err(bad(
                    at("name"),
                    format!("duplicate coordinate {:?}", c.name),
                ));
            }
            if !raw.feature_sets.contains_key(&c.feature_set) {
                let known: Vec<&str> = raw.feature_sets.keys().map(String::as_str).collect();
                return Err(bad(
                    at("feature_set"),
                    format!(
                        "unknown feature set {:?} (feature_sets has {known:?})",
                        c.feature_set
                    ),
                ));
            }
            let objective: ObjectiveKind =
                c.objective.parse().map_err(|e| bad(at("objective"), e))?;
            if objective.is_bayesian() {
                return Err(bad(
                    at("objective"),
                    format!("{objective} is an incremental update (glmix train --prior, glmix stream); GAME coordinates are linear or logistic"),
                ));
            }
            let hessian: HessianType = match &c.hessian {
                Some(h) => h.parse().map_err(|e| bad(at("hessian"), e))?,
                None => HessianType::Diagonal,
            };
            let kind = match c.kind.as_str() {
                "fixed" => {
                    for (field, set) in [
                        ("entity_key", c.entity_key.is_some()),
                        ("min_rows", c.min_rows.is_some()),
                        ("max_rows", c.max_rows.is_some()),
                        ("seed", c.seed.is_some()),
                    ] {
                        if set {
                            return Err(bad(at(field), "applies to random effects only".into()));
                        }
                    }
                    CoordinateKind::Fixed
                }
                "random" => {
                    let entity_key = c.entity_key.clone().ok_or_else(|| {
                        bad(
                            at("entity_key"),
                            "missing: a random effect needs the record field holding its entity id"
                                .into(),
                        )
                    })?;
                    let min_rows = c.min_rows.unwrap_or(1);
                    if min_rows == 0 {
                        return Err(bad(at("min_rows"), "must be at least 1".into()));
                    }
                    if let Some(max) = c.max_rows {
                        if max < min_rows {
                            return Err(bad(
                                at("max_rows"),
                                format!("{max} is below min_rows {min_rows}"),
                            ));
                        }
                    }
                    CoordinateKind::Random {
                        entity_key,
                        min_rows,
                        max_rows: c.max_rows,
                        seed: c.seed.unwrap_or(0),
                    }
                }
                other => {
                    return Err(bad(
                        at("type"),
                        format!("{other:?}: expected \"fixed\" or \"random\""),
                    ))
                }
            };
            let defaults = LbfgsOptions::default();
            let train = TrainConfig {
                regularization: Regularization {
                    penalty: c.penalty.unwrap_or(1.0),
                    intercept_penalty: c.intercept_penalty.unwrap_or(true),
                    ..Regularization::default()
                },
                hessian,
                solver: LbfgsOptions {
                    memory: c.memory.unwrap_or(defaults.memory),
                    factr: c.factr.unwrap_or(defaults.factr),
                    pgtol: c.pgtol.unwrap_or(defaults.pgtol),
                    max_iterations: c.max_iterations.unwrap_or(defaults.max_iterations),
                    ..defaults
                },
                ..TrainConfig::new(objective)
            };
            train
                .validate()
                .map_err(|e| bad(at("penalty"), e.to_string()))?;
            if train.solver.memory == 0 || train.solver.max_iterations == 0 {
                return Err(bad(
                    at("memory"),
                    "memory and max_iterations must be at least 1".into(),
                ));
            }
            coordinates.push(Coordinate {
                name: c.name,
                kind,
                feature_set: c.feature_set,
                train,
            });
        }
        let loss = coordinates[0].train.objective.loss();
        if let Some(k) = coordinates
            .iter()
            .position(|c| c.train.objective.loss() != loss)
        {
            return Err(bad(
                format!("coordinates[{k}].objective"),
                format!(
                    "{} differs from coordinate {:?}'s {}: every coordinate of one model has the same loss",
                    coordinates[k].train.objective, coordinates[0].name, coordinates[0].train.objective
                ),
            ));
        }
        Ok(GameConfig {
            passes: raw.passes,
            feature_sets: raw.feature_sets,
            coordinates,
        })
    }

    /// The objective every coordinate shares.
    pub fn objective(&self) -> ObjectiveKind {
        self.coordinates[0].train.objective
    }

    /// The entity keys of the random effects, each once, in coordinate order.
    pub fn entity_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for c in &self.coordinates {
            if let CoordinateKind::Random { entity_key, .. } = &c.kind {
                if !keys.contains(entity_key) {
                    keys.push(entity_key.clone());
                }
            }
        }
        keys
    }
}

impl GameConfig {
    /// The configuration with every default written out; [`GameConfig::parse`] reads it
    /// back as the same configuration.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let coordinates: Vec<serde_json::Value> = self
            .coordinates
            .iter()
            .map(|c| {
                let t = &c.train;
                let mut v = json!({
                    "name": c.name,
                    "type": match c.kind { CoordinateKind::Fixed => "fixed", CoordinateKind::Random { .. } => "random" },
                    "feature_set": c.feature_set,
                    "objective": t.objective.name(),
                    "penalty": t.regularization.penalty,
                    "intercept_penalty": t.regularization.intercept_penalty,
                    "hessian": t.hessian.name(),
                    "max_iterations": t.solver.max_iterations,
                    "factr": t.solver.factr,
                    "pgtol": t.solver.pgtol,
                    "memory": t.solver.memory,
                });
                if let CoordinateKind::Random { entity_key, min_rows, max_rows, seed } = &c.kind {
                    v["entity_key"] = json!(entity_key);
                    v["min_rows"] = json!(min_rows);
                    if let Some(m) = max_rows {
                        v["max_rows"] = json!(m);
                    }
                    v["seed"] = json!(seed);
                }
                v
            })
            .collect();
        json!({
            "passes": self.passes,
            "feature_sets": self.feature_sets,
            "coordinates": coordinates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "passes": 2,
      "feature_sets": {"all": ["a", "b"], "user": ["b"]},
      "coordinates": [
        {"name": "global", "type": "fixed", "feature_set": "all", "objective": "logistic"},
        {"name": "per-user", "type": "random", "entity_key": "uid", "feature_set": "user",
         "objective": "logistic", "penalty": 3.0, "min_rows": 2, "max_rows": 10, "seed": 5}
      ]
    }"#;

    fn error(text: &str) -> String {
        GameConfig::parse(Path::new("c.json"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_config_reads_with_its_defaults_and_round_trips() {
        let c = GameConfig::parse(Path::new("c.json"), GOOD).unwrap();
        assert_eq!(c.passes, 2);
        assert_eq!(c.coordinates[0].kind, CoordinateKind::Fixed);
        assert_eq!(c.coordinates[0].train.regularization.penalty, 1.0);
        assert_eq!(
            c.coordinates[1].kind,
            CoordinateKind::Random {
                entity_key: "uid".into(),
                min_rows: 2,
                max_rows: Some(10),
                seed: 5
            }
        );
        assert_eq!(c.entity_keys(), vec!["uid".to_string()]);
        let again = GameConfig::parse(Path::new("c.json"), &c.to_json().to_string()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn config_errors_name_the_field() {
        let unknown_set = GOOD.replace(r#""feature_set": "user""#, r#""feature_set": "users""#);
        let e = error(&unknown_set);
        assert!(
            e.contains("coordinates[1].feature_set") && e.contains("unknown feature set \"users\""),
            "{e}"
        );

        let no_key = GOOD.replace(r#""entity_key": "uid", "#, "");
        let e = error(&no_key);
        assert!(
            e.contains("coordinates[1].entity_key") && e.contains("missing"),
            "{e}"
        );

        let duplicate = GOOD.replace(r#""name": "per-user""#, r#""name": "global""#);
        let e = error(&duplicate);
        assert!(
            e.contains("coordinates[1].name") && e.contains("duplicate coordinate \"global\""),
            "{e}"
        );

        let typo = GOOD.replace(r#""penalty": 3.0"#, r#""penalti": 3.0"#);
        let e = error(&typo);
        assert!(
            e.contains("c.json:") && e.contains("unknown field `penalti`"),
            "{e}"
        );

        let mixed = GOOD.replace(
            r#""objective": "logistic", "penalty""#,
            r#""objective": "linear", "penalty""#,
        );
        let e = error(&mixed);
        assert!(
            e.contains("coordinates[1].objective") && e.contains("same loss"),
            "{e}"
        );

        let bayes = GOOD.replace(
            r#""objective": "logistic"}"#,
            r#""objective": "bayes-logistic"}"#,
        );
        assert!(error(&bayes).contains("coordinates[0].objective"));

        let fixed_key = GOOD.replace(r#""type": "fixed","#, r#""type": "fixed", "min_rows": 3,"#);
        assert!(
            error(&fixed_key).contains("coordinates[0].min_rows: applies to random effects only")
        );

        let cap = GOOD.replace(r#""max_rows": 10"#, r#""max_rows": 1"#);
        assert!(error(&cap).contains("coordinates[1].max_rows: 1 is below min_rows 2"));

        assert!(error(&GOOD.replace(r#""passes": 2"#, r#""passes": 0"#))
            .contains("passes: must be at least 1"));
    }
}
