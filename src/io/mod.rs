//! Input and output helpers.
//!
//! - `output`: output files and directories, checked against the inputs before any work
//!   starts and written so that a crash or an error never leaves a half-written file.
//! - [`LineReader`]: numbered lines of text input; a byte-order mark dropped, bad UTF-8
//!   an error naming the line.
//! - [`ReadAhead`]: input read on its own thread, ahead of its consumer.
//! - [`fnv1a`]: a stable 64-bit hash of bytes (for stream positions and partitions).

mod lines;
mod output;
mod read_ahead;

pub use lines::LineReader;
pub use output::{
    check_paths, scratch_dir, write_dir, write_output, OutputFile, PathKind, PathRole, ScratchDir,
};
pub use read_ahead::ReadAhead;

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
