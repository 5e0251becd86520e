//! Reading the RecBole copy of MovieLens-100K in `../shared/data/ml-100k` (shared by the
//! MovieLens examples).

use std::path::Path;

/// The rows of a RecBole `.inter`/`.item`/`.user` file (tab-separated, typed header).
pub fn table(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (pass --data)", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
