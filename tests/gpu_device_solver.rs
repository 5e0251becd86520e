//! The L-BFGS step on the device (`--solver-on device`) against the host's driver: round
//! by round on the same f32 evaluations, and after the f64 finish against the CPU's
//! optimum, on ragged and prior-weighted batches.
//!
//! Without a GPU adapter these tests print a notice and pass, unless
//! `GLMIX_REQUIRE_GPU=1` (set by `.ci/run`), where a missing adapter is a failure.

mod common;

use common::{gpu, ragged_batch, random_batch};
use glmix::eval::backend::{SolveSettings, SolverOn};
use glmix::eval::{Backend, CpuEvaluator, GpuEvaluator, GpuWorkspace};
use glmix::model::HessianType;
use glmix::objective::{Loss, ObjectiveKind, PrecisionShape, TrainingBatch};
use glmix::solver::{minimize, LbfgsOptions, SolveResult};

/// Worst `|a − b| / max(|b|, 1)` over two coefficient vectors.
fn worst_relative(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// The f64 CPU's optimum of every entity.
fn cpu_optimum(batch: &TrainingBatch, options: &LbfgsOptions) -> SolveResult {
    let mut cpu = CpuEvaluator::new(batch);
    minimize(&mut cpu, &batch.prior_mean, options, |_| {}).unwrap()
}

/// The batch solved by the host's driver on the f32 GPU evaluator, and by the device
/// solver, both without the f64 finish.
fn host_and_device(batch: &TrainingBatch, options: &LbfgsOptions) -> (SolveResult, SolveResult) {
    let ctx = gpu().expect("a GPU");
    let mut ws = GpuWorkspace::new(ctx);
    let mut evaluator = GpuEvaluator::new(&mut ws, batch).unwrap();
    let host = minimize(&mut evaluator, &batch.prior_mean, options, |_| {}).unwrap();
    let settled = vec![false; batch.num_entities()];
    let device = evaluator
        .minimize_on_device(&batch.prior_mean, &settled, options, false)
        .unwrap();
    let device = SolveResult {
        theta: device.theta,
        reports: device.reports.into_iter().map(Option::unwrap).collect(),
        rounds: device.rounds,
        evaluate_seconds: 0.0,
        finish_seconds: 0.0,
    };
    (host, device)
}

#[test]
fn the_first_rounds_take_the_host_drivers_decisions_and_iterates() {
    if gpu().is_none() {
        return;
    }
    for objective in ObjectiveKind::ALL {
        for shape in [PrecisionShape::Diagonal, PrecisionShape::Full] {
            let batch = random_batch(21, 50, 40, 6, objective, shape);
            for iterations in 1..=3 {
                let options = LbfgsOptions {
                    max_iterations: iterations,
                    ..LbfgsOptions::default()
                };
                let (host, device) = host_and_device(&batch, &options);
                let mut same = 0;
                for (e, (h, d)) in host.reports.iter().zip(&device.reports).enumerate() {
                    let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
                    let worst = worst_relative(&device.theta[r.clone()], &host.theta[r]);
                    // The same accepted steps after the same trials: the same counts and
                    // stop reason, the iterates within f32 rounding.
                    let decided_alike = (h.iterations, h.evaluations, h.reason)
                        == (d.iterations, d.evaluations, d.reason);
                    if decided_alike {
                        same += 1;
                        assert!(
                            worst <= 1e-4,
                            "{objective} {shape:?} {iterations} it, entity {e}: {worst:e}"
                        );
                    }
                }
                // f32 prior terms (the host adds them in f64) may tip a decision that
                // sits on a tolerance; nearly every entity decides alike.
                let share = same as f64 / batch.num_entities() as f64;
                eprintln!(
                    "{objective} {shape:?}, {iterations} iterations: {same} of {} alike",
                    batch.num_entities()
                );
                assert!(
                    share >= 0.9,
                    "{objective} {shape:?} {iterations} iterations: {same} alike"
                );
            }
        }
    }
}

#[test]
fn device_solves_end_at_the_cpus_optimum_after_the_f64_finish() {
    let Some(ctx) = gpu() else { return };
    let options = LbfgsOptions {
        factr: 10.0,
        pgtol: 1e-9,
        ..LbfgsOptions::default()
    };
    let settings = SolveSettings {
        solver_on: SolverOn::Device,
        solver: &options,
        hessian: HessianType::Diagonal,
        f64_finish: true,
        polish_iterations: 0,
    };
    for loss in [Loss::Logistic, Loss::Squared] {
        for shape in [
            PrecisionShape::None,
            PrecisionShape::Diagonal,
            PrecisionShape::Full,
        ] {
            let batch = ragged_batch(loss, shape, 200);
            let cpu = cpu_optimum(&batch, &options);
            let mut ws = None;
            let part = Backend::Gpu(ctx)
                .solve(&batch, &mut ws, &settings, &mut |_| {})
                .unwrap();
            assert_eq!(part.fallback, None, "{loss:?} {shape:?}");
            let worst = worst_relative(&part.solved.theta, &cpu.theta);
            let finished = part
                .solved
                .reports
                .iter()
                .filter(|r| r.finished_precisely)
                .count();
            eprintln!(
                "{loss:?} {shape:?}: worst relative {worst:e}, {finished} finished in f64, {} rounds",
                part.solved.rounds
            );
            assert!(worst <= 1e-6, "{loss:?} {shape:?}: {worst:e}");
            assert!(finished > 0);
            // A round reads back 4 bytes; only the relists and the end read more.
            let t = part.gpu_timings;
            assert!(t.submissions >= part.solved.rounds.min(t.submissions));
        }
    }
}

#[test]
fn more_entities_than_one_grid_dimension_holds_are_all_solved_reading_4_bytes_a_round() {
    if gpu().is_none() {
        return;
    }
    let mut ctx_small = glmix::eval::GpuContext::new().unwrap();
    ctx_small.limit_workgroups_per_dimension(16);
    let batch = random_batch(
        5,
        300,
        30,
        5,
        ObjectiveKind::BayesLogistic,
        PrecisionShape::Full,
    );
    let options = LbfgsOptions::default();
    let mut ws = GpuWorkspace::new(&ctx_small);
    let mut evaluator = GpuEvaluator::new(&mut ws, &batch).unwrap();
    let settled = vec![false; batch.num_entities()];
    let before = evaluator.timings();
    let device = evaluator
        .minimize_on_device(&batch.prior_mean, &settled, &options, false)
        .unwrap();
    // One submission per round, one per relist of the running entities, one at the end;
    // a round reads back only its count of running entities.
    let t = evaluator.timings().since(&before);
    let relists = t.submissions - device.rounds - 1;
    let (e, c) = (batch.num_entities() as u64, batch.num_coefficients() as u64);
    let most = 4 * device.rounds as u64 + relists as u64 * 4 * (e + 1) + 128 * e + 4 * c;
    assert!(relists >= 1 && relists < device.rounds, "{relists} relists");
    assert!(t.bytes_down <= most, "{} bytes read back", t.bytes_down);
    assert_eq!(t.dispatches, device.rounds);
    let cpu = cpu_optimum(&batch, &options);
    for e in 0..batch.num_entities() {
        let report = device.reports[e].expect("every entity solved");
        assert!(report.iterations > 0, "entity {e}: {report:?}");
        let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        let worst = worst_relative(&device.theta[r.clone()], &cpu.theta[r]);
        assert!(worst <= 1e-3, "entity {e}: {worst:e} ({report:?})");
    }
}
