//! Opening the SQLite connection with the pragmas the promises rest on.
//!
//! | pragma | value | why |
//! |---|---|---|
//! | `journal_mode` | `WAL` | one fsync per commit; readers never block the writer |
//! | `synchronous` | `FULL` | in WAL mode `NORMAL` can roll back a commit that already returned, after a power loss; only transactions whose loss a later step rebuilds run with `NORMAL`: the one that indexes a new capture (its part file is already durable and rebuilds it), a part's upload URL and acknowledged offset (the endpoint's offset is the truth), a part's digest (computed again) — ADR 0013 and its amendment, [`with_unflushed_commit`] |
//! | `fullfsync`, `checkpoint_fullfsync` | `ON` | on Apple platforms a plain fsync does not flush the drive cache (no-op elsewhere) |
//! | `secure_delete` | `ON` | deleted rows (key wraps, receipts) are overwritten, not left in free pages |
//! | `foreign_keys` | `ON` | a part or key wrap can't outlive its capture row |
//! | `trusted_schema` | `OFF` | the schema can't run functions with side effects |
//! | `application_id` | `0x41505953` ("APYS") | tells an apoyo store from any other SQLite file |
//! | `busy_timeout` | 5000 ms | a reader in another process does not fail a write at once |
//! | `cache_size` | 512 KiB | the page cache stops growing with the queue (SQLite's default, 2 MB, filled as the queue grew: peak RSS syncing 1,000 queued was 1.19 × that of 100); the queue's reads are index seeks and one-pass scans |

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// "APYS".
pub const APPLICATION_ID: i64 = 0x4150_5953;

/// The page cache's bound, as SQLite spells it (negative: KiB).
const CACHE_KIB: i64 = -512;

/// Applies the connection pragmas (safe on an existing, healthy store).
pub fn apply_pragmas(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "fullfsync", "ON")?;
    conn.pragma_update(None, "checkpoint_fullfsync", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    conn.busy_timeout(std::time::Duration::from_millis(5000))?;
    Ok(())
}

/// Runs `f`, whose transaction must not need its own flush, with `synchronous=NORMAL`, and
/// puts `FULL` back afterwards, whatever `f` returned.
///
/// Only for a transaction whose loss a later step rebuilds: the one that indexes a new capture
/// (its part file, trailer included, is durable before the commit, so a power loss that rolls
/// the commit back loses nothing: `Store::open` rebuilds the rows from the file), and a part's
/// upload URL or acknowledged offset (lost, the upload is created again or asked where it
/// stands; ADR 0013, amendment). In WAL mode the WAL is append-only, so the
/// next `FULL` commit flushes this one's frames too, and a later state change can never reach
/// the disk without it. (The level cannot change inside a transaction, hence around it.)
pub fn with_unflushed_commit<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = f(conn);
    back_to_full(conn, result)
}

/// [`with_unflushed_commit`] for a transaction whose loss is harmless because what it records
/// is computed again (a part's digest): the same `NORMAL` level around it, over a shared
/// connection.
pub fn with_unflushed<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = f(conn);
    back_to_full(conn, result)
}

/// Puts `synchronous=FULL` back after an unflushed transaction, whatever it returned.
fn back_to_full<T>(conn: &Connection, result: Result<T>) -> Result<T> {
    let restored = conn.pragma_update(None, "synchronous", "FULL");
    let value = result?;
    restored?;
    Ok(value)
}

/// Creates a new database file at `path` with the application id set.
pub fn create(path: &Path) -> Result<Connection> {
    crate::fsutil::precreate_private(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    apply_pragmas(&conn)?;
    Ok(conn)
}

/// Opens an existing store database **read-only**, after checking that it is a healthy apoyo
/// store of a version this engine knows. A damaged file gives [`Error::CorruptStore`] and is
/// left exactly as it was. The caller reads what it must check (the device record, the keys)
/// through this connection and opens a writing one ([`open_read_write`]) only once all is
/// well: closing a read-write connection checkpoints the WAL into the database and deletes
/// it, which would rewrite a store that is then refused (say, opened with another keyring
/// after a crash left a WAL).
///
/// `full` (the disk has no room): the `-shm` file cannot grow, so the connection keeps its WAL
/// index in memory (`EXCLUSIVE` locking before the first WAL access), which SQLite allows only
/// to a read-write connection: it is opened read-write with the checkpoint at close turned
/// off, so it still writes nothing. SQLite failing there is then [`Error::StorageFull`]; what
/// it read and found wrong is still a corrupt store.
///
/// `whole_check`: run `PRAGMA quick_check` (every page), which only a crash that may have torn
/// the file calls for (`session.rs`); the header, application id and version are always checked.
pub fn open_existing(path: &Path, full: Option<u64>, whole_check: bool) -> Result<Connection> {
    let corrupt = |detail: String| Error::CorruptStore {
        path: path.to_path_buf(),
        detail,
    };
    check_header(path)?.map_err(corrupt)?;
    let ro = open_for_checking(path, full)?;
    // On a full disk SQLite itself may fail for want of room (its index, a temporary file):
    // that is storage full. What it read, once read, is judged as always: a header, id or
    // check that is wrong is a corrupt store, to be set aside, full disk or not.
    let (app, qc, v) = read_checks(&ro, whole_check).map_err(|e| match full {
        Some(available) => Error::StorageFull {
            available,
            needed: FULL_DISK_BYTES,
        },
        None => corrupt(format!("SQLite: {}", sqlite_code(&e))),
    })?;
    if app != APPLICATION_ID {
        return Err(corrupt("not an apoyo-sync store (application id)".into()));
    }
    if qc != "ok" {
        return Err(corrupt("integrity check failed".into()));
    }
    if v < 1 {
        // A store is made at version 1 or later in the same transaction as its tables; 0
        // or a negative version is a damaged header, never a store to migrate.
        return Err(corrupt(format!("schema version {v} is not a store's")));
    }
    if v > super::migrations::LATEST {
        return Err(Error::StoreVersion {
            found: v,
            supported: super::migrations::LATEST,
        });
    }
    Ok(ro)
}

/// The header must be SQLite's before SQLite is allowed near the file, unless a WAL is beside
/// it (the length is checked either way): a power loss during a checkpoint can leave the
/// database file's first page torn or garbage while the WAL still holds its good copy, which
/// SQLite reads instead (and the checkpoint of the next writing connection puts back). Then
/// SQLite decides, read-only. `Ok(Err(..))` says what is wrong; `Err` is a file that cannot be
/// read at all (not a verdict on the store).
fn check_header(path: &Path) -> Result<std::result::Result<(), String>> {
    let mut header = [0u8; 20];
    let header_read = {
        use std::io::Read;
        std::fs::File::open(path)?.read_exact(&mut header)
    };
    // Never shorter than a header, WAL or not: with an empty main file SQLite would delete the
    // WAL beside it, even through a read-only connection.
    if header_read.is_err() {
        return Ok(Err("shorter than a database header".into()));
    }
    if has_wal(path) {
        return Ok(Ok(()));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Ok(Err("not an SQLite database".into()));
    }
    // Bytes 18 and 19: the file format's write and read versions (1 legacy, 2 WAL). A higher
    // one is a format this SQLite does not know: it would open the file read-only and fail at
    // the first write, so refuse it here as an unknown format.
    let (write_version, read_version) = (header[18], header[19]);
    if !(1..=2).contains(&write_version) || !(1..=2).contains(&read_version) {
        return Ok(Err(format!(
            "unknown SQLite file format (write version {write_version}, read version {read_version})"
        )));
    }
    Ok(Ok(()))
}

/// The connection the checks read through: read-only, so a refused store is never written,
/// not even by a checkpoint when it closes (on a full disk, see [`open_existing`]).
fn open_for_checking(path: &Path, full: Option<u64>) -> Result<Connection> {
    Ok(match full {
        None => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
        Some(_) => {
            let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            c.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )?;
            c.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
            c
        }
    })
}

/// The application id, the integrity check's verdict (`quick_check` when `whole_check`; else
/// only the schema is parsed) and the schema version.
fn read_checks(conn: &Connection, whole_check: bool) -> rusqlite::Result<(i64, String, i64)> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let qc: String = if whole_check {
        conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?
    } else {
        // Reading the schema still parses every table's definition.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })?;
        "ok".to_string()
    };
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((app, qc, v))
}

/// Whether a non-empty WAL lies beside the database at `path`.
fn has_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// The writing connection to a store that [`open_existing`] checked and whose keys unwrapped
/// (on a full disk, `full`, with its WAL index in memory as there).
pub fn open_read_write(path: &Path, full: Option<u64>) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    // SQLite opens a file whose format it cannot write (a raised write version) read-only
    // without a word; the header check above is skipped when a WAL is beside the file.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        // A file we may not write is an access problem (reported as such), not a bad store.
        drop(std::fs::OpenOptions::new().write(true).open(path)?);
        return Err(Error::CorruptStore {
            path: path.to_path_buf(),
            detail: "unknown SQLite file format (SQLite can only read it)".into(),
        });
    }
    if full.is_some() {
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    }
    Ok(conn)
}

/// Below this much free space the disk counts as full: the store is opened so that it can
/// still be read, and what cannot be written is [`Error::StorageFull`].
pub const FULL_DISK_BYTES: u64 = 1024 * 1024;

/// The free space in `dir` when it is below [`FULL_DISK_BYTES`] (`None`: there is room, or it
/// cannot be told).
pub fn full_disk(dir: &Path) -> Option<u64> {
    fs4::available_space(dir)
        .ok()
        .filter(|a| *a < FULL_DISK_BYTES)
}

/// Empties the WAL into the database (`PRAGMA wal_checkpoint(TRUNCATE)`), so the old copies of
/// pages a crypto-shred overwrote (a data-key wrap) leave the WAL too. A reader in another
/// process can hold the checkpoint off past the busy timeout (SQLite then answers `busy = 1`
/// and leaves the WAL as it was): it is retried a few times with backoff, and still busy it
/// is [`Error::StoreBusy`], never reported as done.
pub fn checkpoint_truncate(conn: &Connection) -> Result<()> {
    use backon::BackoffBuilder as _;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(2))
        .with_max_times(4)
        .build();
    loop {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        match delays.next() {
            Some(d) => std::thread::sleep(d),
            None => return Err(Error::StoreBusy),
        }
    }
}

fn sqlite_code(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => format!("{:?}", f.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader holding the checkpoint off past the busy timeout: one attempt (what purge did)
    /// reports busy and leaves the WAL; [`checkpoint_truncate`] waits it out and empties it.
    #[test]
    fn a_busy_checkpoint_is_retried_until_the_wal_is_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.db");
        let conn = create(&path).expect("create");
        conn.busy_timeout(std::time::Duration::from_millis(50))
            .expect("busy timeout");
        conn.execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(4096));")
            .expect("write");
        let reader = Connection::open(&path).expect("reader");
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .expect("read");
        conn.execute("UPDATE t SET x = zeroblob(8192)", [])
            .expect("write under the reader");
        let wal = dir.path().join("x.db-wal");
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .expect("checkpoint");
        assert_eq!(busy, 1, "the reader holds the checkpoint off");
        assert!(std::fs::metadata(&wal).expect("wal").len() > 0);
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            reader.execute_batch("COMMIT").expect("end the read");
            drop(reader);
        });
        checkpoint_truncate(&conn).expect("retried until done");
        release.join().expect("reader thread");
        assert_eq!(std::fs::metadata(&wal).expect("wal").len(), 0);
    }

    fn level(c: &Connection) -> i64 {
        c.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous")
    }

    /// The capture's commit runs at NORMAL (1); every other transaction at FULL (2), even
    /// after the capture's failed.
    #[test]
    fn an_unflushed_commit_puts_full_back_whatever_happens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = create(&dir.path().join("t.db")).expect("create");
        assert_eq!(level(&conn), 2);
        let inside = with_unflushed_commit(&mut conn, |c| Ok(level(c))).expect("ok");
        assert_eq!(inside, 1);
        assert_eq!(level(&conn), 2);
        let failed: Result<()> =
            with_unflushed_commit(&mut conn, |_| Err(Error::Internal("refused".into())));
        assert!(failed.is_err());
        assert_eq!(level(&conn), 2);
    }

    /// Found by the power-loss suite (tests/powerloss, migration, seed 2, sync point 6): the
    /// power went out while a checkpoint flushed the database file, leaving its first page
    /// garbage while the WAL held the good copy. SQLite reads that copy; the store must open,
    /// not be reported corrupt (and set aside).
    #[test]
    fn a_first_page_torn_by_a_checkpoint_opens_from_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        drop(create(&path).expect("create"));
        {
            let conn = open_read_write(&path, None).expect("open");
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .expect("no checkpoint on close");
            // Page 1 (application id, version) is now only in the WAL.
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
        }
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[..16].copy_from_slice(&[0xA5; 16]);
        std::fs::write(&path, &bytes).expect("garble the first sector");
        let conn = open_existing(&path, None, true).expect("opens from the WAL");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, 1);
        // Without a WAL the same bytes are refused before SQLite reads them.
        drop(conn);
        let other = dir.path().join("u.db");
        std::fs::write(&other, &bytes).expect("copy without its WAL");
        assert!(matches!(
            open_existing(&other, None, true),
            Err(Error::CorruptStore { .. })
        ));
    }

    /// An empty main file beside a WAL is refused before SQLite opens it: SQLite would delete
    /// the WAL (the only copy left) even through a read-only connection.
    #[test]
    fn an_empty_file_beside_a_wal_is_refused_and_the_wal_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        std::fs::write(&path, b"").expect("empty main file");
        let wal = dir.path().join("t.db-wal");
        std::fs::write(&wal, [7u8; 4096]).expect("a WAL");
        assert!(matches!(
            open_existing(&path, None, true),
            Err(Error::CorruptStore { .. })
        ));
        assert_eq!(
            std::fs::read(&wal).expect("the WAL is still there").len(),
            4096
        );
    }
}
