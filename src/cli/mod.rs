//! Command-line definitions (clap) and dispatch. Errors here are `anyhow`; the library's
//! typed errors already name the file, line and field.

mod bench;
mod demo;
mod eval;
mod game;
mod generate;
mod ope;
#[cfg(feature = "avro")]
mod photon;
mod probe;
mod rank;
mod score;
mod store;
mod stream;
mod train;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use glmix::data::{
    read_records, read_records_with_ids, Dataset, EntityMode, Format, Ids, ReadOptions,
};
use glmix::io::{check_paths, PathRole};
use glmix::model::OffsetModel;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Train per-entity GLMs (GLMix random effects) in batches, with incremental Bayesian updates.
#[derive(Parser, Debug)]
#[command(name = "glmix", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train one model per entity (a cold start, or an update of --prior).
    Train(train::TrainArgs),
    /// Train incrementally over mini-batches of a time-ordered record stream, with
    /// progressive validation, into a durable model store (resumable).
    Stream(stream::StreamArgs),
    /// Inspect a model store; export it to, or import it from, model JSON lines.
    Store(store::StoreArgs),
    /// Score records with trained models (margins), optionally with Thompson sampling.
    Score(score::ScoreArgs),
    /// Rank each request's candidates by a bandit policy over the models' posteriors
    /// (Thompson sampling, UCB, greedy, ε-greedy, random) and write the shown ones with
    /// their propensities.
    Rank(rank::RankArgs),
    /// Estimate a ranking policy's mean reward from a log of another's shown candidates
    /// and rewards (off-policy evaluation: IPS, self-normalised IPS, replay).
    Ope(ope::OpeArgs),
    /// Evaluate models on labelled records: AUC, RMSE, log-loss, per-entity AUC.
    Eval(eval::EvalArgs),
    /// GAME models: a fixed effect plus random effects of several types, trained by
    /// coordinate descent from a JSON configuration.
    Game(game::GameArgs),
    /// Models between Photon-ML's (and GDMix's) GAME model directory, in Avro, and glmix's
    /// model files.
    #[cfg(feature = "avro")]
    Photon(photon::PhotonArgs),
    /// Rewrite a records file grouped by entity, with bounded memory (for `train
    /// --chunk-entities`).
    Group(GroupArgs),
    /// Write a seeded synthetic GLMix workload as NTV JSON lines (offsets included).
    Generate(generate::GenerateArgs),
    /// Print the GPU adapter glmix would use and the limits it works within.
    Info,
    /// Measure the GPU: read bandwidth, upload and readback rates, the submit-to-readback
    /// round trip, and the fused kernel alone on resident data.
    GpuProbe(probe::ProbeArgs),
    /// Measure training throughput on a seeded synthetic workload.
    Bench(bench::BenchArgs),
    /// Run the main job end to end on a built-in synthetic workload: incremental training
    /// over time-ordered mini-batches with progressive validation.
    Demo(demo::DemoArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Stream(a) => stream::run(a),
        Command::Store(a) => store::run(a),
        Command::Score(a) => score::run(a),
        Command::Rank(a) => rank::run(a),
        Command::Ope(a) => ope::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Game(a) => game::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Group(a) => group(a),
        Command::Info => info(),
        Command::GpuProbe(a) => probe::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
        #[cfg(feature = "avro")]
        Command::Photon(a) => photon::run(a),
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    /// NTV JSON lines: {"entity", "label", "weight", "offset", "features": [{"name","term","value"}]}.
    Jsonl,
    /// Dense TSV: timestamp, label, v1 … vK per line; the whole file is one entity.
    Tsv,
    /// Parquet: label, weight, offset, the entity column, and an NTV `features` list column
    /// or the numeric columns of --feature-columns.
    Parquet,
    /// Arrow IPC (Feather v2) with the columns Parquet has.
    Arrow,
    /// Avro container files (a file, or a directory of `*.avro` parts) with the columns
    /// Parquet has: Photon-ML's TrainingExampleAvro (`response` for the label, ids in
    /// `metadataMap`, feature bags by --feature-bags).
    Avro,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Arrow => Format::ArrowIpc,
            FormatArg::Avro => Format::Avro,
        }
    }
}

/// Which columns of a Parquet, Arrow or Avro file hold the features.
#[derive(Args, Debug, Clone)]
struct ColumnArgs {
    /// Columnar files: read these numeric columns as features named after them
    /// (comma-separated; `f_*` takes every column starting with `f_`) instead of the
    /// `features` list column.
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    feature_columns: Vec<String>,
    /// Columnar files: the NTV list columns (feature bags) whose features each record has,
    /// merged (comma-separated; default `features`).
    #[arg(
        long,
        value_name = "COLUMNS",
        value_delimiter = ',',
        conflicts_with = "feature_columns"
    )]
    feature_bags: Vec<String>,
}

impl ColumnArgs {
    /// Refuse the options for `path`, which is not read as a columnar file.
    fn refuse_unless_columnar(&self, path: &std::path::Path, columnar: bool) -> Result<()> {
        for (given, option) in [
            (!self.feature_columns.is_empty(), "--feature-columns"),
            (!self.feature_bags.is_empty(), "--feature-bags"),
        ] {
            anyhow::ensure!(
                columnar || !given,
                "{option} names columns; {} is not read as Parquet, Arrow or Avro",
                path.display()
            );
        }
        Ok(())
    }
}

/// Where records come from and how they are read.
#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// Records file (Avro: or a directory of part files).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Format of the records file (default: what its name or first bytes say: parquet,
    /// arrow, avro (also a directory of `*.avro` parts), tsv for a `.tsv` name, else
    /// jsonl).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Field of each record that holds its entity id (Lambda Learner's mock data uses
    /// `uid`); in a columnar file, a column or else a key of its `metadataMap` column.
    #[arg(long, value_name = "KEY", default_value = "entity")]
    entity_key: String,
    /// Treat every record of the file as one entity, with this id (default `global`).
    /// TSV files are always one entity.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "global")]
    single_entity: Option<String>,
    /// Global fixed-effect linear model whose score β₀ + x·β is added to every record's
    /// offset: one coefficient per line (intercept, then dense columns 1…K), or a model
    /// JSON-lines file with one model.
    #[arg(long, value_name = "MODEL")]
    offset_model: Option<PathBuf>,
    /// Refuse records with keys that no field reads (a typo like `ofset`, or the entity id
    /// under another key); by default one notice names them.
    #[arg(long)]
    strict: bool,
}

impl DataArgs {
    /// `--format`, or the format `--data`'s name or first bytes say ([`Format::of_file`]).
    fn format(&self) -> Format {
        self.format
            .map_or_else(|| Format::of_file(&self.data), Format::from)
    }

    /// The files read: `--data` and `--offset-model`.
    fn inputs(&self) -> Vec<PathRole<'_>> {
        let mut roles = vec![PathRole::input("--data", &self.data)];
        if let Some(m) = &self.offset_model {
            roles.push(PathRole::input("--offset-model", m));
        }
        roles
    }

    /// The read options; `default_label`: see [`ReadOptions::default_label`].
    fn options(&self, default_label: Option<f64>) -> ReadOptions {
        let entity = match &self.single_entity {
            Some(id) => EntityMode::Single(id.clone()),
            None => EntityMode::Key(self.entity_key.clone()),
        };
        ReadOptions {
            default_label,
            entity,
            timestamp_field: None,
            feature_columns: self.columns.feature_columns.clone(),
            feature_bags: self.columns.feature_bags.clone(),
        }
    }

    fn offset_model(&self) -> Result<Option<OffsetModel>> {
        Ok(self
            .offset_model
            .as_deref()
            .map(OffsetModel::read)
            .transpose()?)
    }

    /// The records, each with its label.
    fn read(&self) -> Result<Dataset> {
        self.read_labels(None)
    }

    /// The records, a missing label read as 0: for jobs that do not read labels.
    fn read_unlabelled(&self) -> Result<Dataset> {
        self.read_labels(Some(0.0))
    }

    fn read_labels(&self, default_label: Option<f64>) -> Result<Dataset> {
        let format = self.checked_format()?;
        let data = read_records(&self.data, format, &self.options(default_label))?;
        self.finish(data)
    }

    /// [`Self::read_unlabelled`] with each record's id under every key of `keys`
    /// (`missing`: the error for a record without one).
    fn read_with_ids(&self, keys: &[String], missing: &str) -> Result<(Dataset, Vec<Ids>)> {
        let format = self.checked_format()?;
        let options = self.options(Some(0.0));
        let (data, ids) = read_records_with_ids(&self.data, format, &options, keys, missing)?;
        Ok((self.finish(data)?, ids))
    }

    fn checked_format(&self) -> Result<Format> {
        let format = self.format();
        self.columns
            .refuse_unless_columnar(&self.data, format.is_columnar())?;
        Ok(format)
    }

    /// Report the keys no field read, and add the offset model's scores.
    fn finish(&self, mut data: Dataset) -> Result<Dataset> {
        unread_keys(&data, &self.data, self.strict)?;
        if let Some(model) = self.offset_model()? {
            model.add_to(&mut data).with_context(|| {
                format!(
                    "--offset-model {}",
                    self.offset_model.as_ref().expect("read").display()
                )
            })?;
        }
        Ok(data)
    }
}

/// One notice naming the keys of `data`'s records (read from `path`) that no field reads,
/// or with `strict` an error naming the first.
fn unread_keys(data: &Dataset, path: &std::path::Path, strict: bool) -> Result<()> {
    let Some((key, first)) = data.unread_keys.iter().min_by_key(|(_, u)| u.first_line) else {
        return Ok(());
    };
    if strict {
        anyhow::bail!(
            "{}:{}: {key}: no field reads this key (--strict)",
            path.display(),
            first.first_line
        );
    }
    let keys: Vec<String> = data
        .unread_keys
        .iter()
        .map(|(k, u)| {
            format!(
                "{k:?} ({} records, the first on line {})",
                u.records, u.first_line
            )
        })
        .collect();
    eprintln!(
        "glmix: notice: {}: keys no field reads: {}; check --entity-key and the field names (--strict makes this an error)",
        path.display(),
        keys.join(", ")
    );
    Ok(())
}

/// Shape of a seeded synthetic workload (see `glmix::synth`).
#[derive(Args, Debug, Clone)]
struct WorkloadArgs {
    /// Number of entities E.
    #[arg(long, default_value_t = 10_000)]
    entities: usize,
    /// Rows per entity n.
    #[arg(long, default_value_t = 50)]
    rows: usize,
    /// Feature columns d (the intercept comes on top).
    #[arg(long, default_value_t = 16)]
    features: usize,
    /// Feature density: 1 for dense N(0,1) features, below 1 for sparse binary ones.
    #[arg(long, default_value_t = 1.0)]
    density: f64,
    /// Draw each entity's row count uniformly from 1..=2n−1 instead of exactly n.
    #[arg(long)]
    ragged: bool,
    /// Draw row counts from Zipf's law with exponent S instead (mean n, at least 1 row):
    /// a few entities hold most rows.
    #[arg(long, value_name = "S", conflicts_with = "ragged")]
    zipf: Option<f64>,
    /// Seed of the workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl WorkloadArgs {
    fn spec(&self, loss: glmix::objective::Loss) -> glmix::synth::SyntheticSpec {
        glmix::synth::SyntheticSpec {
            entities: self.entities,
            rows_per_entity: self.rows,
            features: self.features,
            density: self.density,
            ragged: self.ragged,
            zipf: self.zipf,
            loss,
            seed: self.seed,
        }
    }
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The notice for logistic training data with `count` of `records` labels other than 0, 1
/// or −1: the first is record `first` (1-based) of `path`, with `label`; `consequence`
/// says what becomes of them.
fn notice_non_binary_labels(
    count: usize,
    records: usize,
    first: usize,
    path: &std::path::Path,
    label: f64,
    consequence: &str,
) {
    eprintln!(
        "glmix: notice: {count} of {records} records have a label other than 0 or 1 (the first is record {first} of {}, label {label}); {consequence}",
        path.display()
    );
}

/// The models of `data`'s entities from a model file or store. Data none of whose
/// entities has a model usually means a wrong `--entity-key`: that gets a warning.
fn models_for(data: &Dataset, path: &std::path::Path) -> Result<glmix::model::ModelSet> {
    let models =
        glmix::store::read_models_for(path, data.entities.keys().iter().map(String::as_str), None)?;
    if data.entities.keys().iter().all(|e| !models.contains(e)) {
        eprintln!(
            "glmix: warning: none of the {} entities has a model in {}; scores are offsets only (check --entity-key)",
            data.entities.len(),
            path.display()
        );
    }
    Ok(models)
}

#[derive(Args, Debug)]
struct GroupArgs {
    /// Records in any order: NTV JSON lines, or a Parquet, Arrow or Avro file (written
    /// out as NTV JSON lines).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Field of each record that holds its entity id.
    #[arg(long, value_name = "KEY", default_value = "entity")]
    entity_key: String,
    /// Temporary parts the records are spread over; memory holds about one part (the
    /// file's size divided by this).
    #[arg(long, default_value_t = 64)]
    parts: usize,
    /// Output: the same records, every entity's on consecutive lines (written atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `glmix group`.
fn group(a: GroupArgs) -> Result<()> {
    check_paths(&[
        PathRole::input("--data", &a.data),
        PathRole::output("--out", &a.out),
    ])?;
    a.columns
        .refuse_unless_columnar(&a.data, Format::of_file(&a.data).is_columnar())?;
    let options = ReadOptions {
        default_label: None,
        entity: EntityMode::Key(a.entity_key),
        timestamp_field: None,
        feature_columns: a.columns.feature_columns,
        feature_bags: a.columns.feature_bags,
    };
    let records = glmix::data::group_by_entity(&a.data, &a.out, &options, a.parts)?;
    eprintln!(
        "glmix: wrote {records} records grouped by entity to {}",
        a.out.display()
    );
    Ok(())
}

/// `glmix info`.
fn info() -> Result<()> {
    println!("glmix {}", env!("CARGO_PKG_VERSION"));
    println!("cpu threads: {}", rayon::current_num_threads());
    match glmix::eval::GpuContext::new() {
        Ok(ctx) => {
            println!("{}", ctx.report());
            if ctx.is_software() {
                println!(
                    "note: a software adapter; --device auto uses the CPU, --device gpu forces it"
                );
            }
        }
        Err(e) => println!("gpu: none ({e}); training runs on the CPU"),
    }
    Ok(())
}
