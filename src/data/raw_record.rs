//! The fields of one NTV record as the fast readers find them, before the checks of
//! [`super::fast_record::parse_fast`]: what the byte scanner ([`super::scan`]) and the serde
//! visitor ([`super::fast_record`]) both produce, so that neither depends on the other.

use super::FeatureKey;
use compact_str::CompactString;

/// Keys that go unread without a notice: `timestamp`, which glmix writes and a stream's
/// `--time-field` reads by default.
pub(crate) const QUIETLY_UNREAD: [&str; 1] = ["timestamp"];

/// Keep the first in key order of the unread keys seen (as the checked path, whose objects
/// are sorted, finds it).
pub(super) fn note_unread(first: &mut Option<CompactString>, key: &str) {
    if QUIETLY_UNREAD.contains(&key) {
        return;
    }
    if first.as_deref().is_none_or(|f| key < f) {
        *first = Some(key.into());
    }
}

/// Fields as read (by the scanner or the serde visitor), before the checks of
/// [`super::fast_record::parse_fast`].
#[derive(Debug, PartialEq)]
pub(super) struct RawRecord {
    /// Inline up to 24 bytes: most ids cost no allocation per record.
    pub entity: Option<CompactString>,
    pub label: Option<f64>,
    pub weight: Option<f64>,
    pub offset: Option<f64>,
    pub timestamp: Option<f64>,
    pub features: Option<Vec<(FeatureKey, f64)>>,
    pub ids: Vec<Option<String>>,
    pub unread: Option<CompactString>,
}

impl RawRecord {
    /// No field read yet, with room for `ids` extra id fields.
    pub(super) fn empty(ids: usize) -> Self {
        RawRecord {
            entity: None,
            label: None,
            weight: None,
            offset: None,
            timestamp: None,
            features: None,
            ids: vec![None; ids],
            unread: None,
        }
    }
}
