//! Criterion benches of the evaluators and the solver, with throughput in entities, and of
//! scoring, with throughput in records.
//!
//! `cargo bench --bench evaluators`. Workloads are seeded synthetic GLMix batches
//! (`glmix::synth`); device setup and packing happen outside the timed part. The GPU
//! groups run only where an adapter exists.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glmix::eval::{BatchEvaluator, CpuEvaluator, GpuContext, GpuEvaluator, GpuWorkspace};
use glmix::objective::ObjectiveKind;
use glmix::synth::{generate, SyntheticSpec};
use glmix::train::{fit, TrainConfig};
use std::hint::black_box;

/// (name, rows per entity, features, density)
const SHAPES: [(&str, usize, usize, f64); 3] = [
    ("n50_d16_dense", 50, 16, 1.0),
    ("n64_d32_dense", 64, 32, 1.0),
    ("n50_d64_sparse", 50, 64, 0.1),
];
const ENTITIES: usize = 2_000;

fn spec(rows: usize, features: usize, density: f64) -> SyntheticSpec {
    SyntheticSpec {
        entities: ENTITIES,
        rows_per_entity: rows,
        features,
        density,
        ..SyntheticSpec::default()
    }
}

/// The packed batch `fit` would solve, built by training once with no iterations.
fn batch_of(spec: &SyntheticSpec) -> glmix::objective::TrainingBatch {
    use glmix::objective::{training_label, Loss, PrecisionShape, TrainingBatch};
    let data = generate(spec).data;
    let mut b = TrainingBatch::builder(Loss::Logistic, PrecisionShape::Diagonal);
    let d = spec.features + 1;
    let groups = data.rows_by_entity();
    for e in 0..groups.num_entities() {
        for &i in groups.of(e) {
            let (ids, vals) = data.row_features(i);
            // Synthetic feature j has id j and local column j + 1.
            b.push_row(
                training_label(Loss::Logistic, data.label[i]),
                data.weight[i],
                data.offset[i],
                ids.iter().map(|&f| f + 1),
                vals,
            );
        }
        b.finish_entity(&vec![2.0; d], &vec![0.0; d], &vec![8.0; d]);
    }
    b.build()
}

fn evaluators(c: &mut Criterion) {
    let gpu = GpuContext::new().ok();
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(ENTITIES as u64));
    for (name, rows, features, density) in SHAPES {
        let batch = batch_of(&spec(rows, features, density));
        let all: Vec<usize> = (0..batch.num_entities()).collect();
        let theta = vec![0.01; batch.num_coefficients()];
        let (mut loss, mut grad) = (vec![0.0; all.len()], vec![0.0; theta.len()]);
        let mut cpu = CpuEvaluator::new(&batch);
        group.bench_function(BenchmarkId::new("cpu", name), |b| {
            b.iter(|| {
                cpu.evaluate(&all, black_box(&theta), &mut loss, &mut grad)
                    .unwrap()
            })
        });
        if let Some(ctx) = &gpu {
            let mut workspace = GpuWorkspace::new(ctx);
            let mut on_gpu = GpuEvaluator::new(&mut workspace, &batch).unwrap();
            group.bench_function(BenchmarkId::new("gpu", name), |b| {
                b.iter(|| {
                    on_gpu
                        .evaluate(&all, black_box(&theta), &mut loss, &mut grad)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

/// One entity's data loss and gradient on one thread: the hot loop of the CPU path, with
/// no scheduling around it. Throughput in entity-evaluations.
fn one_entity(c: &mut Criterion) {
    let mut group = c.benchmark_group("entity");
    group.throughput(Throughput::Elements(1));
    for (name, rows, features, density) in SHAPES {
        let batch = batch_of(&spec(rows, features, density));
        let problem = batch.entity(0);
        let theta = vec![0.01; problem.num_coefficients()];
        let mut grad = vec![0.0; theta.len()];
        group.bench_function(name, |b| {
            b.iter(|| problem.data_value_and_gradient(black_box(&theta), &mut grad))
        });
    }
    group.finish();
}

fn solver_end_to_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit_cpu");
    group.throughput(Throughput::Elements(ENTITIES as u64));
    group.sample_size(20);
    for (name, rows, features, density) in SHAPES {
        let data = generate(&spec(rows, features, density)).data;
        let config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        group.bench_function(name, |b| {
            b.iter(|| fit(None, black_box(&data), &config, &|_| {}).unwrap())
        });
    }
    group.finish();
}

/// Margins of every record (`glmix score`): the f64 CPU sum against the f32 GPU kernel,
/// which includes uploading the part and reading the sums back. Throughput in records.
fn scoring(c: &mut Criterion) {
    use glmix::model::ModelSet;
    use glmix::score::MarginPlan;
    let gpu = GpuContext::new().ok();
    let mut group = c.benchmark_group("score");
    for (name, rows, features, density) in SHAPES {
        let data = generate(&spec(rows, features, density)).data;
        let config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        let models: ModelSet = fit(None, &data, &config, &|_| {})
            .unwrap()
            .models
            .into_iter()
            .collect();
        let plan = MarginPlan::new(&data, &models);
        group.throughput(Throughput::Elements(data.num_rows() as u64));
        group.bench_function(BenchmarkId::new("cpu", name), |b| b.iter(|| plan.margins()));
        if let Some(ctx) = &gpu {
            group.bench_function(BenchmarkId::new("gpu", name), |b| {
                b.iter(|| plan.margins_gpu(ctx).unwrap())
            });
        }
    }
    group.finish();
}

/// Packing a batch into the GPU's dense layout, on the host (no device needed).
/// Throughput in entities.
fn gpu_packing(c: &mut Criterion) {
    use glmix::eval::gpu::layout::DenseLayout;
    let mut group = c.benchmark_group("gpu_pack");
    group.throughput(Throughput::Elements(ENTITIES as u64));
    for (name, rows, features, density) in SHAPES {
        let batch = batch_of(&spec(rows, features, density));
        let mut layout = DenseLayout::default();
        // Into kept buffers, as training writes into its kept staging.
        let (mut x, mut rows) = (Vec::new(), Vec::new());
        group.bench_function(name, |b| {
            b.iter(|| {
                layout.plan(black_box(&batch));
                x.resize(16 * layout.x_len, 0u8);
                rows.resize(16 * layout.rows_len, 0u8);
                layout.write_x(&batch, wgpu::WriteOnly::from_mut(&mut x[..]));
                layout.write_rows(&batch, wgpu::WriteOnly::from_mut(&mut rows[..]));
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    one_entity,
    evaluators,
    solver_end_to_end,
    scoring,
    gpu_packing
);
criterion_main!(benches);
