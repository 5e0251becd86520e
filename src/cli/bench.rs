//! `glmix bench`: throughput of `fit` on a seeded synthetic workload.

use super::train::{Compute, Device};
use super::WorkloadArgs;
use anyhow::Result;
use clap::Args;
use glmix::model::HessianType;
use glmix::objective::{ObjectiveKind, Regularization};
use glmix::synth::generate;
use glmix::train::{fit_on, TrainConfig};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Objective trained.
    #[arg(long, default_value = "bayes-logistic", value_parser = clap::value_parser!(ObjectiveKind))]
    objective: ObjectiveKind,
    /// Posterior precision kept.
    #[arg(long, default_value = "diagonal", value_parser = clap::value_parser!(HessianType))]
    hessian: HessianType,
    /// L2 penalty λ.
    #[arg(long, default_value_t = 10.0)]
    penalty: f64,
    /// Forgetting factor δ.
    #[arg(long, default_value_t = 0.8)]
    delta: f64,
    /// Timed repetitions; the table shows their median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Evaluator: auto, cpu or gpu.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    let compute = Compute::choose(a.device)?;
    let device = compute.name();
    let spec = a.workload.spec(a.objective.loss());
    let clock = Instant::now();
    let data = generate(&spec).data;
    eprintln!(
        "generated {} rows in {:.2}s",
        data.num_rows(),
        clock.elapsed().as_secs_f64()
    );
    let mut config = TrainConfig::new(a.objective);
    config.regularization = Regularization {
        penalty: a.penalty,
        delta: a.delta,
        intercept_penalty: true,
    };
    config.hessian = a.hessian;

    let (mut total, mut build, mut solve, mut post) = (vec![], vec![], vec![], vec![]);
    let mut evaluate = vec![];
    let (mut evaluations, mut iterations, mut converged, mut rounds) = (0, 0, 0, 0);
    for _ in 0..a.repeat.max(1) {
        let clock = Instant::now();
        let out = fit_on(compute.backend(), None, &data, &config, &|_| {})?;
        compute.report_fallbacks(&out);
        total.push(clock.elapsed().as_secs_f64());
        rounds = out.rounds;
        build.push(out.timings.build);
        solve.push(out.timings.solve);
        evaluate.push(out.timings.evaluate);
        post.push(out.timings.posterior);
        evaluations = out
            .reports
            .iter()
            .map(|r| r.solve.evaluations)
            .sum::<usize>();
        iterations = out
            .reports
            .iter()
            .map(|r| r.solve.iterations)
            .sum::<usize>();
        converged = out
            .reports
            .iter()
            .filter(|r| r.solve.reason.converged())
            .count();
    }
    let (t, s) = (median(total), median(solve));
    let e = spec.entities as f64;
    println!(
        "workload: {} × E={} n={} d={} density={} hessian={} λ={} δ={} device={device} threads={} repeats={}",
        a.objective, spec.entities, spec.rows_per_entity, spec.features, spec.density, a.hessian, a.penalty, a.delta,
        rayon::current_num_threads(), a.repeat.max(1)
    );
    println!("{:<28}{:>14}", "metric", "median");
    let rows: [(&str, f64); 10] = [
        ("fit seconds (end to end)", t),
        ("  build seconds", median(build)),
        ("  solve seconds", s),
        ("    of which evaluator", median(evaluate)),
        ("  posterior seconds", median(post)),
        ("entities/s (end to end)", e / t),
        ("entities/s (solve)", e / s),
        ("rows/s (end to end)", data.num_rows() as f64 / t),
        ("evaluations/s (solve)", evaluations as f64 / s),
        ("mean evaluations/entity", evaluations as f64 / e),
    ];
    for (name, v) in rows {
        println!("{name:<28}{v:>14.3}");
    }
    println!(
        "{:<28}{:>14.1}",
        "mean iterations/entity",
        iterations as f64 / e
    );
    println!("{:<28}{:>14}", "batched evaluation rounds", rounds);
    println!(
        "{:<28}{:>14}",
        "converged entities",
        format!("{converged}/{}", spec.entities)
    );
    Ok(())
}
