//! `glmix._glmix`: the Python package's extension module. Each function takes Arrow data
//! (anything exporting the Arrow C stream, as pyarrow tables and record batch readers
//! do) or a file path, runs the same library call as the CLI with the GIL released, on a
//! thread pool of the size asked for, and returns Arrow tables; `glmix/__init__.py`
//! gives them their keyword arguments and defaults.

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_pyarrow::{FromPyArrow, IntoPyArrow, Table};
use arrow_schema::{DataType, Field, Schema};
use glmix::bandit::{Policy, RankOptions};
use glmix::data::{
    read_record_batches, read_records, read_records_with_ids, scores_batch, Dataset, EntityMode,
    FeatureKey, Format, Ids, ReadOptions,
};
use glmix::game::partial::fixed_effect_sums as fixed_effect_sums_of;
use glmix::metrics::{evaluate, Metric};
use glmix::model::{
    models_from_batches, models_to_batch, write_models, HessianType, ModelSet, OffsetModel,
};
use glmix::objective::{ObjectiveKind, Regularization};
use glmix::score::{MarginPlan, Thompson};
use glmix::solver::LbfgsOptions;
use glmix::store::read_all_models;
use glmix::train::{train_chunks, Backend, FitOutput, Silent, TrainConfig};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};
use std::sync::Arc;

create_exception!(
    _glmix,
    GlmixError,
    PyValueError,
    "Bad input or settings: the message names the file (or table), the record and the field."
);

fn error(e: glmix::Error) -> PyErr {
    GlmixError::new_err(e.to_string())
}

fn arrow_error(e: arrow_schema::ArrowError) -> PyErr {
    GlmixError::new_err(e.to_string())
}

/// Records: a path (read as the CLI reads `--data`) or an Arrow stream (a table).
enum Records {
    Path(PathBuf),
    Table(Table),
}

impl Records {
    fn of(data: &Bound<PyAny>) -> PyResult<Self> {
        if let Ok(path) = data.extract::<PathBuf>() {
            return Ok(Records::Path(path));
        }
        Ok(Records::Table(Table::from_pyarrow_bound(data)?))
    }

    /// The records, with each one's id under every key of `id_keys` (`missing`: the error
    /// for a record without one).
    fn read(
        self,
        options: &ReadOptions,
        format: Option<&str>,
        id_keys: &[String],
        missing: &str,
    ) -> glmix::Result<(Dataset, Vec<Ids>)> {
        match self {
            Records::Path(path) => {
                let format = match format {
                    None => Format::of_file(&path),
                    Some("jsonl") => Format::Jsonl,
                    Some("tsv") => Format::Tsv,
                    Some("parquet") => Format::Parquet,
                    Some("arrow") => Format::ArrowIpc,
                    Some("avro") => Format::Avro,
                    Some(other) => {
                        return Err(glmix::Error::Config(format!(
                            "format {other:?}: expected jsonl, tsv, parquet, arrow or avro"
                        )))
                    }
                };
                if id_keys.is_empty() {
                    return Ok((read_records(&path, format, options)?, Vec::new()));
                }
                read_records_with_ids(&path, format, options, id_keys, missing)
            }
            Records::Table(table) => {
                let (batches, schema) = table.into_inner();
                let path = Path::new("<table>");
                read_record_batches(path, &schema, batches, options, id_keys)
            }
        }
    }
}

/// Records with how to read them: their columns, format and offset model.
struct Input {
    records: Records,
    options: ReadOptions,
    format: Option<String>,
    offset_model: Option<PathBuf>,
}

impl Input {
    fn new(
        data: &Bound<PyAny>,
        entity_key: String,
        feature_columns: Option<Vec<String>>,
        feature_bags: Option<Vec<String>>,
        format: Option<String>,
        offset_model: Option<PathBuf>,
    ) -> PyResult<Self> {
        Ok(Input {
            records: Records::of(data)?,
            options: ReadOptions {
                default_label: None,
                entity: EntityMode::Key(entity_key),
                timestamp_field: None,
                feature_columns: feature_columns.unwrap_or_default(),
                feature_bags: feature_bags.unwrap_or_default(),
            },
            format,
            offset_model,
        })
    }

    /// Records without a label read as label 0 (scoring and ranking read no labels).
    fn unlabelled(mut self) -> Self {
        self.options.default_label = Some(0.0);
        self
    }

    /// The records, with the offset model's scores added to their offsets.
    fn read(self) -> glmix::Result<Dataset> {
        self.read_with_ids(&[], "").map(|(data, _)| data)
    }

    /// [`Self::read`] with each record's ids under `id_keys`.
    fn read_with_ids(
        self,
        id_keys: &[String],
        missing: &str,
    ) -> glmix::Result<(Dataset, Vec<Ids>)> {
        let format = self.format.as_deref();
        let (mut data, ids) = self.records.read(&self.options, format, id_keys, missing)?;
        if let Some(path) = &self.offset_model {
            OffsetModel::read(path)?.add_to(&mut data)?;
        }
        Ok((data, ids))
    }
}

/// Models: a path (a model file in any format, or a store) or an Arrow model table.
fn models_of(models: &Bound<PyAny>, missing_precision: Option<f64>) -> PyResult<ModelSet> {
    if let Ok(path) = models.extract::<PathBuf>() {
        return read_all_models(&path, missing_precision).map_err(error);
    }
    let (batches, _) = Table::from_pyarrow_bound(models)?.into_inner();
    // A table without rows is no models (a file without any is an error): what a Spark
    // group of records whose entity has no model is given.
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(ModelSet::new());
    }
    models_from_batches(Path::new("<models>"), batches, missing_precision).map_err(error)
}

fn models_table(py: Python, models: &[&glmix::model::EntityModel]) -> PyResult<Py<PyAny>> {
    let batch = models_to_batch(models).map_err(error)?;
    table_of(py, batch)
}

/// One batch as a pyarrow table.
fn table_of(py: Python, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    let schema = batch.schema();
    let table = Table::try_new(vec![batch], schema).map_err(arrow_error)?;
    Ok(table.into_pyarrow(py)?.unbind())
}

/// Run `work` without the GIL on a pool of `threads` threads (all cores when `None`).
fn detached<T: Send>(
    py: Python,
    threads: Option<usize>,
    work: impl FnOnce() -> glmix::Result<T> + Send,
) -> PyResult<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| GlmixError::new_err(format!("threads: {e}")))?;
    py.detach(|| pool.install(work)).map_err(error)
}

/// Train the random effects of `data` (see `glmix.train`).
#[pyfunction]
#[pyo3(signature = (data, objective, penalty, delta, hessian, intercept_penalty, memory,
    factr, pgtol, max_iterations, prior, offset_model, entity_key, feature_columns,
    feature_bags, format, threads))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python,
    data: &Bound<PyAny>,
    objective: &str,
    penalty: f64,
    delta: f64,
    hessian: &str,
    intercept_penalty: bool,
    memory: usize,
    factr: f64,
    pgtol: f64,
    max_iterations: usize,
    prior: Option<&Bound<PyAny>>,
    offset_model: Option<PathBuf>,
    entity_key: String,
    feature_columns: Option<Vec<String>>,
    feature_bags: Option<Vec<String>>,
    format: Option<String>,
    threads: Option<usize>,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let objective: ObjectiveKind = objective.parse().map_err(GlmixError::new_err)?;
    let hessian: HessianType = hessian.parse().map_err(GlmixError::new_err)?;
    let config = TrainConfig {
        regularization: Regularization {
            penalty,
            delta,
            intercept_penalty,
            half_life: None,
        },
        hessian,
        solver: LbfgsOptions {
            memory,
            factr,
            pgtol,
            max_iterations,
            ..LbfgsOptions::default()
        },
        ..TrainConfig::new(objective)
    };
    let input = Input::new(
        data,
        entity_key,
        feature_columns,
        feature_bags,
        format,
        offset_model,
    )?;
    let prior = prior.map(|p| models_of(p, Some(penalty))).transpose()?;
    let (trained, totals, threads) = detached(py, threads, || {
        let mut pending = Some(input.read()?);
        let mut trained: Vec<glmix::model::EntityModel> = Vec::new();
        let mut keep = |out: &FitOutput| {
            trained.extend(out.models.iter().cloned());
            Ok(())
        };
        let threads = rayon::current_num_threads();
        let totals = train_chunks(
            Backend::Cpu,
            prior.as_ref(),
            &config,
            &mut || Ok(pending.take()),
            &mut keep,
            &Silent,
        )?;
        Ok((trained, totals, threads))
    })?;
    let mut all: Vec<&glmix::model::EntityModel> = trained.iter().collect();
    all.extend(totals.carried(prior.as_ref()));
    let summary = PyDict::new(py);
    summary.set_item("entities", totals.entities)?;
    summary.set_item("rows", totals.rows)?;
    summary.set_item("carried_over", all.len() - trained.len())?;
    summary.set_item("evaluations", totals.evaluations)?;
    summary.set_item("rounds", totals.rounds)?;
    summary.set_item(
        "reasons",
        totals.reasons.clone().into_iter().collect::<Vec<_>>(),
    )?;
    summary.set_item("read_seconds", totals.read_seconds)?;
    summary.set_item("solve_seconds", totals.solve_seconds)?;
    summary.set_item("non_binary_labels", totals.non_binary_labels)?;
    summary.set_item("threads", threads)?;
    Ok((models_table(py, &all)?, summary.into_any().unbind()))
}

/// Score every record of `data` (see `glmix.score`).
#[pyfunction]
#[pyo3(signature = (data, models, thompson, seed, offset_model, entity_key, feature_columns,
    feature_bags, format, threads))]
#[allow(clippy::too_many_arguments)]
fn score(
    py: Python,
    data: &Bound<PyAny>,
    models: &Bound<PyAny>,
    thompson: Option<f64>,
    seed: u64,
    offset_model: Option<PathBuf>,
    entity_key: String,
    feature_columns: Option<Vec<String>>,
    feature_bags: Option<Vec<String>>,
    format: Option<String>,
    threads: Option<usize>,
) -> PyResult<Py<PyAny>> {
    let input = Input::new(
        data,
        entity_key,
        feature_columns,
        feature_bags,
        format,
        offset_model,
    )?
    .unlabelled();
    // Coefficients without a variance score by their means alone.
    let models = models_of(models, Some(0.0))?;
    let (data, scores) = detached(py, threads, || {
        let data = input.read()?;
        let plan = MarginPlan::new(&data, &models);
        let scores = match thompson {
            None => plan.margins(),
            Some(multiplier) => plan.thompson_margins(Thompson { multiplier, seed })?,
        };
        Ok((data, scores))
    })?;
    let entity = |i: usize| data.entities.key(data.entity[i]).as_str();
    let batch = scores_batch(entity, 0..scores.len(), &scores).map_err(arrow_error)?;
    table_of(py, batch)
}

/// Evaluate `models` on the labelled records of `data` (see `glmix.eval`): the metrics'
/// keys and values (`None` where undefined).
#[pyfunction]
#[pyo3(signature = (data, models, metrics, offset_model, entity_key, feature_columns,
    feature_bags, format, threads))]
#[allow(clippy::too_many_arguments)]
fn eval(
    py: Python,
    data: &Bound<PyAny>,
    models: &Bound<PyAny>,
    metrics: Option<Vec<String>>,
    offset_model: Option<PathBuf>,
    entity_key: String,
    feature_columns: Option<Vec<String>>,
    feature_bags: Option<Vec<String>>,
    format: Option<String>,
    threads: Option<usize>,
) -> PyResult<Vec<(&'static str, Option<f64>)>> {
    let input = Input::new(
        data,
        entity_key,
        feature_columns,
        feature_bags,
        format,
        offset_model,
    )?;
    let models = models_of(models, Some(0.0))?;
    let asked = metrics
        .map(|m| {
            m.iter()
                .map(|m| Metric::parse(m))
                .collect::<glmix::Result<Vec<_>>>()
        })
        .transpose()
        .map_err(error)?;
    let values = detached(py, threads, || {
        let data = input.read()?;
        let scores = MarginPlan::new(&data, &models).margins();
        let metrics = asked.unwrap_or_else(|| Metric::defaults(&data.label));
        Ok(evaluate(&data, &scores, &metrics))
    })?;
    Ok(values.into_iter().map(|(m, v)| (m.key(), v)).collect())
}

/// A fixed effect's partial sums over the records of `data` at `theta` (see
/// `glmix::game::partial`): `(loss, gradient, Hessian diagonal or None, scores)`.
#[pyfunction]
#[pyo3(signature = (data, keys, theta, objective, with_hessian, entity_key))]
#[allow(clippy::type_complexity)]
fn fixed_effect_sums(
    py: Python,
    data: &Bound<PyAny>,
    keys: Vec<(String, String)>,
    theta: Vec<f64>,
    objective: &str,
    with_hessian: bool,
    entity_key: String,
) -> PyResult<(f64, Vec<f64>, Option<Vec<f64>>, Vec<f64>)> {
    let loss = objective
        .parse::<ObjectiveKind>()
        .map_err(GlmixError::new_err)?
        .loss();
    if keys.len() != theta.len() {
        return Err(GlmixError::new_err(format!(
            "{} keys for {} coefficients",
            keys.len(),
            theta.len()
        )));
    }
    let keys: Vec<FeatureKey> = keys
        .into_iter()
        .map(|(n, t)| FeatureKey::new(n, t))
        .collect();
    let input = Input::new(data, entity_key, None, None, None, None)?;
    let sums = detached(py, Some(1), || {
        let data = input.read()?;
        Ok(fixed_effect_sums_of(
            &data,
            &keys,
            &theta,
            loss,
            with_hessian,
        ))
    })?;
    Ok((sums.loss, sums.gradient, sums.hessian_diagonal, sums.scores))
}

/// Rank each request's candidates by a policy (see `glmix.rank`).
#[pyfunction]
#[pyo3(signature = (data, models, request_key, policy, top, multiplier, propensity_draws,
    alpha, epsilon, seed, offset_model, entity_key, feature_columns, feature_bags, format,
    threads))]
#[allow(clippy::too_many_arguments)]
fn rank(
    py: Python,
    data: &Bound<PyAny>,
    models: &Bound<PyAny>,
    request_key: String,
    policy: &str,
    top: usize,
    multiplier: f64,
    propensity_draws: usize,
    alpha: f64,
    epsilon: f64,
    seed: u64,
    offset_model: Option<PathBuf>,
    entity_key: String,
    feature_columns: Option<Vec<String>>,
    feature_bags: Option<Vec<String>>,
    format: Option<String>,
    threads: Option<usize>,
) -> PyResult<Py<PyAny>> {
    let policy = match policy {
        "thompson" => Policy::Thompson {
            multiplier,
            draws: propensity_draws,
        },
        "ucb" => Policy::Ucb { alpha },
        "greedy" => Policy::Greedy,
        "epsilon-greedy" => Policy::EpsilonGreedy { epsilon },
        "random" => Policy::Random,
        other => {
            return Err(GlmixError::new_err(format!(
                "policy {other:?}: expected thompson, ucb, greedy, epsilon-greedy or random"
            )))
        }
    };
    let input = Input::new(
        data,
        entity_key,
        feature_columns,
        feature_bags,
        format,
        offset_model,
    )?
    .unlabelled();
    let models = models_of(models, Some(0.0))?;
    let options = RankOptions { policy, top, seed };
    let (data, requests, shown) = detached(py, threads, || {
        let missing = "missing request field (set it with request_key)";
        let (data, mut ids) = input.read_with_ids(std::slice::from_ref(&request_key), missing)?;
        let requests = ids.pop().expect("one id column per key");
        let shown = glmix::bandit::rank(&data, &requests, &models, &options)?;
        Ok((data, requests, shown))
    })?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("request", DataType::Utf8, false),
        Field::new("position", DataType::UInt64, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("entity", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("propensity", DataType::Float64, true),
    ]));
    let entity = |i: usize| data.entities.key(data.entity[i]).as_str();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            shown.iter().map(|s| requests.0.key(s.request).as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            shown.iter().map(|s| s.position as u64),
        )),
        Arc::new(UInt64Array::from_iter_values(
            shown.iter().map(|s| s.row as u64),
        )),
        Arc::new(StringArray::from_iter_values(
            shown.iter().map(|s| entity(s.row)),
        )),
        Arc::new(Float64Array::from_iter_values(
            shown.iter().map(|s| s.score),
        )),
        Arc::new(shown.iter().map(|s| s.propensity).collect::<Float64Array>()),
    ];
    let batch = RecordBatch::try_new(schema, columns).map_err(arrow_error)?;
    table_of(py, batch)
}

/// The models of a model file (JSON lines, Parquet) or store, as a model table.
#[pyfunction]
#[pyo3(signature = (path, missing_precision))]
fn load_models(py: Python, path: PathBuf, missing_precision: Option<f64>) -> PyResult<Py<PyAny>> {
    let set = py
        .detach(|| read_all_models(&path, missing_precision))
        .map_err(error)?;
    models_table(py, &set.models().iter().collect::<Vec<_>>())
}

/// Write a model table to `path` (JSON lines; Parquet when it ends in `.parquet`),
/// atomically.
#[pyfunction]
fn save_models(py: Python, models: &Bound<PyAny>, path: PathBuf) -> PyResult<()> {
    let set = models_of(models, None)?;
    py.detach(|| write_models(&path, set.models()))
        .map_err(error)
}

#[pymodule]
fn _glmix(m: &Bound<PyModule>) -> PyResult<()> {
    m.add("GlmixError", m.py().get_type::<GlmixError>())?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(eval, m)?)?;
    m.add_function(wrap_pyfunction!(fixed_effect_sums, m)?)?;
    m.add_function(wrap_pyfunction!(rank, m)?)?;
    m.add_function(wrap_pyfunction!(load_models, m)?)?;
    m.add_function(wrap_pyfunction!(save_models, m)?)?;
    Ok(())
}
