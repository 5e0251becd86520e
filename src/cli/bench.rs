//! `glmix bench`: throughput of `fit` on a seeded synthetic workload, on the CPU, the GPU
//! or both side by side in one run.

use super::train::{Compute, Device, Finish, SolverOnArg};
use super::WorkloadArgs;
use anyhow::Result;
use clap::{Args, ValueEnum};
use glmix::data::Dataset;
use glmix::eval::Stage;
use glmix::io::{check_paths, write_output, PathRole};
use glmix::model::HessianType;
use glmix::objective::{ObjectiveKind, Regularization};
use glmix::synth::generate;
use glmix::train::{fit_on, thread_cpu_seconds, FitOutput, FitTimings, TrainConfig};
use serde_json::json;
use std::io::Write;
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
    /// Evaluator: auto, cpu, gpu, or both side by side.
    #[arg(long, value_enum, default_value = "auto")]
    device: BenchDevice,
    /// On the GPU, how each entity ends: f64 (its last steps and posterior in f64 on the
    /// CPU) or none (all in f32 on the GPU).
    #[arg(long, value_enum, default_value = "f64")]
    finish: Finish,
    /// On the GPU, where the L-BFGS step runs: host or device.
    #[arg(long, value_enum, default_value = "host")]
    solver_on: SolverOnArg,
    /// On the GPU, entities in flight at once, one part per thread.
    #[arg(long, default_value_t = 65_536)]
    batch_entities: usize,
    /// Also write the workload and every device's medians as one JSON object.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BenchDevice {
    Auto,
    Cpu,
    Gpu,
    Both,
}

/// User and system CPU seconds of this process so far (every thread), from
/// `/proc/self/stat` (in USER_HZ = 100 ticks per second); `None` off Linux.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is the 3rd, utime the 14th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |k: usize| fields.get(k - 3)?.parse::<f64>().ok();
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

/// CPU seconds every thread of rayon's pool and the calling thread have run so far: the
/// host's threads, without a software GPU driver's.
fn host_cpu_seconds() -> f64 {
    rayon::broadcast(|_| thread_cpu_seconds())
        .iter()
        .sum::<f64>()
        + thread_cpu_seconds()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The medians of one device's repetitions, as table rows.
struct Column {
    device: String,
    /// The last run's GPU counts (`bytes_per_entity_evaluation`, …), when it used a GPU.
    gpu: Option<serde_json::Value>,
    rows: Vec<(&'static str, f64)>,
    converged: usize,
}

fn measure(
    compute: &Compute,
    data: &Dataset,
    config: &TrainConfig,
    repeat: usize,
) -> Result<Column> {
    // Only the last run's output is kept (the others' timings are), so that peak memory
    // is that of one run.
    let mut timings: Vec<FitTimings> = Vec::new();
    let mut totals = Vec::new();
    let mut cpu = Vec::new();
    let mut host_cpu = Vec::new();
    let mut last: Option<FitOutput> = None;
    for _ in 0..repeat.max(1) {
        drop(last.take());
        let clock = Instant::now();
        let cpu_before = process_cpu_seconds();
        let host_before = host_cpu_seconds();
        let out = fit_on(compute.backend(), None, data, config, &|_| {})?;
        totals.push(clock.elapsed().as_secs_f64());
        host_cpu.push(host_cpu_seconds() - host_before);
        if let (Some(a), Some(b)) = (cpu_before, process_cpu_seconds()) {
            cpu.push(b - a);
        }
        compute.report_fallbacks(&out);
        timings.push(out.timings);
        last = Some(out);
    }
    let m = |f: fn(&FitTimings) -> f64| median(timings.iter().map(f).collect());
    let last = last.expect("at least one run");
    let e = last.reports.len() as f64;
    let evaluations = last
        .reports
        .iter()
        .map(|r| r.solve.evaluations)
        .sum::<usize>() as f64;
    let iterations = last
        .reports
        .iter()
        .map(|r| r.solve.iterations)
        .sum::<usize>() as f64;
    let rows_total = data.num_rows() as f64;
    let (t, s) = (median(totals), m(|o| o.solve));
    let mut rows = vec![
        ("fit seconds (end to end)", t),
        ("  build seconds", m(|o| o.build)),
        ("  solve seconds", s),
        ("    of which evaluator", m(|o| o.evaluate)),
        ("  posterior seconds", m(|o| o.posterior)),
        ("entities/s (end to end)", e / t),
        // Every thread of the process, a software GPU's included.
        ("process CPU µs/entity", median(cpu) / e * 1e6),
        // The host's own threads: what a GPU host spends per entity.
        ("host thread CPU µs/entity", median(host_cpu) / e * 1e6),
        ("  build CPU µs/entity", m(|o| o.host_cpu.build) / e * 1e6),
        ("  solve CPU µs/entity", m(|o| o.host_cpu.solve) / e * 1e6),
        (
            "  posterior CPU µs/entity",
            m(|o| o.host_cpu.posterior) / e * 1e6,
        ),
        ("entities/s (solve)", e / s),
        ("rows/s (end to end)", rows_total / t),
        ("evaluations/s (solve)", evaluations / s),
        ("mean evaluations/entity", evaluations / e),
        ("mean iterations/entity", iterations / e),
        ("batched evaluation rounds", last.rounds as f64),
    ];
    if last.timings.gpu.dispatches > 0 {
        // Parts run on every thread at once: these are thread seconds, summed.
        rows.extend([
            ("gpu setup thread-s", m(|o| o.gpu.setup)),
            ("  of which packing", m(|o| o.gpu.pack)),
            ("gpu upload thread-s", m(|o| o.gpu.upload)),
            ("gpu wait thread-s", m(|o| o.gpu.kernels)),
            ("gpu read-back thread-s", m(|o| o.gpu.readback)),
        ]);
        if last.timings.gpu.device_kernels > 0.0 {
            // Timestamp queries: the kernels' own time on the device.
            rows.extend([
                ("gpu kernel seconds (device)", m(|o| o.gpu.device_kernels)),
                (
                    "  entity_value_gradient",
                    m(|o| o.gpu.device_stages[Stage::ValueGradient as usize]),
                ),
                (
                    "  entity_hessian_diagonal",
                    m(|o| o.gpu.device_stages[Stage::HessianDiagonal as usize]),
                ),
                (
                    "  hessian_full",
                    m(|o| o.gpu.device_stages[Stage::HessianFull as usize]),
                ),
                (
                    "  device L-BFGS rounds",
                    m(|o| o.gpu.device_stages[Stage::DeviceRound as usize]),
                ),
                (
                    "gpu busy share of solve",
                    m(|o| o.gpu.device_kernels / o.solve),
                ),
                (
                    "kernel GB/s (effective)",
                    m(|o| o.gpu.kernel_bytes / o.gpu.device_kernels / 1e9),
                ),
            ]);
        }
    }
    let gpu = (last.timings.gpu.dispatches > 0).then(|| {
        let g = &last.timings.gpu;
        let rounds = last.rounds.max(1) as f64;
        json!({
            "bytes_per_entity_evaluation": g.bytes_per_entity_evaluation(),
            "buffers_created": g.buffers_created,
            "buffers_created_after_warmup": g.buffers_created_after_first_part,
            "buffer_bytes_created": g.buffer_bytes_created,
            "submissions": g.submissions,
            "submissions_per_round": g.submissions as f64 / rounds,
            "part_upload_submissions": g.part_submissions,
            "worker_blocking_waits_per_round": g.parked_waits as f64 / rounds,
            "staging_fills_per_round": g.staged_fills as f64 / rounds,
            "slot_to_active_ratio": g.slot_to_active_ratio(),
            "bytes_up": g.bytes_up,
            "bytes_down": g.bytes_down,
            "device_kernel_seconds": g.device_kernels,
            "device_stage_seconds": Stage::ALL
                .iter()
                .map(|&k| (k.kernel().to_string(), json!(g.device_stages[k as usize])))
                .collect::<serde_json::Map<_, _>>(),
        })
    });
    if let Some(g) = &gpu {
        for (name, key) in [
            ("gpu bytes/entity-eval", "bytes_per_entity_evaluation"),
            ("gpu buffers after warm-up", "buffers_created_after_warmup"),
            ("gpu submissions/round", "submissions_per_round"),
            (
                "gpu blocking waits/round",
                "worker_blocking_waits_per_round",
            ),
            ("gpu slots/active entity", "slot_to_active_ratio"),
        ] {
            rows.push((name, g[key].as_f64().unwrap_or(f64::NAN)));
        }
    }
    Ok(Column {
        device: compute.name(),
        gpu,
        rows,
        converged: last
            .reports
            .iter()
            .filter(|r| r.solve.reason.converged())
            .count(),
    })
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(json) = &a.json {
        check_paths(&[PathRole::output("--json", json)])?;
    }
    let computes = match a.device {
        BenchDevice::Auto => vec![Compute::choose(Device::Auto)?],
        BenchDevice::Cpu => vec![Compute::choose(Device::Cpu)?],
        BenchDevice::Gpu => vec![Compute::choose(Device::Gpu)?],
        BenchDevice::Both => vec![Compute::choose(Device::Cpu)?, Compute::choose(Device::Gpu)?],
    };
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
        half_life: None,
    };
    config.hessian = a.hessian;
    config.batch_entities = a.batch_entities;
    config.f64_finish = a.finish == Finish::F64;
    config.solver_on = a.solver_on.into();
    let columns: Vec<Column> = computes
        .iter()
        .map(|c| measure(c, &data, &config, a.repeat))
        .collect::<Result<_>>()?;
    let memory = [
        ("data MiB (packed)", packed_bytes(&data) as f64 / MIB),
        (
            "peak RSS MiB",
            peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / MIB),
        ),
    ];

    println!(
        "workload: {} × E={} n={} d={} density={} hessian={} λ={} δ={} threads={} repeats={} \
         batch_entities={}",
        a.objective,
        spec.entities,
        spec.rows_per_entity,
        spec.features,
        spec.density,
        a.hessian,
        a.penalty,
        a.delta,
        rayon::current_num_threads(),
        a.repeat.max(1),
        a.batch_entities
    );
    for (k, c) in columns.iter().enumerate() {
        println!("device {}: {}", k + 1, c.device);
    }
    print!("{:<28}", "metric (median)");
    for k in 0..columns.len() {
        print!("{:>16}", format!("device {}", k + 1));
    }
    println!();
    let names: Vec<&str> = columns
        .iter()
        .max_by_key(|c| c.rows.len())
        .map(|c| c.rows.iter().map(|r| r.0).collect())
        .unwrap_or_default();
    for name in names {
        print!("{name:<28}");
        for c in &columns {
            match c.rows.iter().find(|r| r.0 == name) {
                Some((_, v)) => print!("{v:>16.3}"),
                None => print!("{:>16}", "-"),
            }
        }
        println!();
    }
    print!("{:<28}", "converged entities");
    for c in &columns {
        print!("{:>16}", format!("{}/{}", c.converged, spec.entities));
    }
    println!();
    for (name, v) in memory {
        println!("{name:<28}{v:>16.1}");
    }
    if let Some(path) = &a.json {
        let devices: Vec<_> = columns
            .iter()
            .map(|c| {
                let mut m: serde_json::Map<String, serde_json::Value> = c
                    .rows
                    .iter()
                    .map(|(k, v)| (k.trim().to_string(), json!(v)))
                    .collect();
                m.insert("device".into(), json!(c.device));
                m.insert("converged entities".into(), json!(c.converged));
                if let Some(g) = &c.gpu {
                    m.insert("gpu".into(), g.clone());
                }
                m
            })
            .collect();
        let mut summary = json!({
            "objective": a.objective.to_string(), "entities": spec.entities,
            "rows per entity": spec.rows_per_entity, "rows": data.num_rows(),
            "features": spec.features, "density": spec.density, "ragged": spec.ragged,
            "zipf": spec.zipf, "hessian": a.hessian.to_string(),
            "threads": rayon::current_num_threads(),
            "batch_entities": a.batch_entities, "devices": devices,
        });
        for (name, v) in memory {
            summary[name] = json!(v);
        }
        write_output(path, |f| writeln!(f, "{summary}"))?;
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// The records as the solver needs them at the least: every feature value as an f64 (with
/// its u32 column index when the rows are sparse) and each row's label, weight and offset.
fn packed_bytes(data: &Dataset) -> usize {
    let nnz = data.values.len();
    let dense = nnz == data.num_rows() * data.features.len();
    nnz * if dense { 8 } else { 12 } + data.num_rows() * 24
}

/// This process's peak resident set (`VmHWM` of /proc/self/status; Linux only).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
