//! Writing a capture's part file durably: every part sealed into it at its offset (on two
//! threads, through the block ring on Unix), the trailer after the last part byte, then an
//! fdatasync of the file and an fsync of its folder, with the caller's own work placed where a
//! core is idle. `capture.rs` commits the rows that index the capture only after this returns.

use std::fs::File;
use std::path::Path;
#[cfg(unix)]
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(unix)]
use std::sync::{Condvar, Mutex};

#[cfg(unix)]
use super::block_ring::{Ring, relock};
use super::part_fs;
use crate::crypto::PartSealer;
use crate::crypto::part;
use crate::error::Result;
use crate::limits::CHUNK_SIZE;

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
    let file = part_fs::create_new(path)?;
    let result = seal_and_sync(&file, path, jobs, trailer, aside, prepare, finish);
    if result.is_err() {
        drop(file);
        let _ = part_fs::remove_file(path);
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

/// Where the trailer goes: the end of the jobs' extent.
#[cfg(unix)]
fn parts_len(jobs: &[PartJob<'_>]) -> u64 {
    jobs.iter()
        .map(|j| j.offset + crate::crypto::ciphertext_len(j.plain.len() as u64))
        .max()
        .unwrap_or(0)
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
    path: &Path,
    jobs: &[PartJob<'_>],
    trailer: &[u8],
    aside: impl FnOnce() -> Result<A> + Send,
    prepare: impl FnOnce() -> Result<B>,
    finish: impl FnOnce(A, B) -> Result<R>,
) -> Result<R> {
    let parts_len = parts_len(jobs);
    let work = Sealing {
        ring: Ring::new(file, path, parts_len + trailer.len() as u64),
        jobs,
        tasks: chunk_tasks(jobs),
        next: AtomicUsize::new(0),
        helper_sealing: HelperSealing::new(),
    };
    std::thread::scope(|s| {
        let helper = s.spawn(|| -> Result<Option<A>> {
            {
                let _done = work.helper_sealing.done_on_drop();
                work.seal_share()?;
            }
            if work.ring.failed() {
                return Ok(None); // The caller's error is the one reported.
            }
            aside().map(Some)
        });
        let flushed = work
            .seal_share()
            .and_then(|()| work.flush_after_sealing(file, path, parts_len, trailer, prepare));
        let aside = helper
            .join()
            .unwrap_or_else(|_| Err(crate::Error::Internal("a capture thread panicked".into())));
        match (flushed?, aside?) {
            (Some(b), Some(a)) => finish(a, b),
            _ => Err(crate::Error::Internal("part sealing failed".into())),
        }
    })
}

/// The work the two sealing threads share.
#[cfg(unix)]
struct Sealing<'r, 'j> {
    ring: Ring<'r>,
    jobs: &'j [PartJob<'j>],
    tasks: Vec<Task>,
    /// The next task to claim.
    next: AtomicUsize,
    helper_sealing: HelperSealing,
}

#[cfg(unix)]
impl Sealing<'_, '_> {
    /// Claims chunks in file order until none is left, seals each and places it in the ring.
    /// On an error, fails the ring (so the other thread stops) and returns it.
    fn seal_share(&self) -> Result<()> {
        // A panic must not leave the other thread waiting for a slot.
        struct FailOnPanic<'r, 'f>(&'r Ring<'f>);
        impl Drop for FailOnPanic<'_, '_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.fail();
                }
            }
        }
        let ring = &self.ring;
        let _guard = FailOnPanic(ring);
        let mut buf = Vec::with_capacity(1 + CHUNK_SIZE + 16);
        while !ring.failed() {
            let Some(task) = self.tasks.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let job = &self.jobs[task.job];
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
    }

    /// The caller's part once its share is sealed: `prepare`, then (once the helper's last
    /// block is written) the trailer, then the flush of the file and of its folder. `None` if
    /// the work failed elsewhere.
    fn flush_after_sealing<B>(
        &self,
        file: &File,
        path: &Path,
        parts_len: u64,
        trailer: &[u8],
        prepare: impl FnOnce() -> Result<B>,
    ) -> Result<Option<B>> {
        if self.ring.failed() {
            return Ok(None);
        }
        let prepared = prepare()?;
        self.helper_sealing.wait();
        if self.ring.failed() {
            return Ok(None);
        }
        // Last, once every part byte is placed (and so every block without trailer bytes
        // written): the trailer (see [`Trailer`](super::trailer::Trailer)). It completes the
        // last block(s), written through the ring like the others: a separate small write into
        // the last page, already handed to the device and possibly dropped from the cache, could
        // cost a read of that page first.
        self.ring.place(parts_len, trailer)?;
        if self.ring.failed() {
            return Ok(None);
        }
        part_fs::sync_data(file, path)?;
        if let Some(dir) = path.parent() {
            part_fs::sync_dir(dir)?;
        }
        Ok(Some(prepared))
    }
}

/// Whether the helper is still sealing: the flush waits for its last block. Cleared by a
/// guard, so a panicking helper cannot leave the caller waiting.
#[cfg(unix)]
struct HelperSealing(Mutex<bool>, Condvar);

/// Clears [`HelperSealing`] when dropped.
#[cfg(unix)]
struct Done<'a>(&'a HelperSealing);

#[cfg(unix)]
impl Drop for Done<'_> {
    fn drop(&mut self) {
        *relock(self.0.0.lock()) = false;
        self.0.1.notify_all();
    }
}

#[cfg(unix)]
impl HelperSealing {
    fn new() -> HelperSealing {
        HelperSealing(Mutex::new(true), Condvar::new())
    }

    fn done_on_drop(&self) -> Done<'_> {
        Done(self)
    }

    /// Waits until the helper is done. Its last chunk takes some tens of µs at most: spin that
    /// long rather than pay a sleep and a wake-up before the flush, then sleep.
    fn wait(&self) {
        let spin = std::time::Instant::now();
        let mut sealing = relock(self.0.lock());
        while *sealing {
            if spin.elapsed() < std::time::Duration::from_micros(200) {
                drop(sealing);
                std::hint::spin_loop();
                sealing = relock(self.0.lock());
            } else {
                sealing = relock(self.1.wait(sealing));
            }
        }
    }
}

#[cfg(not(unix))]
fn seal_and_sync<A: Send, B, R>(
    file: &File,
    path: &Path,
    jobs: &[PartJob<'_>],
    trailer: &[u8],
    aside: impl FnOnce() -> Result<A> + Send,
    prepare: impl FnOnce() -> Result<B>,
    finish: impl FnOnce(A, B) -> Result<R>,
) -> Result<R> {
    let mut buf = Vec::with_capacity(1 + CHUNK_SIZE + 16);
    let mut end = 0;
    for t in chunk_tasks(jobs) {
        let job = &jobs[t.job];
        job.sealer.seal_chunk(job.plain, t.chunk, &mut buf)?;
        part_fs::write_at(file, path, &buf, t.pos)?;
        end = end.max(t.pos + buf.len() as u64);
    }
    part_fs::write_at(file, path, trailer, end)?;
    let (a, b) = (aside()?, prepare()?);
    part_fs::sync_data(file, path)?;
    if let Some(dir) = path.parent() {
        part_fs::sync_dir(dir)?;
    }
    finish(a, b)
}

// The tests below use these through `use super::*`.
#[cfg(all(test, unix))]
use super::block_ring::BLOCK;
#[cfg(test)]
use super::trailer::Trailer;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartKind;
    use std::fs;

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
