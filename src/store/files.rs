//! Part files: one file per capture under `parts/`, holding its part ciphertexts back to back.
//!
//! A capture's file is written and fsync'd, and the folder fsync'd, *before* the SQLite
//! transaction that records the capture commits; so a committed row always has its bytes, and
//! a file without a row (a crash in between) was never reported as captured and is removed at
//! the next open.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::Result;
use crate::model::CaptureId;

pub const PARTS_DIR: &str = "parts";
const EXT: &str = "parts";

pub fn parts_dir(store: &Path) -> PathBuf {
    store.join(PARTS_DIR)
}

pub fn part_file(store: &Path, id: &CaptureId) -> PathBuf {
    parts_dir(store).join(format!("{id}.{EXT}"))
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

/// One part to seal into a capture file: its kind, plaintext, and where its ciphertext goes.
pub struct PartJob<'a> {
    pub kind: crate::model::PartKind,
    pub plain: &'a [u8],
    pub offset: u64,
}

/// Creates `path` (which must not exist) and seals every job into it at its offset, then makes
/// it durable (file data, then the folder entry). The jobs are spread over two threads: the
/// sealing CPU work is what a capture waits on besides the flush. (Flushing finished parts
/// early from a third thread was measured slower: on a disk where every fsync is a cache
/// flush, more fsyncs cost more than the overlap saves.) Memory: one chunk per thread.
pub fn write_parts_durably<F>(path: &Path, jobs: &[PartJob<'_>], seal: F) -> Result<()>
where
    F: Fn(&PartJob<'_>, &mut dyn Write) -> Result<u64> + Sync,
{
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    // fdatasync: the data and the metadata needed to read it back (the size); the
    // timestamps are not worth a second flush.
    let result = seal_all(&file, jobs, &seal).and_then(|()| {
        file.sync_data()?;
        Ok(())
    });
    if let Err(e) = result {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

#[cfg(unix)]
fn seal_all<F>(file: &File, jobs: &[PartJob<'_>], seal: &F) -> Result<()>
where
    F: Fn(&PartJob<'_>, &mut dyn Write) -> Result<u64> + Sync,
{
    // Two groups of about equal size (largest first, each to the lighter group).
    let mut order: Vec<&PartJob<'_>> = jobs.iter().collect();
    order.sort_by_key(|j| std::cmp::Reverse(j.plain.len()));
    let (mut a, mut b, mut wa, mut wb) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for j in order {
        if wa <= wb {
            wa += j.plain.len();
            a.push(j);
        } else {
            wb += j.plain.len();
            b.push(j);
        }
    }
    std::thread::scope(|s| {
        let worker = |group: Vec<&PartJob<'_>>| -> Result<()> {
            for job in group {
                let mut w = OffsetWriter {
                    file,
                    pos: job.offset,
                };
                let len = seal(job, &mut w)?;
                start_writeback(file, job.offset, len);
            }
            Ok(())
        };
        let other = s.spawn(move || worker(b));
        let mine = worker(a);
        let theirs = other
            .join()
            .map_err(|_| crate::Error::Internal("a sealing thread panicked".into()))?;
        mine.and(theirs)
    })
}

#[cfg(not(unix))]
fn seal_all<F>(file: &File, jobs: &[PartJob<'_>], seal: &F) -> Result<()>
where
    F: Fn(&PartJob<'_>, &mut dyn Write) -> Result<u64> + Sync,
{
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    for job in jobs {
        f.seek(SeekFrom::Start(job.offset))?;
        seal(job, &mut f)?;
    }
    Ok(())
}

/// Asks the kernel to start writing a finished chunk to the device now, without waiting and
/// without a cache flush, so the device works while the next chunk is sealed and the final
/// fdatasync has little left to do. (`POSIX_FADV_DONTNEED` starts writeback of dirty pages
/// on Linux and Android; elsewhere this is a no-op.) Purely an optimisation: durability comes
/// from the fdatasync that follows.
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

/// Writes at increasing offsets of a shared file (positional writes: no shared cursor).
#[cfg(unix)]
struct OffsetWriter<'f> {
    file: &'f File,
    pos: u64,
}

#[cfg(unix)]
impl Write for OffsetWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, self.pos)?;
        // Each write is one sealed chunk: let the device start on it while the next is sealed.
        start_writeback(self.file, self.pos, buf.len() as u64);
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes what passes through it and counts the bytes.
pub struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    pub fn new(inner: &'a mut W) -> Self {
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }
    /// The SHA-256 and length of what was written.
    pub fn finish(self) -> ([u8; 32], u64) {
        (self.hasher.finalize().into(), self.count)
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

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
