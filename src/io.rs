//! Input and output helpers.
//!
//! - Atomic output files: written to a temporary file beside the target and renamed into
//!   place on [`AtomicFile::commit`], so a crash or an error never leaves a half-written
//!   file.
//! - [`ReadAhead`]: input read on its own thread, one item ahead of its consumer.
//! - [`fnv1a`]: a stable 64-bit hash of bytes (for stream positions and partitions).

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct AtomicFile {
    path: PathBuf,
    writer: BufWriter<tempfile::NamedTempFile>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!(
                ".{}.",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("glmix")
            ))
            .suffix(".tmp")
            .tempfile_in(dir)
            // tempfile's message repeats the temporary path; say what went wrong instead.
            .map_err(|e| {
                let why = if dir.is_dir() {
                    format!("cannot create a file in {}: {}", dir.display(), e.kind())
                } else {
                    format!("directory {} does not exist", dir.display())
                };
                Error::io(path, std::io::Error::new(e.kind(), why))
            })?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, tmp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush, sync and rename into place. Dropping without committing removes the temporary file.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Write a file atomically with `fill`; a failing `fill` leaves no file behind.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut AtomicFile) -> std::io::Result<()>,
) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    fill(&mut f).map_err(|e| Error::io(path, e))?;
    f.commit()
}

/// The FNV-1a offset basis: the hash of no bytes.
pub const FNV1A_EMPTY: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes`, continuing from `hash` (start with [`FNV1A_EMPTY`]). Stable across
/// runs, platforms and Rust versions, unlike `std`'s hasher.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Items produced by a closure on its own thread, at most one ahead of [`ReadAhead::next`]:
/// the next chunk of input is read while the current one is worked on. The thread stops
/// after the last item, the first error, or once the `ReadAhead` is dropped (it is not
/// joined, as it may be waiting on stdin).
pub struct ReadAhead<T> {
    receiver: std::sync::mpsc::Receiver<Result<Option<T>>>,
    /// Whether the last item was given: later calls give `None` again.
    ended: std::cell::Cell<bool>,
}

impl<T: Send + 'static> ReadAhead<T> {
    pub fn spawn(mut next: impl FnMut() -> Result<Option<T>> + Send + 'static) -> Self {
        // A rendezvous channel: the producer holds one item while it waits.
        let (sender, receiver) = std::sync::mpsc::sync_channel(0);
        std::thread::spawn(move || loop {
            let item = next();
            let last = !matches!(item, Ok(Some(_)));
            if sender.send(item).is_err() || last {
                break;
            }
        });
        ReadAhead {
            receiver,
            ended: std::cell::Cell::new(false),
        }
    }

    /// The next item; `None` after the last, however often asked.
    pub fn next(&self) -> Result<Option<T>> {
        if self.ended.get() {
            return Ok(None);
        }
        let item = self
            .receiver
            .recv()
            .map_err(|_| Error::Config("the input reader stopped".into()))?;
        self.ended.set(matches!(item, Ok(None)));
        item
    }
}

/// Write a directory atomically: `fill` writes its files into a fresh temporary directory
/// beside `path`, which then takes `path`'s place. A failing `fill` leaves `path` as it
/// was. An existing `path` is replaced only when it is empty or holds `marker` (a file a
/// previous run of the same kind wrote), so nothing else is ever deleted.
pub fn write_dir_atomic(
    path: &Path,
    marker: &str,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("glmix")
        .to_string();
    let replaces = if path.exists() {
        let empty = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .next()
            .is_none();
        if !empty && !path.join(marker).is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("exists and holds no {marker}; refusing to replace it"),
                ),
            ));
        }
        true
    } else {
        false
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempdir_in(parent)
        .map_err(|e| Error::io(path, e))?;
    fill(tmp.path())?;
    let tmp = tmp.keep();
    if replaces {
        let old = parent.join(format!(".{name}.{}.old", std::process::id()));
        std::fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_gives_its_items_in_order_then_none_however_often_asked() {
        let mut left = 3;
        let items = ReadAhead::spawn(move || {
            left -= 1;
            Ok((left >= 0).then_some(left))
        });
        for expected in [Some(2), Some(1), Some(0), None, None, None] {
            assert_eq!(items.next().unwrap(), expected);
        }
    }
}
