//! Opening the SQLite connection with the pragmas the promises rest on.
//!
//! | pragma | value | why |
//! |---|---|---|
//! | `journal_mode` | `WAL` | one fsync per commit; readers never block the writer |
//! | `synchronous` | `FULL` | in WAL mode `NORMAL` can roll back a commit that already returned, after a power loss; only the transaction that indexes a new capture runs with `NORMAL`, because its part file is already durable and rebuilds it (ADR 0013, [`with_unflushed_commit`]) |
//! | `fullfsync`, `checkpoint_fullfsync` | `ON` | on Apple platforms a plain fsync does not flush the drive cache (no-op elsewhere) |
//! | `secure_delete` | `ON` | deleted rows (key wraps, receipts) are overwritten, not left in free pages |
//! | `foreign_keys` | `ON` | a part or key wrap can't outlive its capture row |
//! | `trusted_schema` | `OFF` | the schema can't run functions with side effects |
//! | `application_id` | `0x41505953` ("APYS") | tells an apoyo store from any other SQLite file |
//! | `busy_timeout` | 5000 ms | a reader in another process does not fail a write at once |

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// "APYS".
pub const APPLICATION_ID: i64 = 0x4150_5953;

/// Applies the connection pragmas (safe on an existing, healthy store).
pub fn apply_pragmas(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "fullfsync", "ON")?;
    conn.pragma_update(None, "checkpoint_fullfsync", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_millis(5000))?;
    Ok(())
}

/// Runs `f`, whose transaction must not need its own flush, with `synchronous=NORMAL`, and
/// puts `FULL` back afterwards, whatever `f` returned.
///
/// Only for the transaction that indexes a new capture: its part file, trailer included, is
/// durable before the commit, so a power loss that rolls the commit back loses nothing
/// (`Store::open` rebuilds the rows from the file). In WAL mode the WAL is append-only, so the
/// next `FULL` commit flushes this one's frames too, and a later state change can never reach
/// the disk without it. (The level cannot change inside a transaction, hence around it.)
pub fn with_unflushed_commit<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = f(conn);
    let restored = conn.pragma_update(None, "synchronous", "FULL");
    let value = result?;
    restored?;
    Ok(value)
}

/// Creates a new database file at `path` with the application id set.
pub fn create(path: &Path) -> Result<Connection> {
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
/// `whole_check`: run `PRAGMA quick_check` (every page), which only a crash that may have torn
/// the file calls for (`session.rs`); the header, application id and version are always checked.
pub fn open_existing(path: &Path, whole_check: bool) -> Result<Connection> {
    let corrupt = |detail: String| Error::CorruptStore {
        path: path.to_path_buf(),
        detail,
    };
    // The header must be SQLite's before SQLite is allowed near the file.
    let mut header = [0u8; 16];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        f.read_exact(&mut header)
            .map_err(|_| corrupt("shorter than a database header".into()))?;
    }
    if &header != b"SQLite format 3\0" {
        return Err(corrupt("not an SQLite database".into()));
    }
    // Check through a read-only connection: a refused store is never written, not even by a
    // checkpoint when the checking connection closes.
    let ro = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    {
        let check =
            |conn: &Connection| -> std::result::Result<(i64, String, i64), rusqlite::Error> {
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
            };
        let (app, qc, v) =
            check(&ro).map_err(|e| corrupt(format!("SQLite: {}", sqlite_code(&e))))?;
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
    }
    Ok(ro)
}

/// The writing connection to a store that [`open_existing`] checked and whose keys unwrapped.
pub fn open_read_write(path: &Path) -> Result<Connection> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
    )?)
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
}
