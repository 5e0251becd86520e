//! The random effects as a contextual bandit: rank a request's candidates by a policy
//! over the posterior of their models, show the top `k`, log the probability of each
//! choice.
//!
//! Words: a *request* is one decision (a page view, a slot to fill), identified by the
//! value of a record field; its *candidates* are the records with that value, each scored
//! by its entity's model as [`crate::score`] scores a record; the policy orders them and the
//! first `k` are *shown*, each at a *position* (0 is the top). The *propensity* of a shown
//! candidate is the probability that the policy puts it at that position of that request,
//! what off-policy estimators divide by.
//!
//! - [`rank`]: the policies (greedy, UCB, Thompson sampling, ε-greedy, random) and their
//!   propensities;
//! - [`offline`]: estimates of a policy's mean reward from rounds another logged (IPS,
//!   self-normalised IPS, replay) with bootstrap intervals;
//! - [`log`]: the log of shown candidates and their rewards (rank's output plus a reward);
//! - [`evaluate_policy`]: a ranking policy's estimates on such a log.

mod evaluate;
pub mod log;
pub mod offline;
mod rank;

pub use evaluate::{evaluate_policy, Evaluation};
pub use rank::{choice_probabilities, rank, Choice, Policy, RankOptions, Shown};
