//! Helpers shared by the integration tests: seeded random entity problems.
#![allow(dead_code)]

use glmix::objective::{
    training_label, Loss, ObjectiveKind, PrecisionShape, Regularization, TrainingBatch,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A batch of `entities` random problems of `objective`, seeded. Each entity has 1..=`max_rows`
/// rows over 1..=`max_d` coefficients (intercept included), sparse features, random weights
/// and offsets, and for bayes-* a random positive prior precision of `shape`.
pub fn random_batch(
    seed: u64,
    entities: usize,
    max_rows: usize,
    max_d: usize,
    objective: ObjectiveKind,
    shape: PrecisionShape,
) -> TrainingBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let reg = Regularization {
        penalty: rng.gen_range(0.1..5.0),
        delta: rng.gen_range(0.0..1.0),
        intercept_penalty: rng.gen_bool(0.7),
        half_life: None,
    };
    let loss = objective.loss();
    let shape = if objective.is_bayesian() {
        shape
    } else {
        PrecisionShape::None
    };
    let mut b = TrainingBatch::builder(loss, shape);
    for _ in 0..entities {
        let d = rng.gen_range(1..=max_d);
        let n = rng.gen_range(1..=max_rows);
        for _ in 0..n {
            let mut features: Vec<(u32, f64)> = Vec::new();
            for c in 1..d as u32 {
                if rng.gen_bool(0.6) {
                    features.push((c, rng.gen_range(-2.0..2.0)));
                }
            }
            let raw = match loss {
                Loss::Logistic => f64::from(u8::from(rng.gen_bool(0.4))),
                Loss::Squared => rng.gen_range(-3.0..3.0),
            };
            b.push_row(
                training_label(loss, raw),
                rng.gen_range(0.2..2.0),
                rng.gen_range(-1.0..1.0),
                features.iter().map(|&(c, _)| c),
                &features.iter().map(|&(_, v)| v).collect::<Vec<_>>(),
            );
        }
        let penalty: Vec<f64> = (0..d)
            .map(|j| reg.coefficient_penalty(objective, j, reg.delta))
            .collect();
        let mean: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let q: Vec<f64> = match shape {
            PrecisionShape::None => vec![],
            PrecisionShape::Diagonal => (0..d)
                .map(|_| reg.delta * rng.gen_range(0.5..5.0))
                .collect(),
            PrecisionShape::Full => {
                // A Aᵀ + I is positive definite.
                let a: Vec<f64> = (0..d * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let mut q = vec![0.0; d * d];
                for i in 0..d {
                    for j in 0..d {
                        let s: f64 = (0..d).map(|k| a[i * d + k] * a[j * d + k]).sum();
                        q[i * d + j] = reg.delta * (s + if i == j { 1.0 } else { 0.0 });
                    }
                }
                q
            }
        };
        b.finish_entity(&penalty, &mean, &q);
    }
    b.build()
}

/// The process's GPU, made once. Without an adapter: `None` with a notice, or a panic
/// when `GLMIX_REQUIRE_GPU=1` (as `.ci/run` sets, with Mesa's software driver installed).
pub fn gpu() -> Option<&'static glmix::eval::GpuContext> {
    static CONTEXT: std::sync::OnceLock<Option<glmix::eval::GpuContext>> =
        std::sync::OnceLock::new();
    CONTEXT
        .get_or_init(|| match glmix::eval::GpuContext::new() {
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

/// One entity with one row, one with only the intercept, one with 10,000 rows (several
/// GPU tasks), then `small` entities of 1–37 rows (so that entities finish many rounds
/// apart); for bayes-* shapes a prior precision of that shape.
pub fn ragged_batch(loss: Loss, shape: PrecisionShape, small: usize) -> TrainingBatch {
    let mut b = TrainingBatch::builder(loss, shape);
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
    let q = |d: usize| -> Vec<f64> {
        match shape {
            PrecisionShape::None => vec![],
            PrecisionShape::Diagonal => vec![0.5; d],
            PrecisionShape::Full => (0..d * d)
                .map(|k| match (k / d, k % d) {
                    (i, j) if i == j => 2.0,
                    (i, j) if i.abs_diff(j) == 1 => 0.5,
                    _ => 0.0,
                })
                .collect(),
        }
    };
    b.push_row(label(0), 1.0, 0.3, [1, 2], &[0.5, -1.0]);
    b.finish_entity(&[1.0; 3], &[0.1, 0.0, -0.1], &q(3));
    for i in 0..5 {
        b.push_row(label(i), 2.0, -0.2, [], &[]);
    }
    b.finish_entity(&[1.0], &[0.0], &q(1));
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
    b.finish_entity(&[1.0; 4], &[0.0; 4], &q(4));
    for e in 0..small {
        let rows = 1 + e % 37;
        for i in 0..rows {
            let x = ((e * 31 + i) as f64 * 0.37).cos();
            b.push_row(label(e + i), 1.0, 0.0, [1, 2], &[x, x * x - 0.3]);
        }
        b.finish_entity(&[0.1 + 0.01 * (e % 7) as f64; 3], &[0.0; 3], &q(3));
    }
    b.build()
}

/// A random point per entity, laid out by `coef_ptr`.
pub fn random_point(seed: u64, batch: &TrainingBatch, scale: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch.num_coefficients())
        .map(|_| rng.gen_range(-scale..scale))
        .collect()
}

/// Run the real `glmix` binary; panic with its stderr unless it succeeds.
pub fn glmix(args: &[&str]) -> std::process::Output {
    let out = glmix_output(args);
    assert!(
        out.status.success(),
        "glmix {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run the real `glmix` binary and return whatever it did.
pub fn glmix_output(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_glmix"))
        .args(args)
        .output()
        .expect("glmix runs")
}

/// One `{name, term, value}` entry of a model file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Coefficient {
    pub name: String,
    pub term: String,
    pub value: f64,
}

/// The fields of a model line the tests look at.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ModelLine {
    pub entity: String,
    pub means: Vec<Coefficient>,
    #[serde(default)]
    pub variances: Vec<Coefficient>,
}

/// The lines of `bytes` (UTF-8), sorted: files that hold the same lines in another order
/// compare equal.
pub fn sorted_lines(bytes: Vec<u8>) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Every model of a model JSON-lines file, in file order.
pub fn read_models(path: &std::path::Path) -> Vec<ModelLine> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A temporary directory for a test's files.
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.path().join(name)
    }
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).unwrap();
        self.arg(name)
    }
    /// Every file in the directory (to see that a failure left nothing behind).
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// Whether a `--device gpu` run succeeded. Without an adapter it fails, and the test is
/// skipped with a notice — unless `GLMIX_REQUIRE_GPU=1` (CI), where that is a failure.
pub fn gpu_ran(out: &std::process::Output, test: &str) -> bool {
    if out.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        std::env::var("GLMIX_REQUIRE_GPU").as_deref() != Ok("1"),
        "GLMIX_REQUIRE_GPU=1 but: {stderr}"
    );
    eprintln!("notice: {test} skipped: {stderr}");
    false
}

/// `got` holds the models of `want`, entity by entity and coefficient by coefficient in
/// the same order, each mean within `rel · max(|want|, 1)`.
pub fn assert_means_close(got: &[ModelLine], want: &[ModelLine], rel: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.entity, w.entity);
        assert_eq!(g.means.len(), w.means.len(), "{}", g.entity);
        for (a, b) in g.means.iter().zip(&w.means) {
            assert_eq!((&a.name, &a.term), (&b.name, &b.term), "{}", g.entity);
            assert!(
                (a.value - b.value).abs() <= rel * b.value.abs().max(1.0),
                "{} {}/{}: {} against {}",
                g.entity,
                a.name,
                a.term,
                a.value,
                b.value
            );
        }
    }
}

#[cfg(any(feature = "parquet", feature = "avro"))]
pub mod records;

/// Whether the file starts with Parquet's magic bytes.
pub fn starts_with_par1(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"PAR1"))
}
