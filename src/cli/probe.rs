//! `glmix gpu-probe`: the card's read bandwidth, transfer rates, round trip and the fused
//! kernel alone on resident data (see `glmix::eval::gpu::ProbeOptions`).

use anyhow::{Context, Result};
use clap::Args;
use glmix::eval::gpu::ProbeOptions;
use glmix::eval::GpuContext;
use glmix::io::{check_paths, write_output, PathRole};
use std::io::Write;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// GiB read by the read-bandwidth probe (0 skips it).
    #[arg(long, default_value_t = 8.0)]
    read_gib: f64,
    /// GiB moved each way by the upload and readback probes (0 skips them).
    #[arg(long, default_value_t = 2.0)]
    transfer_gib: f64,
    /// Submit-to-readback round trips timed (0 skips them).
    #[arg(long, default_value_t = 1000)]
    round_trips: usize,
    /// Entities of the kernel probe, resident on the device (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    entities: usize,
    /// Rows per entity of the kernel probe.
    #[arg(long, default_value_t = 64)]
    rows: usize,
    /// Features per entity of the kernel probe.
    #[arg(long, default_value_t = 32)]
    features: usize,
    /// Evaluations of the kernel probe; the median is reported.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Also write the report as one JSON object.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

pub fn run(a: ProbeArgs) -> Result<()> {
    if let Some(json) = &a.json {
        check_paths(&[PathRole::output("--json", json)])?;
    }
    let gib = |g: f64| (g.max(0.0) * f64::from(1u32 << 30)) as u64;
    let ctx = GpuContext::new().context("gpu-probe")?;
    eprintln!("glmix: probing {}", ctx.describe());
    let report = ctx.probe(&ProbeOptions {
        read_bytes: gib(a.read_gib),
        transfer_bytes: gib(a.transfer_gib),
        round_trips: a.round_trips,
        entities: a.entities,
        rows: a.rows,
        features: a.features,
        repeat: a.repeat,
    })?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &a.json {
        write_output(path, |f| writeln!(f, "{}", serde_json::to_string(&report)?))?;
    }
    Ok(())
}
