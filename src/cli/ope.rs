//! `glmix ope`.

use super::rank::{candidates, PolicyArgs};
use super::{models_for, DataArgs};
use anyhow::Result;
use clap::Args;
use glmix::bandit::evaluate_policy;
use glmix::bandit::log::read_log;
use glmix::bandit::offline::{Bootstrap, Estimator};
use glmix::io::{check_paths, write_output, PathRole};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct OpeArgs {
    /// The candidate records the log's rows number (as given to `glmix rank`).
    #[command(flatten)]
    data: DataArgs,
    /// The target policy's models: model JSON lines or a model store.
    #[arg(long, value_name = "MODELS")]
    model: PathBuf,
    /// Field of each candidate record holding its request.
    #[arg(long, value_name = "KEY")]
    request_key: String,
    /// The log: JSON lines of request, row, position, propensity and reward (`glmix
    /// rank`'s output with each shown candidate's reward added).
    #[arg(long, value_name = "FILE")]
    log: PathBuf,
    /// The target policy.
    #[command(flatten)]
    policy: PolicyArgs,
    /// Bootstrap resamples of the log's rounds for the intervals.
    #[arg(long, value_name = "B", default_value_t = 1000)]
    resamples: usize,
    /// Coverage of the intervals.
    #[arg(long, value_name = "LEVEL", default_value_t = 0.95)]
    level: f64,
    /// Output: the report as one JSON object (printed as a table on stderr too).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(a: OpeArgs) -> Result<()> {
    let mut paths = a.data.inputs();
    paths.push(PathRole::input("--model", &a.model));
    paths.push(PathRole::input("--log", &a.log));
    paths.push(PathRole::output("--out", &a.out));
    check_paths(&paths)?;
    let (data, requests) = candidates(&a.data, &a.request_key)?;
    let models = models_for(&data, &a.model)?;
    let log = read_log(&a.log)?;
    // The policy's options; `top` plays no part in a choice's probability.
    let options = a.policy.options(1);
    let bootstrap = Bootstrap {
        resamples: a.resamples,
        level: a.level,
        seed: options.seed,
    };
    let e = evaluate_policy(&data, &requests, &models, &options, &log, bootstrap)?;
    let name = |estimator| match estimator {
        Estimator::Ips => "ips",
        Estimator::Snips => "snips",
        Estimator::Replay => "replay",
    };
    let estimates: serde_json::Map<String, serde_json::Value> = e
        .estimates
        .iter()
        .map(|(estimator, v)| {
            let value = json!({
                "value": v.value,
                "low": v.low,
                "high": v.high,
                "resamples_used": v.resamples_used,
            });
            (name(*estimator).to_string(), value)
        })
        .collect();
    let effective = e.estimates[0].1.effective_rounds;
    let report = json!({
        "policy": a.policy.name(),
        "rounds": e.rounds,
        "logged_reward": e.logged_reward,
        "unsupported_rounds": e.unsupported,
        "effective_rounds": effective,
        "level": a.level,
        "estimates": estimates,
    });
    write_output(&a.out, |f| Ok(writeln!(f, "{report}")?))?;
    eprintln!(
        "{} on {} logged rounds (logged mean reward {:.6}; effective rounds {:.1}; {} the target never chooses):",
        a.policy.name(),
        e.rounds,
        e.logged_reward,
        effective,
        e.unsupported
    );
    for (estimator, v) in &e.estimates {
        eprintln!(
            "  {:<7} {:.6}  {:.0}% interval [{:.6}, {:.6}]",
            name(*estimator),
            v.value,
            100.0 * a.level,
            v.low,
            v.high
        );
    }
    eprintln!("written to {}", a.out.display());
    Ok(())
}
