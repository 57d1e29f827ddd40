//! The endpoint's SQLite database: one connection, opened with documented pragmas, migrated by
//! numbered scripts (`endpoint/schema/NNNN_*.sql`), each applied in a transaction that bumps
//! `user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::EndpointError;

/// The migrations, in order; migration *n* brings the schema to `user_version = n`.
const MIGRATIONS: &[&str] = &[
    include_str!("../schema/0001_init.sql"),
    include_str!("../schema/0002_abuse_limits.sql"),
    include_str!("../schema/0003_v11_trust.sql"),
    // 0004 (registration) and 0006 (uploads) come from other branches; the merge orders them.
    include_str!("../schema/0005_commit_limits.sql"),
];

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for a lock held by another connection (an operator's `sqlite3`
/// shell, a backup) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) and migrates the database at `path`.
pub fn open(path: &Path) -> Result<Connection, EndpointError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        apoyo_sync::wire::create_private_dir_durably(parent)?;
    }
    apoyo_sync::wire::precreate_private(path)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    apply_pragmas(&conn)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// | pragma | value | why |
/// |---|---|---|
/// | `journal_mode` | `WAL` | readers do not block the writer |
/// | `synchronous` | `FULL` | a commit that answered 201 must survive power loss (NORMAL can roll it back) |
/// | `foreign_keys` | `ON` | registrations, codes and tokens must name a known device |
/// | `busy_timeout` | 5 s | tolerate an operator's shell or a backup holding a lock briefly |
fn apply_pragmas(conn: &Connection) -> Result<(), EndpointError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(EndpointError::Config(format!(
            "the database refused WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn version(conn: &Connection) -> Result<i64, EndpointError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn migrate(conn: &mut Connection) -> Result<(), EndpointError> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(EndpointError::SchemaVersion {
            found,
            supported: LATEST,
        });
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/endpoint.db");
        let conn = open(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        drop(conn);
        // Reopening does not re-run migration 1 (it would fail: the tables exist).
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            open(&path),
            Err(EndpointError::SchemaVersion { .. })
        ));
    }
}
