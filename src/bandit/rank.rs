//! Ranking a request's candidates by a policy.
//!
//! Candidate `c` of entity `e` has the margin `m_c = o_c + x_c·θ_e` under its model's
//! means and the margin variance `s_c² = x_cᵀ Σ_e x_c` under its posterior
//! ([`Posterior`]: `Σ = H⁻¹` for a full precision, `diag(1/H_jj)` for a diagonal one); a
//! candidate whose entity has no model has `m_c = o_c`, `s_c = 0`. Policies, ties kept in
//! candidate (record) order:
//!
//! | policy | order by | propensity of the candidate at position `j` |
//! |---|---|---|
//! | greedy | `m_c` | 1 |
//! | ucb | `m_c + α s_c` | 1 |
//! | thompson | `o_c + x_c·θ̃_e`, `θ̃_e ~ N(θ_e, t Σ_e)` | `(1 + hits)/(1 + N)` over `N` further draws |
//! | epsilon-greedy | greedy's order with probability `1 − ε`, else a uniformly random one | `(1 − ε)[greedy_j = c] + ε/K` (exact) |
//! | random | a uniformly random order | `1/K` |
//!
//! `K` is the request's number of candidates. Thompson sampling draws one model per entity
//! of the request, so candidates of one entity (a user's model scoring several items) are
//! ranked by the same draw, and candidates of distinct entities (a model per item) by
//! independent ones. Its propensity is the Monte Carlo estimate of `P(π_j = c)` from `N`
//! more draws of the whole ranking, the shown one counted as one more: never 0 (so an
//! inverse-propensity weight stays finite) and within about `√(p(1−p)/N)` of `p`.
//!
//! Randomness: each request draws from its own ChaCha8 stream, seeded by the user's seed
//! and selected by the FNV-1a hash of the request id, so a request's choice depends on the
//! seed, its id and its candidates only — not on the thread count, nor on the other
//! requests of the file.

use crate::data::{Dataset, Ids};
use crate::error::{Error, Result};
use crate::io::{fnv1a, FNV1A_EMPTY};
use crate::model::posterior::Posterior;
use crate::model::ModelSet;
use crate::score::MarginPlan;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// How a request's candidates are ordered (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Greedy,
    /// Upper confidence bound `m + α s`.
    Ucb {
        alpha: f64,
    },
    /// Posterior draws with covariance `multiplier · Σ`; `draws` further draws estimate the
    /// propensities (0: none are reported).
    Thompson {
        multiplier: f64,
        draws: usize,
    },
    EpsilonGreedy {
        epsilon: f64,
    },
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankOptions {
    pub policy: Policy,
    /// Candidates shown per request (fewer when a request has fewer).
    pub top: usize,
    pub seed: u64,
}

/// A shown candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    /// The request (its id in the request column).
    pub request: u32,
    /// 0 for the top.
    pub position: usize,
    /// The candidate's record number (0-based).
    pub row: usize,
    /// What the policy ordered by: the mean margin (greedy, ε-greedy, random), the bound
    /// (ucb) or the draw's margin (thompson).
    pub score: f64,
    /// `P(this candidate at this position)`; `None` for Thompson sampling without draws.
    pub propensity: Option<f64>,
}

impl RankOptions {
    fn check(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(Error::Config(format!(
                "{what} must be a finite number ≥ 0, got {v}"
            )))
        };
        match self.policy {
            Policy::Ucb { alpha } if !(alpha >= 0.0 && alpha.is_finite()) => {
                bad("the UCB multiplier α", alpha)
            }
            Policy::Thompson { multiplier, .. }
                if !(multiplier >= 0.0 && multiplier.is_finite()) =>
            {
                bad("the exploration multiplier", multiplier)
            }
            Policy::EpsilonGreedy { epsilon } if !(0.0..=1.0).contains(&epsilon) => Err(
                Error::Config(format!("ε must lie in [0, 1], got {epsilon}")),
            ),
            _ if self.top == 0 => Err(Error::Config(
                "at least one candidate must be shown per request (top ≥ 1)".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Rank the candidates of every request: `requests` gives each record of `data` its
/// request. Returns the shown candidates, request by request in order of the request ids,
/// each request's by position.
pub fn rank(
    data: &Dataset,
    requests: &Ids,
    models: &ModelSet,
    options: &RankOptions,
) -> Result<Vec<Shown>> {
    let ids = &requests.0;
    let shown: Vec<Vec<Shown>> = with_ranker(data, requests, models, options, |ranker, of| {
        (0..ids.len())
            .into_par_iter()
            .map(|r| ranker.request(r as u32, ids.key(r as u32), of.of_request(r)))
            .collect()
    })?;
    Ok(shown.into_iter().flatten().collect())
}

/// Run `work` with the [`Ranker`] of `options` over `data` and a function giving each
/// request's candidate records.
fn with_ranker<T>(
    data: &Dataset,
    requests: &Ids,
    models: &ModelSet,
    options: &RankOptions,
    work: impl FnOnce(&Ranker, &Candidates) -> T,
) -> Result<T> {
    options.check()?;
    let (ids, of_record) = requests;
    assert_eq!(of_record.len(), data.num_rows(), "one request per record");
    let plan = MarginPlan::new(data, models);
    let posteriors = match options.policy {
        Policy::Ucb { .. } => plan.posteriors(1.0)?,
        Policy::Thompson { multiplier, .. } => plan.posteriors(multiplier)?,
        _ => Vec::new(),
    };
    let ranker = Ranker {
        plan: &plan,
        posteriors: &posteriors,
        options,
    };
    Ok(work(&ranker, &Candidates::of(of_record, ids.len())))
}

/// A candidate at a position: what a log says was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The candidate's record number (0-based).
    pub row: usize,
    /// 0 for the top.
    pub position: usize,
}

/// The probability that the policy of `options` puts each of `choices` at its position of
/// its request (the request of its record): what an off-policy estimate weighs a logged
/// round by. Exact for greedy, UCB, ε-greedy and random; for Thompson sampling `hits / N`
/// over `N = draws` draws of the request's ranking from the request's own stream, an
/// unbiased estimate (0 where no draw put it there). A position past the request's
/// candidates has probability 0.
pub fn choice_probabilities(
    data: &Dataset,
    requests: &Ids,
    models: &ModelSet,
    options: &RankOptions,
    choices: &[Choice],
) -> Result<Vec<f64>> {
    if let Policy::Thompson { draws: 0, .. } = options.policy {
        return Err(Error::Config(
            "Thompson sampling's choice probabilities need at least one draw".into(),
        ));
    }
    let (ids, of_record) = requests;
    with_ranker(data, requests, models, options, |ranker, of| {
        // Each request's choices, as (index into `choices`, candidate index, position).
        let mut asked: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); ids.len()];
        for (i, c) in choices.iter().enumerate() {
            assert!(c.row < data.num_rows(), "a choice's row is a record");
            let r = of_record[c.row] as usize;
            let at = of
                .of_request(r)
                .binary_search(&c.row)
                .expect("a record is a candidate of its request");
            asked[r].push((i, at, c.position));
        }
        let answers: Vec<Vec<(usize, f64)>> = (0..ids.len())
            .into_par_iter()
            .map(|r| match asked[r].is_empty() {
                true => Vec::new(),
                false => ranker.probabilities(ids.key(r as u32), of.of_request(r), &asked[r]),
            })
            .collect();
        let mut out = vec![0.0; choices.len()];
        for (i, p) in answers.into_iter().flatten() {
            out[i] = p;
        }
        out
    })
}

/// The records of each request, in record order: request `r`'s are
/// `rows[ptr[r]..ptr[r + 1]]`.
struct Candidates {
    ptr: Vec<usize>,
    rows: Vec<usize>,
}

impl Candidates {
    /// Group the records by `of_record`, their requests' numbers below `requests`.
    fn of(of_record: &[u32], requests: usize) -> Self {
        let mut ptr = vec![0usize; requests + 1];
        for &r in of_record {
            ptr[r as usize + 1] += 1;
        }
        for r in 0..requests {
            ptr[r + 1] += ptr[r];
        }
        let mut next = ptr.clone();
        let mut rows = vec![0; of_record.len()];
        for (i, &r) in of_record.iter().enumerate() {
            rows[next[r as usize]] = i;
            next[r as usize] += 1;
        }
        Candidates { ptr, rows }
    }

    /// Request `r`'s records.
    fn of_request(&self, r: usize) -> &[usize] {
        &self.rows[self.ptr[r]..self.ptr[r + 1]]
    }
}

struct Ranker<'a> {
    plan: &'a MarginPlan<'a>,
    posteriors: &'a [Option<Posterior>],
    options: &'a RankOptions,
}

/// Scratch of one Thompson draw over a request: the drawn coefficients of each of its
/// entities, end to end.
#[derive(Default)]
struct Draws {
    /// `(entity, start of its coefficients in theta)`; `None` for an entity without a model.
    slots: Vec<(usize, Option<usize>)>,
    theta: Vec<f64>,
    one: Vec<f64>,
}

impl Ranker<'_> {
    /// The random stream of the request with id `key`: the user's seed, the stream
    /// selected by the id's hash (see the module doc).
    fn stream(&self, key: &str) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.options.seed);
        rng.set_stream(fnv1a(FNV1A_EMPTY, key.as_bytes()));
        rng
    }

    /// The shown candidates of request `request` (id `key`), whose records are `rows`.
    fn request(&self, request: u32, key: &str, rows: &[usize]) -> Vec<Shown> {
        let mut rng = self.stream(key);
        let k = rows.len();
        let top = self.options.top.min(k);
        let means: Vec<f64> = rows.iter().map(|&i| self.plan.margin(i)).collect();
        let certain = vec![Some(1.0); top];
        let (scores, order, propensity) = match self.options.policy {
            Policy::Greedy => {
                let order = descending(&means);
                (means, order, certain)
            }
            Policy::Ucb { alpha } => {
                let bounds = self.upper_bounds(rows, &means, alpha);
                let order = descending(&bounds);
                (bounds, order, certain)
            }
            Policy::Thompson { draws, .. } => {
                let mut scratch = Draws::default();
                let scores = self.thompson_margins(rows, &mut rng, &mut scratch);
                let order = descending(&scores);
                let propensity = if draws == 0 {
                    vec![None; top]
                } else {
                    let mut hits = vec![0usize; top];
                    for _ in 0..draws {
                        let again =
                            descending(&self.thompson_margins(rows, &mut rng, &mut scratch));
                        for (h, (a, b)) in hits.iter_mut().zip(again.iter().zip(&order)) {
                            *h += usize::from(a == b);
                        }
                    }
                    hits.iter()
                        .map(|&h| Some((h + 1) as f64 / (draws + 1) as f64))
                        .collect()
                };
                (scores, order, propensity)
            }
            Policy::EpsilonGreedy { epsilon } => {
                let greedy = descending(&means);
                let order = if rng.gen::<f64>() < epsilon {
                    shuffled(k, &mut rng)
                } else {
                    greedy.clone()
                };
                let propensity = (0..top)
                    .map(|j| Some(epsilon_greedy(epsilon, k, greedy[j] == order[j])))
                    .collect();
                (means, order, propensity)
            }
            Policy::Random => {
                let order = shuffled(k, &mut rng);
                (means, order, vec![Some(1.0 / k as f64); top])
            }
        };
        order[..top]
            .iter()
            .zip(propensity)
            .enumerate()
            .map(|(position, (&c, propensity))| Shown {
                request,
                position,
                row: rows[c],
                score: scores[c],
                propensity,
            })
            .collect()
    }

    /// The probability of each asked `(index, candidate, position)` of the request `key`
    /// whose records are `rows`, as `(index, probability)`.
    fn probabilities(
        &self,
        key: &str,
        rows: &[usize],
        asked: &[(usize, usize, usize)],
    ) -> Vec<(usize, f64)> {
        let k = rows.len();
        let means: Vec<f64> = rows.iter().map(|&i| self.plan.margin(i)).collect();
        let at =
            |order: &[usize], c: usize, j: usize| f64::from(u8::from(order.get(j) == Some(&c)));
        let answer = |p: &dyn Fn(usize, usize) -> f64| -> Vec<(usize, f64)> {
            asked.iter().map(|&(i, c, j)| (i, p(c, j))).collect()
        };
        match self.options.policy {
            Policy::Greedy => {
                let order = descending(&means);
                answer(&|c, j| at(&order, c, j))
            }
            Policy::Ucb { alpha } => {
                let order = descending(&self.upper_bounds(rows, &means, alpha));
                answer(&|c, j| at(&order, c, j))
            }
            Policy::EpsilonGreedy { epsilon } => {
                let order = descending(&means);
                answer(&|c, j| match j < k {
                    true => epsilon_greedy(epsilon, k, order[j] == c),
                    false => 0.0,
                })
            }
            Policy::Random => answer(&|_, j| match j < k {
                true => 1.0 / k as f64,
                false => 0.0,
            }),
            Policy::Thompson { draws, .. } => {
                let mut rng = self.stream(key);
                let mut scratch = Draws::default();
                let mut hits = vec![0usize; asked.len()];
                for _ in 0..draws {
                    let order = descending(&self.thompson_margins(rows, &mut rng, &mut scratch));
                    for (h, &(_, c, j)) in hits.iter_mut().zip(asked) {
                        *h += usize::from(order.get(j) == Some(&c));
                    }
                }
                asked
                    .iter()
                    .zip(hits)
                    .map(|(&(i, _, _), h)| (i, h as f64 / draws as f64))
                    .collect()
            }
        }
    }

    /// `m_c + α s_c` of each candidate.
    fn upper_bounds(&self, rows: &[usize], means: &[f64], alpha: f64) -> Vec<f64> {
        let mut x = Vec::new();
        rows.iter()
            .zip(means)
            .map(|(&i, &m)| match &self.posteriors[self.plan.entity(i)] {
                Some(p) => m + alpha * self.plan.margin_variance(i, p, &mut x).sqrt(),
                None => m,
            })
            .collect()
    }

    /// The candidates' margins under one draw of each of their entities' models, drawn in
    /// order of the entities' first candidates.
    fn thompson_margins(&self, rows: &[usize], rng: &mut ChaCha8Rng, d: &mut Draws) -> Vec<f64> {
        d.slots.clear();
        d.theta.clear();
        rows.iter()
            .map(|&i| {
                let e = self.plan.entity(i);
                let slot = match d.slots.iter().find(|(f, _)| *f == e) {
                    Some(&(_, slot)) => slot,
                    None => {
                        let slot = self.posteriors[e].as_ref().map(|p| {
                            p.draw(self.plan.means(e), rng, &mut d.one);
                            let start = d.theta.len();
                            d.theta.extend_from_slice(&d.one);
                            start
                        });
                        d.slots.push((e, slot));
                        slot
                    }
                };
                match slot {
                    Some(start) => {
                        let theta = &d.theta[start..start + self.plan.means(e).len()];
                        self.plan.margin_with(i, theta)
                    }
                    None => self.plan.margin(i),
                }
            })
            .collect()
    }
}

/// ε-greedy's probability of a candidate at a position of a request of `k` candidates:
/// `1 − ε + ε/k` where greedy puts it there, `ε/k` elsewhere.
fn epsilon_greedy(epsilon: f64, k: usize, greedy: bool) -> f64 {
    let kept = if greedy { 1.0 - epsilon } else { 0.0 };
    kept + epsilon / k as f64
}

/// Candidate indices by descending score, ties in candidate order.
fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// A uniformly random order of `k` candidates.
fn shuffled(k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..k).collect();
    order.shuffle(rng);
    order
}

#[cfg(test)]
mod tests;
