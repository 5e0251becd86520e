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
use std::collections::HashMap;

/// Whether a raw label is a positive.
pub fn is_positive(label: f64) -> bool {
    label == 1.0
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
    let mut groups: HashMap<u32, (Vec<f64>, Vec<bool>)> = HashMap::new();
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

#[cfg(test)]
mod tests {
    use super::*;

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
