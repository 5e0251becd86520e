//! `glmix rank`.

use super::{models_for, DataArgs};
use anyhow::Result;
use clap::{Args, ValueEnum};
use glmix::bandit::{rank, Policy, RankOptions};
use glmix::data::{Dataset, Ids};
use glmix::io::{check_paths, write_output, PathRole};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PolicyArg {
    /// By one posterior draw of each entity's model per request (θ̃ ~ N(θ, t·Σ)).
    Thompson,
    /// By the upper confidence bound m + α·s of the margin (s² = xᵀΣx).
    Ucb,
    /// By the mean margin.
    Greedy,
    /// Greedy's order, or with probability ε a uniformly random one.
    EpsilonGreedy,
    /// A uniformly random order.
    Random,
}

#[derive(Args, Debug)]
pub struct RankArgs {
    /// Candidate records, in any records format; a label is not read (one that is absent
    /// or null reads as 0).
    #[command(flatten)]
    data: DataArgs,
    /// Trained models: model JSON lines or a model store (`glmix stream --store`).
    #[arg(long, value_name = "MODELS")]
    model: PathBuf,
    /// Field of each record holding the request it is a candidate of (a string or an
    /// integer); a request's candidates need not be consecutive.
    #[arg(long, value_name = "KEY")]
    request_key: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Candidates shown per request.
    #[arg(long, value_name = "K", default_value_t = 1)]
    top: usize,
    /// Output: one JSON line per shown candidate — request, position (0 is the top), row
    /// (the candidate's 0-based record number), entity, score (what the policy ordered
    /// by) and propensity (the probability of that candidate at that position).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// A ranking policy and its settings, shared by `rank` and `ope`.
#[derive(Args, Debug)]
pub(super) struct PolicyArgs {
    #[arg(long, value_enum, default_value = "thompson")]
    policy: PolicyArg,
    /// Thompson sampling: the exploration multiplier t on the posterior covariance.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    multiplier: f64,
    /// Thompson sampling: draws of each request's ranking that estimate the probability
    /// of a choice (rank: the propensities written, 0 for none; ope: the target's
    /// probability of each logged choice).
    #[arg(long, value_name = "N", default_value_t = 100)]
    propensity_draws: usize,
    /// UCB: the multiplier α of the margin's standard deviation.
    #[arg(long, value_name = "ALPHA", default_value_t = 1.0)]
    alpha: f64,
    /// ε-greedy: the probability of a random order.
    #[arg(long, value_name = "EPSILON", default_value_t = 0.1)]
    epsilon: f64,
    /// Seed of the policy's randomness (each request draws from its own stream).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl PolicyArgs {
    pub(super) fn options(&self, top: usize) -> RankOptions {
        let policy = match self.policy {
            PolicyArg::Thompson => Policy::Thompson {
                multiplier: self.multiplier,
                draws: self.propensity_draws,
            },
            PolicyArg::Ucb => Policy::Ucb { alpha: self.alpha },
            PolicyArg::Greedy => Policy::Greedy,
            PolicyArg::EpsilonGreedy => Policy::EpsilonGreedy {
                epsilon: self.epsilon,
            },
            PolicyArg::Random => Policy::Random,
        };
        RankOptions {
            policy,
            top,
            seed: self.seed,
        }
    }

    /// The policy's name as the command line spells it.
    pub(super) fn name(&self) -> String {
        self.policy
            .to_possible_value()
            .expect("no variant is skipped")
            .get_name()
            .to_string()
    }
}

/// Read the candidate records of `data` and the request of each.
pub(super) fn candidates(data: &DataArgs, request_key: &str) -> Result<(Dataset, Ids)> {
    let (data, mut ids) = data.read_with_ids(
        &[request_key.to_string()],
        "missing request field (set it with --request-key)",
    )?;
    Ok((data, ids.pop().expect("one id column per key")))
}

pub fn run(a: RankArgs) -> Result<()> {
    let mut paths = a.data.inputs();
    paths.push(PathRole::input("--model", &a.model));
    paths.push(PathRole::output("--out", &a.out));
    check_paths(&paths)?;
    let (data, requests) = candidates(&a.data, &a.request_key)?;
    let models = models_for(&data, &a.model)?;
    let options = a.policy.options(a.top);
    let shown = rank(&data, &requests, &models, &options)?;
    write_output(&a.out, |f| {
        for s in &shown {
            let row = json!({
                "request": requests.0.key(s.request),
                "position": s.position,
                "row": s.row,
                "entity": data.entities.key(data.entity[s.row]),
                "score": s.score,
                "propensity": s.propensity,
            });
            writeln!(f, "{row}")?;
        }
        Ok(())
    })?;
    eprintln!(
        "ranked {} candidates of {} requests by {}: {} shown, written to {}",
        data.num_rows(),
        requests.0.len(),
        a.policy.name(),
        shown.len(),
        a.out.display()
    );
    Ok(())
}
