//! The mini-batches a stream has trained since its last durable commit (a *group*), and
//! when the group is committed.
//!
//! Each mini-batch updates its entities' models in memory at once: the next mini-batch's
//! priors are the models in memory where they are, else the store's. What is in memory
//! stays after a commit, as a cache of the store (a model reads back exactly as it was
//! written), up to [`CACHE_MODELS`] models. The store sees the
//! group in one transaction — its models, the position after its last mini-batch and one
//! [`BatchReport`] row — once it holds [`CommitPolicy::records`] records or
//! [`CommitPolicy::interval`] has passed since its first mini-batch began, and at the end
//! of the stream. The models a mini-batch trains do not depend on where the commits fall
//! (a model reads back from the store exactly as it was written), so a run killed at any
//! moment resumes after its last commit and ends with the models of an uninterrupted run.

use super::report::{BatchReport, Scored};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::{EntityModel, ModelSet, Precision};
use crate::store::{ModelReader, ModelStore};
use std::time::{Duration, Instant};

/// When the mini-batches trained since the last commit are committed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitPolicy {
    /// Commit once the group holds this many records (at least 1).
    pub records: usize,
    /// Commit once this long has passed since the group's first mini-batch began (zero:
    /// after every mini-batch).
    pub interval: Duration,
}

impl CommitPolicy {
    /// Commit every mini-batch on its own.
    pub const EVERY_MINI_BATCH: CommitPolicy = CommitPolicy {
        records: 1,
        interval: Duration::ZERO,
    };
}

impl Default for CommitPolicy {
    /// 100,000 records or one second: ten mini-batches of the default 10,000 records at
    /// most, and per-record updates about once a second (a commit's cost grows with the
    /// entities it writes, far slower than with the records behind them).
    fn default() -> Self {
        CommitPolicy {
            records: 100_000,
            interval: Duration::from_secs(1),
        }
    }
}

/// Models kept in memory past a commit; beyond it, they are dropped at the next commit.
/// (At about 1 KB for 16 coefficients with a diagonal precision, 262,144 models hold
/// about 256 MB.)
pub(super) const CACHE_MODELS: usize = 1 << 18;

/// Precision values prefetched at most (a full precision's first rows).
const PREFETCH_VALUES: usize = 128;

/// Ask for the cache lines of `values`, without waiting for them.
fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = values.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(values)).step_by(64) {
            // SAFETY: a prefetch reads nothing and cannot fault, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// The mini-batches trained since the last commit.
pub(super) struct Group<'s> {
    /// Models kept past a commit ([`CACHE_MODELS`]).
    cache_models: usize,
    /// The newest model of every entity in memory: read from the store, or trained.
    models: ModelSet,
    /// Which of `models`, by position, the group trained (and its commit writes): 0 for
    /// none, `k + 1` for the `k`-th entity the group trained.
    dirty: Vec<u32>,
    /// How many entities the group trained.
    trained: u32,
    /// The store as the last commit left it, opened at the first lookup (a read
    /// transaction takes a file lock) and closed by the next commit.
    reader: Option<ModelReader<'s>>,
    report: Option<BatchReport>,
    scored: Scored,
    began: Option<Instant>,
}

impl Default for Group<'_> {
    fn default() -> Self {
        Group::with_cache(CACHE_MODELS)
    }
}

impl<'s> Group<'s> {
    /// A group that keeps at most `cache_models` models in memory past a commit.
    pub(super) fn with_cache(cache_models: usize) -> Self {
        Group {
            cache_models,
            models: ModelSet::new(),
            dirty: Vec::new(),
            trained: 0,
            reader: None,
            report: None,
            scored: Scored::default(),
            began: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.report.is_none()
    }

    /// The models as they stand, holding those of `batch`'s entities that have one: from
    /// memory, else from the store (read in one transaction per group: the store changes
    /// only by the group's commit).
    pub(super) fn priors(&mut self, store: &'s ModelStore, batch: &Dataset) -> Result<&ModelSet> {
        for key in batch.entities.keys() {
            self.prior_of(store, key)?;
        }
        Ok(&self.models)
    }

    /// `entity`'s model as it stands, if it has one (see [`Self::priors`]), and its place
    /// among the group's models.
    pub(super) fn prior_of(
        &mut self,
        store: &'s ModelStore,
        entity: &str,
    ) -> Result<Option<(&EntityModel, usize)>> {
        self.prior_at(store, entity, None)
    }

    /// [`Self::prior_of`], looked for first at `hint` (a place [`Self::prefetch`] gave):
    /// used when the model there is still `entity`'s.
    pub(super) fn prior_at(
        &mut self,
        store: &'s ModelStore,
        entity: &str,
        hint: Option<usize>,
    ) -> Result<Option<(&EntityModel, usize)>> {
        let models = self.models.models();
        let hinted = hint.filter(|&i| models.get(i).is_some_and(|m| m.entity == entity));
        let mut at = hinted.or_else(|| self.models.position(entity));
        if at.is_none() {
            if self.reader.is_none() {
                self.reader = Some(store.reader()?);
            }
            if let Some(m) = self.reader.as_ref().expect("just opened").model(entity)? {
                at = Some(self.models.insert(m));
            }
        }
        Ok(at.map(|i| (&self.models.models()[i], i)))
    }

    /// Start loading `entity`'s model into the cache, if it is in memory, without waiting
    /// for it: per-record updates touch one model at random each, and a prefetch issued a
    /// few records ahead overlaps that wait with the records between. Returns the model's
    /// place, a hint for [`Self::prior_at`].
    pub(super) fn prefetch(&self, entity: &str) -> Option<usize> {
        let at = self.models.position(entity)?;
        let m = &self.models.models()[at];
        prefetch(&m.features);
        prefetch(&m.means);
        if let Precision::Diagonal(h) | Precision::Full(h) = &m.precision {
            prefetch(&h[..h.len().min(PREFETCH_VALUES)]);
        }
        Some(at)
    }

    /// Mark the start of a mini-batch (the first starts the group's clock).
    pub(super) fn begin(&mut self, now: Instant) {
        self.began.get_or_insert(now);
    }

    /// Add a trained mini-batch: the reader's `report` with its training fields filled,
    /// its records and their progressive `scores`, and the models it trained.
    pub(super) fn add(
        &mut self,
        batch: &Dataset,
        scores: &[f64],
        report: BatchReport,
        models: Vec<EntityModel>,
    ) {
        let placed: Vec<usize> = models.into_iter().map(|m| self.models.insert(m)).collect();
        // The batch's entities are numbered in order of first appearance, as its records
        // are read, so that the scored records take the group's numbering.
        let numbers: Vec<u32> = (batch.entities.keys().iter())
            .map(|key| {
                let at = self.models.position(key);
                self.mark_dirty(at.expect("a mini-batch trains every entity it holds"))
            })
            .collect();
        for (i, &score) in scores.iter().enumerate() {
            let number = numbers[batch.entity[i] as usize];
            self.scored.add_numbered(batch, i, score, number);
        }
        for at in placed {
            self.mark_dirty(at);
        }
        self.add_report(report);
    }

    /// Add a one-record mini-batch: record `i` of `data`, its progressive `score`, its
    /// report and the model it trained, which replaces the one at `at` (from
    /// [`Self::prior_of`]) if the entity had one; returns the model replaced.
    pub(super) fn add_record(
        &mut self,
        data: &Dataset,
        i: usize,
        score: f64,
        report: BatchReport,
        (model, at): (EntityModel, Option<usize>),
    ) -> Option<EntityModel> {
        let (at, replaced) = match at {
            Some(at) => (at, Some(self.models.replace(at, model))),
            None => (self.models.insert(model), None),
        };
        let number = self.mark_dirty(at);
        self.scored.add_numbered(data, i, score, number);
        self.add_report(report);
        replaced
    }

    /// Mark the model at `i` as trained by the group; returns its number among the
    /// entities the group trained.
    fn mark_dirty(&mut self, i: usize) -> u32 {
        if i >= self.dirty.len() {
            self.dirty.resize(i + 1, 0);
        }
        if self.dirty[i] == 0 {
            self.trained += 1;
            self.dirty[i] = self.trained;
        }
        self.dirty[i] - 1
    }

    /// Add a mini-batch's report to the group's.
    fn add_report(&mut self, report: BatchReport) {
        match &mut self.report {
            None => {
                self.report = Some(BatchReport {
                    mini_batches: 1,
                    ..report
                })
            }
            Some(group) => {
                group.batch = report.batch;
                group.mini_batches += 1;
                group.last_line = report.last_line;
                group.input_bytes = report.input_bytes;
                group.new_entities += report.new_entities;
                group.skipped += report.skipped;
                group.late += report.late;
                group.not_converged += report.not_converged;
                group.rows_trained += report.rows_trained;
                group.read_seconds += report.read_seconds;
                group.score_seconds += report.score_seconds;
                group.train_seconds += report.train_seconds;
                group.seconds += report.seconds;
                group.skipped_examples.extend(report.skipped_examples);
                group.unread_keys.extend(report.unread_keys);
            }
        }
    }

    /// Whether the group is to be committed now.
    pub(super) fn due(&self, policy: &CommitPolicy) -> bool {
        self.scored.scores.len() >= policy.records
            || self.began.is_some_and(|t| t.elapsed() >= policy.interval)
    }

    /// The group's report and its scored records (whose metrics the report still lacks),
    /// leaving the group with `spare`'s room for the next group's records; its models wait
    /// for [`Self::handed_off`].
    pub(super) fn take_report(&mut self, spare: Scored) -> (BatchReport, Scored) {
        let report = self.report.take().expect("a group that is not empty");
        self.began = None;
        (report, std::mem::replace(&mut self.scored, spare))
    }

    /// The models the group trained.
    pub(super) fn trained(&self) -> Vec<&EntityModel> {
        let models = self.models.models();
        self.dirty
            .iter()
            .zip(models)
            .filter_map(|(&d, m)| (d != 0).then_some(m))
            .collect()
    }

    /// The group has been handed to the commit thread: the models trained from now on
    /// are the next group's. Its models stay in memory until it lands.
    pub(super) fn handed_off(&mut self) {
        self.dirty.clear();
        self.trained = 0;
    }

    /// The last group handed off is in the store: its models are the store's, kept as a
    /// cache while there are at most `cache_models` (those trained since are kept
    /// whatever their number); the next lookup reads the store as committed.
    pub(super) fn landed(&mut self) {
        if self.models.len() > self.cache_models {
            let models = std::mem::take(&mut self.models).into_models();
            for (m, d) in models.into_iter().zip(std::mem::take(&mut self.dirty)) {
                if d != 0 {
                    self.models.insert(m);
                    self.dirty.push(d);
                }
            }
        }
        self.reader = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureKey;
    use crate::model::HessianType;
    use crate::store::Commit;

    fn model(entity: &str, mean: f64) -> EntityModel {
        EntityModel {
            entity: entity.into(),
            objective: None,
            hessian: HessianType::Diagonal,
            features: vec![FeatureKey::intercept()],
            means: vec![mean],
            precision: Precision::Diagonal(vec![2.0]),
            last_seen: None,
        }
    }

    fn batch(entities: &[&str]) -> Dataset {
        let mut d = Dataset::new();
        for e in entities {
            d.push(e, 1.0, 1.0, 0.0, None, []);
        }
        d
    }

    /// One mini-batch: look its entities up, "train" each to `mean`, and add it.
    fn step<'s>(
        group: &mut Group<'s>,
        store: &'s ModelStore,
        entities: &[&str],
        mean: f64,
    ) -> Vec<f64> {
        let b = batch(entities);
        let priors = group.priors(store, &b).unwrap();
        let seen = entities
            .iter()
            .map(|e| priors.get(e).map_or(f64::NAN, |m| m.means[0]))
            .collect();
        let trained = entities.iter().map(|e| model(e, mean)).collect();
        group.add(
            &b,
            &vec![0.0; entities.len()],
            BatchReport::default(),
            trained,
        );
        seen
    }

    /// Write the group's models to the store and hand it off, as a commit does; returns
    /// the entities written. It has not landed yet.
    fn hand_off(group: &mut Group, store: &ModelStore) -> Vec<String> {
        group.take_report(Scored::default());
        let written = group.trained().iter().map(|m| m.entity.clone()).collect();
        store
            .commit(Commit {
                models: group.trained(),
                ..Default::default()
            })
            .unwrap();
        group.handed_off();
        written
    }

    fn commit(group: &mut Group, store: &ModelStore) -> Vec<String> {
        let written = hand_off(group, store);
        group.landed();
        written
    }

    #[test]
    fn a_commit_writes_what_the_group_trained_and_the_rest_stays_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(&dir.path().join("g.redb")).unwrap();
        let stored = [model("a", 1.0), model("b", 2.0)];
        store
            .commit(Commit {
                models: stored.iter().collect(),
                ..Default::default()
            })
            .unwrap();
        let mut group = Group::with_cache(3);
        // a from the store, then from memory; c has no model yet.
        assert!(step(&mut group, &store, &["a", "c"], 10.0)[..1] == [1.0]);
        assert_eq!(step(&mut group, &store, &["a"], 11.0), [10.0]);
        assert_eq!(commit(&mut group, &store), ["a", "c"]);
        // b is read, and only the trained b is written; a stays in memory, as stored.
        assert_eq!(step(&mut group, &store, &["b", "a"], 20.0), [2.0, 11.0]);
        assert_eq!(commit(&mut group, &store), ["a", "b"]);
        assert_eq!(store.models(["a", "b", "c"]).unwrap().len(), 3);
        // A fourth model overflows the cache: it is dropped at the commit, and the next
        // mini-batch reads the store again, as committed.
        step(&mut group, &store, &["d"], 30.0);
        assert_eq!(commit(&mut group, &store), ["d"]);
        assert!(group.models.is_empty());
        assert_eq!(step(&mut group, &store, &["c", "d"], 40.0), [10.0, 30.0]);
    }

    /// One record of `entity`, looked up at `hint` first, "trained" to `mean`; returns the
    /// prior's mean and its place.
    fn record<'s>(
        group: &mut Group<'s>,
        store: &'s ModelStore,
        entity: &str,
        mean: f64,
        hint: Option<usize>,
    ) -> (f64, Option<usize>) {
        let prior = group.prior_at(store, entity, hint).unwrap();
        let seen = prior.map_or(f64::NAN, |(m, _)| m.means[0]);
        let at = prior.map(|(_, i)| i);
        let b = batch(&[entity]);
        group.add_record(
            &b,
            0,
            0.0,
            BatchReport::default(),
            (model(entity, mean), at),
        );
        (seen, at)
    }

    #[test]
    fn records_number_their_entities_by_first_appearance_across_a_cache_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(&dir.path().join("g.redb")).unwrap();
        let mut group = Group::with_cache(2);
        for e in ["x", "y", "z"] {
            record(&mut group, &store, e, 1.0, None);
        }
        assert_eq!(hand_off(&mut group, &store), ["x", "y", "z"]);
        // The next group starts while the last is in flight, then the last lands: the
        // cache (4 models, room for 2) keeps only this group's, at new places.
        record(&mut group, &store, "z", 2.0, None);
        let (_, w_was_at) = record(&mut group, &store, "w", 2.0, None);
        assert_eq!(w_was_at, None);
        let w_at = group.models.position("w");
        group.landed();
        assert_eq!(group.models.len(), 2);
        assert_ne!(group.models.position("w"), w_at);
        // A hint from before the rebuild is not taken for another entity's place.
        assert_eq!(record(&mut group, &store, "w", 3.0, w_at).0, 2.0);
        assert_eq!(record(&mut group, &store, "z", 3.0, Some(0)).0, 2.0);
        assert_eq!(record(&mut group, &store, "x", 3.0, None).0, 1.0);
        let (_, scored) = group.take_report(Scored::default());
        assert_eq!(scored.entity, [0, 1, 1, 0, 2]);
        assert_eq!(scored.entities, 3);
        let trained: Vec<_> = group.trained().iter().map(|m| m.entity.clone()).collect();
        assert_eq!(trained, ["z", "w", "x"]);
    }
}
