//! The part files' way to the disk: every creation, write, flush, removal and rename of a part
//! file, and every flush of `parts/` or `damaged/`, goes through [`PartFs`], so a test can put
//! a fault layer between the store and the disk (the power-loss suite, ADR 0017).
//!
//! The store itself always uses [`RealFs`], the real filesystem. Only builds with the
//! `testkit` feature (or the crate's own tests) can [`install`] another implementation for the
//! files under one folder; without it [`with`] calls [`RealFs`] directly, and a release build
//! compiles the same system calls it did before this seam existed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// The filesystem operations the store performs on part files and their folders. Every method
/// defaults to the real operation; a fault layer observes (and may refuse) each before doing it.
pub trait PartFs: Send + Sync {
    /// Creates `path`, which must not exist, for writing.
    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    /// Writes all of `buf` at `offset` of `file` (opened at `path`).
    fn write_at(&self, file: &File, path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
        let _ = path;
        write_all_at(file, buf, offset)
    }

    /// Makes the data of `file` (opened at `path`) durable: fdatasync.
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        let _ = path;
        file.sync_data()
    }

    /// Makes the entries of folder `dir` durable: fsync of the folder.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        crate::fsutil::fsync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
}

/// The real filesystem: the only [`PartFs`] outside tests.
pub struct RealFs;

impl PartFs for RealFs {}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

#[cfg(not(unix))]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(buf)
}

/// Runs `op` with the [`PartFs`] for `path`: [`RealFs`], unless a test installed a layer for a
/// folder holding `path` (`testkit` builds only).
#[inline]
pub(crate) fn with<R>(path: &Path, op: impl FnOnce(&dyn PartFs) -> R) -> R {
    #[cfg(any(test, feature = "testkit"))]
    if let Some(layer) = layers::find(path) {
        return op(&*layer);
    }
    #[cfg(not(any(test, feature = "testkit")))]
    let _ = path;
    op(&RealFs)
}

#[cfg(any(test, feature = "testkit"))]
pub use layers::{Installed, install};

/// The layers tests installed, each for the files under one folder (`testkit` builds only).
#[cfg(any(test, feature = "testkit"))]
mod layers {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, RwLock};

    use super::PartFs;

    type Layer = (u64, PathBuf, Arc<dyn PartFs>);

    static LAYERS: RwLock<Vec<Layer>> = RwLock::new(Vec::new());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Routes every part-file operation on a path under `root` through `layer` until the
    /// returned guard is dropped. (`root` is compared as given: pass the path the store is
    /// opened with.)
    pub fn install(root: &Path, layer: Arc<dyn PartFs>) -> Installed {
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LAYERS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, root.to_path_buf(), layer));
        Installed(id)
    }

    /// Removes its layer when dropped.
    #[must_use = "the layer is removed when this is dropped"]
    pub struct Installed(u64);

    impl Drop for Installed {
        fn drop(&mut self) {
            LAYERS
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|(id, _, _)| *id != self.0);
        }
    }

    pub(super) fn find(path: &Path) -> Option<Arc<dyn PartFs>> {
        let layers = LAYERS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        layers
            .iter()
            .find(|(_, root, _)| path.starts_with(root))
            .map(|(_, _, layer)| layer.clone())
    }
}

/// Creates `path` for writing; it must not exist.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    with(path, |fs| fs.create_new(path))
}

pub(crate) fn write_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
    with(path, |fs| fs.write_at(file, path, buf, offset))
}

pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    with(path, |fs| fs.sync_data(file, path))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    with(dir, |fs| fs.sync_dir(dir))
}

pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    with(path, |fs| fs.remove_file(path))
}

pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    with(from, |fs| fs.rename(from, to))
}
