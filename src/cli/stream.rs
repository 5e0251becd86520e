//! `glmix stream`: incremental training over mini-batches of a record stream, with
//! progressive validation, into a durable model store (see `glmix::stream`).

use super::train::{Compute, ModelArgs};
use super::{progress_bar, ColumnArgs, FormatArg};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use glmix::data::{EntityMode, Format, ReadOptions};
use glmix::io::{check_paths, write_output, PathRole};
use glmix::model::OffsetModel;
use glmix::plot::{line_chart, Series};
use glmix::store::ModelStore;
use glmix::stream::{
    run_stream, BatchReport, Batching, CommitPolicy, OnBadRecord, Source, StreamConfig, Update,
};
use serde_json::{json, Value};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct StreamArgs {
    /// Time-ordered records: NTV JSON lines (`-` reads stdin), or a Parquet, Arrow or Avro
    /// file (read whole, then cut into mini-batches record by record).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Format of --data (default: what its name or first bytes say; tsv does not stream).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Model store (created when missing). A store that already holds a stream position
    /// resumes after its last committed mini-batch.
    #[arg(long, value_name = "STORE")]
    store: PathBuf,
    /// Field of each record that holds its entity id.
    #[arg(long, value_name = "KEY", default_value = "entity")]
    entity_key: String,
    /// Global fixed-effect model whose score is added to every record's offset (as in
    /// `glmix train`).
    #[arg(long, value_name = "MODEL")]
    offset_model: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Cut a mini-batch every N records.
    #[arg(long, value_name = "N", conflicts_with = "batch_window")]
    batch_records: Option<usize>,
    /// Cut mini-batches by tumbling windows of this many time units over --time-field.
    #[arg(long, value_name = "SECONDS")]
    batch_window: Option<f64>,
    /// Field of each record that holds its timestamp (a number; read with --batch-window
    /// or --half-life).
    #[arg(long, value_name = "FIELD", default_value = "timestamp")]
    time_field: String,
    /// Forget by time: each update weights an entity's prior by 2^(−Δt / H), Δt the time
    /// units (of --time-field) since its model last saw a record, so that the prior's
    /// weight does not depend on how the stream is cut. --delta then weights only priors
    /// that carry no time (models imported from files).
    #[arg(long, value_name = "H")]
    half_life: Option<f64>,
    /// What to do with a record that cannot be read: fail (stop, naming the line and
    /// field; committed batches stay) or skip (count it in the batch's metrics).
    #[arg(long, value_enum, default_value = "fail")]
    on_bad_record: BadRecordArg,
    /// Make a key that no field reads (a typo'd `ofset`, say) an error, before the
    /// mini-batch holding it trains; without it such keys get one notice.
    #[arg(long)]
    strict: bool,
    /// incremental: each touched entity is updated from the batch, its stored model as
    /// the prior. retrain: retrained from scratch on all its records so far (a baseline).
    #[arg(long, value_enum, default_value = "incremental")]
    update: UpdateArg,
    /// Commit the mini-batches trained in memory once they hold N records (a row of
    /// metrics per commit). A killed run resumes after its last commit.
    #[arg(long, value_name = "N", default_value_t = CommitPolicy::default().records)]
    commit_records: usize,
    /// Commit them too once T milliseconds have passed since the first of them began (0:
    /// after every mini-batch).
    #[arg(long, value_name = "T", default_value_t = CommitPolicy::default().interval.as_millis() as u64)]
    commit_ms: u64,
    /// Progressive-validation metrics, a row per commit, rewritten from the store at start
    /// and appended after every commit: CSV (*.csv) or JSON lines (any other name).
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// A chart of the metrics over the stream (SVG), written at the end.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BadRecordArg {
    Fail,
    Skip,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum UpdateArg {
    Incremental,
    Retrain,
}

const DEFAULT_BATCH_RECORDS: usize = 10_000;

pub fn run(a: StreamArgs) -> Result<()> {
    crate::keep_freed_memory();
    let mut paths = vec![
        PathRole::input("--data", &a.data),
        PathRole::store("--store", &a.store),
    ];
    paths.extend(
        a.offset_model
            .as_deref()
            .map(|p| PathRole::input("--offset-model", p)),
    );
    paths.extend(
        a.metrics
            .as_deref()
            .map(|p| PathRole::output("--metrics", p)),
    );
    paths.extend(a.plot.as_deref().map(|p| PathRole::output("--plot", p)));
    check_paths(&paths)?;
    let format = a.format.map(Format::from);
    let source = Source::from_arg(&a.data, format);
    match (&source, format) {
        (_, Some(Format::Tsv)) => bail!("{}: --format tsv does not stream", a.data.display()),
        (Source::Stdin, Some(f)) if f.is_columnar() => {
            bail!("--data -: a {f:?} file cannot be read from stdin; name the file")
        }
        _ => {}
    }
    let columnar = matches!(source, Source::Columnar(..));
    a.columns.refuse_unless_columnar(&a.data, columnar)?;
    if columnar && a.on_bad_record == BadRecordArg::Skip {
        bail!(
            "{}: --on-bad-record skip reads JSON lines only; a columnar file is checked whole",
            a.data.display()
        );
    }
    let batching = match (a.batch_records, a.batch_window) {
        (_, Some(w)) => Batching::Window(w),
        (n, None) => Batching::Records(n.unwrap_or(DEFAULT_BATCH_RECORDS)),
    };
    let mut train = a.model.config();
    train.regularization.half_life = a.half_life;
    let timed = matches!(batching, Batching::Window(_)) || a.half_life.is_some();
    let config = StreamConfig {
        train,
        batching,
        read: ReadOptions {
            default_label: None,
            entity: EntityMode::Key(a.entity_key.clone()),
            timestamp_field: timed.then(|| a.time_field.clone()),
            feature_columns: a.columns.feature_columns.clone(),
            feature_bags: a.columns.feature_bags.clone(),
        },
        offset_model: a
            .offset_model
            .as_deref()
            .map(OffsetModel::read)
            .transpose()?,
        on_bad_record: match a.on_bad_record {
            BadRecordArg::Fail => OnBadRecord::Fail,
            BadRecordArg::Skip => OnBadRecord::Skip,
        },
        strict_keys: a.strict,
        update: match a.update {
            UpdateArg::Incremental => Update::Incremental,
            UpdateArg::Retrain => Update::Retrain,
        },
        commit: CommitPolicy {
            records: a.commit_records,
            interval: std::time::Duration::from_millis(a.commit_ms),
        },
    };
    let compute = Compute::choose(a.model.device)?;
    let outputs = Outputs {
        store: a.store,
        metrics: a.metrics,
        plot: a.plot,
    };
    stream_into(&source, &config, &compute, &outputs)
}

/// Where a stream run leaves its results.
pub struct Outputs {
    pub store: PathBuf,
    pub metrics: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

/// Run `config` over `source` into `outputs.store`, printing a row per mini-batch and a
/// JSON summary at the end.
pub fn stream_into(
    source: &Source,
    config: &StreamConfig,
    compute: &Compute,
    outputs: &Outputs,
) -> Result<()> {
    let store = ModelStore::open(&outputs.store)?;
    let mut metrics = outputs
        .metrics
        .as_deref()
        .map(|p| MetricsFile::start(p, &store))
        .transpose()?;
    let total_bytes = match &source {
        Source::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        // A columnar file's position counts records, not bytes.
        Source::Stdin | Source::Columnar(..) => 0,
    };
    let kind = config.train.objective.loss();
    let loss_name = match kind {
        glmix::objective::Loss::Logistic => "logloss",
        glmix::objective::Loss::Squared => "rmse",
    };
    let bar = progress_bar(total_bytes, "streaming");
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    println!(
        "{:>6} {:>9} {:>8} {:>7} | {:>10} {:>7} {:>8} {:>10} | {:>11} {:>12} | {:>7}",
        "batch",
        "records",
        "entities",
        "new",
        "offset AUC",
        "AUC",
        loss_name,
        "entity-AUC",
        "running AUC",
        format!("running {loss_name}"),
        "train s"
    );
    let mut failed_metrics: Option<anyhow::Error> = None;
    let mut unread_noticed = false;
    let outcome = run_stream(source, &store, config, compute.backend(), &mut |r| {
        bar.set_position(r.input_bytes);
        if !unread_noticed && !r.unread_keys.is_empty() {
            unread_noticed = true;
            let keys: Vec<String> = r
                .unread_keys
                .iter()
                .map(|(k, n, line)| format!("{k:?} ({n} records, the first on line {line})"))
                .collect();
            bar.suspend(|| {
                eprintln!(
                    "glmix: notice: batch {}: keys no field reads: {}; check --entity-key and the field names (--strict makes this an error)",
                    r.batch,
                    keys.join(", ")
                )
            });
        }
        for e in &r.skipped_examples {
            bar.suspend(|| eprintln!("glmix: skipped: {e}"));
        }
        if r.skipped > r.skipped_examples.len() {
            bar.suspend(|| {
                eprintln!(
                    "glmix: skipped {} more bad records in batch {}",
                    r.skipped - r.skipped_examples.len(),
                    r.batch
                )
            });
        }
        let loss = r.logloss.or(r.rmse);
        bar.suspend(|| {
            println!(
                "{:>6} {:>9} {:>8} {:>7} | {:>10} {:>7} {:>8} {:>10} | {:>11} {:>12} | {:>7.3}",
                r.batch,
                r.records,
                r.entities,
                r.new_entities,
                fmt(r.offset_auc),
                fmt(r.auc),
                fmt(loss),
                fmt(r.entity_auc),
                fmt(r.running_auc),
                fmt(r.running_loss),
                r.train_seconds
            )
        });
        if let Some(m) = metrics.as_mut() {
            if let Err(e) = m.append(r) {
                failed_metrics.get_or_insert(e);
            }
        }
    });
    bar.finish_and_clear();
    let summary = match outcome {
        Err(e @ (glmix::Error::Input { .. } | glmix::Error::Io { .. } | glmix::Error::Eval(_))) => {
            return Err(e).with_context(|| {
                format!(
                    "stream stopped; every batch before this one is committed to {} (fix the input and run again to resume)",
                    outputs.store.display()
                )
            })
        }
        other => other?,
    };
    if let Some(e) = failed_metrics {
        return Err(e.context("writing --metrics"));
    }
    if let Some(path) = &outputs.plot {
        plot(path, &store, kind)?;
    }

    let quantile = |seconds: &[f64], q: f64| {
        let mut sorted = seconds.to_vec();
        sorted.sort_by(f64::total_cmp);
        (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
    };
    let (batch, commit) = (&summary.batch_seconds, &summary.commit_seconds);
    let last = summary.last.as_ref();
    let out = json!({
        "store": outputs.store,
        "device": compute.name(),
        "resumed_after_batches": summary.resumed_after,
        "batches": summary.batches,
        "records": summary.records,
        "skipped": summary.skipped,
        "seconds": summary.seconds,
        "records_per_second": summary.records as f64 / summary.seconds,
        "commits": summary.commits,
        "batch_latency_median_seconds": quantile(batch, 0.5),
        "batch_latency_p99_seconds": quantile(batch, 0.99),
        "commit_latency_median_seconds": quantile(commit, 0.5),
        "commit_latency_p99_seconds": quantile(commit, 0.99),
        "models_in_store": store.len()?,
        "running_auc": last.and_then(|r| r.running_auc),
        "running_loss": last.and_then(|r| r.running_loss),
        "running_offset_auc": last.and_then(|r| r.running_offset_auc),
        "running_offset_loss": last.and_then(|r| r.running_offset_loss),
    });
    eprintln!("{out}");
    Ok(())
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// The --metrics file: CSV or JSON lines, one row per committed batch.
struct MetricsFile {
    path: PathBuf,
    file: Box<dyn Write>,
    csv: bool,
}

impl MetricsFile {
    /// Rewrite the file from the batches the store holds (so a resumed run's file has
    /// every batch exactly once).
    fn start(path: &Path, store: &ModelStore) -> Result<Self> {
        let csv = path.extension().and_then(|e| e.to_str()) == Some("csv");
        let rows = store.batches()?;
        write_output(path, |f| {
            if csv {
                writeln!(f, "{}", BatchReport::COLUMNS.join(","))?;
            }
            for (_, row) in &rows {
                let line = match csv {
                    true => serde_json::from_str::<BatchReport>(row)
                        .map_err(std::io::Error::other)?
                        .csv_row(),
                    false => row.clone(),
                };
                writeln!(f, "{line}")?;
            }
            Ok(())
        })?;
        // Later batches are appended: to the file, or to standard output for `-`.
        let file: Box<dyn Write> = match path == Path::new("-") {
            true => Box::new(std::io::stdout()),
            false => Box::new(
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .with_context(|| path.display().to_string())?,
            ),
        };
        Ok(MetricsFile {
            path: path.to_path_buf(),
            file,
            csv,
        })
    }

    fn append(&mut self, r: &BatchReport) -> Result<()> {
        let line = match self.csv {
            true => r.csv_row(),
            false => serde_json::to_string(r)?,
        };
        writeln!(self.file, "{line}").with_context(|| self.path.display().to_string())?;
        Ok(())
    }
}

/// Per-batch and running AUC (logistic) or loss against records seen, from the store.
fn plot(path: &Path, store: &ModelStore, kind: glmix::objective::Loss) -> Result<()> {
    let rows: Vec<Value> = store
        .batches()?
        .iter()
        .map(|(_, r)| serde_json::from_str(r))
        .collect::<Result<_, _>>()?;
    let series = |label: &str, field: &str| Series {
        label: label.into(),
        points: rows
            .iter()
            .filter_map(|r| Some((r["running_records"].as_f64()?, r[field].as_f64()?)))
            .collect(),
    };
    let (title, y, lines) = match kind {
        glmix::objective::Loss::Logistic => (
            "Progressive validation AUC",
            "AUC",
            vec![
                series("running AUC", "running_auc"),
                series("batch AUC", "auc"),
                series("running AUC, offsets only", "running_offset_auc"),
            ],
        ),
        glmix::objective::Loss::Squared => (
            "Progressive validation RMSE",
            "RMSE",
            vec![
                series("running RMSE", "running_loss"),
                series("batch RMSE", "rmse"),
                series("running RMSE, offsets only", "running_offset_loss"),
            ],
        ),
    };
    line_chart(path, title, "records seen", y, &lines)?;
    Ok(())
}
