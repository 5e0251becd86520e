//! Off-policy evaluation of glmix's ranking policies on the Open Bandit Dataset sample.
//!
//! ```text
//! cargo run --release --example open_bandit -- --data ../shared/data/open-bandit-sample
//! ```
//!
//! The sample holds 10,000 logged rounds of a uniform-random policy (`random/all.csv`) and
//! 10,000 of a Bernoulli Thompson-sampling one (`bts/all.csv`) on ZOZOTOWN's "all"
//! campaign: each round shows one of 80 items at one of 3 positions to a user with four
//! hashed categorical features, with the logging policy's propensity of that item at that
//! position and whether it was clicked.
//!
//! Protocol: models are trained on one log and every policy they define is evaluated on
//! the other (so no round both trains and evaluates a policy). A global fixed-effect
//! logistic model (λ = 1) over the user's and the item's categorical features gives each
//! (round, item) its offset; per-item `bayes-logistic` random effects (λ = 1, diagonal
//! precision) over the user's features and the user-item affinity refine it. Each
//! evaluation round is a request with all 80 items as candidates; the target policy's
//! probability of the logged item at the logged position comes from
//! [`glmix::bandit::choice_probabilities`] (exact, or 200 Thompson draws), and IPS,
//! self-normalised IPS and replay estimate its click rate per shown slot with 95%
//! bootstrap intervals (1000 resamples).
//!
//! With `--check`, the run fails unless the uniform-random target evaluated on the random
//! log gives exactly that log's click rate (every weight is 1), as a check of the wiring on
//! real rows.

use clap::Parser;
use glmix::bandit::log::{Log, Logged};
use glmix::bandit::offline::{Bootstrap, Estimator};
use glmix::bandit::{evaluate_policy, Evaluation, Policy, RankOptions};
use glmix::data::{Dataset, FeatureKey, Ids, Interner};
use glmix::model::ModelSet;
use glmix::objective::ObjectiveKind;
use glmix::score::score;
use glmix::train::{fit, TrainConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Args {
    /// The open-bandit-sample folder (random/ and bts/, each with all.csv and
    /// item_context.csv).
    #[arg(long, default_value = "../shared/data/open-bandit-sample")]
    data: PathBuf,
    /// Thompson draws per request that estimate the target's choice probabilities.
    #[arg(long, default_value_t = 200)]
    draws: usize,
    /// Bootstrap resamples per estimate.
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
    /// Fail unless the random target on the random log gives its observed click rate.
    #[arg(long)]
    check: bool,
}

/// One logged round.
struct Round {
    item: usize,
    /// 0 for the top.
    position: usize,
    click: f64,
    propensity: f64,
    /// The four hashed user features.
    user: Vec<String>,
    /// The user-item affinity of each of the 80 items.
    affinity: Vec<f64>,
}

/// A campaign's log: rounds and the items' categorical features.
struct Campaign {
    name: &'static str,
    rounds: Vec<Round>,
    items: Vec<Vec<String>>,
}

fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (pass --data)", path.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let split = |l: &str| l.split(',').map(str::to_string).collect::<Vec<_>>();
    let header = split(lines.next().expect("a header"));
    (header, lines.map(split).collect())
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn campaign(dir: &Path, name: &'static str) -> Campaign {
    let (h, rows) = csv(&dir.join(name).join("all.csv"));
    let at = |c: &str| column(&h, c);
    let (item, position, click, propensity) = (
        at("item_id"),
        at("position"),
        at("click"),
        at("propensity_score"),
    );
    let user: Vec<usize> = (0..4).map(|k| at(&format!("user_feature_{k}"))).collect();
    let affinity: Vec<usize> = (0..80)
        .map(|k| at(&format!("user-item_affinity_{k}")))
        .collect();
    let number = |r: &[String], c: usize| -> f64 { r[c].parse().expect("a number") };
    let rounds = rows
        .iter()
        .map(|r| Round {
            item: r[item].parse().expect("an item id"),
            position: r[position].parse::<usize>().expect("a position") - 1,
            click: number(r, click),
            propensity: number(r, propensity),
            user: user.iter().map(|&c| r[c].clone()).collect(),
            affinity: affinity.iter().map(|&c| number(r, c)).collect(),
        })
        .collect();
    let (h, rows) = csv(&dir.join(name).join("item_context.csv"));
    let features: Vec<usize> = (1..4)
        .map(|k| column(&h, &format!("item_feature_{k}")))
        .collect();
    let mut items = vec![Vec::new(); 80];
    for r in &rows {
        let id: usize = r[column(&h, "item_id")].parse().expect("an item id");
        items[id] = features.iter().map(|&c| r[c].clone()).collect();
    }
    Campaign {
        name,
        rounds,
        items,
    }
}

fn user_features(r: &Round) -> impl Iterator<Item = (FeatureKey, f64)> + '_ {
    r.user
        .iter()
        .enumerate()
        .map(|(k, v)| (FeatureKey::new(format!("user{k}"), v), 1.0))
}

/// The fixed effect's features of item `item` shown in round `r`.
fn global_features<'a>(
    c: &'a Campaign,
    r: &'a Round,
    item: usize,
) -> impl Iterator<Item = (FeatureKey, f64)> + 'a {
    let items = c.items[item]
        .iter()
        .enumerate()
        .map(|(k, v)| (FeatureKey::new(format!("item{k}"), v), 1.0));
    user_features(r).chain(items)
}

/// A random effect's features: the user's and the user-item affinity.
fn item_features(r: &Round, item: usize) -> impl Iterator<Item = (FeatureKey, f64)> + '_ {
    let affinity =
        (r.affinity[item] != 0.0).then(|| (FeatureKey::new("affinity", ""), r.affinity[item]));
    user_features(r).chain(affinity)
}

/// The fixed effect and the per-item random effects trained on `c`'s log.
fn train(c: &Campaign) -> anyhow::Result<(ModelSet, ModelSet)> {
    let mut global = Dataset::new();
    for r in &c.rounds {
        global.push(
            "global",
            r.click,
            1.0,
            0.0,
            None,
            global_features(c, r, r.item),
        );
    }
    let mut fixed = TrainConfig::new(ObjectiveKind::Logistic);
    fixed.regularization.penalty = 1.0;
    let fixed: ModelSet = fit(None, &global, &fixed, &|_| {})?
        .models
        .into_iter()
        .collect();
    let offsets = score(&global, &fixed, None)?;
    let mut per_item = Dataset::new();
    for (r, &o) in c.rounds.iter().zip(&offsets) {
        per_item.push(
            &r.item.to_string(),
            r.click,
            1.0,
            o,
            None,
            item_features(r, r.item),
        );
    }
    let mut random = TrainConfig::new(ObjectiveKind::BayesLogistic);
    random.regularization.penalty = 1.0;
    let items = fit(None, &per_item, &random, &|_| {})?
        .models
        .into_iter()
        .collect();
    Ok((fixed, items))
}

/// Every round of `c` as a request of all 80 items (row `80 · round + item`), each with the
/// fixed effect's offset, and the log of what was shown.
fn requests(c: &Campaign, fixed: &ModelSet) -> anyhow::Result<(Dataset, Ids, Log)> {
    let mut global = Dataset::new();
    for r in &c.rounds {
        for item in 0..80 {
            global.push("global", 0.0, 1.0, 0.0, None, global_features(c, r, item));
        }
    }
    let offsets = score(&global, fixed, None)?;
    let (mut data, mut ids, mut of_record, mut logged) =
        (Dataset::new(), Interner::default(), Vec::new(), Vec::new());
    for (i, r) in c.rounds.iter().enumerate() {
        let request = i.to_string();
        let id = ids.id(&request);
        for item in 0..80 {
            let o = offsets[80 * i + item];
            data.push(&item.to_string(), 0.0, 1.0, o, None, item_features(r, item));
            of_record.push(id);
        }
        logged.push(Logged {
            request,
            row: 80 * i + r.item,
            position: r.position,
            propensity: r.propensity,
            reward: r.click,
            line: i + 2,
        });
    }
    data.sort_features();
    let log = Log {
        path: format!("{}/all.csv", c.name).into(),
        logged,
    };
    Ok((data, (ids, of_record), log))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let logs = [campaign(&a.data, "random"), campaign(&a.data, "bts")];
    let bootstrap = Bootstrap {
        resamples: a.resamples,
        level: 0.95,
        seed: 1,
    };
    let policies = [
        ("random", Policy::Random),
        ("greedy", Policy::Greedy),
        ("ucb, α = 1", Policy::Ucb { alpha: 1.0 }),
        (
            "thompson, t = 1",
            Policy::Thompson {
                multiplier: 1.0,
                draws: a.draws,
            },
        ),
        ("ε-greedy, ε = 0.1", Policy::EpsilonGreedy { epsilon: 0.1 }),
    ];
    println!("| log (models from the other) | target policy | IPS [95%] | SNIPS [95%] | replay [95%] | effective rounds |");
    println!("|---|---|---|---|---|---|");
    let mut results: HashMap<(&str, &str), Evaluation> = HashMap::new();
    for (evaluated, trained) in [(&logs[0], &logs[1]), (&logs[1], &logs[0])] {
        let (fixed, items) = train(trained)?;
        let (data, ids, log) = requests(evaluated, &fixed)?;
        for &(name, policy) in &policies {
            let options = RankOptions {
                policy,
                top: 3,
                seed: 7,
            };
            let e = evaluate_policy(&data, &ids, &items, &options, &log, bootstrap)?;
            let cell = |estimator: Estimator| {
                let (_, v) = e
                    .estimates
                    .iter()
                    .find(|(x, _)| *x == estimator)
                    .expect("every estimator");
                format!("{:.4} [{:.4}, {:.4}]", v.value, v.low, v.high)
            };
            println!(
                "| {} (mean click {:.4}) | {name} | {} | {} | {} | {:.0} |",
                evaluated.name,
                e.logged_reward,
                cell(Estimator::Ips),
                cell(Estimator::Snips),
                cell(Estimator::Replay),
                e.estimates[0].1.effective_rounds
            );
            results.insert((evaluated.name, name), e);
        }
    }
    if a.check {
        let e = &results[&("random", "random")];
        for (estimator, v) in &e.estimates {
            anyhow::ensure!(
                (v.value - e.logged_reward).abs() < 1e-12,
                "the random target on the random log: {estimator:?} gives {}, not the log's {}",
                v.value,
                e.logged_reward
            );
        }
        eprintln!(
            "check: the random target on the random log gives its click rate {:.4}",
            e.logged_reward
        );
    }
    Ok(())
}
