//! `fit(prior, data)`: one incremental training path, where a missing prior is a cold start.
//!
//! For each entity of the data:
//! 1. **Projection.** Its coefficient space is the intercept, then the features of its
//!    rows (Photon-ML's per-entity projection, the reference's IndexMap), in key order so
//!    that a file trained whole or in chunks gives the same models. Features only its
//!    prior has are *kept*: their mean and precision pass to the new model unchanged,
//!    and they take no part in training (their deviation from the prior mean stays zero,
//!    so their prior terms vanish).
//! 2. **Prior.** `θ₀` is the prior's mean (0 for coefficients it lacks) and is the
//!    solver's starting point for every objective. For `bayes-*`, `H₀` is the prior's
//!    precision restricted to the trained coefficients; a coefficient the prior lacks
//!    gets the cold-start precision λ (0 for an unpenalised intercept).
//! 3. **Solve** with the lockstep batched L-BFGS, entities in batches.
//! 4. **Posterior precision** at the trained θ (DESIGN §1):
//!    `Xᵀ diag(ℓ'') X + diag(p) + δ H₀`, kept as the configured Hessian type.
//!
//! An entity whose line search failed before any progress keeps its prior model as it
//! was (Lambda Learner's behaviour); its report says so.

use crate::data::{Dataset, EntityRows};
use crate::error::{Error, Result};
pub use crate::eval::backend::SolverOn;
use crate::eval::backend::{PartSolve, SolveSettings};
use crate::eval::gpu::MAX_DEVICE_MEMORY;
use crate::eval::{BatchEvaluator, CpuEvaluator, GpuTimings};
use crate::model::{EntityModel, HessianType, ModelSet};
use crate::objective::{ObjectiveKind, Regularization, TrainingBatch};
use crate::solver::{LbfgsOptions, SolveReport, SolveResult};
use crate::vector::inf_norm;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

mod pack;
mod posterior;
mod record;
mod run;
mod thread_cpu;

use pack::{pack_part, PartScratch, Plan};

#[cfg(test)]
use crate::eval::backend::CPU_PART_ENTITIES;
pub use crate::eval::Backend;
pub use posterior::PrecisionNote;
use posterior::{posterior_model, Solution};
pub use record::{update_record, RecordScratch, RecordUpdate};
pub use run::{train_chunks, Chunks, Progress, RunTotals, Silent};
use thread_cpu::on_thread;
pub use thread_cpu::thread_cpu_seconds;

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub objective: ObjectiveKind,
    pub regularization: Regularization,
    /// Posterior precision kept with each model (default `diagonal`).
    pub hessian: HessianType,
    pub solver: LbfgsOptions,
    /// On the GPU, entities in flight at once (default 65,536), in one part per thread;
    /// bounds the GPU's and the packed parts' memory. The CPU solves parts of 32.
    pub batch_entities: usize,
    /// After a GPU solve, finish every entity in f64 on the CPU: its last L-BFGS steps,
    /// until the f64 stopping rule holds, and its posterior precision (default on).
    pub f64_finish: bool,
    /// f64 CPU L-BFGS iterations run after a GPU solve, from its optimum (default 0).
    pub polish_iterations: usize,
    /// On the GPU, where the L-BFGS step runs (default the host).
    pub solver_on: SolverOn,
    /// Recompute every trained entity's loss and gradient with the f64 CPU evaluator and
    /// report the worst differences (default off).
    pub verify: bool,
}

impl TrainConfig {
    pub fn new(objective: ObjectiveKind) -> Self {
        TrainConfig {
            objective,
            regularization: Regularization::default(),
            hessian: HessianType::Diagonal,
            solver: LbfgsOptions::default(),
            batch_entities: 65_536,
            f64_finish: true,
            polish_iterations: 0,
            solver_on: SolverOn::Host,
            verify: false,
        }
    }

    /// What the backends' solve takes of these settings.
    fn solve_settings(&self) -> SolveSettings<'_> {
        SolveSettings {
            solver_on: self.solver_on,
            solver: &self.solver,
            hessian: self.hessian,
            f64_finish: self.f64_finish,
            polish_iterations: self.polish_iterations,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let r = &self.regularization;
        if !(r.penalty >= 0.0 && r.penalty.is_finite()) {
            return Err(Error::Config(format!(
                "penalty must be a finite number ≥ 0, got {}",
                r.penalty
            )));
        }
        if !(0.0..=1.0).contains(&r.delta) {
            return Err(Error::Config(format!(
                "delta must lie in [0, 1], got {}",
                r.delta
            )));
        }
        match r.half_life {
            Some(h) if !(h > 0.0 && h.is_finite()) => {
                return Err(Error::Config(format!(
                    "the half-life must be a finite number > 0, got {h}"
                )))
            }
            Some(_) if !self.objective.is_bayesian() => {
                return Err(Error::Config(format!(
                    "a half-life weights a prior: it needs a bayes-* objective, not {}",
                    self.objective.name()
                )))
            }
            _ => {}
        }
        let o = &self.solver;
        if !(1..=1000).contains(&o.memory) {
            return Err(Error::Config(format!(
                "memory (L-BFGS correction pairs) must lie in 1..=1000, got {}",
                o.memory
            )));
        }
        if !(o.factr >= 0.0 && o.factr.is_finite() && o.pgtol >= 0.0 && o.pgtol.is_finite()) {
            return Err(Error::Config(format!(
                "factr and pgtol must be finite numbers ≥ 0, got {} and {}",
                o.factr, o.pgtol
            )));
        }
        if self.solver_on == SolverOn::Device && o.memory > MAX_DEVICE_MEMORY {
            return Err(Error::Config(format!(
                "the device solver keeps at most {MAX_DEVICE_MEMORY} correction pairs, not {} \
                 (--memory, or --solver-on host)",
                o.memory
            )));
        }
        if self.batch_entities == 0 {
            return Err(Error::Config("batch_entities must be at least 1".into()));
        }
        Ok(())
    }
}

/// Per-entity training report.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityReport {
    pub entity: String,
    pub rows: usize,
    /// Trained coefficients, intercept included.
    pub features: usize,
    pub solve: SolveReport,
    /// What the posterior had to give up, when it could not be kept as configured.
    pub precision_note: Option<PrecisionNote>,
}

/// What [`fit`] returns.
#[derive(Debug, Clone)]
pub struct FitOutput {
    /// Models of the entities in the data, in order of first appearance.
    pub models: Vec<EntityModel>,
    pub reports: Vec<EntityReport>,
    /// Batched evaluation rounds, summed over the parts solved.
    pub rounds: usize,
    pub timings: FitTimings,
    /// Parts the GPU could not take, and why; they were solved on the CPU instead.
    pub gpu_fallbacks: Vec<String>,
    /// With [`TrainConfig::verify`]: the f64 CPU check of the trained optima.
    pub verification: Option<Verification>,
}

/// The f64 CPU evaluator's view of the trained optima.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Verification {
    /// Largest `‖∇F‖_∞` over the entities, recomputed in f64.
    pub worst_gradient_norm: f64,
    /// Largest `|F_reported − F_f64|` over the entities.
    pub worst_loss_difference: f64,
}

impl Verification {
    /// The worse of two checks, field by field.
    pub fn merge(self, other: Verification) -> Verification {
        Verification {
            worst_gradient_norm: self.worst_gradient_norm.max(other.worst_gradient_norm),
            worst_loss_difference: self.worst_loss_difference.max(other.worst_loss_difference),
        }
    }
}

/// Wall-clock seconds spent in each phase of [`fit`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FitTimings {
    /// Projection and packing of the batches.
    pub build: f64,
    /// The batched L-BFGS, evaluations included.
    pub solve: f64,
    /// The part of `solve` spent in the evaluator.
    pub evaluate: f64,
    /// The part of `evaluate` spent finishing GPU-solved entities in f64 on the CPU.
    pub finish: f64,
    /// On the GPU: the evaluators' setup, upload, wait and read-back thread seconds
    /// (summed over parts, which run on every thread at once), their kernels' own time
    /// on the device, and the bytes the kernels moved.
    pub gpu: GpuTimings,
    /// Posterior precisions and model assembly.
    pub posterior: f64,
    /// The host's CPU time in each phase.
    pub host_cpu: HostCpu,
}

/// Thread CPU seconds of the phases of [`fit`], summed over its parts: what the host spends
/// on them without its waits (for the GPU, for other parts). A part's phase counts the
/// nested parallel work its thread runs, whichever part that work is of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostCpu {
    pub build: f64,
    /// The L-BFGS (or, on the device, its sequencing), evaluations and the f64 finish.
    pub solve: f64,
    pub posterior: f64,
}

impl HostCpu {
    pub fn add(&mut self, other: &HostCpu) {
        self.build += other.build;
        self.solve += other.solve;
        self.posterior += other.posterior;
    }
}

/// Train every entity of `data` on the CPU, each from its model in `prior` when there is
/// one. `progress` gets the number of entities finished so far.
pub fn fit(
    prior: Option<&ModelSet>,
    data: &Dataset,
    config: &TrainConfig,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<FitOutput> {
    fit_on(Backend::Cpu, prior, data, config, progress)
}

/// [`fit`] with the evaluations on `backend`.
pub fn fit_on(
    backend: Backend,
    prior: Option<&ModelSet>,
    data: &Dataset,
    config: &TrainConfig,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<FitOutput> {
    config.validate()?;
    let groups = data.rows_by_entity();
    let mut models = Vec::with_capacity(groups.num_entities());
    let mut reports = Vec::with_capacity(groups.num_entities());
    let mut rounds = 0;
    let mut timings = FitTimings::default();
    let finished = AtomicUsize::new(0);
    let mut gpu_fallbacks = Vec::new();
    let mut verification: Option<Verification> = None;
    let entities = 0..groups.num_entities();

    // Each part is planned, packed, solved by its own lockstep L-BFGS and turned into
    // models on one thread, parts in parallel: no thread waits for another's stragglers,
    // and its buffers are refilled by the thread's next part. On the CPU a part is small
    // enough to stay in one core's cache; on the GPU the threads' parts share the device,
    // so that one part's kernels run while the others pack, step or finish.
    let clock = Instant::now();
    let fit = Fit {
        backend,
        data,
        groups: &groups,
        prior,
        config,
        finished: &finished,
        progress,
    };
    let parts = backend.parts(&groups, entities, data, config.batch_entities);
    let parts: Vec<PartOutput> = parts
        .into_par_iter()
        .map_init(
            || PartScratch::new(data.features.len()),
            |scratch, part| solve_part(&fit, part, scratch),
        )
        .collect::<Vec<Result<PartOutput>>>()
        // The first error in entity order, whichever thread found one first.
        .into_iter()
        .collect::<Result<_>>()?;
    let wall = clock.elapsed().as_secs_f64();

    // Wall time split in proportion to the thread time of each phase.
    let thread = |f: fn(&PartOutput) -> f64| parts.iter().map(f).sum::<f64>();
    let total = thread(|p| p.build + p.solve + p.posterior).max(f64::MIN_POSITIVE);
    timings.build += wall * thread(|p| p.build) / total;
    timings.solve += wall * thread(|p| p.solve) / total;
    timings.evaluate += wall * thread(|p| p.evaluate) / total;
    timings.finish += wall * thread(|p| p.finish) / total;
    timings.posterior += wall * thread(|p| p.posterior) / total;
    for part in parts {
        timings.host_cpu.add(&part.host_cpu);
        gpu_fallbacks.extend(part.gpu_fallback);
        timings.gpu.add(&part.gpu_timings);
        if let Some(v) = part.verification {
            verification = Some(verification.unwrap_or_default().merge(v));
        }
        rounds += part.rounds;
        models.extend(part.models);
        reports.extend(part.reports);
    }
    Ok(FitOutput {
        models,
        reports,
        rounds,
        timings,
        gpu_fallbacks,
        verification,
    })
}

/// Models, reports and thread seconds of one part.
struct PartOutput {
    models: Vec<EntityModel>,
    reports: Vec<EntityReport>,
    rounds: usize,
    build: f64,
    solve: f64,
    evaluate: f64,
    finish: f64,
    posterior: f64,
    host_cpu: HostCpu,
    gpu_fallback: Option<String>,
    verification: Option<Verification>,
    gpu_timings: GpuTimings,
}

/// What every part of one [`fit_on`] shares.
struct Fit<'a> {
    backend: Backend<'a>,
    data: &'a Dataset,
    groups: &'a EntityRows,
    prior: Option<&'a ModelSet>,
    config: &'a TrainConfig,
    /// Finished entities over all parts, for `progress`.
    finished: &'a AtomicUsize,
    progress: &'a (dyn Fn(usize) + Sync),
}

/// Plan, pack, solve and finish the entities `part` of the fit.
fn solve_part<'a>(
    fit: &Fit<'a>,
    part: Range<usize>,
    scratch: &mut PartScratch<'a>,
) -> Result<PartOutput> {
    let Fit {
        backend,
        data,
        config,
        finished,
        progress,
        ..
    } = *fit;
    let clock = Instant::now();
    let (packed, build_cpu) = on_thread(|| pack_part(fit, part, scratch));
    let (plans, batch) = packed?;
    let build = clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let mut seen = 0;
    let mut report_progress = |n: usize| {
        // A retry on the CPU starts counting again from 0.
        if n > seen {
            let total = finished.fetch_add(n - seen, Ordering::Relaxed) + n - seen;
            seen = n;
            progress(total);
        }
    };
    let settings = config.solve_settings();
    let (solved, solve_cpu) =
        on_thread(|| backend.solve(&batch, &mut scratch.gpu, &settings, &mut report_progress));
    let PartSolve {
        solved,
        data_hessians,
        fallback: gpu_fallback,
        gpu_timings,
    } = solved?;
    let verification = config.verify.then(|| verify(&batch, &solved)).transpose()?;
    let solve = clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let posterior_start = thread_cpu_seconds();
    let (models, reports): (Vec<EntityModel>, Vec<EntityReport>) = plans
        .par_iter()
        .with_min_len(64)
        .enumerate()
        .map(|(k, plan)| {
            let theta = &solved.theta[batch.coef_ptr[k]..batch.coef_ptr[k + 1]];
            let mut report = EntityReport {
                entity: data.entities.key(plan.entity).clone(),
                rows: plan.rows.len(),
                features: plan.free(),
                solve: solved.reports[k],
                precision_note: None,
            };
            let data_hessian = data_hessians
                .as_ref()
                .map(|h| &h.values[h.starts[k]..h.starts[k + 1]]);
            let solution = Solution {
                theta,
                data_hessian,
                report: &report.solve,
            };
            let (model, note) = posterior_model(data, &batch, k, plan, &solution, config);
            report.precision_note = note;
            (model, report)
        })
        .unzip();
    let posterior = clock.elapsed().as_secs_f64();
    let host_cpu = HostCpu {
        build: build_cpu,
        solve: solve_cpu,
        posterior: thread_cpu_seconds() - posterior_start,
    };
    scratch.spare = Some(batch);
    Ok(PartOutput {
        models,
        reports,
        rounds: solved.rounds,
        build,
        solve,
        evaluate: solved.evaluate_seconds,
        finish: solved.finish_seconds,
        posterior,
        host_cpu,
        gpu_fallback,
        verification,
        gpu_timings,
    })
}

/// The f64 CPU loss and gradient at every entity's final coefficients.
fn verify(batch: &TrainingBatch, solved: &SolveResult) -> Result<Verification> {
    let n = batch.num_entities();
    let all: Vec<usize> = (0..n).collect();
    let (mut loss, mut grad) = (vec![0.0; n], vec![0.0; solved.theta.len()]);
    CpuEvaluator::new(batch).evaluate(&all, &solved.theta, &mut loss, &mut grad)?;
    let mut v = Verification::default();
    for e in 0..n {
        let g = &grad[batch.coef_ptr[e]..batch.coef_ptr[e + 1]];
        v.worst_gradient_norm = v.worst_gradient_norm.max(inf_norm(g));
        let reported = solved.reports[e].final_loss;
        v.worst_loss_difference = v.worst_loss_difference.max((reported - loss[e]).abs());
    }
    Ok(v)
}

/// Models of `prior` whose entities are absent from `data`: they pass through unchanged
/// so that the output of an incremental run is the complete model set.
pub fn untouched_priors<'a>(
    prior: &'a ModelSet,
    data: &'a Dataset,
) -> impl Iterator<Item = &'a EntityModel> {
    prior
        .models()
        .iter()
        .filter(move |m| data.entities.get(&m.entity).is_none())
}

#[cfg(test)]
mod tests {
    use super::pack::plan_entity;
    use super::*;
    use crate::data::FeatureKey;
    use crate::model::Precision;
    use crate::synth::{generate, SyntheticSpec};

    #[test]
    fn of_several_unfit_priors_the_first_entity_is_named() {
        let spec = SyntheticSpec {
            entities: 3 * CPU_PART_ENTITIES,
            rows_per_entity: 3,
            features: 2,
            ..SyntheticSpec::default()
        };
        let data = generate(&spec).data;
        let mut prior = ModelSet::new();
        // Entities in different parts; the later one is packed on whichever thread.
        for e in [2 * CPU_PART_ENTITIES + 7, CPU_PART_ENTITIES + 5] {
            prior.insert(EntityModel {
                entity: data.entities.key(e as u32).clone(),
                objective: None,
                hessian: HessianType::None,
                features: vec![FeatureKey::intercept()],
                means: vec![0.0],
                precision: Precision::None,
                last_seen: None,
            });
        }
        let config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        for _ in 0..5 {
            match fit(Some(&prior), &data, &config, &|_| {}) {
                Err(Error::PriorMismatch { entity, .. }) => {
                    assert_eq!(entity, *data.entities.key(CPU_PART_ENTITIES as u32 + 5))
                }
                other => panic!("expected a prior mismatch, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn rows_are_uniform_when_each_has_the_features_of_the_first() {
        let mut data = Dataset::new();
        let key = |name: &str| FeatureKey::new(name, "");
        let rows: [(&str, &[&str]); 10] = [
            ("dense", &["a", "b"]),
            ("dense", &["a", "b"]),
            ("empty first", &[]),
            ("empty first", &["a"]),
            ("changes", &["a"]),
            ("changes", &["b"]),
            ("none", &[]),
            ("fills up", &["b"]),
            ("fills up", &["a", "b"]),
            ("fills up", &["a", "b"]),
        ];
        for (entity, features) in rows {
            data.push(
                entity,
                1.0,
                1.0,
                0.0,
                None,
                features.iter().map(|&f| (key(f), 1.0)),
            );
        }
        let groups = data.rows_by_entity();
        let config = TrainConfig::new(ObjectiveKind::Logistic);
        let mut seen = vec![u32::MAX; data.features.len()];
        // (entity, uniform rows, features found)
        for (e, uniform, features) in [
            (0, true, 2),
            (1, false, 1),
            (2, false, 2),
            (3, true, 0),
            (4, false, 2),
        ] {
            let rows = groups.of(e);
            let plan = plan_entity(&data, e as u32, rows, None, &config, &mut seen).unwrap();
            let name = data.entities.key(e as u32);
            assert_eq!(plan.uniform_rows, uniform, "{name}");
            assert_eq!(plan.data_features.len(), features, "{name}");
        }
        // Packed either way, every entity trains.
        assert_eq!(fit(None, &data, &config, &|_| {}).unwrap().models.len(), 5);
    }

    #[test]
    fn a_half_life_weights_each_prior_by_its_age_and_keeps_the_newest_time() {
        let records = |rows: &[(&str, f64, f64, f64)]| {
            let mut data = Dataset::new();
            for &(entity, label, x, t) in rows {
                let features = [(FeatureKey::new("x", ""), x)];
                data.push(entity, label, 1.0, 0.1, Some(t), features);
            }
            data
        };
        let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        config.hessian = HessianType::Full;
        config.solver.factr = 10.0;
        let old = records(&[
            ("a", 1.0, 0.5, 0.0),
            ("a", 0.0, -1.0, 1.0),
            ("b", 1.0, 2.0, 0.0),
            ("c", 0.0, 1.5, 0.0),
        ]);
        let mut prior: ModelSet = fit(None, &old, &config, &|_| {})
            .unwrap()
            .models
            .into_iter()
            .collect();
        // a was last seen at 10, b at 5; c's prior came from a file, without a time.
        let seen = [("a", Some(10.0)), ("b", Some(5.0)), ("c", None)];
        let mut models = ModelSet::new();
        for (entity, t) in seen {
            let mut m = prior.get(entity).unwrap().clone();
            m.last_seen = t;
            models.insert(m);
        }
        prior = models;
        let new = records(&[
            ("a", 1.0, 1.0, 12.0),
            ("a", 1.0, -0.5, 14.0),
            ("b", 0.0, 1.0, 3.0),
            ("c", 1.0, 0.2, 7.0),
            ("d", 0.0, 0.7, 9.0),
        ]);
        config.regularization.half_life = Some(2.0);
        let timed = fit(Some(&prior), &new, &config, &|_| {}).unwrap().models;
        // Each entity as trained with its own δ and no half-life: a is 4 units past its
        // prior (δ = 2^−2), b's record is older than its prior (δ = 1), c keeps --delta.
        config.regularization.half_life = None;
        let want = [
            ("a", 0.25, Some(14.0)),
            ("b", 1.0, Some(5.0)),
            ("c", 0.8, Some(7.0)),
            ("d", 0.8, Some(9.0)),
        ];
        for (model, (entity, delta, last_seen)) in timed.iter().zip(want) {
            assert_eq!(model.entity, entity);
            config.regularization.delta = delta;
            let mut plain = fit(Some(&prior), &new, &config, &|_| {}).unwrap().models;
            let mut plain =
                plain.swap_remove(plain.iter().position(|m| m.entity == entity).unwrap());
            assert_eq!(
                plain.last_seen, None,
                "{entity}: no time without a half-life"
            );
            plain.last_seen = last_seen;
            assert_eq!(*model, plain, "{entity}");
        }
        // A cold fit's models carry their newest time too.
        config.regularization.half_life = Some(2.0);
        let cold = fit(None, &new, &config, &|_| {}).unwrap().models;
        let times: Vec<_> = cold.iter().map(|m| m.last_seen).collect();
        assert_eq!(times, [Some(14.0), Some(3.0), Some(7.0), Some(9.0)]);
    }

    #[test]
    fn a_half_life_needs_a_positive_finite_value_and_a_prior_to_weight() {
        let mut config = TrainConfig::new(ObjectiveKind::BayesLinear);
        for h in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            config.regularization.half_life = Some(h);
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.contains("half-life must be a finite number > 0"),
                "{err}"
            );
        }
        config.objective = ObjectiveKind::Linear;
        config.regularization.half_life = Some(1.0);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("needs a bayes-* objective"), "{err}");
    }

    #[test]
    fn the_device_solver_refuses_more_correction_pairs_than_it_keeps() {
        let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        config.solver_on = SolverOn::Device;
        config.solver.memory = MAX_DEVICE_MEMORY;
        assert!(config.validate().is_ok());
        config.solver.memory = MAX_DEVICE_MEMORY + 1;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("at most 32 correction pairs, not 33"), "{err}");
        config.solver_on = SolverOn::Host;
        assert!(config.validate().is_ok());
    }
}
