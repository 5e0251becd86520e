//! Off-policy evaluation of a ranking policy on a log of another's: each logged line is a
//! round whose action is a candidate at a position; the target policy's probability of that
//! action comes from [`choice_probabilities`] on the same candidates and models, the
//! estimates from [`offline`](super::offline).
//!
//! A ranking is evaluated position by position: a round's reward is credited to the target
//! in proportion to the probability that it puts the logged candidate at the logged
//! position (the "independent" estimator of Li et al. 2018 for slates), so the estimate is
//! the target's mean reward per shown slot.

use super::log::Log;
use super::offline::{estimate, Bootstrap, Estimate, Estimator, Round};
use super::rank::{choice_probabilities, Choice, RankOptions};
use crate::data::{Dataset, Ids};
use crate::error::{Error, Result};
use crate::model::ModelSet;

/// Every estimator's estimate of one target policy on one log.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub rounds: usize,
    /// The log's own mean reward.
    pub logged_reward: f64,
    /// Rounds to which the target gives probability 0.
    pub unsupported: usize,
    pub estimates: Vec<(Estimator, Estimate)>,
}

/// Estimate the mean reward of the policy of `options` from `log`, whose rows are records
/// of `data` (candidates grouped by `requests`, scored by `models`).
pub fn evaluate_policy(
    data: &Dataset,
    requests: &Ids,
    models: &ModelSet,
    options: &RankOptions,
    log: &Log,
    bootstrap: Bootstrap,
) -> Result<Evaluation> {
    let (ids, of_record) = requests;
    let mut choices = Vec::with_capacity(log.logged.len());
    for l in &log.logged {
        let bad = |field: &str, message: String| Error::input(&log.path, l.line, field, message);
        let Some(&request) = of_record.get(l.row) else {
            return Err(bad(
                "row",
                format!("row {} is past the {} candidates", l.row, data.num_rows()),
            ));
        };
        if ids.key(request) != &l.request {
            return Err(bad(
                "request",
                format!(
                    "row {} is a candidate of request {:?}, not of {:?}",
                    l.row,
                    ids.key(request),
                    l.request
                ),
            ));
        }
        choices.push(Choice {
            row: l.row,
            position: l.position,
        });
    }
    let target = choice_probabilities(data, requests, models, options, &choices)?;
    let rounds: Vec<Round> = log
        .logged
        .iter()
        .zip(&target)
        .map(|(l, &target)| Round {
            reward: l.reward,
            logged: l.propensity,
            target,
        })
        .collect();
    let estimates = [Estimator::Ips, Estimator::Snips, Estimator::Replay]
        .into_iter()
        .map(|e| Ok((e, estimate(&rounds, e, bootstrap)?)))
        .collect::<Result<_>>()?;
    Ok(Evaluation {
        rounds: rounds.len(),
        logged_reward: rounds.iter().map(|r| r.reward).sum::<f64>() / rounds.len() as f64,
        unsupported: target.iter().filter(|&&p| p == 0.0).count(),
        estimates,
    })
}
