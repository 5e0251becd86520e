//! Off-policy estimates of a target policy's mean reward from rounds logged by another
//! policy (Dudík, Langford & Li 2011; Li, Chu, Langford & Wang 2011).
//!
//! Round `i` of the log showed action `a_i` and saw reward `r_i`; the logging policy chose
//! it with probability `p_i` (its propensity), the target policy would with `π_i`. With the
//! importance weight `w_i = π_i / p_i`:
//!
//! - inverse propensity scoring, `IPS = (1/n) Σ w_i r_i`: unbiased wherever `p_i > 0` when
//!   `π_i > 0`, with a variance that grows with the weights;
//! - self-normalised IPS, `SNIPS = Σ w_i r_i / Σ w_i`: biased by `O(1/n)`, far steadier;
//! - replay, `Σ π_i r_i / Σ π_i`: for a uniformly random log, the mean reward of the
//!   rounds where the target agrees with the log (the expected count of them for a
//!   stochastic target); under any other log it is biased towards the logging policy's
//!   choices, and `SNIPS` is the estimate to use.
//!
//! The effective number of rounds `(Σ w_i)² / Σ w_i²` says how many rounds of the target's
//! own the log is worth. Intervals are bootstrap percentiles: `B` resamples of the rounds
//! with replacement from a seeded ChaCha8 stream, each estimated again; resamples where the
//! estimate is undefined (no weight) are left out and counted.

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One logged round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    pub reward: f64,
    /// The logging policy's probability of the logged action, in (0, 1].
    pub logged: f64,
    /// The target policy's probability of the same action, in [0, 1].
    pub target: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    Ips,
    Snips,
    Replay,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    pub resamples: usize,
    /// Coverage of the interval, in (0, 1): 0.95 for the 2.5% and 97.5% percentiles.
    pub level: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// `(Σ w)² / Σ w²`.
    pub effective_rounds: f64,
    /// Resamples whose estimate was defined (the interval is theirs).
    pub resamples_used: usize,
}

/// The estimate of the target's mean reward over `rounds`, with a bootstrap interval.
pub fn estimate(rounds: &[Round], estimator: Estimator, bootstrap: Bootstrap) -> Result<Estimate> {
    check(rounds, bootstrap)?;
    let value = point(rounds.iter(), estimator).ok_or_else(|| {
        Error::Config("the target policy gives every logged action probability 0".into())
    })?;
    let (sum, squares) = rounds.iter().fold((0.0, 0.0), |(s, q), r| {
        let w = r.target / r.logged;
        (s + w, q + w * w)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(bootstrap.seed);
    let n = rounds.len();
    let mut values: Vec<f64> = (0..bootstrap.resamples)
        .filter_map(|_| point((0..n).map(|_| &rounds[rng.gen_range(0..n)]), estimator))
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - bootstrap.level) / 2.0;
    let (low, high) = match values.len() {
        0 => (f64::NAN, f64::NAN),
        _ => (quantile(&values, tail), quantile(&values, 1.0 - tail)),
    };
    Ok(Estimate {
        value,
        low,
        high,
        effective_rounds: sum * sum / squares,
        resamples_used: values.len(),
    })
}

fn check(rounds: &[Round], bootstrap: Bootstrap) -> Result<()> {
    if rounds.is_empty() {
        return Err(Error::Config("the log has no rounds".into()));
    }
    if let Some((i, r)) = rounds.iter().enumerate().find(|(_, r)| {
        !(r.logged > 0.0
            && r.logged <= 1.0
            && (0.0..=1.0).contains(&r.target)
            && r.reward.is_finite())
    }) {
        return Err(Error::Config(format!(
            "round {}: propensity {} must lie in (0, 1], target probability {} in [0, 1] and the reward {} be finite",
            i + 1,
            r.logged,
            r.target,
            r.reward
        )));
    }
    if !(bootstrap.level > 0.0 && bootstrap.level < 1.0) {
        return Err(Error::Config(format!(
            "the interval's level must lie in (0, 1), got {}",
            bootstrap.level
        )));
    }
    Ok(())
}

/// The estimate over `rounds`; `None` where its denominator is 0.
fn point<'a>(rounds: impl Iterator<Item = &'a Round>, estimator: Estimator) -> Option<f64> {
    let (mut top, mut bottom, mut n) = (0.0, 0.0, 0usize);
    for r in rounds {
        let weight = match estimator {
            Estimator::Ips | Estimator::Snips => r.target / r.logged,
            Estimator::Replay => r.target,
        };
        top += weight * r.reward;
        bottom += weight;
        n += 1;
    }
    match estimator {
        Estimator::Ips => Some(top / n as f64),
        Estimator::Snips | Estimator::Replay => (bottom > 0.0).then(|| top / bottom),
    }
}

/// The `q` quantile of sorted `values`, interpolated linearly between order statistics.
fn quantile(values: &[f64], q: f64) -> f64 {
    let at = q * (values.len() - 1) as f64;
    let (below, frac) = (at.floor() as usize, at.fract());
    match values.get(below + 1) {
        Some(next) => values[below] + frac * (next - values[below]),
        None => values[below],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: Bootstrap = Bootstrap {
        resamples: 2000,
        level: 0.95,
        seed: 1,
    };

    fn round(reward: f64, logged: f64, target: f64) -> Round {
        Round {
            reward,
            logged,
            target,
        }
    }

    #[test]
    fn the_estimators_on_a_tiny_log_are_the_hand_computed_values() {
        // w = 2, 2, 0, 0.5: IPS = (2 + 0.5)/4, SNIPS = 2.5/4.5, replay = (1 + 0.4)/1.9,
        // effective rounds 4.5²/(4 + 4 + 0.25).
        let log = [
            round(1.0, 0.5, 1.0),
            round(0.0, 0.25, 0.5),
            round(1.0, 0.2, 0.0),
            round(1.0, 0.8, 0.4),
        ];
        for (estimator, value) in [
            (Estimator::Ips, 0.625),
            (Estimator::Snips, 2.5 / 4.5),
            (Estimator::Replay, 1.4 / 1.9),
        ] {
            let e = estimate(&log, estimator, BOOT).unwrap();
            assert!(
                (e.value - value).abs() < 1e-15,
                "{estimator:?}: {}",
                e.value
            );
            assert!(
                e.low <= e.value && e.value <= e.high,
                "{estimator:?}: {e:?}"
            );
            assert!((e.effective_rounds - 20.25 / 8.25).abs() < 1e-14);
        }
    }

    #[test]
    fn the_logging_policy_on_its_own_log_gets_its_observed_reward() {
        let rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
        // A uniform log over 4 actions, evaluated as itself.
        let uniform: Vec<Round> = rewards.iter().map(|&r| round(r, 0.25, 0.25)).collect();
        for estimator in [Estimator::Ips, Estimator::Snips, Estimator::Replay] {
            assert_eq!(estimate(&uniform, estimator, BOOT).unwrap().value, mean);
        }
        // Any log: IPS and SNIPS weigh every round 1.
        let skewed: Vec<Round> = rewards
            .iter()
            .enumerate()
            .map(|(i, &r)| round(r, 0.1 + 0.1 * i as f64, 0.1 + 0.1 * i as f64))
            .collect();
        for estimator in [Estimator::Ips, Estimator::Snips] {
            let e = estimate(&skewed, estimator, BOOT).unwrap();
            assert!((e.value - mean).abs() < 1e-15);
            assert_eq!(e.effective_rounds, rewards.len() as f64);
        }
    }

    #[test]
    fn the_bootstrap_interval_has_the_width_of_the_normal_one() {
        // 10,000 uniform rounds with reward 1 w.p. 0.3: the mean's standard error is
        // √(0.21/10⁴) = 0.00458, so a 95% interval is about ±0.0090.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let log: Vec<Round> = (0..10_000)
            .map(|_| round(f64::from(u8::from(rng.gen::<f64>() < 0.3)), 0.5, 0.5))
            .collect();
        let e = estimate(&log, Estimator::Ips, BOOT).unwrap();
        let half = (e.high - e.low) / 2.0;
        assert!((half - 1.96 * 0.00458).abs() < 0.0012, "{e:?}");
        assert_eq!(e.resamples_used, BOOT.resamples);
        assert_eq!(e, estimate(&log, Estimator::Ips, BOOT).unwrap());
    }

    #[test]
    fn bad_logs_are_refused() {
        assert!(estimate(&[], Estimator::Ips, BOOT).is_err());
        for r in [
            round(1.0, 0.0, 0.5),
            round(1.0, 0.5, 1.5),
            round(f64::NAN, 0.5, 0.5),
        ] {
            assert!(estimate(&[r], Estimator::Snips, BOOT).is_err(), "{r:?}");
        }
        let never = [round(1.0, 0.5, 0.0)];
        assert!(estimate(&never, Estimator::Snips, BOOT).is_err());
        assert_eq!(estimate(&never, Estimator::Ips, BOOT).unwrap().value, 0.0);
    }
}
