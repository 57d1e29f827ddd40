//! The clean-close marker `STORE/session`: what lets [`Store::open`] skip the work only a crash
//! calls for (issue 16: an open whose cost does not grow with the queue).
//!
//! - **Clean** — the last holder closed the store: every part file had its rows, the WAL was
//!   checkpointed, and the database file and `parts/` still have the length and modification
//!   times recorded then (set a nanosecond back at close, so that no later change, even within
//!   the same tick of the file system's clock, can keep them). The whole-database check (`PRAGMA quick_check`) and the part-file scan are skipped.
//! - **Killed** — the last holder opened the store in this same boot and never closed it (a
//!   SIGKILL, a crash of the app): the operating system kept every write it had accepted, so
//!   SQLite's file cannot be torn and the whole-database check is skipped; the part-file scan
//!   (rows a capture left half-made) still runs.
//! - **Unknown** — anything else (no marker, another boot: a power loss or a reboot, a database
//!   changed since the close, a torn marker): both run, as before.
//!
//! The marker is removed, durably (folder fsync), before anything is written to an opened
//! store, so a power loss can never leave a "closed" marker in front of writes made after it.
//! Writing it at close needs no fsync: a lost or torn marker only means the next open checks
//! everything.

use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::{DB_FILE, Store, files};
use crate::error::Result;
use crate::fsutil::fsync_dir;

pub(super) const SESSION_FILE: &str = "session";
const MAGIC: &str = "apoyo-session 1";

/// How the previous holder left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shutdown {
    Clean,
    Killed,
    Unknown,
}

impl Shutdown {
    pub(super) fn name(self) -> &'static str {
        match self {
            Shutdown::Clean => "clean",
            Shutdown::Killed => "killed",
            Shutdown::Unknown => "unknown",
        }
    }

    /// Whether SQLite's file can be trusted without the whole-database check.
    pub(super) fn skips_db_check(self) -> bool {
        self != Shutdown::Unknown
    }
}

/// This boot's id (Linux and Android); `None` elsewhere, where no open counts as `Killed`.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn mtime_ns(m: &fs::Metadata) -> Option<u128> {
    Some(
        m.modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos(),
    )
}

/// The database file's length and modification time (ns), the WAL's length (0 if none) and
/// the modification time of `parts/` (a part file added or removed changes it).
fn db_stamp(dir: &Path) -> Option<String> {
    let m = fs::metadata(dir.join(DB_FILE)).ok()?;
    let wal = fs::metadata(dir.join(format!("{DB_FILE}-wal"))).map_or(0, |w| w.len());
    let parts = fs::metadata(files::parts_dir(dir)).ok()?;
    Some(format!(
        "{} {} {wal} {}",
        m.len(),
        mtime_ns(&m)?,
        mtime_ns(&parts)?
    ))
}

/// Steps the modification time of `path` (a file or a folder) back a nanosecond: a time no
/// later change can produce, even within the same tick of the file system's coarse clock.
fn step_back_mtime(path: &Path, writable: bool) -> Option<()> {
    let f = fs::OpenOptions::new()
        .read(!writable)
        .write(writable)
        .open(path)
        .ok()?;
    let mtime = f.metadata().ok()?.modified().ok()?;
    f.set_modified(mtime.checked_sub(std::time::Duration::from_nanos(1))?)
        .ok()
}

/// Reads the marker the previous holder left.
pub(super) fn previous(dir: &Path) -> Shutdown {
    let Ok(text) = fs::read_to_string(dir.join(SESSION_FILE)) else {
        return Shutdown::Unknown;
    };
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Shutdown::Unknown;
    }
    let (state, boot, stamp) = (lines.next(), lines.next(), lines.next());
    match (state, boot) {
        (Some("closed"), Some(_)) if stamp.is_some() && stamp == db_stamp(dir).as_deref() => {
            Shutdown::Clean
        }
        (Some("open"), Some(b)) if boot_id().as_deref() == Some(b) => Shutdown::Killed,
        _ => Shutdown::Unknown,
    }
}

/// Marks the store open: the marker is removed durably, then (without fsync: losing it only
/// costs a full check) replaced by one naming this boot.
pub(super) fn mark_open(dir: &Path) -> Result<()> {
    match fs::remove_file(dir.join(SESSION_FILE)) {
        Ok(()) => fsync_dir(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // Best effort: without this note (a full disk refuses it; a torn one reads as no note) the
    // next open checks everything, which is always safe, and a full disk must still open.
    if let Some(boot) = boot_id() {
        let _ = fs::write(dir.join(SESSION_FILE), format!("{MAGIC}\nopen\n{boot}\n"));
    }
    Ok(())
}

impl Store {
    /// At close: when every part file has its rows, checkpoints the WAL and records the
    /// database file's stamp. Best effort: any doubt leaves no "closed" marker.
    fn mark_closed(&mut self) -> Option<()> {
        if std::thread::panicking() {
            return None;
        }
        let rows: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(n), 0) FROM queue_counts WHERE state <> 'purged'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        let files = fs::read_dir(files::parts_dir(&self.dir))
            .ok()?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parts"))
            })
            .count();
        if files as i64 != rows {
            return None;
        }
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .ok()?;
        if busy != 0 {
            return None;
        }
        step_back_mtime(&self.dir.join(DB_FILE), true)?;
        step_back_mtime(&files::parts_dir(&self.dir), false)?;
        let (boot, stamp) = (boot_id().unwrap_or_default(), db_stamp(&self.dir)?);
        let tmp = self.dir.join(format!("{SESSION_FILE}.tmp"));
        fs::write(&tmp, format!("{MAGIC}\nclosed\n{boot}\n{stamp}\n")).ok()?;
        fs::rename(&tmp, self.dir.join(SESSION_FILE)).ok()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.mark_closed().is_none() {
            let _ = fs::remove_file(self.dir.join(format!("{SESSION_FILE}.tmp")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join(DB_FILE), b"db").expect("db");
        fs::create_dir(files::parts_dir(d.path())).expect("parts");
        d
    }

    fn closed_marker(dir: &Path) {
        step_back_mtime(&dir.join(DB_FILE), true).expect("db mtime");
        step_back_mtime(&files::parts_dir(dir), false).expect("parts mtime");
        let stamp = db_stamp(dir).expect("stamp");
        fs::write(
            dir.join(SESSION_FILE),
            format!("{MAGIC}\nclosed\nb\n{stamp}\n"),
        )
        .expect("marker");
    }

    #[test]
    fn only_an_untouched_clean_close_skips_the_checks() {
        let d = folder();
        assert_eq!(previous(d.path()), Shutdown::Unknown);
        closed_marker(d.path());
        assert_eq!(previous(d.path()), Shutdown::Clean);
        // The database written after the close, even at once (same clock tick), or a WAL.
        fs::write(d.path().join(DB_FILE), b"dB").expect("db");
        assert_eq!(previous(d.path()), Shutdown::Unknown);
        closed_marker(d.path());
        fs::write(d.path().join(format!("{DB_FILE}-wal")), b"frames").expect("wal");
        assert_eq!(previous(d.path()), Shutdown::Unknown);
        fs::remove_file(d.path().join(format!("{DB_FILE}-wal"))).expect("wal");
        assert_eq!(previous(d.path()), Shutdown::Clean);
        // A part file added after the close.
        fs::write(files::parts_dir(d.path()).join("x.parts"), b"x").expect("part");
        assert_eq!(previous(d.path()), Shutdown::Unknown);
        // A torn marker.
        closed_marker(d.path());
        let text = fs::read_to_string(d.path().join(SESSION_FILE)).expect("marker");
        fs::write(d.path().join(SESSION_FILE), &text[..text.len() - 3]).expect("torn");
        assert_eq!(previous(d.path()), Shutdown::Unknown);
    }

    #[test]
    fn an_open_marker_is_killed_only_in_the_same_boot() {
        let d = folder();
        mark_open(d.path()).expect("open");
        let expected = if boot_id().is_some() {
            Shutdown::Killed
        } else {
            Shutdown::Unknown
        };
        assert_eq!(previous(d.path()), expected);
        fs::write(
            d.path().join(SESSION_FILE),
            format!("{MAGIC}\nopen\nanother-boot\n"),
        )
        .expect("marker");
        assert_eq!(previous(d.path()), Shutdown::Unknown);
        // A "closed" marker never survives an open, even if no boot id can be read.
        closed_marker(d.path());
        mark_open(d.path()).expect("open");
        assert_ne!(previous(d.path()), Shutdown::Clean);
    }
}
