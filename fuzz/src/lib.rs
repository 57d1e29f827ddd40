//! Shared glue of the fuzz targets: a virtual clock, temporary folders on tmpfs, a `Transport`
//! that drives the endpoint's axum `Router` in-process, and a template world (an endpoint with
//! activated devices and a device store) copied fresh for every input.
//!
//! Kept small and written against the core's public API, so narrowing that API behind a
//! `testkit` feature only changes the imports here.

pub mod bundle;
pub mod router;
pub mod seeds;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use apoyo_sync::Clock;
use time::OffsetDateTime;

/// A temporary folder, on `/dev/shm` when there is one (fsync is free there, so the stateful
/// targets run at memory speed; the durability code paths still run).
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let mut b = tempfile::Builder::new();
    b.prefix("apoyo-fuzz-");
    if shm.is_dir() {
        b.tempdir_in(shm).expect("a temporary folder on /dev/shm")
    } else {
        b.tempdir().expect("a temporary folder")
    }
}

/// Copies a folder tree (regular files and folders only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for e in std::fs::read_dir(from).expect("read folder") {
        let e = e.expect("folder entry");
        let target: PathBuf = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            copy_file(&e.path(), &target);
        }
    }
}

/// Copies one file, again when a signal interrupts the copy (libFuzzer's timers deliver
/// signals; `std::fs::copy` can return `Interrupted`).
fn copy_file(from: &Path, to: &Path) {
    loop {
        match std::fs::copy(from, to) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("copy file: {e}"),
        }
    }
}

/// A clock that reads the tokio runtime's (paused, auto-advancing) time: `base` plus the time
/// elapsed on the runtime since `origin`. Everything that reads it must run inside the runtime
/// (the targets run each input inside one `block_on`).
#[derive(Debug, Clone)]
pub struct VirtualClock {
    base: OffsetDateTime,
    origin: tokio::time::Instant,
}

impl VirtualClock {
    /// Must be called inside the runtime.
    pub fn new(base: OffsetDateTime) -> Self {
        VirtualClock {
            base,
            origin: tokio::time::Instant::now(),
        }
    }
    pub fn shared(self) -> Arc<dyn Clock> {
        Arc::new(self)
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        self.base + elapsed
    }

    /// The runtime's (virtual) instant: the engine's budget and deadlines run on it. The
    /// trait's default (the system's `Instant`) would leave a budget unspent however much
    /// virtual time the run's waits take.
    fn instant(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A current-thread runtime with paused time: sleeps and timeouts advance virtual time as soon
/// as the runtime is idle (a `spawn_blocking` task in flight holds the clock), so a sync run's
/// backoff and budget cost no wall time and each input is deterministic in its timing.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// Fails the input with `msg` when `cond` is false (a libFuzzer crash with a readable reason).
#[macro_export]
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("invariant violated: {}", format!($($msg)+));
        }
    };
}
