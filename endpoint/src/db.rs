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
    include_str!("../schema/0004_registration_hardening.sql"),
    include_str!("../schema/0005_commit_limits.sql"),
    include_str!("../schema/0006_upload_digest.sql"),
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
/// | `synchronous` | `FULL` | a commit that answered 201 must survive power loss (NORMAL can roll it back); an upload's creation and offset alone commit at `NORMAL` (`Db::begin_unflushed`, ADR 0021) |
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

    /// Migration 4 on a version-3 database: codes kept in clear are deleted (with the
    /// development mailbox), and registrations of a device holding a token count as activated.
    #[test]
    fn migration_4_drops_clear_codes_and_keeps_activated_registrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoint.db");
        let mut conn = Connection::open(&path).unwrap();
        apply_pragmas(&conn).unwrap();
        for (i, script) in MIGRATIONS.iter().take(3).enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(script).unwrap();
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let (a, b) = ([1u8; 32], [2u8; 32]);
        conn.execute_batch(&format!(
            "INSERT INTO devices VALUES (X'{a}', 'a', 1), (X'{b}', 'b', 1);
             INSERT INTO registrations VALUES ('ra', X'{a}', 'google', X'00', X'00', 1),
                                              ('rb', X'{b}', 'google', X'00', X'00', 1);
             INSERT INTO activation_codes VALUES ('ABCDEFGHJK', X'{b}', 'rb', 1, 2);
             INSERT INTO tokens VALUES (X'03', X'{a}', 1, 2, NULL);
             INSERT INTO dev_mailbox VALUES ('ana@example.org', 'ABCDEFGHJK', 2);",
            a = hex::encode(a),
            b = hex::encode(b)
        ))
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT count(*) FROM activation_codes"), 0);
        assert_eq!(count("SELECT count(*) FROM dev_mailbox"), 0);
        assert_eq!(
            count(
                "SELECT count(*) FROM registrations WHERE activated_at IS NOT NULL AND registration_id = 'ra'"
            ),
            1
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM registrations WHERE activated_at IS NULL AND registration_id = 'rb'"
            ),
            1
        );
    }
}
