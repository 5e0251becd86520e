use super::*;
use crate::data::{FeatureKey, Interner};
use crate::model::{EntityModel, HessianType, Precision};

/// Φ(1) and Φ(0.5), the standard normal distribution function (tables, not computed here).
const PHI_1: f64 = 0.841_344_746_068_542_9;
const PHI_HALF: f64 = 0.691_462_461_274_013_1;

fn key(name: &str) -> FeatureKey {
    FeatureKey::new(name, "")
}

fn model(entity: &str, features: &[&str], means: &[f64], precision: Precision) -> EntityModel {
    EntityModel {
        entity: entity.into(),
        objective: None,
        hessian: match precision {
            Precision::Full(_) => HessianType::Full,
            _ => HessianType::Diagonal,
        },
        features: features.iter().map(|f| key(f)).collect(),
        means: means.to_vec(),
        precision,
        last_seen: None,
    }
}

/// A candidate: request id, entity, offset, features.
type Candidate<'a> = (&'a str, &'a str, f64, &'a [(&'a str, f64)]);

fn candidates(list: &[Candidate]) -> (Dataset, Ids) {
    let mut data = Dataset::new();
    let mut ids = Interner::default();
    let mut of_record = Vec::new();
    for &(request, entity, offset, features) in list {
        let features = features.iter().map(|&(f, v)| (key(f), v));
        data.push(entity, 0.0, 1.0, offset, None, features);
        of_record.push(ids.id(&request.to_string()));
    }
    data.sort_features();
    (data, (ids, of_record))
}

/// A candidate of every request: entity, offset, features.
type Slot<'a> = (&'a str, f64, &'a [(&'a str, f64)]);

/// The same candidates in each of `n` requests `r0`, `r1`, ….
fn repeated(n: usize, per_request: &[Slot]) -> (Dataset, Ids) {
    let keys: Vec<String> = (0..n).map(|r| format!("r{r}")).collect();
    let list: Vec<Candidate> = keys
        .iter()
        .flat_map(|k| {
            per_request
                .iter()
                .map(move |&(e, o, f)| (k.as_str(), e, o, f))
        })
        .collect();
    candidates(&list)
}

fn options(policy: Policy, top: usize) -> RankOptions {
    RankOptions {
        policy,
        top,
        seed: 7,
    }
}

/// How often the candidate of record offset `first` within its request is shown on top.
fn share_on_top(shown: &[Shown], per_request: usize, first: usize) -> f64 {
    let top: Vec<&Shown> = shown.iter().filter(|s| s.position == 0).collect();
    top.iter().filter(|s| s.row % per_request == first).count() as f64 / top.len() as f64
}

#[test]
fn greedy_shows_the_largest_mean_margins_in_order() {
    let models: ModelSet = [
        model("a", &["f"], &[2.0], Precision::Diagonal(vec![1.0])),
        model("b", &["f"], &[-1.0], Precision::Diagonal(vec![1.0])),
    ]
    .into_iter()
    .collect();
    // Margins: 0.1 + 2·1 = 2.1, 0.5 − 1·0.5 = 0, 0.3 (no model), 1 + 2·0.5 = 2.
    let (data, requests) = candidates(&[
        ("q", "a", 0.1, &[("f", 1.0)]),
        ("q", "b", 0.5, &[("f", 0.5)]),
        ("q", "c", 0.3, &[("f", 9.0)]),
        ("q", "a", 1.0, &[("f", 0.5)]),
        ("p", "b", 0.0, &[]),
    ]);
    let shown = rank(&data, &requests, &models, &options(Policy::Greedy, 3)).unwrap();
    let got: Vec<(u32, usize, usize, f64)> = shown
        .iter()
        .map(|s| (s.request, s.position, s.row, s.score))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0, 0, 2.1),
            (0, 1, 3, 2.0),
            (0, 2, 2, 0.3),
            (1, 0, 4, 0.0)
        ]
    );
    assert!(shown.iter().all(|s| s.propensity == Some(1.0)));
}

#[test]
fn ucb_adds_alpha_times_the_sd_of_the_margin() {
    // H = [[4, 1], [1, 2]], H⁻¹ = [[2, −1], [−1, 4]]/7; x = (1, 2): xᵀH⁻¹x = 2, so the
    // bound is 0.5 + 1·1 − 2·1 + 3·√2. A diagonal model H = (4, 2) has (1/4 + 4/2) = 2.25.
    let models: ModelSet = [
        model(
            "u",
            &["a", "b"],
            &[1.0, -1.0],
            Precision::Full(vec![4.0, 1.0, 1.0, 2.0]),
        ),
        model(
            "v",
            &["a", "b"],
            &[1.0, -1.0],
            Precision::Diagonal(vec![4.0, 2.0]),
        ),
    ]
    .into_iter()
    .collect();
    let x: &[(&str, f64)] = &[("a", 1.0), ("b", 2.0)];
    let (data, requests) = candidates(&[("q", "u", 0.5, x), ("r", "v", 0.5, x)]);
    let shown = rank(
        &data,
        &requests,
        &models,
        &options(Policy::Ucb { alpha: 3.0 }, 1),
    )
    .unwrap();
    let expected = [-0.5 + 3.0 * 2f64.sqrt(), -0.5 + 3.0 * 1.5];
    for (s, e) in shown.iter().zip(expected) {
        assert!((s.score - e).abs() < 1e-12, "{} vs {e}", s.score);
    }
}

/// Two candidates of entities `a` and `b`: under Thompson sampling with t = 2, a's margin
/// is N(1.5, 2/8) and b's N(0.5, 2·3/8), their difference N(1, 1), so P(a on top) = Φ(1).
fn two_entities() -> (ModelSet, &'static [Slot<'static>]) {
    let models: ModelSet = [
        model("a", &["f"], &[0.0], Precision::Diagonal(vec![8.0])),
        model("b", &["f"], &[0.0], Precision::Full(vec![8.0 / 3.0])),
    ]
    .into_iter()
    .collect();
    (
        models,
        &[("a", 1.5, &[("f", 1.0)]), ("b", 0.5, &[("f", 1.0)])],
    )
}

#[test]
fn thompson_picks_distinct_entities_with_the_gaussian_probability() {
    let (models, per) = two_entities();
    let n = 20_000;
    let (data, requests) = repeated(n, per);
    let thompson = |draws| Policy::Thompson {
        multiplier: 2.0,
        draws,
    };
    let shown = rank(&data, &requests, &models, &options(thompson(0), 1)).unwrap();
    let share = share_on_top(&shown, 2, 0);
    // Standard error √(p(1−p)/n) ≈ 0.0026.
    assert!((share - PHI_1).abs() < 0.012, "{share} vs {PHI_1}");
    assert!(shown.iter().all(|s| s.propensity.is_none()));

    // The propensity of a shown `a`, averaged: (1 + N p)/(1 + N) ≈ p.
    let (data, requests) = repeated(2_000, per);
    let shown = rank(&data, &requests, &models, &options(thompson(400), 1)).unwrap();
    let of_a: Vec<f64> = shown
        .iter()
        .filter(|s| s.row % 2 == 0)
        .map(|s| s.propensity.unwrap())
        .collect();
    let mean = of_a.iter().sum::<f64>() / of_a.len() as f64;
    assert!((mean - PHI_1).abs() < 0.006, "{mean} vs {PHI_1}");
}

#[test]
fn thompson_ranks_one_entitys_candidates_by_one_draw() {
    // One user model, Σ = H⁻¹ = [[2, −1], [−1, 4]]/7, candidates x₁ = (1, 0), x₂ = (0, 1):
    // the margin difference has variance (1, −1)ᵀΣ(1, −1) = 8/7 under one shared draw
    // (6/7 were the candidates drawn independently: Φ(0.577) ≈ 0.718 instead).
    let models: ModelSet = [model(
        "u",
        &["a", "b"],
        &[0.0, 0.0],
        Precision::Full(vec![4.0, 1.0, 1.0, 2.0]),
    )]
    .into_iter()
    .collect();
    let gap = 0.5 * (8.0f64 / 7.0).sqrt();
    let per: &[Slot] = &[("u", gap, &[("a", 1.0)]), ("u", 0.0, &[("b", 1.0)])];
    let (data, requests) = repeated(20_000, per);
    let policy = Policy::Thompson {
        multiplier: 1.0,
        draws: 0,
    };
    let shown = rank(&data, &requests, &models, &options(policy, 1)).unwrap();
    let share = share_on_top(&shown, 2, 0);
    assert!((share - PHI_HALF).abs() < 0.013, "{share} vs {PHI_HALF}");
}

/// Four candidates without features, ranked by their offsets alone: b, d, c, a.
const FOUR_OFFSETS: &[Slot] = &[
    ("a", 0.0, &[]),
    ("b", 3.0, &[]),
    ("c", 1.0, &[]),
    ("d", 2.0, &[]),
];

#[test]
fn epsilon_greedy_propensities_are_exact() {
    let models = ModelSet::new();
    let per = FOUR_OFFSETS;
    let (data, requests) = repeated(10_000, per);
    let epsilon = 0.2;
    let policy = Policy::EpsilonGreedy { epsilon };
    let shown = rank(&data, &requests, &models, &options(policy, 2)).unwrap();
    // The greedy order is b, d; explored slates are uniform.
    for s in &shown {
        let greedy = [1, 3][s.position];
        let p = if s.row % 4 == greedy {
            0.8 + 0.05
        } else {
            0.05
        };
        assert_eq!(s.propensity, Some(p));
    }
    // Standard error √(0.85·0.15/10⁴) ≈ 0.0036.
    let share = share_on_top(&shown, 4, 1);
    assert!((share - 0.85).abs() < 0.018, "{share}");
}

#[test]
fn random_orders_are_uniform() {
    let models = ModelSet::new();
    let per: &[Slot] = &[("a", 5.0, &[]), ("b", 0.0, &[]), ("c", 1.0, &[])];
    let (data, requests) = repeated(9_000, per);
    let shown = rank(&data, &requests, &models, &options(Policy::Random, 3)).unwrap();
    assert!(shown.iter().all(|s| s.propensity == Some(1.0 / 3.0)));
    for c in 0..3 {
        // Standard error √(2/9 / 9000) ≈ 0.005.
        let share = share_on_top(&shown, 3, c);
        assert!((share - 1.0 / 3.0).abs() < 0.025, "candidate {c}: {share}");
    }
}

#[test]
fn choices_depend_only_on_the_seed_the_request_and_its_candidates() {
    let models: ModelSet = (0..5)
        .map(|e| {
            let h = Precision::Diagonal(vec![1.0 + e as f64]);
            model(&format!("e{e}"), &["f"], &[0.1 * e as f64], h)
        })
        .collect();
    let keys: Vec<String> = (0..300).map(|r| format!("r{r}")).collect();
    let entities: Vec<String> = (0..5).map(|e| format!("e{e}")).collect();
    let f: &[(&str, f64)] = &[("f", 1.0)];
    let list: Vec<Candidate> = keys
        .iter()
        .flat_map(|k| {
            entities
                .iter()
                .map(move |e| (k.as_str(), e.as_str(), 0.0, f))
        })
        .collect();
    let run = |list: &[Candidate], threads: usize, seed: u64| {
        let (data, requests) = candidates(list);
        let policy = Policy::Thompson {
            multiplier: 1.0,
            draws: 20,
        };
        let o = RankOptions {
            seed,
            ..options(policy, 2)
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let shown = pool
            .install(|| rank(&data, &requests, &models, &o))
            .unwrap();
        // Request id, position, entity, score and propensity of each shown candidate.
        shown
            .into_iter()
            .map(|s| {
                let key = requests.0.key(s.request).clone();
                let entity = data.entities.key(data.entity[s.row]).clone();
                (key, s.position, entity, s.score, s.propensity)
            })
            .collect::<Vec<_>>()
    };
    let one = run(&list, 1, 3);
    assert_eq!(one, run(&list, 3, 3));
    assert_ne!(one, run(&list, 1, 4));
    // The odd requests alone choose as they did among all.
    let odd: Vec<Candidate> = list
        .iter()
        .copied()
        .filter(|c| c.0.ends_with(['1', '3', '5', '7', '9']))
        .collect();
    let odd_choices = run(&odd, 2, 3);
    let expected: Vec<_> = one
        .into_iter()
        .filter(|c| c.0.ends_with(['1', '3', '5', '7', '9']))
        .collect();
    assert_eq!(odd_choices, expected);
}

#[test]
fn a_requests_candidates_need_not_be_consecutive() {
    let c = Candidates::of(&[1, 0, 1, 2, 0], 3);
    assert_eq!(
        (c.of_request(0), c.of_request(1)),
        (&[1, 4][..], &[0, 2][..])
    );
    assert_eq!(c.of_request(2), [3]);
}

#[test]
fn bad_settings_and_models_without_a_precision_are_refused() {
    let models: ModelSet = [model("a", &["f"], &[1.0], Precision::None)]
        .into_iter()
        .collect();
    let (data, requests) = candidates(&[("q", "a", 0.0, &[("f", 1.0)])]);
    let thompson = Policy::Thompson {
        multiplier: 1.0,
        draws: 0,
    };
    for policy in [thompson, Policy::Ucb { alpha: 1.0 }] {
        assert!(matches!(
            rank(&data, &requests, &models, &options(policy, 1)),
            Err(Error::Config(_))
        ));
    }
    assert!(rank(&data, &requests, &models, &options(Policy::Greedy, 1)).is_ok());
    for policy in [
        Policy::Ucb { alpha: -1.0 },
        Policy::EpsilonGreedy { epsilon: 1.5 },
        Policy::Thompson {
            multiplier: f64::NAN,
            draws: 0,
        },
    ] {
        assert!(rank(&data, &requests, &ModelSet::new(), &options(policy, 1)).is_err());
    }
    assert!(rank(
        &data,
        &requests,
        &ModelSet::new(),
        &options(Policy::Greedy, 0)
    )
    .is_err());
}

#[test]
fn choice_probabilities_are_the_policies_own() {
    let models = ModelSet::new();
    let per = FOUR_OFFSETS;
    let (data, requests) = repeated(2, per);
    // b on top, d second, c at a position past the request's four candidates.
    let choices = [
        Choice {
            row: 1,
            position: 0,
        },
        Choice {
            row: 3,
            position: 0,
        },
        Choice {
            row: 7,
            position: 1,
        },
        Choice {
            row: 6,
            position: 4,
        },
    ];
    let of = |policy| {
        choice_probabilities(&data, &requests, &models, &options(policy, 1), &choices).unwrap()
    };
    assert_eq!(of(Policy::Greedy), [1.0, 0.0, 1.0, 0.0]);
    assert_eq!(of(Policy::Ucb { alpha: 3.0 }), [1.0, 0.0, 1.0, 0.0]);
    assert_eq!(
        of(Policy::EpsilonGreedy { epsilon: 0.2 }),
        [0.8 + 0.05, 0.05, 0.8 + 0.05, 0.0]
    );
    assert_eq!(of(Policy::Random), [0.25, 0.25, 0.25, 0.0]);
}

#[test]
fn thompson_choice_probabilities_estimate_the_gaussian_one() {
    let (models, per) = two_entities();
    let (data, requests) = repeated(1, per);
    let choices = [
        Choice {
            row: 0,
            position: 0,
        },
        Choice {
            row: 1,
            position: 0,
        },
        Choice {
            row: 1,
            position: 1,
        },
    ];
    let policy = |draws| Policy::Thompson {
        multiplier: 2.0,
        draws,
    };
    let p = choice_probabilities(
        &data,
        &requests,
        &models,
        &options(policy(8000), 1),
        &choices,
    )
    .unwrap();
    // Standard error √(Φ(1)(1 − Φ(1))/8000) ≈ 0.0038; every draw puts one of the two on
    // top, the other second.
    assert!((p[0] - PHI_1).abs() < 0.016, "{p:?}");
    assert_eq!(p[0] + p[1], 1.0);
    assert_eq!(p[2], p[0]);
    assert!(
        choice_probabilities(&data, &requests, &models, &options(policy(0), 1), &choices).is_err()
    );
}
