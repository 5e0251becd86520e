//! Evaluation metrics (DESIGN §1, "Metrics").
//!
//! - AUC: the probability that a random positive scores above a random negative, ties
//!   counting half (Mann–Whitney U / (n₊ n₋)); undefined with one class only.
//! - RMSE: `sqrt(mean (score − label)²)` of the raw score (the margin) against the label.
//! - Log-loss: `mean −log p(label)` with `p = σ(score)`, computed as a softplus, so it
//!   stays finite for any margin.
//! - Per-entity AUC: the mean of the AUCs of the entities that have both classes
//!   (Photon-ML's per-group AUC).
//!
//! A label counts as positive when it equals 1 (the Lambda Learner convention).

use crate::objective::softplus;
use std::collections::BTreeMap;

/// Whether a raw label is a positive.
pub fn is_positive(label: f64) -> bool {
    label == 1.0
}

/// Whether a raw label is one a logistic model reads as meant: 1 (positive), 0 or −1
/// (negative). Any other value also counts as a negative (Lambda Learner's convention),
/// which is usually a mistake (ratings, counts), so the CLI reports such labels.
pub fn is_binary_label(label: f64) -> bool {
    label == 1.0 || label == 0.0 || label == -1.0
}

/// How many of `labels` are not binary ([`is_binary_label`]) and the index of the first.
pub fn non_binary_labels(labels: &[f64]) -> (usize, Option<usize>) {
    let first = labels.iter().position(|&y| !is_binary_label(y));
    let count = first.map_or(0, |i| {
        labels[i..].iter().filter(|&&y| !is_binary_label(y)).count()
    });
    (count, first)
}

/// AUC of `scores` against `positive`; `None` when one class is missing.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = scores.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    // Sum of the (mid-)ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid_rank * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Root mean squared error; `None` for no rows.
pub fn rmse(scores: &[f64], labels: &[f64]) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let s: f64 = scores
        .iter()
        .zip(labels)
        .map(|(s, y)| (s - y) * (s - y))
        .sum();
    Some((s / scores.len() as f64).sqrt())
}

/// Mean log-loss of margins `scores`; `None` for no rows.
pub fn logloss(scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let s: f64 = scores
        .iter()
        .zip(positive)
        .map(|(&m, &p)| if p { softplus(-m) } else { softplus(m) })
        .sum();
    Some(s / scores.len() as f64)
}

/// Per-entity AUC: mean AUC over entities with both classes, and how many there were.
pub fn entity_auc(entities: &[u32], scores: &[f64], positive: &[bool]) -> (Option<f64>, usize) {
    // Ordered by entity, so that the mean is summed in the same order on every run.
    let mut groups: BTreeMap<u32, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
    for ((&e, &s), &p) in entities.iter().zip(scores).zip(positive) {
        let g = groups.entry(e).or_default();
        g.0.push(s);
        g.1.push(p);
    }
    let aucs: Vec<f64> = groups.values().filter_map(|(s, p)| auc(s, p)).collect();
    if aucs.is_empty() {
        (None, 0)
    } else {
        (
            Some(aucs.iter().sum::<f64>() / aucs.len() as f64),
            aucs.len(),
        )
    }
}

/// A metric `glmix eval` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Auc,
    Rmse,
    Logloss,
    EntityAuc,
}

impl Metric {
    /// The metric named `name` (`auc`, `rmse`, `logloss`, `entity-auc`).
    pub fn parse(name: &str) -> crate::Result<Metric> {
        match name {
            "auc" => Ok(Metric::Auc),
            "rmse" => Ok(Metric::Rmse),
            "logloss" => Ok(Metric::Logloss),
            "entity-auc" => Ok(Metric::EntityAuc),
            other => Err(crate::Error::Config(format!(
                "unknown metric {other:?}: expected auc, rmse, logloss or entity-auc"
            ))),
        }
    }

    /// Its key in a report: `auc`, `rmse`, `logloss`, `entity_auc`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Auc => "auc",
            Metric::Rmse => "rmse",
            Metric::Logloss => "logloss",
            Metric::EntityAuc => "entity_auc",
        }
    }

    /// What to report without a choice: AUC, log-loss and per-entity AUC when every label
    /// is binary ([`is_binary_label`]), else RMSE.
    pub fn defaults(labels: &[f64]) -> Vec<Metric> {
        if labels.iter().all(|&y| is_binary_label(y)) {
            vec![Metric::Auc, Metric::Logloss, Metric::EntityAuc]
        } else {
            vec![Metric::Rmse]
        }
    }
}

/// Each of `metrics` of the records of `data` scored `scores` (`None` where it is
/// undefined: an AUC with one class).
pub fn evaluate(
    data: &crate::data::Dataset,
    scores: &[f64],
    metrics: &[Metric],
) -> Vec<(Metric, Option<f64>)> {
    let positive: Vec<bool> = data.label.iter().map(|&y| is_positive(y)).collect();
    metrics
        .iter()
        .map(|&m| {
            let value = match m {
                Metric::Auc => auc(scores, &positive),
                Metric::Rmse => rmse(scores, &data.label),
                Metric::Logloss => logloss(scores, &positive),
                Metric::EntityAuc => entity_auc(&data.entity, scores, &positive).0,
            };
            (m, value)
        })
        .collect()
}

/// AUC over a stream too long to keep every score: counts of positives and negatives in
/// equal-width bins of `σ(score)`. Pairs in different bins are ordered exactly; pairs in
/// one bin count as ties, so the result is within the share of positive–negative pairs
/// that share a bin (at most half of it) of the exact AUC.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AucHistogram {
    positives: Vec<u64>,
    negatives: Vec<u64>,
}

impl AucHistogram {
    /// Bins of width 2⁻¹⁴ in probability.
    pub const BINS: usize = 1 << 14;

    pub fn new() -> Self {
        AucHistogram {
            positives: vec![0; Self::BINS],
            negatives: vec![0; Self::BINS],
        }
    }

    /// Count one record with margin `score`.
    pub fn add(&mut self, score: f64, positive: bool) {
        let p = crate::objective::sigmoid(score);
        let bin = ((p * Self::BINS as f64) as usize).min(Self::BINS - 1);
        if positive {
            self.positives[bin] += 1;
        } else {
            self.negatives[bin] += 1;
        }
    }

    /// The AUC of everything counted; `None` while one class is missing.
    pub fn auc(&self) -> Option<f64> {
        let n_pos: u64 = self.positives.iter().sum();
        let n_neg: u64 = self.negatives.iter().sum();
        if n_pos == 0 || n_neg == 0 {
            return None;
        }
        let (mut wins, mut below) = (0.0, 0.0);
        for (&p, &n) in self.positives.iter().zip(&self.negatives) {
            wins += p as f64 * (below + 0.5 * n as f64);
            below += n as f64;
        }
        Some(wins / (n_pos as f64 * n_neg as f64))
    }
}

impl Default for AucHistogram {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_binary_labels_are_counted_from_the_first() {
        assert_eq!(non_binary_labels(&[1.0, 0.0, -1.0]), (0, None));
        assert_eq!(non_binary_labels(&[1.0, 0.0, 4.0, 1.0, 0.5]), (2, Some(2)));
        assert_eq!(non_binary_labels(&[]), (0, None));
    }

    #[test]
    fn histogram_auc_is_within_its_bin_bound_of_the_exact_auc() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut h = AucHistogram::new();
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let positive = rng.gen_bool(0.3);
            let s: f64 = rng.gen_range(-3.0..3.0) + if positive { 0.8 } else { 0.0 };
            h.add(s, positive);
            scores.push(s);
            labels.push(positive);
        }
        let exact = auc(&scores, &labels).unwrap();
        let binned = h.auc().unwrap();
        assert!((exact - binned).abs() < 1e-4, "{exact} vs {binned}");
        assert_eq!(AucHistogram::new().auc(), None);
        // Ties and order across bins.
        let mut h = AucHistogram::new();
        for (s, p) in [(-5.0, false), (0.0, false), (0.0, true), (5.0, true)] {
            h.add(s, p);
        }
        assert_eq!(h.auc(), Some(0.875));
    }

    #[test]
    fn auc_counts_ties_half() {
        // Pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.4,0.1) win, (0.4,0.4) tie → 3.5/4.
        let a = auc(&[0.1, 0.4, 0.4, 0.8], &[false, false, true, true]).unwrap();
        assert_eq!(a, 0.875);
        assert_eq!(auc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(auc(&[1.0, 2.0], &[false, true]), Some(1.0));
        assert_eq!(auc(&[1.0, 2.0], &[true, false]), Some(0.0));
    }

    #[test]
    fn rmse_and_logloss_are_pinned() {
        assert_eq!(rmse(&[1.0, 3.0], &[0.0, 1.0]), Some((2.5f64).sqrt()));
        let l = logloss(&[0.0, 0.0], &[true, false]).unwrap();
        assert!((l - std::f64::consts::LN_2).abs() < 1e-15);
        assert!(logloss(&[-1000.0], &[true]).unwrap() == 1000.0);
    }

    #[test]
    fn entity_auc_skips_one_class_entities() {
        let (a, n) = entity_auc(
            &[0, 0, 1, 1, 2],
            &[0.1, 0.9, 0.9, 0.1, 0.5],
            &[false, true, false, true, true],
        );
        assert_eq!(n, 2);
        assert_eq!(a, Some(0.5));
    }
}
