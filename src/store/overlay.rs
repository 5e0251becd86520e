//! A redb storage backend that reads a store file and keeps every write in memory.
//!
//! A writer killed mid-run leaves a store whose last commit is intact but whose free-space
//! bookkeeping redb must rebuild before the file can be opened, and redb's read-only open
//! refuses to do that. Read-only commands (`score`, `eval`, `store export`, `store
//! check`) open such a store through a [`ReadOverlay`] instead: redb repairs it as if it
//! were writing, the repaired pages live in memory, and the file is never written (nor
//! needs write permission). The next writer repairs the file itself.
//!
//! The overlay takes no file locks: a writer that starts while a read-only command reads
//! a repaired store may change pages under it, which the models' checksums then report
//! as damage rather than serve.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// Bytes of one in-memory block of written data.
const BLOCK: u64 = 4096;

#[derive(Debug)]
pub(super) struct ReadOverlay {
    file: File,
    state: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// The storage's length as redb set it.
    len: u64,
    /// Bytes of the file still visible below the overlay: a shrink hides the rest, so that
    /// growing again reads zeros there.
    file_len: u64,
    /// Written blocks, by block number.
    blocks: HashMap<u64, Box<[u8]>>,
}

impl ReadOverlay {
    pub(super) fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(ReadOverlay {
            file,
            state: Mutex::new(Overlay {
                len,
                file_len: len,
                blocks: HashMap::new(),
            }),
        })
    }
}

impl Overlay {
    /// Block `b` as the file shows it: its bytes below `file_len`, zeros above.
    fn block_of_file(&self, file: &File, b: u64) -> io::Result<Box<[u8]>> {
        let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
        let start = b * BLOCK;
        let visible = self.file_len.saturating_sub(start).min(BLOCK) as usize;
        file.read_exact_at(&mut block[..visible], start)?;
        Ok(block)
    }
}

/// The blocks that `offset..offset + len` touches, each as (block, range within it, range
/// within the caller's slice).
fn pieces(
    offset: u64,
    len: usize,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>, std::ops::Range<usize>)> {
    let end = offset + len as u64;
    (offset / BLOCK..end.div_ceil(BLOCK)).map(move |b| {
        let from = (b * BLOCK).max(offset);
        let to = ((b + 1) * BLOCK).min(end);
        let within = (from - b * BLOCK) as usize..(to - b * BLOCK) as usize;
        (b, within, (from - offset) as usize..(to - offset) as usize)
    })
}

impl redb::StorageBackend for ReadOverlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().expect("not poisoned").len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.state.lock().expect("not poisoned");
        if offset + out.len() as u64 > state.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the store",
            ));
        }
        for (b, within, mine) in pieces(offset, out.len()) {
            match state.blocks.get(&b) {
                Some(block) => out[mine].copy_from_slice(&block[within]),
                None => {
                    let start = b * BLOCK + within.start as u64;
                    let visible = state
                        .file_len
                        .saturating_sub(start)
                        .min(within.len() as u64);
                    let (from_file, zeros) = out[mine].split_at_mut(visible as usize);
                    self.file.read_exact_at(from_file, start)?;
                    zeros.fill(0);
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        if len < state.len {
            state.blocks.retain(|&b, _| b * BLOCK < len);
            let cut = len % BLOCK;
            if let Some(block) = state.blocks.get_mut(&(len / BLOCK)) {
                block[cut as usize..].fill(0);
            }
            state.file_len = state.file_len.min(len);
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    // The locks redb asks for are granted without being taken (see the module doc): no
    // other handle shares this memory, and the file is never written.
    fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, redb::BackendError> {
        Ok(true)
    }

    fn try_lock_shared_range(
        &self,
        _: Bound<u64>,
        _: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        Ok(true)
    }

    fn lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), redb::BackendError> {
        Ok(())
    }

    fn lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), redb::BackendError> {
        Ok(())
    }

    fn unlock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), redb::BackendError> {
        Ok(())
    }

    fn query_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, redb::BackendError> {
        Ok(false)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        if offset + data.len() as u64 > state.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of the store",
            ));
        }
        for (b, within, mine) in pieces(offset, data.len()) {
            if !state.blocks.contains_key(&b) {
                let block = state.block_of_file(&self.file, b)?;
                state.blocks.insert(b, block);
            }
            let block = state.blocks.get_mut(&b).expect("inserted");
            block[within].copy_from_slice(&data[mine]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;
    use std::io::Write;

    #[test]
    fn writes_stay_in_memory_and_reads_see_them_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&original).unwrap();
        let overlay = ReadOverlay::new(File::open(&path).unwrap()).unwrap();
        overlay.write(4090, &[7; 20]).unwrap();
        overlay.set_len(12_000).unwrap();
        overlay.write(11_990, &[9; 10]).unwrap();
        let mut expected = original.clone();
        expected[4090..4110].fill(7);
        expected.resize(12_000, 0);
        expected[11_990..].fill(9);
        let mut seen = vec![1u8; 12_000];
        overlay.read(0, &mut seen).unwrap();
        assert_eq!(seen, expected);
        // A shrink then a grow reads zeros where the file had bytes.
        overlay.set_len(5_000).unwrap();
        overlay.set_len(6_000).unwrap();
        let mut tail = vec![1u8; 1_000];
        overlay.read(5_000, &mut tail).unwrap();
        assert_eq!(tail, vec![0; 1_000]);
        assert!(overlay.read(5_500, &mut [0; 600]).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            original,
            "the file is untouched"
        );
    }
}
