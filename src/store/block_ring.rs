//! The ring of aligned blocks a part file is written through (Unix): sealed chunks are copied
//! into [`SLOTS`] blocks of [`BLOCK`] bytes; whichever thread completes a block writes it with
//! one aligned write, and writeback of each stretch at the front of the file is started as soon
//! as it is complete, so the device works while the CPU seals (`part_writer.rs`).

use std::fs::File;
use std::path::Path;

use crate::error::Result;

/// The file is written in aligned blocks of this size. (A sealed chunk, 65 552 bytes, is not
/// page-aligned: written as they come, chunks split a page at every boundary between two
/// writes, and the kernel's work per byte was ≈ 25 % higher than for aligned 64 KiB writes,
/// ≈ 0.2 ms per capture.)
pub(super) const BLOCK: usize = 64 * 1024;
/// Blocks being assembled at once: a sealed chunk spans up to three blocks, and each of the
/// two sealing threads may be placing one.
const SLOTS: usize = 4;
/// The kernel is asked to start writing the file to the device each time this many more bytes
/// at its front are written (block by block for the first block and the last stretch). 128,
/// 256 and 512 KiB measured within noise of each other; 1 MiB left too much for the final
/// flush; 64 KiB throughout cost more CPU for no gain.
const WRITEBACK: u64 = 256 * 1024;

/// A block being assembled from sealed chunks.
struct Slot {
    /// The block this slot is collecting (its index in the file).
    block: usize,
    /// Bytes of it placed so far.
    filled: usize,
    buf: Vec<u8>,
}

/// Which blocks are written, to start writeback of each stretch at the front of the file as
/// soon as it is complete.
struct Frontier {
    written: Vec<bool>,
    /// Blocks `..prefix` are all written.
    prefix: usize,
    /// Writeback was started for `..started`.
    started: u64,
}

/// Sealed chunks are copied into a ring of [`SLOTS`] blocks; whichever thread completes a block
/// writes it with one aligned write, frees its slot for the block `SLOTS` further on, and
/// starts writeback when a long enough stretch at the front of the file is written.
pub(super) struct Ring<'f> {
    file: &'f File,
    /// Where `file` is (its writes go through [`super::part_fs`]).
    path: &'f Path,
    file_len: u64,
    slots: [(std::sync::Mutex<Slot>, std::sync::Condvar); SLOTS],
    frontier: std::sync::Mutex<Frontier>,
    failed: std::sync::atomic::AtomicBool,
}

pub(super) fn relock<T>(r: std::sync::LockResult<T>) -> T {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<'f> Ring<'f> {
    pub(super) fn new(file: &'f File, path: &'f Path, file_len: u64) -> Ring<'f> {
        let blocks = file_len.div_ceil(BLOCK as u64) as usize;
        Ring {
            file,
            path,
            file_len,
            slots: std::array::from_fn(|block| {
                let slot = Slot {
                    block,
                    filled: 0,
                    buf: vec![0; BLOCK],
                };
                (std::sync::Mutex::new(slot), std::sync::Condvar::new())
            }),
            frontier: std::sync::Mutex::new(Frontier {
                written: vec![false; blocks],
                prefix: 0,
                started: 0,
            }),
            failed: Default::default(),
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the work failed and wakes every thread waiting for a slot, so it stops.
    pub(super) fn fail(&self) {
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for (lock, cv) in &self.slots {
            let _held = relock(lock.lock());
            cv.notify_all();
        }
    }

    fn block_len(&self, k: usize) -> usize {
        let start = k as u64 * BLOCK as u64;
        self.file_len.saturating_sub(start).min(BLOCK as u64) as usize
    }

    /// Copies `bytes`, which belong at `pos` in the file, into their block(s), waiting for a
    /// block's slot to be free, and writes each block it completes. Returns early (`Ok`) once
    /// the work has failed elsewhere.
    pub(super) fn place(&self, mut pos: u64, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let k = (pos / BLOCK as u64) as usize;
            let at = (pos % BLOCK as u64) as usize;
            let n = bytes.len().min(BLOCK - at);
            let (lock, cv) = &self.slots[k % SLOTS];
            let mut slot = relock(lock.lock());
            while slot.block != k {
                if self.failed() {
                    return Ok(());
                }
                slot = relock(cv.wait(slot));
            }
            slot.buf[at..at + n].copy_from_slice(&bytes[..n]);
            slot.filled += n;
            let len = self.block_len(k);
            if slot.filled == len {
                super::part_fs::write_at(
                    self.file,
                    self.path,
                    &slot.buf[..len],
                    k as u64 * BLOCK as u64,
                )?;
                slot.block = k + SLOTS;
                slot.filled = 0;
                cv.notify_all();
                drop(slot);
                if let Some((offset, len)) = self.block_written(k) {
                    start_writeback(self.file, offset, len);
                }
            }
            pos += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Records block `k` as written; returns the stretch `(offset, len)` to start writing
    /// back, if one is due.
    fn block_written(&self, k: usize) -> Option<(u64, u64)> {
        let mut f = relock(self.frontier.lock());
        f.written[k] = true;
        while f.written.get(f.prefix) == Some(&true) {
            f.prefix += 1;
        }
        let end = (f.prefix as u64 * BLOCK as u64).min(self.file_len);
        // Block by block at the start (the device starts early) and over the last stretch
        // (less is left for the flush after the last write); in between, in longer stretches.
        let step = if f.started == 0 || self.file_len - end < WRITEBACK {
            BLOCK as u64
        } else {
            WRITEBACK
        };
        let last = f.prefix == f.written.len();
        let due = end > f.started && (last || end >= f.started + step);
        due.then(|| {
            let stretch = (f.started, end - f.started);
            f.started = end;
            stretch
        })
    }
}

/// Asks the kernel to start writing a written stretch of the file to the device now, without
/// waiting and without a cache flush, so the device works while the CPU seals and the final
/// fdatasync has little left to do. (`POSIX_FADV_DONTNEED` starts writeback of dirty pages on
/// Linux and Android; elsewhere this is a no-op.) Purely an optimisation: durability comes from
/// the fdatasync that follows.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = posix_fadvise(file, off, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}
