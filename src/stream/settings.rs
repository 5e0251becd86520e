//! The settings that shape a stream's models, stored with them so that a resumed run is
//! checked against them: a typed record with a format number, stored as JSON and compared
//! field by field, so that a refusal names each field that differs with both values.
//!
//! Format 1 (this one) is [`StreamSettings`]. Stores written before it hold a text
//! fingerprint of the same settings; it is still read, compared as text, and replaced by
//! format 1 at the next commit.

use super::{Batching, StreamConfig, Update};
use crate::data::EntityMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format written.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSettings {
    pub format: u32,
    pub objective: String,
    pub penalty: f64,
    pub delta: f64,
    pub intercept_penalty: bool,
    /// Added within format 1: a store without it had none.
    #[serde(default)]
    pub half_life: Option<f64>,
    pub hessian: String,
    pub memory: usize,
    pub factr: f64,
    pub pgtol: f64,
    pub max_iterations: usize,
    pub max_line_search: usize,
    pub batch_records: Option<usize>,
    pub batch_window: Option<f64>,
    pub entity_key: Option<String>,
    pub single_entity: Option<String>,
    pub timestamp_field: Option<String>,
    /// Columnar inputs' feature columns and bags (added within format 1: a store without
    /// them holds the defaults, none).
    #[serde(default)]
    pub feature_columns: Vec<String>,
    #[serde(default)]
    pub feature_bags: Vec<String>,
    /// The offset model's intercept, and its coefficients in key order (name, term, value).
    pub offset_intercept: Option<f64>,
    pub offset_coefficients: Vec<(String, String, f64)>,
    pub update: String,
}

impl StreamSettings {
    pub fn of(config: &StreamConfig) -> Self {
        let (t, r, s) = (
            &config.train,
            &config.train.regularization,
            &config.train.solver,
        );
        let (entity_key, single_entity) = match &config.read.entity {
            EntityMode::Key(k) => (Some(k.clone()), None),
            EntityMode::Single(id) => (None, Some(id.clone())),
        };
        let (batch_records, batch_window) = match config.batching {
            Batching::Records(n) => (Some(n), None),
            Batching::Window(w) => (None, Some(w)),
        };
        let offset = config.offset_model.as_ref();
        StreamSettings {
            format: FORMAT,
            objective: t.objective.name().into(),
            penalty: r.penalty,
            delta: r.delta,
            intercept_penalty: r.intercept_penalty,
            half_life: r.half_life,
            hessian: t.hessian.name().into(),
            memory: s.memory,
            factr: s.factr,
            pgtol: s.pgtol,
            max_iterations: s.max_iterations,
            max_line_search: s.max_line_search,
            batch_records,
            batch_window,
            entity_key,
            single_entity,
            timestamp_field: config.read.timestamp_field.clone(),
            feature_columns: config.read.feature_columns.clone(),
            feature_bags: config.read.feature_bags.clone(),
            offset_intercept: offset.map(|m| m.intercept),
            offset_coefficients: offset.map_or_else(Vec::new, |m| {
                m.coefficients
                    .iter()
                    .map(|(k, &v)| (k.name.to_string(), k.term.to_string(), v))
                    .collect()
            }),
            update: match config.update {
                Update::Incremental => "incremental",
                Update::Retrain => "retrain",
            }
            .into(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("settings serialise")
    }

    /// Whether a store holding `stored` may be resumed with these settings; else what
    /// differs, one `field: stored …, asked …` per line. `legacy` is the text fingerprint
    /// a store from before format 1 would hold for these settings.
    pub fn check(&self, stored: &[u8], legacy: &str) -> Result<(), String> {
        let Ok(Value::Object(stored)) = serde_json::from_slice::<Value>(stored) else {
            let text = String::from_utf8_lossy(stored);
            return match text == legacy {
                true => Ok(()),
                false => Err(format!("  stored: {text}\n  asked:  {legacy}")),
            };
        };
        let format = stored.get("format").and_then(Value::as_u64).unwrap_or(0);
        if format > u64::from(FORMAT) {
            return Err(format!(
                "  its settings are of format {format}, written by a newer glmix (this one reads {FORMAT})"
            ));
        }
        let Value::Object(asked) = serde_json::to_value(self).expect("settings serialise") else {
            unreachable!("settings are an object")
        };
        // Fields added within format 1 are their defaults in stores written before them.
        let added = |k: &str| match k {
            "feature_columns" | "feature_bags" => Some(Value::Array(vec![])),
            "half_life" => Some(Value::Null),
            _ => None,
        };
        let differences: Vec<String> = asked
            .iter()
            .filter(|(k, v)| stored.get(*k).cloned().or_else(|| added(k)).as_ref() != Some(v))
            .map(|(k, v)| {
                let was = stored.get(k).map_or("nothing".into(), Value::to_string);
                format!("  {k}: stored {was}, asked {v}")
            })
            .collect();
        match differences.is_empty() {
            true => Ok(()),
            false => Err(differences.join("\n")),
        }
    }
}

/// The text fingerprint stores held before format 1, for these settings (with the offset
/// model's coefficients in key order, as any store with one coefficient or none has them).
pub fn legacy_fingerprint(config: &StreamConfig) -> String {
    let t = &config.train;
    let offset = match &config.offset_model {
        None => "None".to_string(),
        Some(m) => {
            let entries: Vec<String> = m
                .coefficients
                .iter()
                .map(|(k, v)| format!("{k:?}: {v:?}"))
                .collect();
            format!(
                "Some(OffsetModel {{ intercept: {:?}, coefficients: {{{}}} }})",
                m.intercept,
                entries.join(", ")
            )
        }
    };
    // The read options as they were then (they had two fields).
    let read = format!(
        "ReadOptions {{ entity: {:?}, timestamp_field: {:?} }}",
        config.read.entity, config.read.timestamp_field
    );
    // The regularisation as it was then (it had three fields); a half-life, which came
    // later, never matches a store of then.
    let r = &t.regularization;
    let mut regularization = format!(
        "Regularization {{ penalty: {:?}, delta: {:?}, intercept_penalty: {:?} }}",
        r.penalty, r.delta, r.intercept_penalty
    );
    if let Some(h) = r.half_life {
        regularization.push_str(&format!(" half_life: {h:?}"));
    }
    format!(
        "objective={} regularization={regularization} hessian={} solver={:?} batching={:?} read={read} offset_model={offset} update={:?}",
        t.objective.name(),
        t.hessian,
        t.solver,
        config.batching,
        config.update
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{FeatureKey, ReadOptions};
    use crate::model::OffsetModel;
    use crate::objective::ObjectiveKind;
    use crate::stream::OnBadRecord;
    use crate::train::TrainConfig;

    fn config() -> StreamConfig {
        let mut train = TrainConfig::new(ObjectiveKind::BayesLogistic);
        train.regularization.penalty = 5.0;
        StreamConfig {
            train,
            batching: Batching::Records(100),
            read: ReadOptions {
                default_label: None,
                entity: EntityMode::Key("entity".into()),
                timestamp_field: None,
                feature_columns: Vec::new(),
                feature_bags: Vec::new(),
            },
            offset_model: Some(OffsetModel {
                intercept: 0.1,
                coefficients: [(FeatureKey::new("1", ""), 0.2)].into_iter().collect(),
                dense_columns: Some(1),
            }),
            on_bad_record: OnBadRecord::Fail,
            strict_keys: false,
            update: Update::Incremental,
            commit: crate::stream::CommitPolicy::default(),
        }
    }

    /// What glmix wrote for `config()` before the feature columns and bags were added:
    /// later versions must read it.
    const FORMAT_1: &str = r#"{"format":1,"objective":"bayes-logistic","penalty":5.0,"delta":0.8,"intercept_penalty":true,"hessian":"diagonal","memory":10,"factr":10000000.0,"pgtol":0.00001,"max_iterations":15000,"max_line_search":20,"batch_records":100,"batch_window":null,"entity_key":"entity","single_entity":null,"timestamp_field":null,"offset_intercept":0.1,"offset_coefficients":[["1","",0.2]],"update":"incremental"}"#;

    /// What glmix wrote for `config()` before the half-life was added.
    const FORMAT_1_COLUMNS: &str = r#"{"format":1,"objective":"bayes-logistic","penalty":5.0,"delta":0.8,"intercept_penalty":true,"hessian":"diagonal","memory":10,"factr":10000000.0,"pgtol":0.00001,"max_iterations":15000,"max_line_search":20,"batch_records":100,"batch_window":null,"entity_key":"entity","single_entity":null,"timestamp_field":null,"feature_columns":[],"feature_bags":[],"offset_intercept":0.1,"offset_coefficients":[["1","",0.2]],"update":"incremental"}"#;

    /// What this version writes for `config()`.
    const FORMAT_1_HALF_LIFE: &str = r#"{"format":1,"objective":"bayes-logistic","penalty":5.0,"delta":0.8,"intercept_penalty":true,"half_life":null,"hessian":"diagonal","memory":10,"factr":10000000.0,"pgtol":0.00001,"max_iterations":15000,"max_line_search":20,"batch_records":100,"batch_window":null,"entity_key":"entity","single_entity":null,"timestamp_field":null,"feature_columns":[],"feature_bags":[],"offset_intercept":0.1,"offset_coefficients":[["1","",0.2]],"update":"incremental"}"#;

    /// What a store from before format 1 held for `config()` (glmix at commit bf6178a).
    const LEGACY: &str = r#"objective=bayes-logistic regularization=Regularization { penalty: 5.0, delta: 0.8, intercept_penalty: true } hessian=diagonal solver=LbfgsOptions { memory: 10, factr: 10000000.0, pgtol: 1e-5, max_iterations: 15000, max_line_search: 20 } batching=Records(100) read=ReadOptions { entity: Key("entity"), timestamp_field: None } offset_model=Some(OffsetModel { intercept: 0.1, coefficients: {FeatureKey { name: "1", term: "" }: 0.2} }) update=Incremental"#;

    #[test]
    fn format_1_bytes_and_the_legacy_text_are_read() {
        let c = config();
        let s = StreamSettings::of(&c);
        assert_eq!(String::from_utf8(s.encode()).unwrap(), FORMAT_1_HALF_LIFE);
        assert_eq!(
            s.check(FORMAT_1_HALF_LIFE.as_bytes(), &legacy_fingerprint(&c)),
            Ok(())
        );
        assert_eq!(legacy_fingerprint(&c), LEGACY);
        assert_eq!(
            s.check(FORMAT_1_COLUMNS.as_bytes(), &legacy_fingerprint(&c)),
            Ok(())
        );
        assert_eq!(
            s.check(FORMAT_1.as_bytes(), &legacy_fingerprint(&c)),
            Ok(())
        );
        assert_eq!(s.check(LEGACY.as_bytes(), &legacy_fingerprint(&c)), Ok(()));
    }

    #[test]
    fn a_refusal_names_each_field_that_differs_with_both_values() {
        let mut c = config();
        c.train.regularization.penalty = 1.0;
        c.batching = Batching::Window(60.0);
        let why = StreamSettings::of(&c)
            .check(FORMAT_1.as_bytes(), &legacy_fingerprint(&c))
            .unwrap_err();
        assert!(why.contains("penalty: stored 5.0, asked 1.0"), "{why}");
        assert!(
            why.contains("batch_records: stored 100, asked null"),
            "{why}"
        );
        assert!(
            why.contains("batch_window: stored null, asked 60.0"),
            "{why}"
        );
        assert_eq!(why.lines().count(), 3, "{why}");
        // Feature bags a store written before they existed did not have.
        let mut c = config();
        c.read.feature_bags = vec!["more".into()];
        let why = StreamSettings::of(&c)
            .check(FORMAT_1.as_bytes(), &legacy_fingerprint(&c))
            .unwrap_err();
        assert!(
            why.contains(r#"feature_bags: stored nothing, asked ["more"]"#),
            "{why}"
        );
        // A half-life asked of a store begun without one (or before it existed).
        let mut c = config();
        c.train.regularization.half_life = Some(30.0);
        for stored in [FORMAT_1, FORMAT_1_HALF_LIFE] {
            let why = StreamSettings::of(&c)
                .check(stored.as_bytes(), &legacy_fingerprint(&c))
                .unwrap_err();
            assert!(
                why.contains("half_life: stored nothing, asked 30.0")
                    || why.contains("half_life: stored null, asked 30.0"),
                "{why}"
            );
        }
        let why = StreamSettings::of(&c).check(LEGACY.as_bytes(), &legacy_fingerprint(&c));
        assert!(why.is_err(), "a legacy store had no half-life");
        let newer = FORMAT_1.replace(r#""format":1"#, r#""format":2"#);
        let why = StreamSettings::of(&config())
            .check(newer.as_bytes(), "")
            .unwrap_err();
        assert!(why.contains("newer glmix"), "{why}");
    }
}
