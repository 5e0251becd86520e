//! The GPU evaluator against the f64 CPU evaluator, on seeded random batches of every
//! objective and precision shape: losses and gradients within an f32-sized tolerance,
//! and trained optima within 1e-4 relative.
//!
//! Without a GPU adapter these tests print a notice and pass, unless
//! `GLMIX_REQUIRE_GPU=1` (set by `.ci/run`, which installs Mesa's software Vulkan
//! driver), where a missing adapter is a failure.

mod common;

use common::{random_batch, random_point};
use glmix::eval::{BatchEvaluator, CpuEvaluator, GpuContext, GpuEvaluator};
use glmix::objective::{Loss, ObjectiveKind, PrecisionShape, TrainingBatch};
use glmix::solver::{minimize, LbfgsOptions};
use std::sync::OnceLock;

fn gpu() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Option<GpuContext>> = OnceLock::new();
    CONTEXT
        .get_or_init(|| match GpuContext::new() {
            Ok(ctx) => {
                eprintln!("GPU tests on {}", ctx.describe());
                Some(ctx)
            }
            Err(e) if std::env::var("GLMIX_REQUIRE_GPU").as_deref() == Ok("1") => {
                panic!("GLMIX_REQUIRE_GPU=1 but {e}")
            }
            Err(e) => {
                eprintln!("notice: GPU tests skipped: {e}");
                None
            }
        })
        .as_ref()
}

/// Evaluate `active` with both evaluators at `theta`; compare within tolerances that grow
/// with the sizes f32 rounding scales with (the loss and the gradient's magnitude).
fn compare(batch: &TrainingBatch, active: &[usize], theta: &[f64]) {
    let Some(ctx) = gpu() else { return };
    let n = batch.num_entities();
    let c = batch.num_coefficients();
    let (mut lc, mut gc) = (vec![f64::NAN; n], vec![f64::NAN; c]);
    let (mut lg, mut gg) = (vec![f64::NAN; n], vec![f64::NAN; c]);
    CpuEvaluator::new(batch)
        .evaluate(active, theta, &mut lc, &mut gc)
        .unwrap();
    GpuEvaluator::new(ctx, batch)
        .unwrap()
        .evaluate(active, theta, &mut lg, &mut gg)
        .unwrap();
    for e in 0..n {
        let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
        if !active.contains(&e) {
            assert!(lg[e].is_nan(), "entity {e} was not asked for");
            assert!(gg[r].iter().all(|g| g.is_nan()));
            continue;
        }
        let rows = (batch.row_ptr[e + 1] - batch.row_ptr[e]) as f64;
        let f_tol = 1e-6 * rows.sqrt().max(1.0) * (1.0 + lc[e].abs());
        assert!(
            (lg[e] - lc[e]).abs() <= f_tol,
            "entity {e}: loss gpu {} cpu {}",
            lg[e],
            lc[e]
        );
        let scale = 1.0 + gc[r.clone()].iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (a, b) in gg[r.clone()].iter().zip(&gc[r]) {
            let tol = 1e-5 * rows.sqrt().max(1.0) * scale;
            assert!((a - b).abs() <= tol, "entity {e}: gradient gpu {a} cpu {b}");
        }
    }
}

#[test]
fn losses_and_gradients_match_the_cpu_for_every_objective_and_shape() {
    let shapes = [
        PrecisionShape::None,
        PrecisionShape::Diagonal,
        PrecisionShape::Full,
    ];
    for (k, objective) in ObjectiveKind::ALL.into_iter().enumerate() {
        for (s, shape) in shapes.into_iter().enumerate() {
            let seed = (10 * k + s) as u64;
            let batch = random_batch(seed, 60, 40, 9, objective, shape);
            let theta = random_point(seed + 100, &batch, 1.0);
            let all: Vec<usize> = (0..batch.num_entities()).collect();
            compare(&batch, &all, &theta);
            // Only some entities running: the others are left untouched.
            let some: Vec<usize> = (0..batch.num_entities()).filter(|e| e % 3 == 1).collect();
            compare(&batch, &some, &theta);
        }
    }
}

/// One entity with one row, one with only the intercept, one with 10,000 rows.
fn ragged_batch(loss: Loss) -> TrainingBatch {
    let mut b = TrainingBatch::builder(loss, PrecisionShape::None);
    let label = |i: usize| match loss {
        Loss::Logistic => {
            if i.is_multiple_of(3) {
                1.0
            } else {
                -1.0
            }
        }
        Loss::Squared => (i % 5) as f64 - 2.0,
    };
    b.push_row(label(0), 1.0, 0.3, [1, 2], &[0.5, -1.0]);
    b.finish_entity(&[1.0; 3], &[0.0; 3], &[]);
    for i in 0..5 {
        b.push_row(label(i), 2.0, -0.2, [], &[]);
    }
    b.finish_entity(&[1.0], &[0.0], &[]);
    for i in 0..10_000 {
        let x = ((i as f64) * 0.173).sin();
        b.push_row(
            label(i),
            1.0,
            0.01 * (i % 11) as f64,
            [1, 3],
            &[x, 1.0 - x * x],
        );
    }
    b.finish_entity(&[1.0; 4], &[0.0; 4], &[]);
    b.build()
}

#[test]
fn ragged_entities_match_the_cpu() {
    for loss in [Loss::Logistic, Loss::Squared] {
        let batch = ragged_batch(loss);
        let theta = [0.1, -0.2, 0.3, 0.4, 0.05, -0.1, 0.2, 0.3];
        compare(&batch, &[0, 1, 2], &theta);
    }
}

#[test]
fn trained_optima_match_the_cpu_within_1e_4() {
    let Some(ctx) = gpu() else { return };
    // Run both to the f32 evaluator's resolution, not to the default relative reduction.
    let options = LbfgsOptions {
        factr: 10.0,
        pgtol: 1e-5,
        ..LbfgsOptions::default()
    };
    for objective in ObjectiveKind::ALL {
        let batch = random_batch(7, 40, 60, 6, objective, PrecisionShape::Diagonal);
        let mut cpu_evaluator = CpuEvaluator::new(&batch);
        let cpu = minimize(&mut cpu_evaluator, &batch.prior_mean, &options, |_| {}).unwrap();
        let mut gpu_evaluator = GpuEvaluator::new(ctx, &batch).unwrap();
        let gpu = minimize(&mut gpu_evaluator, &batch.prior_mean, &options, |_| {}).unwrap();
        let mut worst = 0.0f64;
        for (a, b) in gpu.theta.iter().zip(&cpu.theta) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
        let reasons: Vec<_> = gpu.reports.iter().map(|r| r.reason.name()).collect();
        eprintln!("{objective}: worst relative difference {worst:e}");
        assert!(worst <= 1e-4, "{objective}: worst {worst:e}; {reasons:?}");
    }
}
