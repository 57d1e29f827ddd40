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

/// Creates `path` (which must not exist), lets `fill` write it, then makes it durable.
pub fn write_durably<T>(path: &Path, fill: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    let out = match fill(&mut f).and_then(|v| {
        f.flush()?;
        f.sync_all()?;
        Ok(v)
    }) {
        Ok(v) => v,
        Err(e) => {
            drop(f);
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(out)
}

/// A writer that hashes what passes through it and counts the bytes.
pub struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    pub fn new(inner: &'a mut W) -> Self {
        HashingWriter { inner, hasher: sha2::Sha256::new(), count: 0 }
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
