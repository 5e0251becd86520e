//! `glmix train`.

use super::{notice_non_binary_labels, progress_bar, DataArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use glmix::data::{Dataset, EntityChunks, Format};
use glmix::eval::GpuContext;
use glmix::io::write_output;
use glmix::io::{check_paths, OutputFile, PathRole, ReadAhead};
use glmix::model::{HessianType, ModelSet, ModelWriter};
use glmix::objective::{ObjectiveKind, Regularization};
use glmix::solver::LbfgsOptions;
use glmix::store::read_all_models;
use glmix::train::{
    train_chunks, Backend, EntityReport, FitOutput, Progress, SolverOn, TrainConfig,
};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Previous models (model JSON lines or a model store): the starting point of every
    /// objective and the prior of bayes-*. Entities in the prior but not in the data are
    /// copied to --out.
    #[arg(long, value_name = "MODELS")]
    prior: Option<PathBuf>,
    /// Output models (model JSON lines), written atomically.
    #[arg(long, value_name = "MODELS")]
    out: PathBuf,
    /// Read, train and write this many whole entities at a time (the next chunk is read
    /// while one trains), so memory holds one chunk rather than the file. The records
    /// must be grouped by entity (`glmix group` groups any file); a file that is not is
    /// an error naming the line. Default: the whole file at once.
    #[arg(long, value_name = "N")]
    chunk_entities: Option<usize>,
    /// Per-entity report (JSON lines): entity, rows, features, initial_loss, final_loss,
    /// iterations, evaluations, gradient_norm, reason.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Run summary (one JSON object); it is printed to stderr in any case.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

/// The objective, solver and device of a training run (shared by `train` and `stream`).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Objective: linear, logistic, bayes-linear or bayes-logistic.
    #[arg(long, value_parser = clap::value_parser!(ObjectiveKind))]
    pub objective: ObjectiveKind,
    /// L2 penalty λ.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub penalty: f64,
    /// Forgetting factor δ ∈ [0, 1] of the bayes-* objectives: the prior's weight.
    #[arg(long, default_value_t = 0.8, allow_hyphen_values = true)]
    pub delta: f64,
    /// Posterior precision kept with each model: full, diagonal, identity or none.
    #[arg(long, default_value = "diagonal", value_parser = clap::value_parser!(HessianType))]
    pub hessian: HessianType,
    /// Do not penalise the intercept (Photon-ML's behaviour; by default it is penalised
    /// like every coefficient, as in Lambda Learner).
    #[arg(long)]
    pub no_intercept_penalty: bool,
    /// L-BFGS correction pairs kept.
    #[arg(long, default_value_t = 10)]
    pub memory: usize,
    /// Stop when the relative loss reduction is below factr × machine epsilon (scipy's meaning).
    #[arg(long, default_value_t = 1e7, allow_hyphen_values = true)]
    pub factr: f64,
    /// Stop when the gradient's infinity norm is at most this.
    #[arg(long, default_value_t = 1e-5, allow_hyphen_values = true)]
    pub pgtol: f64,
    /// Iteration limit per entity.
    #[arg(long, default_value_t = 15000)]
    pub max_iterations: usize,
    /// On the GPU, entities in flight at once, one part per thread (bounds GPU memory).
    #[arg(long, default_value_t = 65_536)]
    pub batch_entities: usize,
    /// Where to evaluate: auto (a GPU when one works, else the CPU), cpu or gpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// On the GPU, how each entity ends: f64 (its last L-BFGS steps and its posterior
    /// precision in f64 on the CPU, so that it meets the CPU's stopping rule) or none (all
    /// in f32 on the GPU: faster, about 6 significant digits).
    #[arg(long, value_enum, default_value = "f64")]
    pub finish: Finish,
    /// After a GPU solve, run this many f64 CPU L-BFGS iterations from its optimum.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub polish: usize,
    /// On the GPU, where the L-BFGS step runs: host (each round's losses come back to
    /// the CPU, which steps every entity) or device (the step runs on the GPU too, and a
    /// round reads back 4 bytes; at most 32 correction pairs). The CPU ignores it.
    #[arg(long, value_enum, default_value = "host")]
    pub solver_on: SolverOnArg,
    /// Recompute every trained entity's loss and gradient with the f64 CPU evaluator and
    /// report the worst gradient norm and loss difference (in the summary).
    #[arg(long)]
    pub verify: bool,
}

impl ModelArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            objective: self.objective,
            regularization: Regularization {
                penalty: self.penalty,
                delta: self.delta,
                intercept_penalty: !self.no_intercept_penalty,
                half_life: None,
            },
            hessian: self.hessian,
            solver: LbfgsOptions {
                memory: self.memory,
                factr: self.factr,
                pgtol: self.pgtol,
                max_iterations: self.max_iterations,
                ..LbfgsOptions::default()
            },
            batch_entities: self.batch_entities,
            f64_finish: self.finish == Finish::F64,
            polish_iterations: self.polish,
            solver_on: self.solver_on.into(),
            verify: self.verify,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverOnArg {
    Host,
    Device,
}

impl From<SolverOnArg> for SolverOn {
    fn from(a: SolverOnArg) -> Self {
        match a {
            SolverOnArg::Host => SolverOn::Host,
            SolverOnArg::Device => SolverOn::Device,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    F64,
    None,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// A hardware GPU when one works, else the CPU (with a one-line notice).
    Auto,
    /// The f64 CPU evaluator.
    Cpu,
    /// The GPU evaluator on any adapter, software ones included; an error when there is none.
    Gpu,
}

/// The evaluator chosen by `--device`.
pub struct Compute {
    gpu: Option<GpuContext>,
}

impl Compute {
    pub fn choose(device: Device) -> Result<Self> {
        let gpu = match device {
            Device::Cpu => None,
            Device::Gpu => Some(GpuContext::new().context("--device gpu")?),
            // Unasked, the GPU is used only when it is real hardware, and silently
            // skipped otherwise (the summary's `device` says which ran).
            Device::Auto => GpuContext::new().ok().filter(|ctx| !ctx.is_software()),
        };
        Ok(Compute { gpu })
    }

    /// The GPU, when one was chosen.
    pub fn gpu(&self) -> Option<&GpuContext> {
        self.gpu.as_ref()
    }

    pub fn backend(&self) -> Backend<'_> {
        self.gpu.as_ref().map_or(Backend::Cpu, Backend::Gpu)
    }

    /// `cpu`, or `gpu: <adapter> (<backend>, <type>)`.
    pub fn name(&self) -> String {
        self.gpu
            .as_ref()
            .map_or("cpu".into(), |g| format!("gpu: {}", g.describe()))
    }

    /// One notice per part the GPU failed on (it was solved on the CPU instead).
    pub fn report_fallbacks(&self, out: &FitOutput) {
        for why in &out.gpu_fallbacks {
            eprintln!("glmix: notice: the GPU failed ({why}); that part was solved on the CPU");
        }
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mut paths = a.data.inputs();
    paths.extend(a.prior.as_deref().map(|p| PathRole::input("--prior", p)));
    paths.push(PathRole::output("--out", &a.out));
    paths.extend(a.report.as_deref().map(|p| PathRole::output("--report", p)));
    paths.extend(
        a.summary
            .as_deref()
            .map(|p| PathRole::output("--summary", p)),
    );
    check_paths(&paths)?;
    let compute = Compute::choose(a.model.device)?;
    let device = compute.name();
    let config = a.model.config();

    let clock = Instant::now();
    let prior: Option<ModelSet> = a
        .prior
        .as_ref()
        .map(|p| read_all_models(p, Some(config.regularization.penalty)))
        .transpose()?;
    let mut read_seconds = clock.elapsed().as_secs_f64();

    // The records: all at once, or --chunk-entities whole entities at a time, the next
    // chunk read on another thread while this one trains.
    let chunks: Box<dyn FnMut() -> Result<Option<Dataset>>> = match a.chunk_entities {
        None => {
            // Read on the first call, so that the read is timed as reading.
            let mut pending = Some(a.data.clone());
            Box::new(move || pending.take().map(|data| data.read()).transpose())
        }
        #[cfg(any(feature = "parquet", feature = "avro"))]
        Some(n) if a.data.format().is_columnar() => {
            // The file is read and cut on a thread of its own, a chunk ahead.
            let (path, format, options) =
                (a.data.data.clone(), a.data.format(), a.data.options(None));
            let offsets = a.data.offset_model()?;
            let (send, chunks) = std::sync::mpsc::sync_channel::<glmix::Result<Dataset>>(1);
            std::thread::spawn(move || {
                let failed = send.clone();
                let mut emit = |mut chunk: Dataset| {
                    if let Some(model) = &offsets {
                        model.add_to(&mut chunk)?;
                    }
                    // The trainer stopped (an error of its own): nothing more is wanted.
                    send.send(Ok(chunk))
                        .map_err(|_| glmix::Error::Config("stopped".into()))
                };
                if let Err(e) =
                    glmix::data::read_columnar_chunks(&path, format, &options, n, &mut emit)
                {
                    let _ = failed.send(Err(e));
                }
            });
            Box::new(move || chunks.recv().ok().transpose().map_err(Into::into))
        }
        Some(n) => {
            if a.data.format() != Format::Jsonl {
                bail!("--chunk-entities reads NTV JSON lines, Parquet, Arrow and Avro (a TSV file is one entity)");
            }
            let mut reader = EntityChunks::open(&a.data.data, &a.data.options(None), n)?;
            let offsets = a.data.offset_model()?;
            let chunks = ReadAhead::spawn(move || {
                let mut next = reader.next_chunk();
                if let (Ok(Some(chunk)), Some(model)) = (&mut next, &offsets) {
                    model.add_to(chunk)?;
                }
                next
            });
            Box::new(move || Ok(chunks.next()?))
        }
    };
    let mut chunks = chunks;
    let mut unread_pending = a.chunk_entities.is_some();
    // The reader's own error (with its context), kept aside while the run stops.
    let mut read_error: Option<anyhow::Error> = None;
    let mut next_chunk = || -> glmix::Result<Option<Dataset>> {
        let read = chunks().and_then(|data| {
            // Whole files were checked as they were read; chunks are, until one notice.
            if let Some(d) = data
                .as_ref()
                .filter(|d| unread_pending && !d.unread_keys.is_empty())
            {
                super::unread_keys(d, &a.data.data, a.data.strict)?;
                unread_pending = false;
            }
            crate::release_freed_memory();
            Ok(data)
        });
        read.map_err(|e| {
            read_error = Some(e);
            glmix::Error::Config("the records could not be read".into())
        })
    };

    let mut models = ModelWriter::create(&a.out)?;
    let mut report = a.report.as_deref().map(OutputFile::create).transpose()?;
    let bar = Bar(progress_bar(0, "training"));
    let mut sink = |out: &FitOutput| -> glmix::Result<()> {
        crate::release_freed_memory();
        compute.report_fallbacks(out);
        models.write(&out.models.iter().collect::<Vec<_>>())?;
        if let Some(f) = report.as_mut() {
            let path = f.path().to_path_buf();
            let io = |e| glmix::Error::io(&path, e);
            for r in &out.reports {
                writeln!(f, "{}", report_line(r)).map_err(io)?;
            }
        }
        Ok(())
    };
    let run = train_chunks(
        compute.backend(),
        prior.as_ref(),
        &config,
        &mut next_chunk,
        &mut sink,
        &bar,
    );
    let mut totals = match (run, &a.prior) {
        (Err(_), _) if read_error.is_some() => return Err(read_error.expect("kept")),
        (Err(e @ glmix::Error::PriorMismatch { .. }), Some(p)) => {
            return Err(e).with_context(|| format!("{}", p.display()))
        }
        (r, _) => r?,
    };
    bar.0.finish_and_clear();
    if totals.chunks == 0 {
        bail!("{}: no records", a.data.data.display());
    }
    read_seconds += totals.read_seconds;

    let clock = Instant::now();
    let carried = totals.carried(prior.as_ref());
    models.write(&carried)?;
    models.commit()?;
    if let Some(f) = report {
        f.commit()?;
    }
    totals.sink_seconds += clock.elapsed().as_secs_f64();

    let entities = totals.entities;
    let mut summary = json!({
        "entities": entities,
        "rows": totals.rows,
        "chunks": totals.chunks,
        "device": device,
        "objective": config.objective.name(),
        "hessian": config.hessian.name(),
        "read_seconds": read_seconds,
        "solve_seconds": totals.solve_seconds,
        "write_seconds": totals.sink_seconds,
        "build_seconds": totals.timings.build,
        "lbfgs_seconds": totals.timings.solve,
        "posterior_seconds": totals.timings.posterior,
        "entities_per_second": entities as f64 / totals.solve_seconds,
        "evaluations": totals.evaluations,
        "rounds": totals.rounds,
        "f64_finish_entities": totals.finished_in_f64,
        "f64_finish_seconds": totals.timings.finish,
        "reasons": totals.reasons,
        "carried_over": carried.len(),
        "models_written": entities + carried.len(),
        "out": a.out,
    });
    if let Some((entity, note)) = &totals.first_precision_note {
        summary["precision_notes"] = json!(totals.precision_notes);
        eprintln!(
            "glmix: notice: {} entities' precision differs from --hessian (the first, {entity:?}: {note}; see --report)",
            totals.precision_notes
        );
    }
    if let Some((record, label)) = totals.first_non_binary {
        summary["non_binary_labels"] = json!(totals.non_binary_labels);
        notice_non_binary_labels(
            totals.non_binary_labels,
            totals.rows,
            record,
            &a.data.data,
            label,
            &format!(
                "--objective {} reads them as negatives, as Lambda Learner does",
                config.objective
            ),
        );
    }
    if let Some(v) = &totals.verification {
        summary["verify_worst_gradient_norm"] = json!(v.worst_gradient_norm);
        summary["verify_worst_loss_difference"] = json!(v.worst_loss_difference);
        eprintln!(
            "glmix: verify (f64 CPU): worst gradient norm {:e}, worst loss difference {:e}",
            v.worst_gradient_norm, v.worst_loss_difference
        );
    }
    eprintln!("{summary}");
    if let Some(path) = &a.summary {
        write_output(path, |f| writeln!(f, "{summary}"))?;
    }
    Ok(())
}

/// A model's report line (JSON): entity, rows, features, initial_loss, final_loss,
/// iterations, evaluations, gradient_norm, reason, and precision_note when it has one.
fn report_line(r: &EntityReport) -> serde_json::Value {
    let s = &r.solve;
    let mut line = json!({
        "entity": r.entity, "rows": r.rows, "features": r.features,
        "initial_loss": s.initial_loss, "final_loss": s.final_loss,
        "iterations": s.iterations, "evaluations": s.evaluations,
        "gradient_norm": s.gradient_norm, "reason": s.reason.name(),
    });
    if let Some(note) = r.precision_note {
        line["precision_note"] = json!(note.name());
    }
    line
}

/// The progress bar as a run's [`Progress`].
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn chunk(&self, entities: usize) {
        self.0.inc_length(entities as u64);
    }
    fn done(&self, entities: usize) {
        self.0.set_position(entities as u64);
    }
}
