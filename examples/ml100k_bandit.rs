//! A bandit simulation on MovieLens-100K: glmix's ranking policies choosing among a user's
//! movies, learning only from what they showed.
//!
//! ```text
//! cargo run --release --example ml100k_bandit -- --data ../shared/data/ml-100k --out target/ml100k-bandit
//! ```
//!
//! Environment: the later 80% of the ratings in time order (the stream protocol of
//! `ml100k_stream`, whose fixed effect — logistic, λ = 1, on the earliest 20% — gives
//! every candidate its offset). Each rating event is a request: its candidates are the
//! rated movie and `K − 1` others the same user rated (drawn without replacement, seeded),
//! so the simulator knows every candidate's reward (rating ≥ 4) but reveals it only for
//! the `top` candidates the policy shows. The oracle shows the best `top`, earning
//! `min(top, positives)`; the regret of a request is the oracle's reward minus the
//! policy's.
//!
//! Learner: `bayes-logistic` random effects with an intercept, per movie on the user's
//! gender, age band and occupation (`--effect movie`, the default) or per user on the
//! movie's genres (`--effect user`), every entity starting from the prior `N(0, λ⁻¹I)`;
//! the events are cut into mini-batches by a tumbling time window (an hour), each
//! mini-batch ranked with the models as they stand and then trained, `glmix stream`'s way
//! (the previous model the prior, forgetting factor δ, default 1: the movies do not
//! drift), on its shown candidates only.
//!
//! Policies ([`glmix::bandit::rank`]): Thompson sampling (one posterior draw per entity per
//! request), Thompson with the precision used as the covariance (Lambda Learner's draw,
//! `N(θ, H)`), UCB, greedy, greedy that never updates (what the fixed effect alone earns),
//! ε-greedy and random, each over several seeds (a seed draws the candidates and the
//! policy's randomness; every policy sees the same candidates under one seed).
//!
//! Prints a Markdown table and a JSON summary, writes an SVG plot of the cumulative regret.
//! With `--check`, fails unless Thompson sampling's mean reward over the seeds beats
//! random's and that of Thompson sampling with the precision as the covariance.

#[path = "common/movielens.rs"]
mod movielens;
#[path = "common/recbole.rs"]
mod recbole;

use clap::Parser;
use glmix::bandit::{rank, Policy, RankOptions};
use glmix::data::{Dataset, FeatureKey, Interner};
use glmix::model::linalg::Cholesky;
use glmix::model::{EntityModel, HessianType, ModelSet, Precision};
use glmix::objective::ObjectiveKind;
use glmix::plot::{line_chart, Series};
use glmix::score::score;
use glmix::train::{fit, TrainConfig};
use movielens::MovieLens;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// The ml-100k folder (ml-100k.inter, .item, .user).
    #[arg(long, default_value = "../shared/data/ml-100k")]
    data: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "target/ml100k-bandit")]
    out: PathBuf,
    /// The random effects: per user on the movie's genres, or per movie on the user's
    /// gender, age band and occupation (both with an intercept).
    #[arg(long, value_enum, default_value = "movie")]
    effect: Effect,
    /// The posterior precision kept: diagonal, or full (the margin variance then counts
    /// the features' correlations; the one-hot groups and the intercept are correlated).
    #[arg(long, value_enum, default_value = "diagonal")]
    hessian: HessianArg,
    /// Candidates per request, K.
    #[arg(long, default_value_t = 10)]
    candidates: usize,
    /// Candidates shown per request.
    #[arg(long, default_value_t = 1)]
    top: usize,
    /// Mini-batch window in seconds.
    #[arg(long, default_value_t = 3_600.0)]
    window: f64,
    /// Seeds 0, 1, … of the candidates and the policies.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// L2 penalty λ of the per-user models (the prior precision of a new user).
    #[arg(long, default_value_t = 10.0)]
    penalty: f64,
    /// Forgetting factor δ.
    #[arg(long, default_value_t = 1.0)]
    delta: f64,
    /// Thompson sampling's exploration multiplier t.
    #[arg(long, default_value_t = 1.0)]
    multiplier: f64,
    /// UCB's α.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// ε-greedy's ε.
    #[arg(long, default_value_t = 0.1)]
    epsilon: f64,
    /// Offsets 0 instead of the fixed effect's scores (a cold start for every pair).
    #[arg(long)]
    without_fixed_effect: bool,
    /// Only the first N events of the later 80% (a slice for quick checks).
    #[arg(long)]
    events: Option<usize>,
    /// Fail unless Thompson's mean reward beats random's and Lambda Learner's draw's.
    #[arg(long)]
    check: bool,
}

/// A rating of the simulator's: which movie, and whether it is a reward.
#[derive(Clone, Copy)]
struct Candidate {
    /// Index into `World::pairs`.
    pair: usize,
}

/// What the simulator knows: every (user, movie) rating with its reward and the fixed
/// effect's offset, and each user's ratings.
struct World<'a> {
    ml: &'a MovieLens,
    /// `(rating index)`: offsets of every rating's (user, movie) under the fixed effect.
    offsets: Vec<f64>,
    /// Each user's ratings (indices into `ml.ratings`).
    by_user: HashMap<&'a str, Vec<usize>>,
    /// Index of the first simulated event, and of one past the last.
    events: std::ops::Range<usize>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Debug)]
enum HessianArg {
    Diagonal,
    Full,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Debug)]
enum Effect {
    User,
    Movie,
}

/// How a policy's models are used.
#[derive(Clone, Copy, PartialEq)]
enum Draw {
    /// As trained: Thompson draws `θ̃ ~ N(θ, H⁻¹)`.
    Posterior,
    /// With the precision as the covariance, `θ̃ ~ N(θ, H)`: Lambda Learner's draw.
    PrecisionAsCovariance,
    /// Never updated: the policy ranks by the fixed effect and the priors alone.
    Frozen,
}

struct Run {
    reward: f64,
    oracle: f64,
    /// (events so far, cumulative regret) after each mini-batch.
    curve: Vec<(f64, f64)>,
    seconds: f64,
}

impl World<'_> {
    /// Each event's candidates under `seed`: the rated movie first, then `k − 1` other
    /// ratings of the same user.
    fn candidates(&self, k: usize, seed: u64) -> Vec<Vec<Candidate>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.events
            .clone()
            .map(|i| {
                let user = &self.by_user[self.ml.ratings[i].user.as_str()];
                let others: Vec<usize> = user.iter().copied().filter(|&j| j != i).collect();
                let mut chosen = vec![Candidate { pair: i }];
                chosen.extend(
                    others
                        .choose_multiple(&mut rng, k - 1)
                        .map(|&pair| Candidate { pair }),
                );
                chosen
            })
            .collect()
    }

    fn positive(&self, c: Candidate) -> bool {
        self.ml.ratings[c.pair].positive
    }

    /// The entity of a rating and its features under `effect`.
    fn record(&self, effect: Effect, pair: usize) -> (&str, Vec<(FeatureKey, f64)>) {
        let r = &self.ml.ratings[pair];
        match effect {
            Effect::User => (&r.user, self.ml.genre_features(&r.item).collect()),
            Effect::Movie => (&r.item, self.ml.user_features(&r.user).collect()),
        }
    }

    /// Every entity's starting model: means 0, precision λ on the intercept and each
    /// feature.
    fn priors(&self, effect: Effect, hessian: HessianArg, penalty: f64) -> ModelSet {
        let (genres, users) = self.ml.all_features();
        let mut features = vec![FeatureKey::intercept()];
        features.extend(match effect {
            Effect::User => genres,
            Effect::Movie => users,
        });
        let d = features.len();
        let mut entities: Vec<&str> = self
            .ml
            .ratings
            .iter()
            .map(|r| match effect {
                Effect::User => r.user.as_str(),
                Effect::Movie => r.item.as_str(),
            })
            .collect();
        entities.sort();
        entities.dedup();
        entities
            .into_iter()
            .map(|e| EntityModel {
                entity: e.to_string(),
                objective: Some(ObjectiveKind::BayesLogistic),
                hessian: match hessian {
                    HessianArg::Diagonal => HessianType::Diagonal,
                    HessianArg::Full => HessianType::Full,
                },
                features: features.clone(),
                means: vec![0.0; d],
                precision: match hessian {
                    HessianArg::Diagonal => Precision::Diagonal(vec![penalty; d]),
                    HessianArg::Full => Precision::Full(
                        (0..d * d)
                            .map(|i| if i % (d + 1) == 0 { penalty } else { 0.0 })
                            .collect(),
                    ),
                },
                last_seen: None,
            })
            .collect()
    }

    /// Simulate `policy` over the events, mini-batch by mini-batch.
    fn run(
        &self,
        a: &Args,
        candidates: &[Vec<Candidate>],
        policy: Policy,
        draw: Draw,
        seed: u64,
    ) -> anyhow::Result<Run> {
        let clock = Instant::now();
        let mut models = self.priors(a.effect, a.hessian, a.penalty);
        let mut config = TrainConfig::new(ObjectiveKind::BayesLogistic);
        config.regularization.penalty = a.penalty;
        config.regularization.delta = a.delta;
        config.hessian = match a.hessian {
            HessianArg::Diagonal => HessianType::Diagonal,
            HessianArg::Full => HessianType::Full,
        };
        let options = RankOptions {
            policy,
            top: a.top,
            seed,
        };
        let (mut reward, mut oracle) = (0.0, 0.0);
        let mut curve = Vec::new();
        let ratings = &self.ml.ratings;
        let mut start = 0;
        while start < candidates.len() {
            let opened = ratings[self.events.start + start].timestamp;
            let end = (start..candidates.len())
                .find(|&e| ratings[self.events.start + e].timestamp >= opened + a.window)
                .unwrap_or(candidates.len());
            // The mini-batch's candidates, one request per event.
            let mut data = Dataset::new();
            let (mut ids, mut of_record) = (Interner::default(), Vec::new());
            let mut pairs = Vec::new();
            for (e, list) in candidates.iter().enumerate().take(end).skip(start) {
                let request = ids.id(&e.to_string());
                for &c in list {
                    let label = f64::from(u8::from(self.positive(c)));
                    let (entity, f) = self.record(a.effect, c.pair);
                    data.push(entity, label, 1.0, self.offsets[c.pair], None, f);
                    of_record.push(request);
                    pairs.push(c);
                }
                let positives = list.iter().filter(|&&c| self.positive(c)).count();
                oracle += positives.min(a.top) as f64;
            }
            data.sort_features();
            let ranked_by = match draw {
                Draw::PrecisionAsCovariance => Some(precision_as_covariance(&models)),
                Draw::Posterior | Draw::Frozen => None,
            };
            let shown = rank(
                &data,
                &(ids, of_record),
                ranked_by.as_ref().unwrap_or(&models),
                &options,
            )?;
            // Learn from what was shown, and only that.
            let mut seen = Dataset::new();
            for s in &shown {
                reward += f64::from(u8::from(self.positive(pairs[s.row])));
                seen.push_row_of(&data, s.row);
            }
            seen.sort_features();
            if draw != Draw::Frozen {
                for m in fit(Some(&models), &seen, &config, &|_| {})?.models {
                    models.insert(m);
                }
            }
            curve.push((end as f64, oracle - reward));
            start = end;
        }
        Ok(Run {
            reward,
            oracle,
            curve,
            seconds: clock.elapsed().as_secs_f64(),
        })
    }
}

/// The models with each precision `H` replaced by `H⁻¹`, so that a posterior draw has
/// covariance `H`: Thompson sampling as Lambda Learner draws.
fn precision_as_covariance(models: &ModelSet) -> ModelSet {
    models
        .models()
        .iter()
        .map(|m| {
            let mut m = m.clone();
            match &mut m.precision {
                Precision::Diagonal(h) => h.iter_mut().for_each(|v| *v = 1.0 / *v),
                Precision::Full(h) => *h = inverse(h),
                Precision::None => {}
            }
            m
        })
        .collect()
}

/// `H⁻¹` of a symmetric positive-definite row-major `h`, column by column
/// (`H⁻¹ e_j = L⁻ᵀ L⁻¹ e_j`).
fn inverse(h: &[f64]) -> Vec<f64> {
    let d = (h.len() as f64).sqrt() as usize;
    let l = Cholesky::new(h, d).expect("a posterior precision is positive definite");
    let mut out = vec![0.0; d * d];
    for j in 0..d {
        let mut e = vec![0.0; d];
        e[j] = 1.0;
        l.solve_lower(&mut e);
        l.solve_upper(&mut e);
        for (i, v) in e.into_iter().enumerate() {
            out[i * d + j] = v;
        }
    }
    out
}

/// Regret per request over the last quarter of the requests, from a cumulative curve.
fn last_quarter(curve: &[(f64, f64)]) -> f64 {
    let &(n, total) = curve.last().expect("at least one mini-batch");
    let (at, before) = curve
        .iter()
        .rev()
        .find(|&&(x, _)| x <= 0.75 * n)
        .copied()
        .unwrap_or((0.0, 0.0));
    (total - before) / (n - at)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.candidates >= 2 && a.top >= 1 && a.top <= a.candidates,
        "need 2 ≤ K and 1 ≤ top ≤ K"
    );
    std::fs::create_dir_all(&a.out)?;
    let ml = MovieLens::read(&a.data);
    let fixed = ml.fixed_effect()?;
    let mut global = Dataset::new();
    for r in &ml.ratings {
        global.push(
            "global",
            0.0,
            1.0,
            0.0,
            None,
            ml.global_features(&r.user, &r.item),
        );
    }
    let offsets = match a.without_fixed_effect {
        false => score(&global, &fixed, None)?,
        true => vec![0.0; ml.ratings.len()],
    };
    let mut by_user: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in ml.ratings.iter().enumerate() {
        by_user.entry(r.user.as_str()).or_default().push(i);
    }
    let first = ml.split();
    let last = a
        .events
        .map_or(ml.ratings.len(), |n| (first + n).min(ml.ratings.len()));
    let world = World {
        ml: &ml,
        offsets,
        by_user,
        events: first..last,
    };
    let fewest = world.by_user.values().map(Vec::len).min().unwrap_or(0);
    anyhow::ensure!(
        fewest >= a.candidates,
        "a user rated only {fewest} movies: K must not exceed that"
    );

    let thompson = Policy::Thompson {
        multiplier: a.multiplier,
        draws: 0,
    };
    let policies = [
        (
            format!("thompson, t = {}", a.multiplier),
            thompson,
            Draw::Posterior,
        ),
        (
            format!(
                "thompson, precision as covariance (Lambda Learner's), t = {}",
                a.multiplier
            ),
            thompson,
            Draw::PrecisionAsCovariance,
        ),
        (
            format!("ucb, α = {}", a.alpha),
            Policy::Ucb { alpha: a.alpha },
            Draw::Posterior,
        ),
        ("greedy".to_string(), Policy::Greedy, Draw::Posterior),
        (
            "greedy without updates (the fixed effect alone)".to_string(),
            Policy::Greedy,
            Draw::Frozen,
        ),
        (
            format!("ε-greedy, ε = {}", a.epsilon),
            Policy::EpsilonGreedy { epsilon: a.epsilon },
            Draw::Posterior,
        ),
        ("random".to_string(), Policy::Random, Draw::Posterior),
    ];
    eprintln!(
        "{} events of {} users, per-{:?} effects, K = {}, top {}, windows of {} s, λ = {}, δ = {}, {} seeds",
        world.events.len(),
        world.by_user.len(),
        a.effect,
        a.candidates,
        a.top,
        a.window,
        a.penalty,
        a.delta,
        a.seeds
    );
    // Per seed its candidates; every (seed, policy) run on its own.
    let candidates: Vec<Vec<Vec<Candidate>>> = (0..a.seeds)
        .map(|s| world.candidates(a.candidates, s))
        .collect();
    let jobs: Vec<(usize, u64)> = (0..policies.len())
        .flat_map(|p| (0..a.seeds).map(move |s| (p, s)))
        .collect();
    let runs: Vec<Run> = jobs
        .par_iter()
        .map(|&(p, s)| {
            let (_, policy, draw) = &policies[p];
            world.run(&a, &candidates[s as usize], *policy, *draw, s)
        })
        .collect::<anyhow::Result<_>>()?;
    let of = |p: usize| -> Vec<&Run> {
        jobs.iter()
            .zip(&runs)
            .filter(|((q, _), _)| *q == p)
            .map(|(_, r)| r)
            .collect()
    };
    let n = world.events.len() as f64;
    println!(
        "Bandit simulation on the later 80% of MovieLens-100K, per-{:?} effects: {} requests of K = {} of the user's movies, top {}, over {} seeds (mean ± sd):\n",
        a.effect,
        world.events.len(),
        a.candidates,
        a.top,
        a.seeds
    );
    println!("| policy | reward per request | cumulative regret | regret per request | in the last quarter | seconds per run |");
    println!("|---|---|---|---|---|---|");
    let oracle = mean_sd(&of(0).iter().map(|r| r.oracle).collect::<Vec<_>>()).0;
    println!("| oracle | {:.4} | 0 | 0 | 0 | – |", oracle / n);
    let mut summary = Vec::new();
    let mut series = Vec::new();
    for (p, (name, _, _)) in policies.iter().enumerate() {
        let runs = of(p);
        let rewards: Vec<f64> = runs.iter().map(|r| r.reward / n).collect();
        let regrets: Vec<f64> = runs.iter().map(|r| r.oracle - r.reward).collect();
        let (reward, reward_sd) = mean_sd(&rewards);
        let (regret, regret_sd) = mean_sd(&regrets);
        let seconds = mean_sd(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>()).0;
        let late: Vec<f64> = runs.iter().map(|r| last_quarter(&r.curve)).collect();
        println!(
            "| {name} | {reward:.4} ± {reward_sd:.4} | {regret:.0} ± {regret_sd:.0} | {:.4} | {:.4} | {seconds:.1} |",
            regret / n,
            mean_sd(&late).0
        );
        let points = (0..runs[0].curve.len())
            .map(|i| {
                let x = runs[0].curve[i].0;
                (
                    x,
                    runs.iter().map(|r| r.curve[i].1).sum::<f64>() / runs.len() as f64,
                )
            })
            .collect();
        series.push(Series {
            label: name.clone(),
            points,
        });
        summary.push(serde_json::json!({
            "policy": name, "reward_per_request": rewards, "regret": regrets,
        }));
    }
    println!(
        "\n{}",
        serde_json::json!({ "oracle_per_request": oracle / n, "runs": summary })
    );
    let plot = a.out.join("cumulative-regret.svg");
    line_chart(
        &plot,
        "MovieLens-100K bandit: cumulative regret (mean of the seeds)",
        "requests",
        "regret",
        &series,
    )?;
    eprintln!("plot {}", plot.display());
    if a.check {
        let mean = |p: usize| mean_sd(&of(p).iter().map(|r| r.reward).collect::<Vec<_>>()).0;
        let (thompson, wrong, random) = (0, 1, 6);
        for (other, what) in [
            (random, "random"),
            (wrong, "Thompson with the precision as covariance"),
        ] {
            anyhow::ensure!(
                mean(thompson) > mean(other),
                "Thompson's reward {} is not above {what}'s {}",
                mean(thompson),
                mean(other)
            );
        }
        eprintln!("check: Thompson's reward beats random's and Lambda Learner's draw's");
    }
    Ok(())
}
