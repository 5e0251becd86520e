//! A durable store of entity models: one [redb](https://docs.rs/redb) file.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree store (no C library, no server, a
//! stable file format): a write transaction either commits whole or leaves no trace, even
//! when the process is killed mid-commit, and readers see a consistent snapshot while a
//! writer runs. glmix commits every mini-batch of a stream in one transaction — the
//! updated models, the stream position and the batch's metrics together — so a run
//! killed at any moment resumes after the last committed mini-batch with no model lost,
//! torn or updated twice.
//!
//! Tables:
//! - `models`: entity id → the model in a compact binary form ([`codec`]), bit-for-bit
//!   the model written;
//! - `state`: named blobs owned by the writer (the stream position and running metrics);
//! - `batches`: mini-batch number → its metrics as a JSON object.
//!
//! One process writes at a time; any number may read (`glmix score`, `eval`, `store
//! export`) while it does. Reading never writes the file, not even to repair what a
//! killed writer left (`overlay.rs`).
//!
//! **Damage.** Each model carries a checksum ([`codec`]), so a damaged model is refused
//! by name. redb itself answers some damage to its pages by panicking; every store
//! operation runs under `guarded`, which turns such a panic into an [`Error::Store`]
//! saying the file is damaged (the binary's panic hook keeps redb's message off stderr).

pub mod codec;
mod overlay;

use crate::error::{Error, Result};
use crate::model::{EntityModel, ModelSet, Precision};
use overlay::ReadOverlay;
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};
use std::path::{Path, PathBuf};

const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const BATCHES: TableDefinition<u64, &str> = TableDefinition::new("batches");

/// The first bytes of every redb file.
const MAGIC: &[u8; 4] = b"redb";

enum Handle {
    Write(Database),
    Read(ReadOnlyDatabase),
    /// A store a killed writer left, repaired in memory over the untouched file.
    Repaired(Database),
}

/// A model store opened for writing ([`ModelStore::open`]) or reading
/// ([`ModelStore::open_read_only`]).
pub struct ModelStore {
    db: Handle,
    path: PathBuf,
}

/// What one [`ModelStore::commit`] writes, all or nothing.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    /// Models to insert or replace.
    pub models: Vec<&'a EntityModel>,
    /// State blobs to set.
    pub state: Vec<(&'a str, Vec<u8>)>,
    /// A mini-batch's metrics row (JSON object), by batch number.
    pub batch: Option<(u64, String)>,
}

impl ModelStore {
    /// Open the store at `path` for writing, creating it when it does not exist.
    /// Fails when another process has it open for writing.
    pub fn open(path: &Path) -> Result<Self> {
        guarded(path, || {
            let err = store_error(path);
            let db = Database::builder()
                .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                .create(path)
                .map_err(|e| err(e.into()))?;
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            txn.open_table(MODELS).map_err(|e| err(e.into()))?;
            txn.open_table(STATE).map_err(|e| err(e.into()))?;
            txn.open_table(BATCHES).map_err(|e| err(e.into()))?;
            txn.commit().map_err(|e| err(e.into()))?;
            Ok(ModelStore {
                db: Handle::Write(db),
                path: path.to_path_buf(),
            })
        })
    }

    /// Open an existing store for reading; a writer may keep committing meanwhile, and
    /// each read sees the last commit made before it began.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        guarded(path, || {
            if !path.exists() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such model store"),
                ));
            }
            let open = || {
                Database::builder()
                    .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                    .open_read_only(path)
            };
            let db = match open() {
                // A writer was killed: its last commit is intact, but the file's free-space
                // bookkeeping must be rebuilt. That is done in memory; the file is only read.
                Err(redb::DatabaseError::RepairAborted) => {
                    let overlay = std::fs::File::open(path)
                        .and_then(ReadOverlay::new)
                        .map_err(|e| Error::io(path, e))?;
                    let db = Database::builder()
                        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                        .create_with_backend(overlay)
                        .map_err(|e| store_error(path)(e.into()))?;
                    Handle::Repaired(db)
                }
                other => Handle::Read(other.map_err(|e| store_error(path)(e.into()))?),
            };
            Ok(ModelStore {
                db,
                path: path.to_path_buf(),
            })
        })
    }

    /// Whether the last writer closed the file (false when a killed writer's store was
    /// repaired in memory to be read).
    pub fn closed_cleanly(&self) -> bool {
        !matches!(self.db, Handle::Repaired(_))
    }

    /// Whether `path` is a model store (rather than a model JSON-lines file).
    pub fn is_store(path: &Path) -> bool {
        crate::io::starts_with(path, MAGIC)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: redb::Error) -> Error {
        store_error(&self.path)(e)
    }

    fn read(&self) -> Result<ReadTransaction> {
        match &self.db {
            Handle::Write(db) => db.begin_read(),
            Handle::Read(db) => db.begin_read(),
            Handle::Repaired(db) => db.begin_read(),
        }
        .map_err(|e| self.err(e.into()))
    }

    /// Number of models stored.
    pub fn len(&self) -> Result<u64> {
        guarded(&self.path, || {
            let txn = self.read()?;
            let table = txn.open_table(MODELS).map_err(|e| self.err(e.into()))?;
            table.len().map_err(|e| self.err(e.into()))
        })
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The stored models of `entities` (those that have one), in the order asked.
    pub fn models<'e>(&self, entities: impl IntoIterator<Item = &'e str>) -> Result<ModelSet> {
        let reader = self.reader()?;
        let mut set = ModelSet::new();
        for entity in entities {
            if let Some(model) = reader.model(entity)? {
                set.insert(model);
            }
        }
        Ok(set)
    }

    /// A reader of the models as they stand now, for many lookups in one read
    /// transaction (opening one takes a file lock). It does not see later commits.
    pub fn reader(&self) -> Result<ModelReader<'_>> {
        guarded(&self.path, || {
            let txn = self.read()?;
            let table = txn.open_table(MODELS).map_err(|e| self.err(e.into()))?;
            Ok(ModelReader { store: self, table })
        })
    }

    /// Every stored model, in entity-id order.
    pub fn all_models(&self) -> Result<ModelSet> {
        guarded(&self.path, || {
            let txn = self.read()?;
            let table = txn.open_table(MODELS).map_err(|e| self.err(e.into()))?;
            let mut set = ModelSet::new();
            for entry in table.iter().map_err(|e| self.err(e.into()))? {
                let (key, bytes) = entry.map_err(|e| self.err(e.into()))?;
                set.insert(self.decode(key.value(), bytes.value())?);
            }
            Ok(set)
        })
    }

    /// Read every stored model and table: the models that decode, and the entities of
    /// those that do not with why (their checksum, say). An error only when the file
    /// cannot be read at all.
    pub fn check(&self) -> Result<StoreCheck> {
        guarded(&self.path, || {
            let txn = self.read()?;
            let table = txn.open_table(MODELS).map_err(|e| self.err(e.into()))?;
            let mut check = StoreCheck::default();
            for entry in table.iter().map_err(|e| self.err(e.into()))? {
                let (key, bytes) = entry.map_err(|e| self.err(e.into()))?;
                match codec::decode(key.value(), bytes.value()) {
                    Ok(_) => check.models += 1,
                    Err(why) => check.damaged.push((key.value().to_string(), why)),
                }
            }
            check.batches = self.batches()?.len();
            Ok(check)
        })
    }

    fn decode(&self, entity: &str, bytes: &[u8]) -> Result<EntityModel> {
        codec::decode(entity, bytes).map_err(|message| Error::Store {
            path: self.path.clone(),
            message: format!("stored model of entity {entity:?} is damaged: {message}"),
        })
    }

    /// A state blob, if set.
    pub fn state(&self, key: &str) -> Result<Option<Vec<u8>>> {
        guarded(&self.path, || {
            let txn = self.read()?;
            let table = txn.open_table(STATE).map_err(|e| self.err(e.into()))?;
            let value = table.get(key).map_err(|e| self.err(e.into()))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// Every batch metrics row, in batch order.
    pub fn batches(&self) -> Result<Vec<(u64, String)>> {
        guarded(&self.path, || {
            let txn = self.read()?;
            let table = txn.open_table(BATCHES).map_err(|e| self.err(e.into()))?;
            let mut rows = Vec::new();
            for entry in table.iter().map_err(|e| self.err(e.into()))? {
                let (k, v) = entry.map_err(|e| self.err(e.into()))?;
                rows.push((k.value(), v.value().to_string()));
            }
            Ok(rows)
        })
    }

    /// Write `commit` in one durable transaction: after a crash, either all of it is in
    /// the store or none of it is.
    pub fn commit(&self, commit: Commit<'_>) -> Result<()> {
        self.write(&self.encode(commit)?)
    }

    /// Check and encode `commit`, so that [`Self::write`] can write it on another thread.
    /// A model that could not be exported as JSON (non-finite values) is refused here,
    /// before anything is written.
    pub fn encode(&self, commit: Commit<'_>) -> Result<Encoded> {
        let mut encoded = Encoded::default();
        self.encode_into(commit, &mut encoded)?;
        Ok(encoded)
    }

    /// [`Self::encode`] into the buffers of an earlier commit, reused.
    pub fn encode_into(&self, commit: Commit<'_>, encoded: &mut Encoded) -> Result<()> {
        encoded.len = 0;
        for m in &commit.models {
            if let Some(why) = unwritable(m) {
                return Err(Error::Store {
                    path: self.path.clone(),
                    message: format!("entity {:?}: {why}", m.entity),
                });
            }
            if encoded.len == encoded.models.len() {
                let bytes = Vec::with_capacity(64 + 24 * m.means.len());
                encoded.models.push((String::new(), bytes));
            }
            let (entity, bytes) = &mut encoded.models[encoded.len];
            entity.clear();
            entity.push_str(&m.entity);
            bytes.clear();
            codec::encode(m, bytes);
            encoded.len += 1;
        }
        let state = commit.state.into_iter().map(|(k, v)| (k.to_string(), v));
        encoded.state = state.collect();
        encoded.batch = commit.batch;
        Ok(())
    }

    /// Write an encoded commit in one durable transaction (see [`Self::commit`]).
    pub fn write(&self, encoded: &Encoded) -> Result<()> {
        guarded(&self.path, || {
            let Handle::Write(db) = &self.db else {
                return Err(Error::Store {
                    path: self.path.clone(),
                    message: "opened read-only".into(),
                });
            };
            let txn = db.begin_write().map_err(|e| self.err(e.into()))?;
            {
                let mut models = txn.open_table(MODELS).map_err(|e| self.err(e.into()))?;
                for (entity, bytes) in &encoded.models[..encoded.len] {
                    models
                        .insert(entity.as_str(), bytes.as_slice())
                        .map_err(|e| self.err(e.into()))?;
                }
                let mut state = txn.open_table(STATE).map_err(|e| self.err(e.into()))?;
                for (key, value) in &encoded.state {
                    state
                        .insert(key.as_str(), value.as_slice())
                        .map_err(|e| self.err(e.into()))?;
                }
                if let Some((k, row)) = &encoded.batch {
                    let mut batches = txn.open_table(BATCHES).map_err(|e| self.err(e.into()))?;
                    batches
                        .insert(*k, row.as_str())
                        .map_err(|e| self.err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| self.err(e.into()))
        })
    }
}

impl Encoded {
    /// Set the mini-batch metrics row the commit writes (replacing its [`Commit::batch`]).
    pub fn set_batch_row(&mut self, batch: u64, row: String) {
        self.batch = Some((batch, row));
    }
}

/// A [`Commit`] checked and encoded, owning its bytes ([`ModelStore::encode`]).
#[derive(Debug, Default)]
pub struct Encoded {
    /// The first `len` are this commit's; the rest, an earlier one's buffers to reuse.
    models: Vec<(String, Vec<u8>)>,
    len: usize,
    state: Vec<(String, Vec<u8>)>,
    batch: Option<(u64, String)>,
}

/// The models of a store as they stood when [`ModelStore::reader`] was called.
pub struct ModelReader<'s> {
    store: &'s ModelStore,
    table: redb::ReadOnlyTable<&'static str, &'static [u8]>,
}

impl ModelReader<'_> {
    /// The stored model of `entity`, if it has one.
    pub fn model(&self, entity: &str) -> Result<Option<EntityModel>> {
        let store = self.store;
        guarded(&store.path, || {
            match self.table.get(entity).map_err(|e| store.err(e.into()))? {
                Some(bytes) => store.decode(entity, bytes.value()).map(Some),
                None => Ok(None),
            }
        })
    }
}

/// Why a model cannot be stored, if it cannot: what a model file cannot hold, or a
/// diagonal precision that is not positive.
fn unwritable(m: &EntityModel) -> Option<&'static str> {
    match (m.writable_variances(), &m.precision) {
        (Err(why), _) => Some(why),
        (Ok(_), Precision::Diagonal(h)) if h.iter().any(|&v| v <= 0.0) => {
            Some("non-finite or non-positive-definite precision")
        }
        (Ok(_), _) => None,
    }
}

/// What [`ModelStore::check`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreCheck {
    /// Models that decode (and would be exported).
    pub models: usize,
    /// Entities whose stored model does not decode, and why.
    pub damaged: Vec<(String, String)>,
    /// Mini-batch metrics rows.
    pub batches: usize,
}

/// Run `f`, a store operation on the file at `path`, turning a panic inside redb (its
/// answer to some damaged pages) into an error saying the store is damaged.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a damaged page");
        Err(Error::Store {
            path: path.to_path_buf(),
            message: format!("the store file is damaged (redb stopped reading it: {why})"),
        })
    })
}

fn store_error(path: &Path) -> impl Fn(redb::Error) -> Error + '_ {
    move |e| Error::Store {
        path: path.to_path_buf(),
        message: match e {
            redb::Error::DatabaseAlreadyOpen => {
                "another process has this model store open for writing".into()
            }
            e => e.to_string(),
        },
    }
}

/// Models from a model store or a model JSON-lines file, whichever `path` is; from a
/// store only those of `entities`. `missing_precision` is as in
/// [`crate::model::read_models`].
pub fn read_models_for<'e>(
    path: &Path,
    entities: impl IntoIterator<Item = &'e str>,
    missing_precision: Option<f64>,
) -> Result<ModelSet> {
    if ModelStore::is_store(path) {
        ModelStore::open_read_only(path)?.models(entities)
    } else {
        crate::model::read_models(path, missing_precision)
    }
}

/// Every model of a model store or a model file (JSON lines or Parquet), whichever `path`
/// is. `missing_precision` is as in [`crate::model::read_models`].
pub fn read_all_models(path: &Path, missing_precision: Option<f64>) -> Result<ModelSet> {
    if ModelStore::is_store(path) {
        ModelStore::open_read_only(path)?.all_models()
    } else {
        crate::model::read_models(path, missing_precision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureKey;
    use crate::model::{HessianType, Precision};

    fn model(entity: &str, mean: f64) -> EntityModel {
        EntityModel {
            entity: entity.into(),
            objective: Some(crate::objective::ObjectiveKind::BayesLogistic),
            hessian: HessianType::Diagonal,
            features: vec![FeatureKey::intercept(), FeatureKey::new("g", "x")],
            means: vec![mean, 0.1 + mean / 3.0],
            precision: Precision::Diagonal(vec![10.5, 1.0 / 3.0]),
            last_seen: None,
        }
    }

    #[test]
    fn commits_round_trip_bit_for_bit_and_reads_see_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let store = ModelStore::open(&path).unwrap();
        assert!(store.is_empty().unwrap());
        let first = [model("a", 0.1), model("b", -0.7)];
        store
            .commit(Commit {
                models: first.iter().collect(),
                state: vec![("pos", b"1".to_vec())],
                batch: Some((1, "{\"records\":2}".into())),
            })
            .unwrap();
        let second = [model("b", 1.0 / 7.0)];
        store
            .commit(Commit {
                models: second.iter().collect(),
                state: vec![("pos", b"2".to_vec())],
                batch: Some((2, "{\"records\":1}".into())),
            })
            .unwrap();
        drop(store);
        assert!(ModelStore::is_store(&path));

        let store = ModelStore::open_read_only(&path).unwrap();
        assert_eq!(store.len().unwrap(), 2);
        let got = store.models(["b", "zz", "a"]).unwrap();
        assert_eq!(got.models(), &[second[0].clone(), first[0].clone()]);
        assert_eq!(store.all_models().unwrap().len(), 2);
        assert_eq!(store.state("pos").unwrap().unwrap(), b"2");
        assert_eq!(store.batches().unwrap().len(), 2);
        assert!(store.commit(Commit::default()).is_err());
    }

    #[test]
    fn a_refused_model_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(&dir.path().join("m.redb")).unwrap();
        let bad = [model("a", 0.3), model("b", f64::NAN)];
        assert!(store
            .commit(Commit {
                models: bad.iter().collect(),
                ..Default::default()
            })
            .is_err());
        assert!(store.is_empty().unwrap());
    }

    #[test]
    fn a_json_lines_file_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        crate::model::write_models(&path, &[model("a", 0.0)]).unwrap();
        assert!(!ModelStore::is_store(&path));
        assert_eq!(read_models_for(&path, ["a"], None).unwrap().len(), 1);
    }
}
