//! Small filesystem helpers shared by the layers that make files durable (the keyring, the
//! store, the reference endpoint, the benchmarks). Below `crypto` and `store`: it depends on
//! nothing in the crate.

use std::io;
use std::path::Path;

/// fsyncs a directory, so that a file created, renamed or removed in it survives power loss.
/// (A no-op where directories cannot be opened and synced, off Unix.)
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    #[cfg(any(test, feature = "testkit"))]
    fsync_log::note(dir);
    Ok(())
}

/// Test seam (`testkit` builds only): which folders [`fsync_dir`] synced, so a test can check
/// that a folder is made durable after a file is created or renamed in it.
#[cfg(any(test, feature = "testkit"))]
pub mod fsync_log {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError, RwLock};

    type Log = Arc<Mutex<Vec<PathBuf>>>;

    static RECORDERS: RwLock<Vec<(u64, PathBuf, Log)>> = RwLock::new(Vec::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);

    /// Records every folder synced under `root` (compared as given) until the recorder drops.
    pub fn record(root: &Path) -> Recorder {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let log = Log::default();
        RECORDERS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, root.to_path_buf(), log.clone()));
        Recorder { id, log }
    }

    /// The folders synced so far, in order; stops recording when dropped.
    #[must_use = "recording stops when this is dropped"]
    pub struct Recorder {
        id: u64,
        log: Log,
    }

    impl Recorder {
        /// Every folder synced since [`record`], in order (repeats kept).
        pub fn synced(&self) -> Vec<PathBuf> {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            RECORDERS
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(id, _, _)| *id != self.id);
        }
    }

    pub(super) fn note(dir: &Path) {
        let recorders = RECORDERS.read().unwrap_or_else(PoisonError::into_inner);
        for (_, _, log) in recorders
            .iter()
            .filter(|(_, root, _)| dir.starts_with(root))
        {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(dir.to_path_buf());
        }
    }
}

/// Creates (or truncates) a file only its owner can read and write (`0600` on Unix): for files
/// holding personal data or keys.
pub fn create_private(path: &Path) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    // Never through a link planted at that name.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a symbolic link is in the way of a private file",
        ));
    }
    let f = o.open(path)?;
    // The mode above applies only to a file this call creates: an existing one keeps its own.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Creates a folder (and its parents) only its owner can enter (`0700` on Unix) for what
/// `create_dir_all` would make; an existing folder keeps its mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Makes an empty `0600` file at `path` unless one exists, so that a database SQLite is about
/// to create there (and its `-wal` and `-shm` files, which take the database's mode) is
/// readable by its owner only.
pub fn precreate_private(path: &Path) -> io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`create_private_dir`], then fsyncs the parent of `dir` when `dir` was new, so the new entry
/// survives power loss.
pub fn create_private_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    create_private_dir(dir)?;
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => fsync_dir(p),
        _ => Ok(()),
    }
}
