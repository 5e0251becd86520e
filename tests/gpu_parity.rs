//! The GPU evaluator against the f64 CPU evaluator, on seeded random batches of every
//! objective and precision shape: losses and gradients within an f32-sized tolerance,
//! and trained optima within 1e-4 relative.
//!
//! Without a GPU adapter these tests print a notice and pass, unless
//! `GLMIX_REQUIRE_GPU=1` (set by `.ci/run`, which installs Mesa's software Vulkan
//! driver), where a missing adapter is a failure.

mod common;

use common::{gpu, ragged_batch, random_batch, random_point};
use glmix::eval::{BatchEvaluator, CpuEvaluator, GpuContext, GpuEvaluator, GpuWorkspace};
use glmix::objective::{Loss, ObjectiveKind, PrecisionShape, TrainingBatch};
use glmix::solver::{minimize, LbfgsOptions};

/// Evaluate `active` with both evaluators at `theta`; compare within tolerances that grow
/// with the sizes f32 rounding scales with (the loss and the gradient's magnitude).
fn compare(batch: &TrainingBatch, active: &[usize], theta: &[f64]) {
    if let Some(ctx) = gpu() {
        compare_on(ctx, batch, active, theta);
    }
}

fn compare_on(ctx: &GpuContext, batch: &TrainingBatch, active: &[usize], theta: &[f64]) {
    let n = batch.num_entities();
    let c = batch.num_coefficients();
    let (mut lc, mut gc) = (vec![f64::NAN; n], vec![f64::NAN; c]);
    let (mut lg, mut gg) = (vec![f64::NAN; n], vec![f64::NAN; c]);
    CpuEvaluator::new(batch)
        .evaluate(active, theta, &mut lc, &mut gc)
        .unwrap();
    GpuEvaluator::new(&mut GpuWorkspace::new(ctx), batch)
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

#[test]
fn ragged_entities_match_the_cpu() {
    for loss in [Loss::Logistic, Loss::Squared] {
        let batch = ragged_batch(loss, PrecisionShape::None, 0);
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
        let mut workspace = GpuWorkspace::new(ctx);
        let mut gpu_evaluator = GpuEvaluator::new(&mut workspace, &batch).unwrap();
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

#[test]
fn two_dimensional_grids_cover_every_row_and_coefficient() {
    if gpu().is_none() {
        return;
    }
    // Three workgroups per dimension at most: 3,000 rows need a 3 × 4 grid.
    let mut ctx = GpuContext::new().unwrap();
    ctx.limit_workgroups_per_dimension(3);
    let batch = random_batch(
        21,
        150,
        40,
        8,
        ObjectiveKind::BayesLogistic,
        PrecisionShape::Diagonal,
    );
    assert!(batch.num_rows() > 3 * 256 * 2, "{} rows", batch.num_rows());
    let theta = random_point(22, &batch, 1.0);
    let all: Vec<usize> = (0..batch.num_entities()).collect();
    compare_on(&ctx, &batch, &all, &theta);
}

#[test]
fn fit_cuts_parts_to_the_binding_limit_and_solves_an_oversized_entity_on_the_cpu() {
    use glmix::data::FeatureKey;
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit, fit_on, Backend, TrainConfig};
    if gpu().is_none() {
        return;
    }
    let spec = SyntheticSpec {
        entities: 40,
        rows_per_entity: 20,
        features: 4,
        seed: 3,
        ..Default::default()
    };
    let mut data = generate(&spec).data;
    // One entity whose 300 rows need 4,800 bytes of row data: more than the 4,096 allowed.
    for i in 0..300 {
        let x = (i as f64 * 0.37).sin();
        data.push(
            "big",
            f64::from(u8::from(i % 3 == 0)),
            1.0,
            0.0,
            None,
            [(FeatureKey::new("f", "0"), x)],
        );
    }
    let mut ctx = GpuContext::new().unwrap();
    ctx.limit_binding_bytes(4096);
    let mut config = TrainConfig::new(ObjectiveKind::Logistic);
    config.polish_iterations = 20;
    let on_gpu = fit_on(Backend::Gpu(&ctx), None, &data, &config, &|_| {}).unwrap();
    let on_cpu = fit(None, &data, &config, &|_| {}).unwrap();
    assert_eq!(on_gpu.gpu_fallbacks.len(), 1, "{:?}", on_gpu.gpu_fallbacks);
    assert!(
        on_gpu.gpu_fallbacks[0].contains("4096"),
        "{:?}",
        on_gpu.gpu_fallbacks
    );
    assert_eq!(on_gpu.models.len(), 41);
    for (g, c) in on_gpu.models.iter().zip(&on_cpu.models) {
        assert_eq!(g.entity, c.entity);
        for (a, b) in g.means.iter().zip(&c.means) {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{}: {a} vs {b}",
                g.entity
            );
        }
    }
}

#[test]
fn gpu_models_do_not_depend_on_how_the_entities_are_cut_into_concurrent_parts() {
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit_on, Backend, TrainConfig};
    let Some(ctx) = gpu() else { return };
    let data = generate(&SyntheticSpec {
        entities: 60,
        rows_per_entity: 12,
        features: 5,
        ragged: true,
        seed: 11,
        ..Default::default()
    })
    .data;
    let fit_in_parts_of = |batch_entities: usize| {
        let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        config.batch_entities = batch_entities;
        // Several threads, each with its own parts on the one device.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        pool.install(|| fit_on(Backend::Gpu(ctx), None, &data, &config, &|_| {}).unwrap())
    };
    let one_part = fit_in_parts_of(1 << 20);
    let parts_of_three = fit_in_parts_of(12);
    assert!(
        one_part.gpu_fallbacks.is_empty() && parts_of_three.gpu_fallbacks.is_empty(),
        "{:?} {:?}",
        one_part.gpu_fallbacks,
        parts_of_three.gpu_fallbacks
    );
    assert_eq!(one_part.models.len(), 60);
    // Each entity's sums are its own, so the f32 arithmetic and the optimum are the same.
    assert_eq!(one_part.models, parts_of_three.models);
    assert!(
        parts_of_three.rounds > one_part.rounds,
        "more parts, more rounds"
    );
    if ctx.has_timestamps() {
        let t = parts_of_three.timings.gpu;
        assert!(t.device_kernels > 0.0 && t.kernel_bytes > 0.0, "{t:?}");
    }
}

#[test]
fn hessian_diagonals_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for objective in ObjectiveKind::ALL {
        let batch = random_batch(31, 50, 40, 8, objective, PrecisionShape::Diagonal);
        let theta = random_point(32, &batch, 1.0);
        let on_gpu = GpuEvaluator::new(&mut GpuWorkspace::new(ctx), &batch)
            .unwrap()
            .data_hessian_diagonal(&theta)
            .unwrap();
        for e in 0..batch.num_entities() {
            let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
            let on_cpu = batch.entity(e).data_hessian_diagonal(&theta[r.clone()]);
            for (a, b) in on_gpu[r].iter().zip(&on_cpu) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{objective} entity {e}: gpu {a} cpu {b}"
                );
            }
        }
    }
}

#[test]
fn full_hessians_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for objective in ObjectiveKind::ALL {
        let batch = random_batch(41, 40, 40, 7, objective, PrecisionShape::Full);
        let theta = random_point(42, &batch, 1.0);
        let blocks = GpuEvaluator::new(&mut GpuWorkspace::new(ctx), &batch)
            .unwrap()
            .data_hessian_full(&theta)
            .unwrap();
        let mut at = 0;
        for e in 0..batch.num_entities() {
            let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
            let on_cpu = batch.entity(e).data_hessian_full(&theta[r.clone()]);
            let on_gpu = &blocks[at..at + on_cpu.len()];
            at += on_cpu.len();
            for (a, b) in on_gpu.iter().zip(&on_cpu) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{objective} entity {e}: gpu {a} cpu {b}"
                );
            }
            // Exactly symmetric, as a model file's precision must be.
            let d = r.len();
            for j in 0..d {
                for k in 0..j {
                    assert_eq!(
                        on_gpu[j * d + k],
                        on_gpu[k * d + j],
                        "{objective} entity {e}"
                    );
                }
            }
        }
        assert_eq!(at, blocks.len());
    }
}

#[test]
fn gpu_posteriors_match_the_cpu_for_full_and_diagonal_precisions() {
    use glmix::model::{HessianType, Precision};
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit, fit_on, Backend, TrainConfig};
    let Some(ctx) = gpu() else { return };
    let spec = SyntheticSpec {
        entities: 30,
        rows_per_entity: 25,
        features: 4,
        ragged: true,
        seed: 5,
        ..Default::default()
    };
    let data = generate(&spec).data;
    for hessian in [HessianType::Diagonal, HessianType::Full] {
        let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        config.hessian = hessian;
        // The posteriors from the GPU kernels, not from the f64 finish.
        config.f64_finish = false;
        config.polish_iterations = 20;
        let on_gpu = fit_on(Backend::Gpu(ctx), None, &data, &config, &|_| {}).unwrap();
        let on_cpu = fit(None, &data, &config, &|_| {}).unwrap();
        assert!(
            on_gpu.gpu_fallbacks.is_empty(),
            "{:?}",
            on_gpu.gpu_fallbacks
        );
        for (g, c) in on_gpu.models.iter().zip(&on_cpu.models) {
            let (pg, pc) = match (&g.precision, &c.precision) {
                (Precision::Diagonal(a), Precision::Diagonal(b)) => (a, b),
                (Precision::Full(a), Precision::Full(b)) => (a, b),
                other => panic!("{hessian}: precision kinds differ: {other:?}"),
            };
            assert_eq!(pg.len(), pc.len());
            for (a, b) in pg.iter().zip(pc) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{hessian}: gpu {a} cpu {b}"
                );
            }
        }
    }
}

/// `Σ |x_ij θ_j|` over the features of record `i` its model has (the intercept counting
/// 1): the scale of f32 rounding in its margin.
fn absolute_dot(data: &glmix::data::Dataset, models: &glmix::model::ModelSet, i: usize) -> f64 {
    let Some(m) = models.get(data.entities.key(data.entity[i])) else {
        return 0.0;
    };
    let (ids, vals) = data.row_features(i);
    m.features
        .iter()
        .zip(&m.means)
        .map(|(k, th)| {
            let x = match data.features.get(k) {
                _ if k.is_intercept() => 1.0,
                Some(f) => ids.iter().position(|&g| g == f).map_or(0.0, |p| vals[p]),
                None => 0.0,
            };
            (x * th).abs()
        })
        .sum()
}

#[test]
fn scores_match_the_cpu_in_parts_and_any_record_order() {
    use glmix::data::{Dataset, FeatureKey};
    use glmix::score::MarginPlan;
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit, TrainConfig};
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if gpu().is_none() {
        return;
    }
    let spec = |seed| SyntheticSpec {
        entities: 300,
        rows_per_entity: 12,
        features: 6,
        ragged: true,
        seed,
        ..Default::default()
    };
    let trained = generate(&spec(1)).data;
    let models = fit(
        None,
        &trained,
        &TrainConfig::new(ObjectiveKind::Logistic),
        &|_| {},
    )
    .unwrap()
    .models
    .into_iter()
    .collect();
    // New records of the same entities, shuffled so that no part is grouped by entity, and
    // records the models know nothing of: an unknown entity, an unknown feature, no features.
    let fresh = generate(&spec(2)).data;
    let mut order: Vec<usize> = (0..fresh.num_rows()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    let mut data = Dataset::new();
    for i in order {
        data.push_row_of(&fresh, i);
    }
    data.push(
        "stranger",
        1.0,
        1.0,
        0.25,
        None,
        [(FeatureKey::new("f", "0"), 2.0)],
    );
    data.push(
        "e0",
        0.0,
        1.0,
        -0.5,
        None,
        [(FeatureKey::new("new", ""), 3.0)],
    );
    data.push("e1", 0.0, 1.0, 1.5, None, []);

    let plan = MarginPlan::new(&data, &models);
    let cpu = plan.margins();
    let whole = gpu().unwrap();
    let mut small = GpuContext::new().unwrap();
    // 1 KiB bindings: parts of at most 256 entries, hence dozens of parts; 2 workgroups per
    // grid dimension.
    small.limit_binding_bytes(1024);
    small.limit_workgroups_per_dimension(2);
    for ctx in [whole, &small] {
        let on_gpu = plan.margins_gpu(ctx).unwrap();
        assert_eq!(on_gpu.len(), data.num_rows());
        for (i, (g, c)) in on_gpu.iter().zip(&cpu).enumerate() {
            let (ids, _) = data.row_features(i);
            let terms = ids.len() as f64 + 2.0;
            let tol = 2.0 * terms * f64::from(f32::EPSILON) * absolute_dot(&data, &models, i);
            assert!(
                (g - c).abs() <= tol.max(1e-12),
                "record {i}: gpu {g} cpu {c}, tolerance {tol}"
            );
        }
    }
    let n = data.num_rows();
    assert_eq!(
        cpu[n - 3],
        0.25,
        "an entity without a model scores its offset"
    );
    let e0 = models.get("e0").unwrap();
    let intercept = e0.means[e0.features.iter().position(|k| k.is_intercept()).unwrap()];
    assert_eq!(
        cpu[n - 2],
        -0.5 + intercept,
        "an unknown feature adds nothing"
    );
}

/// Entities of 300 and 17 features in one batch: rows of 75 vec4s take the wide kernels
/// (several vec4s per lane), and the narrow entity rides along.
fn wide_batch(loss: Loss) -> TrainingBatch {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut b = TrainingBatch::builder(loss, PrecisionShape::Diagonal);
    for (d, n) in [(300usize, 40usize), (17, 70), (300, 3)] {
        for _ in 0..n {
            let cols: Vec<u32> = (1..=d as u32).filter(|_| rng.gen_bool(0.7)).collect();
            let vals: Vec<f64> = cols.iter().map(|_| rng.gen_range(-1.0..1.0)).collect();
            let label = match loss {
                Loss::Logistic => [1.0, -1.0][usize::from(rng.gen_bool(0.5))],
                Loss::Squared => rng.gen_range(-2.0..2.0),
            };
            b.push_row(
                label,
                rng.gen_range(0.5..1.5),
                rng.gen_range(-0.5..0.5),
                cols,
                &vals,
            );
        }
        b.finish_entity(&vec![1.0; d + 1], &vec![0.0; d + 1], &vec![0.5; d + 1]);
    }
    b.build()
}

#[test]
fn wide_entities_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for loss in [Loss::Logistic, Loss::Squared] {
        let batch = wide_batch(loss);
        let theta = random_point(5, &batch, 0.1);
        compare(&batch, &[0, 1, 2], &theta);
        compare(&batch, &[1], &theta);
        let mut workspace = GpuWorkspace::new(ctx);
        let mut evaluator = GpuEvaluator::new(&mut workspace, &batch).unwrap();
        let diagonal = evaluator.data_hessian_diagonal(&theta).unwrap();
        let blocks = evaluator.data_hessian_full(&theta).unwrap();
        let mut at = 0;
        for e in 0..batch.num_entities() {
            let r = batch.coef_ptr[e]..batch.coef_ptr[e + 1];
            let on_cpu = batch.entity(e).data_hessian_diagonal(&theta[r.clone()]);
            for (a, b) in diagonal[r.clone()].iter().zip(&on_cpu) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{loss:?} {e}: {a} {b}"
                );
            }
            let full = batch.entity(e).data_hessian_full(&theta[r.clone()]);
            for (a, b) in blocks[at..at + full.len()].iter().zip(&full) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{loss:?} {e}: {a} {b}"
                );
            }
            at += full.len();
        }
    }
}

#[test]
fn a_thread_reuses_its_buffers_and_names_under_9_6_kb_per_entity_evaluation() {
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit_on, Backend, TrainConfig};
    let Some(ctx) = gpu() else { return };
    // 64 rows of 32 features, the benchmark's shape; parts of 50 entities on one thread.
    let data = generate(&SyntheticSpec {
        entities: 200,
        rows_per_entity: 64,
        features: 32,
        seed: 8,
        ..Default::default()
    })
    .data;
    let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
    config.batch_entities = 50;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let out = pool.install(|| fit_on(Backend::Gpu(ctx), None, &data, &config, &|_| {}).unwrap());
    assert!(out.gpu_fallbacks.is_empty(), "{:?}", out.gpu_fallbacks);
    let g = out.timings.gpu;
    assert_eq!(g.buffers_created_after_first_part, 0, "{g:?}");
    // One submission per evaluation: at most one per round of each of the 4 parts (rounds
    // where only the f64 finish runs have none), and one for each part's Hessian.
    assert_eq!(g.submissions, g.dispatches, "{g:?}");
    assert!(g.submissions <= out.rounds + 4, "{g:?}");
    // Each evaluation waits once, parked on the poller; uploads go through the persistent
    // staging only: one fill per evaluation and one per part, and one upload submission
    // per part.
    assert_eq!(g.parked_waits, g.submissions, "{g:?}");
    assert_eq!(g.part_submissions, 4, "{g:?}");
    assert_eq!(g.staged_fills, g.submissions + g.part_submissions, "{g:?}");
    assert_eq!(g.slot_to_active_ratio(), 1.0);
    let named = g.bytes_per_entity_evaluation();
    assert!(named <= 9_600.0, "{named} bytes per entity-evaluation");
    // Only running entities are evaluated: fewer than every entity in every round.
    assert!(g.entity_evaluations < 50 * out.rounds + 200, "{g:?}");
    // Where the adapter has timestamp queries, every kernel second belongs to a stage:
    // here the loss and gradient alone (the f64 finish leaves the Hessian to the CPU).
    let staged: f64 = g.device_stages.iter().sum();
    assert!((staged - g.device_kernels).abs() <= 1e-9, "{g:?}");
    let (value_gradient, hessians) = (g.device_stages[0], g.device_stages[1] + g.device_stages[2]);
    assert!(
        hessians == 0.0 && (value_gradient > 0.0) == (g.device_kernels > 0.0),
        "{g:?}"
    );
}

#[test]
fn a_device_failure_in_the_middle_of_a_run_ends_on_the_cpu_with_the_cpus_models() {
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit, fit_on, Backend, SolverOn, TrainConfig};
    if gpu().is_none() {
        return;
    }
    let data = generate(&SyntheticSpec {
        entities: 30,
        rows_per_entity: 20,
        features: 4,
        seed: 4,
        ..Default::default()
    })
    .data;
    let ctx = GpuContext::new().unwrap();
    for solver_on in [SolverOn::Host, SolverOn::Device] {
        let config = TrainConfig {
            solver_on,
            ..TrainConfig::new(ObjectiveKind::BayesLogistic)
        };
        // The fourth evaluation of the only part is rejected by the device's validation.
        ctx.fail_evaluation(3);
        let on_gpu = fit_on(Backend::Gpu(&ctx), None, &data, &config, &|_| {}).unwrap();
        let fallbacks = &on_gpu.gpu_fallbacks;
        assert_eq!(fallbacks.len(), 1, "{solver_on:?}: {fallbacks:?}");
        assert!(fallbacks[0].contains("GPU error"), "{fallbacks:?}");
        let on_cpu = fit(None, &data, &config, &|_| {}).unwrap();
        assert_eq!(on_gpu.models, on_cpu.models, "{solver_on:?}");
        // The device goes on working for the next run.
        let again = fit_on(Backend::Gpu(&ctx), None, &data, &config, &|_| {}).unwrap();
        assert!(again.gpu_fallbacks.is_empty(), "{:?}", again.gpu_fallbacks);
    }
}

/// Records of 40 entities whose features are ill-conditioned: a near-duplicate pair of
/// columns and columns of very different scales.
fn ill_conditioned() -> glmix::data::Dataset {
    use glmix::data::{Dataset, FeatureKey};
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let mut data = Dataset::new();
    for e in 0..40 {
        for _ in 0..rng.gen_range(5..80) {
            let a: f64 = rng.gen_range(-1.0..1.0);
            let features = [
                (FeatureKey::new("a", ""), a),
                (
                    FeatureKey::new("a_again", ""),
                    a + 1e-3 * rng.gen_range(-1.0..1.0),
                ),
                (
                    FeatureKey::new("small", ""),
                    1e-2 * rng.gen_range(-1.0..1.0),
                ),
                (FeatureKey::new("large", ""), 1e1 * rng.gen_range(-1.0..1.0)),
                (FeatureKey::new("b", ""), rng.gen_range(-1.0..1.0)),
            ];
            let label = f64::from(u8::from(rng.gen_bool(1.0 / (1.0 + (-2.0 * a).exp()))));
            data.push(
                &format!("e{e}"),
                label,
                1.0,
                rng.gen_range(-0.5..0.5),
                None,
                features,
            );
        }
    }
    data
}

/// The largest `|a − b| / max(|b|, 1)` over two fits' means and variances.
fn worst_model_difference(a: &glmix::train::FitOutput, b: &glmix::train::FitOutput) -> f64 {
    use glmix::model::Precision;
    let mut worst = 0.0f64;
    let mut see = |x: &[f64], y: &[f64]| {
        assert_eq!(x.len(), y.len());
        for (u, v) in x.iter().zip(y) {
            worst = worst.max((u - v).abs() / v.abs().max(1.0));
        }
    };
    for (g, c) in a.models.iter().zip(&b.models) {
        assert_eq!(g.entity, c.entity);
        see(&g.means, &c.means);
        if let (Precision::Diagonal(p), Precision::Diagonal(q)) = (&g.precision, &c.precision) {
            let inverse = |v: &[f64]| v.iter().map(|x| 1.0 / x).collect::<Vec<_>>();
            see(&inverse(p), &inverse(q));
        }
    }
    worst
}

#[test]
fn gpu_fits_end_at_the_cpus_optimum_after_the_f64_finish() {
    use glmix::synth::{generate, SyntheticSpec};
    use glmix::train::{fit, fit_on, Backend, SolverOn, TrainConfig};
    let Some(ctx) = gpu() else { return };
    let sets = [
        ("ill-conditioned", ill_conditioned()),
        (
            "ragged",
            generate(&SyntheticSpec {
                entities: 60,
                rows_per_entity: 40,
                features: 8,
                ragged: true,
                seed: 13,
                ..Default::default()
            })
            .data,
        ),
    ];
    let cases = sets.iter().flat_map(|set| {
        [ObjectiveKind::BayesLogistic, ObjectiveKind::Linear]
            .into_iter()
            .flat_map(move |o| [SolverOn::Host, SolverOn::Device].map(|on| (set, o, on)))
    });
    for ((name, data), objective, solver_on) in cases {
        {
            // Tight stops: the models agree within 1e-6 relative.
            let mut config = TrainConfig::new(objective);
            config.solver.factr = 10.0;
            config.solver.pgtol = 1e-9;
            config.solver_on = solver_on;
            let on_gpu = fit_on(Backend::Gpu(ctx), None, data, &config, &|_| {}).unwrap();
            let on_cpu = fit(None, data, &config, &|_| {}).unwrap();
            assert!(
                on_gpu.gpu_fallbacks.is_empty(),
                "{:?}",
                on_gpu.gpu_fallbacks
            );
            let finished = on_gpu
                .reports
                .iter()
                .filter(|r| r.solve.finished_precisely)
                .count();
            assert!(
                finished > 0,
                "{name} {objective}: no entity was finished in f64"
            );
            // 1e-6, or the resolution of the stopping rule where it is coarser: twice the
            // distance between two CPU runs that differ only in their L-BFGS memory. (On
            // the ill-conditioned set the relative-reduction stop leaves the CPU itself
            // about 1e-6 from the exact optimum.)
            let other_memory = TrainConfig {
                solver: glmix::solver::LbfgsOptions {
                    memory: config.solver.memory - 1,
                    ..config.solver
                },
                ..config.clone()
            };
            let resolution =
                worst_model_difference(&fit(None, data, &other_memory, &|_| {}).unwrap(), &on_cpu);
            let tolerance = 1e-6f64.max(2.0 * resolution);
            let worst = worst_model_difference(&on_gpu, &on_cpu);
            eprintln!("{name} {objective} {solver_on:?}: tight stops, worst relative difference {worst:e} (two CPU runs: {resolution:e}), {finished} finished in f64");
            assert!(
                worst <= tolerance,
                "{name} {objective} {solver_on:?}: {worst:e}"
            );
            // Default stops: the objectives agree within 1e-7 relative.
            let config = TrainConfig {
                solver_on,
                ..TrainConfig::new(objective)
            };
            let on_gpu = fit_on(Backend::Gpu(ctx), None, data, &config, &|_| {}).unwrap();
            let on_cpu = fit(None, data, &config, &|_| {}).unwrap();
            for (g, c) in on_gpu.reports.iter().zip(&on_cpu.reports) {
                let (a, b) = (g.solve.final_loss, c.solve.final_loss);
                assert!(
                    (a - b).abs() <= 1e-7 * b.abs().max(1.0),
                    "{name} {objective} {}: objective {a} against {b}",
                    g.entity
                );
            }
        }
    }
}

#[test]
fn the_probe_measures_every_stage_on_a_small_resident_batch() {
    use glmix::eval::gpu::ProbeOptions;
    let Some(ctx) = gpu() else { return };
    let report = ctx
        .probe(&ProbeOptions {
            read_bytes: 1 << 24,
            transfer_bytes: 1 << 22,
            round_trips: 5,
            entities: 300,
            rows: 64,
            features: 32,
            repeat: 2,
        })
        .unwrap();
    let positive = |v: Option<f64>| v.is_some_and(|v| v.is_finite() && v > 0.0);
    assert!(positive(report.read_gb_per_s), "{report:?}");
    assert!(positive(report.upload_gb_per_s) && positive(report.readback_gb_per_s));
    assert!(positive(report.round_trip_us_median));
    let kernel = report.kernel.unwrap();
    assert_eq!(kernel.bytes_per_entity_evaluation, 9_548);
    assert!(kernel.entity_evaluations_per_s > 0.0 && kernel.share_of_read_bandwidth.is_some());
}
