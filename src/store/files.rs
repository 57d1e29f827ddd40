//! Part files: one file per capture under `parts/`, holding its part ciphertexts back to back
//! and, last, a [`Trailer`] that makes the file a complete, self-describing record of the
//! capture.
//!
//! A capture's file, trailer included, is written and fdatasync'd, and the folder fsync'd,
//! *before* the SQLite transaction that indexes the capture commits (ADR 0013). The file is the
//! durable record: that commit skips its own flush (`synchronous=NORMAL` for that one
//! transaction), and if a power loss rolls the rows back, the next open rebuilds them from the
//! file ([`Trailer`], `Store::open`). A file without a trailer is a capture that was never
//! completed, let alone reported, and is removed at the next open.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::crypto::PartSealer;
use crate::crypto::part;
use crate::crypto::wrap::WRAP_LEN;
use crate::error::Result;
use crate::limits::CHUNK_SIZE;
use crate::model::{CaptureId, PartKind};

pub const PARTS_DIR: &str = "parts";
/// Where part files that carry a trailer but fail to authenticate are moved, never deleted.
pub const DAMAGED_DIR: &str = "damaged";
const EXT: &str = "parts";

pub fn parts_dir(store: &Path) -> PathBuf {
    store.join(PARTS_DIR)
}

pub fn part_file(store: &Path, id: &CaptureId) -> PathBuf {
    parts_dir(store).join(format!("{id}.{EXT}"))
}

/// Where a part lies in its file: (kind, offset, ciphertext length).
pub type PartSpan = (PartKind, u64, u64);

/// The last [`Trailer::LEN`] bytes of a part file (format 1): what it takes to rebuild the
/// capture's queue rows from the file alone, with the device's keys.
///
/// ```text
/// 0..40     the five parts' ciphertext lengths, u64 big-endian, in PartKind::ALL order
///           (front, back, selfie, signature, manifest); the parts lie back to back from 0
/// 40..113   the data key wrapped under the device master key (the same 73 bytes as
///           capture_keys.device_wrap: bound to "data-key" and the capture id)
/// 113..119  zero
/// 119       format version, 1
/// 120..128  "APOYOCAP"
/// ```
///
/// Nothing in it is personal data. Its integrity needs no tag of its own: a wrong length or a
/// wrong wrap makes the STREAM or the wrap fail to authenticate, and the manifest (authenticated)
/// names the capture id. It is written after every part byte, so after a kill a file with a
/// trailer has all its bytes (the page cache keeps write order for a surviving kernel); after
/// a power loss before the flush ended, the parts may not authenticate, and the file is moved
/// to [`DAMAGED_DIR`] rather than deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub part_lens: [u64; 5],
    pub device_wrap: [u8; WRAP_LEN],
}

impl Trailer {
    pub const LEN: usize = 128;
    const MAGIC: &'static [u8; 8] = b"APOYOCAP";
    const VERSION: u8 = 1;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        for (i, len) in self.part_lens.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&len.to_be_bytes());
        }
        out[40..40 + WRAP_LEN].copy_from_slice(&self.device_wrap);
        out[119] = Self::VERSION;
        out[120..].copy_from_slice(Self::MAGIC);
        out
    }

    /// `None` unless `bytes` is exactly a format-1 trailer.
    pub fn decode(bytes: &[u8]) -> Option<Trailer> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        if &bytes[120..] != Self::MAGIC
            || bytes[119] != Self::VERSION
            || bytes[40 + WRAP_LEN..119].iter().any(|b| *b != 0)
        {
            return None;
        }
        let mut part_lens = [0u64; 5];
        for (i, len) in part_lens.iter_mut().enumerate() {
            *len = u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().ok()?);
        }
        Some(Trailer {
            part_lens,
            device_wrap: bytes[40..40 + WRAP_LEN].try_into().ok()?,
        })
    }

    /// Each part's kind, offset and ciphertext length, and the file length they imply
    /// (`None` on overflow).
    pub fn layout(&self) -> Option<(Vec<PartSpan>, u64)> {
        let mut offset = 0u64;
        let mut parts = Vec::with_capacity(PartKind::ALL.len());
        for (kind, len) in PartKind::ALL.into_iter().zip(self.part_lens) {
            parts.push((kind, offset, len));
            offset = offset.checked_add(len)?;
        }
        Some((parts, offset.checked_add(Self::LEN as u64)?))
    }
}

/// Overwrites the trailer of the part file at `path` with zeros and flushes it, so the copy of
/// the device wrap it holds is gone from the file before the file is removed (purge, ADR 0006).
/// A missing file or one without a trailer is left alone.
pub fn shred_trailer(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(at) = f.metadata()?.len().checked_sub(Trailer::LEN as u64) else {
        return Ok(());
    };
    let mut bytes = [0u8; Trailer::LEN];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut bytes)?;
    if Trailer::decode(&bytes).is_none() {
        return Ok(());
    }
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&[0u8; Trailer::LEN])?;
    f.sync_data()?;
    Ok(())
}

/// fsyncs a directory, so that a file created or removed in it survives power loss.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// One part to seal into a capture file: its plaintext, its sealer, and where its ciphertext
/// goes in the file.
pub struct PartJob<'a> {
    pub plain: &'a [u8],
    pub sealer: PartSealer,
    pub offset: u64,
}

/// Creates `path` (which must not exist), seals every job into it at its offset, writes
/// `trailer` after the last part byte (at the end of the jobs' extent), and makes it durable: the file's data (fdatasync: the data and the size needed to read it back; the
/// timestamps are not worth a second flush), then its entry in the folder (an fsync of the
/// folder).
///
/// Around that, the caller's own work, placed where a core is idle: `aside` runs on the helper
/// thread once its share of the sealing is done, while the file is flushed; `prepare` runs on
/// the calling thread once its share is done, before the flush; `finish` gets both results on
/// the calling thread once the file *and* its folder entry are durable, so whatever the caller
/// commits with its result comes after. On any error the file is removed and the results are
/// dropped.
pub fn write_parts_durably<A: Send, B, R>(
    path: &Path,
    jobs: &[PartJob<'_>],
    trailer: &[u8],
    aside: impl FnOnce() -> Result<A> + Send,
    prepare: impl FnOnce() -> Result<B>,
    finish: impl FnOnce(A, B) -> Result<R>,
) -> Result<R> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let result = seal_and_sync(&file, path.parent(), jobs, trailer, aside, prepare, finish);
    if result.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    result
}

/// One chunk to seal: its job, its index in the part, where its bytes go in the file.
#[derive(Clone, Copy)]
struct Task {
    job: usize,
    chunk: usize,
    pos: u64,
}

/// Every chunk of every job, in file order.
fn chunk_tasks(jobs: &[PartJob<'_>]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        tasks.extend((0..part::chunk_count(job.plain.len())).map(|c| Task {
            job: j,
            chunk: c,
            pos: job.offset + part::chunk_offset(c),
        }));
    }
    tasks.sort_by_key(|t| t.pos);
    tasks
}

/// The file is written in aligned blocks of this size. (A sealed chunk, 65 552 bytes, is not
/// page-aligned: written as they come, chunks split a page at every boundary between two
/// writes, and the kernel's work per byte was ≈ 25 % higher than for aligned 64 KiB writes,
/// ≈ 0.2 ms per capture.)
#[cfg(unix)]
const BLOCK: usize = 64 * 1024;
/// Blocks being assembled at once: a sealed chunk spans up to three blocks, and each of the
/// two sealing threads may be placing one.
#[cfg(unix)]
const SLOTS: usize = 4;
/// The kernel is asked to start writing the file to the device each time this many more bytes
/// at its front are written (block by block for the first block and the last stretch). 128,
/// 256 and 512 KiB measured within noise of each other; 1 MiB left too much for the final
/// flush; 64 KiB throughout cost more CPU for no gain.
#[cfg(unix)]
const WRITEBACK: u64 = 256 * 1024;

/// A block being assembled from sealed chunks.
#[cfg(unix)]
struct Slot {
    /// The block this slot is collecting (its index in the file).
    block: usize,
    /// Bytes of it placed so far.
    filled: usize,
    buf: Vec<u8>,
}

/// Which blocks are written, to start writeback of each stretch at the front of the file as
/// soon as it is complete.
#[cfg(unix)]
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
#[cfg(unix)]
struct Ring<'f> {
    file: &'f File,
    file_len: u64,
    slots: [(std::sync::Mutex<Slot>, std::sync::Condvar); SLOTS],
    frontier: std::sync::Mutex<Frontier>,
    failed: std::sync::atomic::AtomicBool,
}

#[cfg(unix)]
fn relock<T>(r: std::sync::LockResult<T>) -> T {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(unix)]
impl<'f> Ring<'f> {
    fn new(file: &'f File, file_len: u64) -> Ring<'f> {
        let blocks = file_len.div_ceil(BLOCK as u64) as usize;
        Ring {
            file,
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

    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the work failed and wakes every thread waiting for a slot, so it stops.
    fn fail(&self) {
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
    fn place(&self, mut pos: u64, mut bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
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
                self.file
                    .write_all_at(&slot.buf[..len], k as u64 * BLOCK as u64)?;
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

/// Two threads, the caller's and a helper, claim the chunks in file order from a shared counter
/// (so they stay balanced to a chunk whatever the part sizes, and the file fills front to
/// back), seal each, and place it in the [`Ring`], which writes the file in aligned blocks and
/// hands each stretch to the device as soon as it is written, so the device works while the CPU
/// seals. Once every block is written, the caller flushes the file and then the folder, while
/// the helper runs `aside`. Memory: the ring, and one chunk per thread.
///
/// Measured and rejected: fsyncing the folder at the start, from a third thread (that flush,
/// amid the writes, slowed them more than it saved; right after the file's it is nearly free);
/// a third thread for any work (with two cores the scheduler often started it a millisecond
/// late); a writer thread fed through the ring, buffered (three busy threads on two cores) or
/// with direct I/O (no page cache to fill and write back, but with one write in flight the
/// device ran slower than with the kernel's writeback).
#[cfg(unix)]
fn seal_and_sync<A: Send, B, R>(
    file: &File,
    dir: Option<&Path>,
    jobs: &[PartJob<'_>],
    trailer: &[u8],
    aside: impl FnOnce() -> Result<A> + Send,
    prepare: impl FnOnce() -> Result<B>,
    finish: impl FnOnce(A, B) -> Result<R>,
) -> Result<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    let tasks = chunk_tasks(jobs);
    let parts_len = jobs
        .iter()
        .map(|j| j.offset + crate::crypto::ciphertext_len(j.plain.len() as u64))
        .max()
        .unwrap_or(0);
    let ring = Ring::new(file, parts_len + trailer.len() as u64);
    let next = AtomicUsize::new(0);
    let seal_share = || -> Result<()> {
        // A panic must not leave the other thread waiting for a slot.
        struct FailOnPanic<'r, 'f>(&'r Ring<'f>);
        impl Drop for FailOnPanic<'_, '_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.fail();
                }
            }
        }
        let _guard = FailOnPanic(&ring);
        let mut buf = Vec::with_capacity(1 + CHUNK_SIZE + 16);
        while !ring.failed() {
            let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let job = &jobs[task.job];
            let placed = job
                .sealer
                .seal_chunk(job.plain, task.chunk, &mut buf)
                .and_then(|()| ring.place(task.pos, &buf));
            if let Err(e) = placed {
                ring.fail();
                return Err(e);
            }
        }
        Ok(())
    };
    // Whether the helper is still sealing: the flush waits for its last block. Cleared by a
    // guard, so a panicking helper cannot leave the caller waiting.
    let helper_sealing = (Mutex::new(true), Condvar::new());
    struct Done<'a>(&'a (Mutex<bool>, Condvar));
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            *relock(self.0.0.lock()) = false;
            self.0.1.notify_all();
        }
    }
    std::thread::scope(|s| {
        let helper = s.spawn(|| -> Result<Option<A>> {
            {
                let _done = Done(&helper_sealing);
                seal_share()?;
            }
            if ring.failed() {
                return Ok(None); // The caller's error is the one reported.
            }
            aside().map(Some)
        });
        let flushed = seal_share().and_then(|()| {
            if ring.failed() {
                return Ok(None);
            }
            let prepared = prepare()?;
            // The helper's last chunk takes some tens of µs at most: spin that long rather
            // than pay a sleep and a wake-up before the flush, then sleep.
            let spin = std::time::Instant::now();
            let mut sealing = relock(helper_sealing.0.lock());
            while *sealing {
                if spin.elapsed() < std::time::Duration::from_micros(200) {
                    drop(sealing);
                    std::hint::spin_loop();
                    sealing = relock(helper_sealing.0.lock());
                } else {
                    sealing = relock(helper_sealing.1.wait(sealing));
                }
            }
            drop(sealing);
            if ring.failed() {
                return Ok(None);
            }
            // Last, once every part byte is placed (and so every block without trailer bytes
            // written): the trailer (see [`Trailer`]). It completes the last block(s), written
            // through the ring like the others: a separate small write into the last page,
            // already handed to the device and possibly dropped from the cache, could cost a
            // read of that page first.
            ring.place(parts_len, trailer)?;
            if ring.failed() {
                return Ok(None);
            }
            file.sync_data()?;
            if let Some(dir) = dir {
                fsync_dir(dir)?;
            }
            Ok(Some(prepared))
        });
        let aside = helper
            .join()
            .unwrap_or_else(|_| Err(crate::Error::Internal("a capture thread panicked".into())));
        match (flushed?, aside?) {
            (Some(b), Some(a)) => finish(a, b),
            _ => Err(crate::Error::Internal("part sealing failed".into())),
        }
    })
}

#[cfg(not(unix))]
fn seal_and_sync<A: Send, B, R>(
    file: &File,
    dir: Option<&Path>,
    jobs: &[PartJob<'_>],
    trailer: &[u8],
    aside: impl FnOnce() -> Result<A> + Send,
    prepare: impl FnOnce() -> Result<B>,
    finish: impl FnOnce(A, B) -> Result<R>,
) -> Result<R> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    let mut buf = Vec::with_capacity(1 + CHUNK_SIZE + 16);
    for t in chunk_tasks(jobs) {
        let job = &jobs[t.job];
        job.sealer.seal_chunk(job.plain, t.chunk, &mut buf)?;
        f.seek(SeekFrom::Start(t.pos))?;
        f.write_all(&buf)?;
    }
    f.seek(SeekFrom::End(0))?;
    f.write_all(trailer)?;
    let (a, b) = (aside()?, prepare()?);
    f.sync_data()?;
    if let Some(dir) = dir {
        fsync_dir(dir)?;
    }
    finish(a, b)
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

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Capture ids of the part files present on disk.
pub fn list_part_files(store: &Path) -> Result<Vec<(PathBuf, Option<CaptureId>)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(parts_dir(store))? {
        let path = entry?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
            .and_then(|s| s.parse::<CaptureId>().ok());
        out.push((path, id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartKind;

    /// The file holds exactly the parts' ciphertexts back to back, whatever the sizes: chunks
    /// straddling two or three blocks, a last block short or exactly full, empty parts.
    #[test]
    fn the_file_is_the_parts_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::crypto::random_key().unwrap();
        let id = [7u8; 16];
        let kinds = PartKind::ALL;
        let size_sets: [&[usize]; 6] = [
            &[600_000, 600_000, 800_000, 40_000, 300],
            &[0, 1, 0, 2, 0],
            &[65_535, 65_536, 65_537, 131_071, 17],
            &[BLOCK - 1, 3 * BLOCK, 5 * CHUNK_SIZE + 3, 1, 65_536 * 4 - 5],
            &[1_000_000, 0, 0, 0, 0],
            &[10, 20, 30, 40, 50],
        ];
        for (n, sizes) in size_sets.iter().enumerate() {
            let plains: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(p, &len)| (0..len).map(|i| (i * 13 + p * 7) as u8).collect())
                .collect();
            let mut expected = Vec::new();
            let mut jobs = Vec::new();
            for (plain, kind) in plains.iter().zip(kinds) {
                let offset = expected.len() as u64;
                PartSealer::new(&key, &id, kind)
                    .unwrap()
                    .seal_to(plain, &mut expected)
                    .unwrap();
                jobs.push(PartJob {
                    plain,
                    sealer: PartSealer::new(&key, &id, kind).unwrap(),
                    offset,
                });
            }
            let path = dir.path().join(format!("{n}.parts"));
            let trailer = [n as u8 + 1; Trailer::LEN];
            let r =
                write_parts_durably(&path, &jobs, &trailer, || Ok(1), || Ok(2), |a, b| Ok(a + b));
            assert_eq!(r.unwrap(), 3);
            expected.extend_from_slice(&trailer);
            assert_eq!(fs::read(&path).unwrap(), expected, "sizes {sizes:?}");
        }
    }

    #[test]
    fn a_trailer_round_trips_and_nothing_else_decodes() {
        let t = Trailer {
            part_lens: [600_016, 1, 0, u64::MAX - 7, 300],
            device_wrap: std::array::from_fn(|i| i as u8),
        };
        let bytes = t.encode();
        assert_eq!(Trailer::decode(&bytes), Some(t.clone()));
        assert_eq!(&bytes[120..], b"APOYOCAP");
        // Overflowing lengths decode but give no layout.
        assert_eq!(t.layout(), None);
        let ok = Trailer {
            part_lens: [10, 20, 30, 40, 50],
            ..t
        };
        let (parts, len) = ok.layout().unwrap();
        assert_eq!(len, 150 + Trailer::LEN as u64);
        assert_eq!(parts[2], (PartKind::Selfie, 30, 30));
        assert_eq!(parts[4], (PartKind::Manifest, 100, 50));
        let bytes = ok.encode();
        for at in [113, 118, 119, 120, 127] {
            let mut bad = bytes;
            bad[at] ^= 1;
            assert_eq!(Trailer::decode(&bad), None, "byte {at} changed");
        }
        assert_eq!(Trailer::decode(&bytes[1..]), None);
        assert_eq!(Trailer::decode(&[0; Trailer::LEN]), None);
    }

    #[test]
    fn shredding_zeroes_the_trailer_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trailer {
            part_lens: [3, 0, 0, 0, 0],
            device_wrap: [9; WRAP_LEN],
        };
        let path = dir.path().join("a.parts");
        let mut bytes = b"abc".to_vec();
        bytes.extend_from_slice(&t.encode());
        fs::write(&path, &bytes).unwrap();
        shred_trailer(&path).unwrap();
        let after = fs::read(&path).unwrap();
        assert_eq!(&after[..3], b"abc");
        assert_eq!(&after[3..], &[0u8; Trailer::LEN][..]);
        // No trailer (or no file): left alone.
        let other = dir.path().join("b.parts");
        fs::write(&other, vec![7u8; 300]).unwrap();
        shred_trailer(&other).unwrap();
        assert_eq!(fs::read(&other).unwrap(), vec![7u8; 300]);
        shred_trailer(&dir.path().join("missing.parts")).unwrap();
    }

    #[test]
    fn an_error_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::crypto::random_key().unwrap();
        let plain = vec![1u8; 300_000];
        let jobs = [PartJob {
            plain: &plain,
            sealer: PartSealer::new(&key, &[1; 16], PartKind::Front).unwrap(),
            offset: 0,
        }];
        let path = dir.path().join("x.parts");
        let r: Result<()> = write_parts_durably(
            &path,
            &jobs,
            &[],
            || Ok(()),
            || Err(crate::Error::Internal("no".into())),
            |(), ()| Ok(()),
        );
        assert!(r.is_err());
        assert!(!path.exists());
        let r: Result<()> = write_parts_durably(
            &path,
            &jobs,
            &[],
            || Err::<(), _>(crate::Error::Internal("no".into())),
            || Ok(()),
            |(), ()| Ok(()),
        );
        assert!(r.is_err());
        assert!(!path.exists());
    }
}
