//! The MovieLens-100K stream protocol's pieces, shared by `ml100k_stream` and
//! `ml100k_bandit`: ratings in time order (label: rating ≥ 4), each movie's genres and
//! release decade, each user's gender, age band and occupation, and the global
//! fixed-effect logistic model (λ = 1) over all of them trained on the earliest 20%.

use crate::recbole;
use glmix::data::{Dataset, FeatureKey};
use glmix::model::ModelSet;
use glmix::objective::ObjectiveKind;
use glmix::train::{fit, TrainConfig};
use std::collections::HashMap;
use std::path::Path;

pub struct Rating {
    pub user: String,
    pub item: String,
    pub positive: bool,
    pub timestamp: f64,
}

pub struct MovieLens {
    /// In time order (ties keep file order).
    pub ratings: Vec<Rating>,
    /// Genres and release decade of each movie.
    items: HashMap<String, (Vec<String>, String)>,
    /// Gender, age band and occupation of each user, as (name, term).
    users: HashMap<String, Vec<(String, String)>>,
}

impl MovieLens {
    /// Read the RecBole copy in `dir` (ml-100k.inter, .item, .user).
    pub fn read(dir: &Path) -> MovieLens {
        let mut ratings: Vec<Rating> = recbole::table(&dir.join("ml-100k.inter"))
            .into_iter()
            .map(|r| Rating {
                user: r[0].clone(),
                item: r[1].clone(),
                positive: r[2].parse::<f64>().expect("rating") >= 4.0,
                timestamp: r[3].parse().expect("timestamp"),
            })
            .collect();
        ratings.sort_by(|x, y| x.timestamp.total_cmp(&y.timestamp));
        let items = recbole::table(&dir.join("ml-100k.item"))
            .into_iter()
            .map(|r| {
                let genres = r.get(3).map_or(vec![], |g| {
                    g.split_whitespace().map(str::to_string).collect()
                });
                let decade = r
                    .get(2)
                    .and_then(|y| y.parse::<u32>().ok())
                    .map_or("unknown".into(), |y| format!("{}0s", y / 10));
                (r[0].clone(), (genres, decade))
            })
            .collect();
        let users = recbole::table(&dir.join("ml-100k.user"))
            .into_iter()
            .map(|r| {
                let age: u32 = r[1].parse().expect("age");
                let band = match age {
                    0..=17 => "<18",
                    18..=24 => "18-24",
                    25..=34 => "25-34",
                    35..=44 => "35-44",
                    45..=54 => "45-54",
                    _ => "55+",
                };
                let f = vec![
                    ("gender".into(), r[2].clone()),
                    ("age".into(), band.into()),
                    ("occupation".into(), r[3].clone()),
                ];
                (r[0].clone(), f)
            })
            .collect();
        MovieLens {
            ratings,
            items,
            users,
        }
    }

    /// Ratings in the fixed effect's part, the earliest 20%.
    pub fn split(&self) -> usize {
        self.ratings.len() / 5
    }

    pub fn genres(&self, item: &str) -> &[String] {
        self.items.get(item).map_or(&[][..], |(g, _)| &g[..])
    }

    /// The random effects' features of a movie: one per genre.
    pub fn genre_features(&self, item: &str) -> impl Iterator<Item = (FeatureKey, f64)> + '_ {
        self.genres(item)
            .iter()
            .map(|g| (FeatureKey::new("genre", g), 1.0))
    }

    /// The features of a user: gender, age band and occupation, one each.
    pub fn user_features(&self, user: &str) -> impl Iterator<Item = (FeatureKey, f64)> + '_ {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .map(|(name, term)| (FeatureKey::new(name, term), 1.0))
    }

    /// Every genre feature of any movie and every user feature of any user, each sorted.
    #[allow(dead_code)] // ml100k_stream has no use for them
    pub fn all_features(&self) -> (Vec<FeatureKey>, Vec<FeatureKey>) {
        let mut genres: Vec<FeatureKey> = (self.items.keys())
            .flat_map(|i| self.genre_features(i).map(|(k, _)| k))
            .collect();
        let mut users: Vec<FeatureKey> = (self.users.keys())
            .flat_map(|u| self.user_features(u).map(|(k, _)| k))
            .collect();
        for keys in [&mut genres, &mut users] {
            keys.sort();
            keys.dedup();
        }
        (genres, users)
    }

    /// The fixed effect's features of `user` rating `item`.
    pub fn global_features(&self, user: &str, item: &str) -> Vec<(FeatureKey, f64)> {
        let mut f: Vec<(FeatureKey, f64)> = self.genre_features(item).collect();
        if let Some((_, decade)) = self.items.get(item) {
            f.push((FeatureKey::new("decade", decade), 1.0));
        }
        f.extend(self.user_features(user));
        f
    }

    /// The global fixed effect: logistic, λ = 1, on the earliest 20% of the ratings.
    pub fn fixed_effect(&self) -> anyhow::Result<ModelSet> {
        let mut first = Dataset::new();
        for r in &self.ratings[..self.split()] {
            let label = f64::from(u8::from(r.positive));
            let f = self.global_features(&r.user, &r.item);
            first.push("global", label, 1.0, 0.0, None, f);
        }
        let mut fixed = TrainConfig::new(ObjectiveKind::Logistic);
        fixed.regularization.penalty = 1.0;
        Ok(fit(None, &first, &fixed, &|_| {})?
            .models
            .into_iter()
            .collect())
    }
}
