//! The one place that chooses where a part's objectives are evaluated, and what happens
//! when the GPU cannot take a part.
//!
//! - [`Backend::Cpu`]: the lockstep L-BFGS on the f64 [`CpuEvaluator`].
//! - [`Backend::Gpu`]: the same L-BFGS on the f32 [`GpuEvaluator`]. With the f64 finish
//!   (the default) every entity the f32 run would stop continues on the f64 CPU
//!   evaluator, its L-BFGS memory kept, until the f64 stopping rule holds; the data
//!   Hessians of the posterior are then left to the f64 CPU too. Without it, `polish`
//!   f64 iterations may follow and the data Hessians come from the GPU.
//!   With [`SolverOn::Device`] the L-BFGS step itself runs on the GPU
//!   ([`GpuEvaluator::minimize_on_device`]); the f64 finish then goes on from each
//!   entity's device optimum with the device's correction pairs.
//!
//! An entity with a single row (a stream's per-record update) is solved exactly by
//! [`solve_one_row`] on either backend, one scalar Newton equation, and takes no part in
//! the L-BFGS of the others.
//!
//! A part the GPU fails on (a device error, a part too large for a binding) is solved
//! again from its start on the CPU, and the reason comes back in
//! [`PartSolve::fallback`]: a GPU failure is a value, never a panic.
//!
//! A *part* is a run of consecutive entities packed into one [`TrainingBatch`] and solved
//! by one L-BFGS on one thread; [`Backend::parts`] cuts them.

use super::gpu::{MAX_DEVICE_MEMORY, MAX_GPU_FEATURES};
use super::GpuWorkspace;
use super::{BatchEvaluator, CpuEvaluator, EvalError, GpuContext, GpuEvaluator, GpuTimings};
use crate::data::{Dataset, EntityRows};
use crate::model::HessianType;
use crate::objective::TrainingBatch;
use crate::solver::{
    minimize, minimize_resumed, minimize_settled, solve_one_row, LbfgsOptions, Resume, SolveReport,
    SolveResult, StopReason,
};
use rayon::prelude::*;
use std::ops::Range;
use std::time::Instant;

/// Where the objectives are evaluated.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    /// The f64 CPU evaluator, parts of [`CPU_PART_ENTITIES`] entities solved in parallel.
    Cpu,
    /// The GPU evaluator, one part of `batch_entities / threads` entities per thread at a
    /// time.
    Gpu(&'a GpuContext),
}

/// Entities per CPU part: enough parts to keep every core busy, each small enough for its
/// packed rows and solver state to stay in the core's L2 cache between rounds (32
/// entities of 50 × 16 take about 0.4 MB; 128 took 1.7 MB, and a fit of 10⁴ such entities
/// 4–7% longer). Parts are never copied into one large batch.
pub const CPU_PART_ENTITIES: usize = 32;

/// Where the L-BFGS step runs when the GPU evaluates: on the host (the reference) or on
/// the device beside the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SolverOn {
    #[default]
    Host,
    Device,
}

/// How a part is solved, whatever the backend.
#[derive(Debug, Clone, Copy)]
pub struct SolveSettings<'s> {
    /// On the GPU, where the L-BFGS step runs.
    pub solver_on: SolverOn,
    pub solver: &'s LbfgsOptions,
    /// The posterior's Hessian type: which data Hessians the GPU computes.
    pub hessian: HessianType,
    /// On the GPU, finish in f64 on the CPU (see the module doc).
    pub f64_finish: bool,
    /// On the GPU without the f64 finish, f64 CPU iterations from the GPU's optimum.
    pub polish_iterations: usize,
}

/// A part's data Hessians at its optimum: `values[starts[e]..starts[e+1]]` is entity e's
/// diagonal, or its d×d block row by row.
#[derive(Debug, Clone)]
pub struct DataHessians {
    pub values: Vec<f64>,
    pub starts: Vec<usize>,
}

/// What [`Backend::solve`] returns for one part.
pub struct PartSolve {
    pub solved: SolveResult,
    /// Computed by the GPU; `None` leaves them to the posterior's f64 CPU code.
    pub data_hessians: Option<DataHessians>,
    /// Why the GPU did not solve the part, or not all of it.
    pub fallback: Option<String>,
    /// The GPU's counts and seconds for the part (zero on the CPU).
    pub gpu_timings: GpuTimings,
}

impl<'c> Backend<'c> {
    /// Solve `batch` from its prior means. `workspace` is the thread's GPU workspace,
    /// made at its first GPU part and reused by the next; `progress` gets the number of
    /// entities finished so far (and starts again from 0 when the CPU takes over).
    pub fn solve(
        self,
        batch: &TrainingBatch,
        workspace: &mut Option<GpuWorkspace<'c>>,
        settings: &SolveSettings,
        progress: &mut dyn FnMut(usize),
    ) -> Result<PartSolve, EvalError> {
        // Entities with one row (a stream's per-record update) need no L-BFGS.
        let settled = || -> Vec<_> {
            (0..batch.num_entities())
                .map(|e| {
                    let start = &batch.prior_mean[batch.coef_ptr[e]..batch.coef_ptr[e + 1]];
                    solve_one_row(&batch.entity(e), start, settings.solver)
                })
                .collect()
        };
        let on_cpu = |progress: &mut dyn FnMut(usize), fallback| {
            Ok(PartSolve {
                solved: minimize_settled(
                    &mut CpuEvaluator::new(batch),
                    None,
                    &batch.prior_mean,
                    settled(),
                    settings.solver,
                    progress,
                )?,
                data_hessians: None,
                fallback,
                gpu_timings: GpuTimings::default(),
            })
        };
        let ctx = match self {
            Backend::Cpu => return on_cpu(progress, None),
            Backend::Gpu(ctx) => ctx,
        };
        let workspace = workspace.get_or_insert_with(|| GpuWorkspace::new(ctx));
        let mut gpu = match GpuEvaluator::new(workspace, batch) {
            Ok(gpu) => gpu,
            Err(e) => return on_cpu(progress, Some(e.to_string())),
        };
        let solved = match settings.solver_on {
            SolverOn::Device if settings.solver.memory <= MAX_DEVICE_MEMORY => {
                solve_on_device(&mut gpu, batch, settled(), settings, &mut *progress)
            }
            _ => {
                // Entities the f32 run stops go on in f64, from where they are.
                let mut cpu = CpuEvaluator::new(batch);
                let finish = settings
                    .f64_finish
                    .then_some(&mut cpu as &mut dyn BatchEvaluator);
                minimize_settled(
                    &mut gpu,
                    finish,
                    &batch.prior_mean,
                    settled(),
                    settings.solver,
                    &mut *progress,
                )
            }
        };
        let mut solved = match solved {
            Ok(solved) => solved,
            Err(e) => {
                let mut part = on_cpu(progress, Some(e.to_string()))?;
                part.gpu_timings = gpu.timings();
                return Ok(part);
            }
        };
        if settings.polish_iterations > 0 {
            polish(batch, &mut solved, settings)?;
        }
        let (data_hessians, fallback) = if settings.f64_finish {
            (None, None)
        } else {
            match gpu_data_hessians(&mut gpu, batch, &solved.theta, settings.hessian) {
                Ok(h) => (h, None),
                Err(e) => (None, Some(format!("Hessian on the CPU instead: {e}"))),
            }
        };
        Ok(PartSolve {
            solved,
            data_hessians,
            fallback,
            gpu_timings: gpu.timings(),
        })
    }

    /// Cut the entities `entities` into parts: [`CPU_PART_ENTITIES`] at a time on the CPU;
    /// on the GPU runs of at most `batch_entities / threads` whose dense arrays each fit
    /// one binding.
    pub fn parts(
        self,
        groups: &EntityRows,
        entities: Range<usize>,
        data: &Dataset,
        batch_entities: usize,
    ) -> Vec<Range<usize>> {
        match self {
            Backend::Cpu => entities
                .clone()
                .step_by(CPU_PART_ENTITIES)
                .map(|s| s..(s + CPU_PART_ENTITIES).min(entities.end))
                .collect(),
            Backend::Gpu(ctx) => {
                let part_entities = batch_entities.div_ceil(rayon::current_num_threads());
                gpu_parts(
                    groups,
                    entities,
                    data,
                    ctx.max_binding_bytes(),
                    part_entities.max(1),
                )
            }
        }
    }
}

/// Solve the entities not `settled` with the step on the device; with the f64 finish,
/// those that stopped for a convergence test or a failed line search go on on the f64 CPU
/// from their device optimum, their correction pairs and report kept ([`Resume`]).
fn solve_on_device(
    gpu: &mut GpuEvaluator,
    batch: &TrainingBatch,
    settled: Vec<Option<(Vec<f64>, SolveReport)>>,
    settings: &SolveSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<SolveResult, EvalError> {
    let is_settled: Vec<bool> = settled.iter().map(Option::is_some).collect();
    let clock = Instant::now();
    let device = gpu.minimize_on_device(
        &batch.prior_mean,
        &is_settled,
        settings.solver,
        settings.f64_finish,
    )?;
    let device_seconds = clock.elapsed().as_secs_f64();
    let coef = |e: usize| batch.coef_ptr[e]..batch.coef_ptr[e + 1];
    let mut resumed = Vec::with_capacity(settled.len());
    let settled: Vec<_> = settled
        .into_iter()
        .zip(device.pairs)
        .enumerate()
        .map(|(e, (settled, pairs))| {
            let report = device.reports[e];
            resumed.push(pairs.map(|pairs| Resume {
                pairs,
                report: report.expect("solved"),
            }));
            match (settled, device.wants_finish[e]) {
                (Some(settled), _) => Some(settled),
                (None, true) => None,
                (None, false) => Some((device.theta[coef(e)].to_vec(), report.expect("solved"))),
            }
        })
        .collect();
    let clock = Instant::now();
    let mut solved = finish_in_groups(batch, &device.theta, settled, resumed, settings, progress)?;
    solved.finish_seconds = clock.elapsed().as_secs_f64();
    solved.evaluate_seconds = solved.finish_seconds + device_seconds;
    solved.rounds += device.rounds;
    Ok(solved)
}

/// The f64 finish of [`solve_on_device`]: the entities not `settled` go on from `start`
/// with their `resumed` memories, [`CPU_PART_ENTITIES`] at a time in parallel, so that
/// each group's rows stay in cache over its rounds (a lockstep run over the whole part
/// reads them all from memory every round: 3× the CPU time per entity measured at
/// n = 64, d = 32). Each entity's L-BFGS is its own, so the grouping changes no result.
/// `rounds` is the most any group took (they run at once); `progress` hears once, at the
/// end; the seconds are the caller's to time (the groups' evaluator seconds overlap).
fn finish_in_groups(
    batch: &TrainingBatch,
    start: &[f64],
    settled: Vec<Option<(Vec<f64>, SolveReport)>>,
    resumed: Vec<Option<Resume>>,
    settings: &SolveSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<SolveResult, EvalError> {
    let n = batch.num_entities();
    let (mut settled, mut resumed) = (settled.into_iter(), resumed.into_iter());
    let groups: Vec<_> = (0..n)
        .step_by(CPU_PART_ENTITIES)
        .map(|first| {
            let entities = first..(first + CPU_PART_ENTITIES).min(n);
            let k = entities.len();
            let settled: Vec<_> = settled.by_ref().take(k).collect();
            (entities, settled, resumed.by_ref().take(k).collect())
        })
        .collect();
    let solved: Vec<SolveResult> = groups
        .into_par_iter()
        .map(|(entities, settled, resumed)| {
            let coefs = batch.coef_ptr[entities.start]..batch.coef_ptr[entities.end];
            minimize_resumed(
                &mut CpuEvaluator::of_entities(batch, entities),
                None,
                &start[coefs],
                settled,
                resumed,
                settings.solver,
                |_| {},
            )
        })
        .collect::<Result<_, _>>()?;
    let mut all = SolveResult {
        theta: Vec::with_capacity(start.len()),
        reports: Vec::with_capacity(n),
        rounds: 0,
        evaluate_seconds: 0.0,
        finish_seconds: 0.0,
    };
    for group in solved {
        all.theta.extend(group.theta);
        all.reports.extend(group.reports);
        all.rounds = all.rounds.max(group.rounds);
    }
    progress(n);
    Ok(all)
}

/// The data Hessians of the configured type, on the GPU, at `theta`.
fn gpu_data_hessians(
    gpu: &mut GpuEvaluator,
    batch: &TrainingBatch,
    theta: &[f64],
    hessian: HessianType,
) -> Result<Option<DataHessians>, EvalError> {
    Ok(match hessian {
        HessianType::Diagonal => Some(DataHessians {
            values: gpu.data_hessian_diagonal(theta)?,
            starts: batch.coef_ptr.clone(),
        }),
        HessianType::Full => {
            let values = gpu.data_hessian_full(theta)?;
            let mut starts = vec![0];
            for e in 0..batch.num_entities() {
                let d = batch.coef_ptr[e + 1] - batch.coef_ptr[e];
                starts.push(starts[e] + d * d);
            }
            Some(DataHessians { values, starts })
        }
        HessianType::Identity | HessianType::None => None,
    })
}

/// Continue every entity that did not keep its prior for `polish_iterations` f64 CPU
/// L-BFGS iterations from its current optimum; reports add up.
fn polish(
    batch: &TrainingBatch,
    solved: &mut SolveResult,
    settings: &SolveSettings,
) -> Result<(), EvalError> {
    let options = LbfgsOptions {
        max_iterations: settings.polish_iterations,
        ..*settings.solver
    };
    let again = minimize(
        &mut CpuEvaluator::new(batch),
        &solved.theta,
        &options,
        |_| {},
    )?;
    for (e, (old, new)) in solved.reports.iter_mut().zip(&again.reports).enumerate() {
        let kept_prior = matches!(
            old.reason,
            StopReason::LineSearchFailedKeptPrior | StopReason::NonFiniteStart
        );
        if kept_prior {
            continue;
        }
        // The polish never ends above its start in f64; with no step taken it reports a
        // failed line search from its start, and the GPU's stopping reason stands.
        let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        solved.theta[r.clone()].copy_from_slice(&again.theta[r]);
        *old = SolveReport {
            initial_loss: old.initial_loss,
            final_loss: new.final_loss,
            iterations: old.iterations + new.iterations,
            evaluations: old.evaluations + new.evaluations,
            gradient_norm: new.gradient_norm,
            finished_precisely: old.finished_precisely,
            reason: match new.reason {
                StopReason::LineSearchFailedKeptPrior => old.reason,
                reason => reason,
            },
        };
    }
    solved.rounds += again.rounds;
    Ok(())
}

/// Consecutive runs of the entities `entities` whose dense GPU arrays each fit one binding
/// of `limit` bytes (an entity's rows take 16 bytes per 4 of its features, and 16 for the
/// label, weight and offset), at most `part_entities` long. An entity too large or too wide
/// on its own gets a part of its own, which the GPU refuses and the CPU solves.
fn gpu_parts(
    groups: &EntityRows,
    entities: Range<usize>,
    data: &Dataset,
    limit: u64,
    part_entities: usize,
) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let (mut start, mut rows, mut x) = (entities.start, 0u64, 0u64);
    // `seen[f] == e + 1` once entity e's rows showed feature f.
    let mut seen = vec![0usize; data.features.len()];
    for e in entities.clone() {
        let mut d = 0u64;
        for &i in groups.of(e) {
            for &f in data.row_features(i).0 {
                if seen[f as usize] != e + 1 {
                    seen[f as usize] = e + 1;
                    d += 1;
                }
            }
        }
        let entity_rows = groups.of(e).len() as u64;
        let entity_x = 16 * entity_rows * d.div_ceil(4);
        let alone = d as usize > MAX_GPU_FEATURES;
        let full = e - start >= part_entities
            || 16 * (rows + entity_rows) > limit
            || x + entity_x > limit
            || alone;
        if full && e > start {
            parts.push(start..e);
            (start, rows, x) = (e, 0, 0);
        }
        rows += entity_rows;
        x += entity_x;
        if alone {
            parts.push(start..e + 1);
            (start, rows, x) = (e + 1, 0, 0);
        }
    }
    if start < entities.end {
        parts.push(start..entities.end);
    }
    parts
}
