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
    Ok(())
}
