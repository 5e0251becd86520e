//! Input and output helpers.
//!
//! - `output`: output files and directories, checked against the inputs before any work
//!   starts and written so that a crash or an error never leaves a half-written file.
//! - [`LineReader`]: numbered lines of text input; a byte-order mark dropped, bad UTF-8
//!   an error naming the line.
//! - [`ReadAhead`]: input read on its own thread, one item ahead of its consumer.
//! - [`fnv1a`]: a stable 64-bit hash of bytes (for stream positions and partitions).

mod lines;
mod output;

pub use lines::LineReader;
pub use output::{
    check_paths, scratch_dir, write_dir, write_output, OutputFile, PathKind, PathRole, ScratchDir,
};

use crate::error::{Error, Result};

/// Whether the file at `path` starts with `magic` (false when it cannot be read).
pub fn starts_with(path: &std::path::Path, magic: &[u8]) -> bool {
    let mut head = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == magic
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
