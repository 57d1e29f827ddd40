//! Numbered schema migrations (`schema/NNNN_*.sql`), each applied inside one transaction
//! together with the `user_version` bump, so a crash leaves the store at one version or the
//! next, never in between. Migrations only add: none may drop or rewrite a queued capture.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// The migrations, in order; index + 1 is the version each produces.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../schema/0001_init.sql"),
    include_str!("../../schema/0002_sync.sql"),
    include_str!("../../schema/0003_trust.sql"),
    include_str!("../../schema/0004_queue_counts.sql"),
    include_str!("../../schema/0005_link_memory.sql"),
];

/// The schema version this engine writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies every migration after the current version up to `target`.
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let current = version(conn)?;
    if current > LATEST {
        return Err(Error::StoreVersion {
            found: current,
            supported: LATEST,
        });
    }
    for v in (current + 1)..=target.min(LATEST) {
        let sql = MIGRATIONS[(v - 1) as usize];
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema fingerprint, shared with `tests/store_more.rs`.
#[cfg(test)]
#[path = "../../tests/common/schema.rs"]
mod test_schema;

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_schema::schema_of;

    #[test]
    fn upgrading_from_1_equals_fresh_and_keeps_queued_captures() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Connection::open(dir.path().join("old.db")).unwrap();
        migrate_to(&mut old, 1).unwrap();
        assert_eq!(version(&old).unwrap(), 1);
        // A queued capture with its parts and keys, in every state that can exist at v1.
        for (i, state) in ["captured", "uploading", "quarantined"].iter().enumerate() {
            let id = format!("0190000{i}-0000-7000-8000-000000000000");
            old.execute(
                "INSERT INTO captures (id, process_id, collector_kind, collector_id, captured_at, dup_key, state, total_bytes, updated_at)
                 VALUES (?1, 'p', 'auxiliar', 'a1', '2022-01-01T00:00:00Z', ?2, ?3, 10, '2022-01-01T00:00:00Z')",
                rusqlite::params![id, vec![i as u8; 32], state],
            )
            .unwrap();
            old.execute("INSERT INTO parts (capture_id, kind, file_offset, ct_len, sha256) VALUES (?1, 'front', 0, 10, x'00')", [&id])
                .unwrap();
            old.execute("INSERT INTO capture_keys VALUES (?1, x'01', x'02')", [&id])
                .unwrap();
        }
        migrate_to(&mut old, LATEST).unwrap();
        assert_eq!(version(&old).unwrap(), LATEST);
        let mut fresh = Connection::open(dir.path().join("fresh.db")).unwrap();
        migrate_to(&mut fresh, LATEST).unwrap();
        let (upgraded, fresh) = (schema_of(&old), schema_of(&fresh));
        // The fingerprint covers every table, its columns and its indexes.
        for probe in [
            "table captures: CREATE TABLE captures",
            "table receipts: CREATE TABLE receipts",
            "column of parts: 7|'uploaded_bytes'|'INTEGER'|1|'0'|0|0",
            "foreign key of capture_keys:",
            "index captures_by_dup_key: CREATE INDEX",
            "index sqlite_autoindex_parts_1 of parts:",
        ] {
            assert!(
                fresh.iter().any(|l| l.starts_with(probe)),
                "no {probe:?} in {fresh:#?}"
            );
        }
        assert!(
            fresh
                .iter()
                .any(|l| l.starts_with("table of receipts:") && l.ends_with("|1")),
            "receipts is not STRICT: {fresh:#?}"
        );
        assert_eq!(upgraded, fresh);
        let n: i64 = old
            .query_row("SELECT count(*) FROM captures", [], |r| r.get(0))
            .unwrap();
        let p: i64 = old
            .query_row("SELECT count(*) FROM parts", [], |r| r.get(0))
            .unwrap();
        let k: i64 = old
            .query_row("SELECT count(*) FROM capture_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!((n, p, k), (3, 3, 3));
        let states: Vec<String> = old
            .prepare("SELECT state FROM captures ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        assert_eq!(states, ["captured", "uploading", "quarantined"]);
        // The columns migration 2 added hold their defaults in the rows it found.
        let upload: Vec<(Option<String>, Option<String>, i64)> = old
            .prepare(
                "SELECT upload_url, upload_expires, uploaded_bytes FROM parts ORDER BY capture_id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        assert_eq!(upload, vec![(None, None, 0); 3]);
    }

    #[test]
    fn migration_5_adds_an_empty_link_memory_and_keeps_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("v4.db")).unwrap();
        migrate_to(&mut conn, 4).unwrap();
        conn.execute(
            "INSERT INTO captures (id, process_id, collector_kind, collector_id, captured_at, dup_key, state, total_bytes, updated_at)
             VALUES ('01900000-0000-7000-8000-000000000000', 'p', 'auxiliar', 'a1', '2022-01-01T00:00:00Z', x'00', 'uploading', 10, '2022-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        migrate_to(&mut conn, 5).unwrap();
        assert_eq!(version(&conn).unwrap(), 5);
        // One row, nothing learned yet: the first run after the upgrade starts afresh.
        let (rows, nulls): (i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(patch_size IS NULL AND patch_ceiling IS NULL AND pace IS NULL
                     AND slow_link IS NULL AND learned_at_ms IS NULL AND endpoint_url IS NULL
                     AND catalog_url IS NULL AND catalog_at_ms IS NULL) FROM link_memory",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, nulls), (1, 1));
        // The singleton holds: a second row is refused.
        assert!(
            conn.execute("INSERT INTO link_memory (singleton) VALUES (2)", [])
                .is_err()
        );
        let kept: (String, i64) = conn
            .query_row("SELECT state, total_bytes FROM captures", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kept, ("uploading".to_string(), 10));
    }

    #[test]
    fn no_migration_drops_or_deletes() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            let upper = m.to_uppercase();
            for banned in [
                "DROP TABLE",
                "DELETE FROM",
                "DROP COLUMN",
                "UPDATE CAPTURES",
            ] {
                assert!(
                    !upper.contains(banned),
                    "migration {} contains {banned}",
                    i + 1
                );
            }
        }
    }

    /// Migrations are frozen once they land: a store in the field was built by exactly these
    /// bytes. To change the schema, add a migration; never edit one. (Before the first landing,
    /// 0001 and 0002 were reshaped within one development session; no store was made by the
    /// earlier shapes outside it.)
    #[test]
    fn landed_migrations_are_frozen() {
        const LANDED: [&str; 2] = [
            "d44cbbbeee815960f1e32015f95212551539a25f0d60dc8eef7c17cb560249d2",
            "b83274b57a15c83096c2e7916d3489adacd5a35319b99ef6894478f19b93498a",
        ];
        for (i, sql) in MIGRATIONS.iter().enumerate().take(LANDED.len()) {
            assert_eq!(
                hex::encode(crate::crypto::sha256(sql.as_bytes())),
                LANDED[i],
                "migration {} was edited in place: add a new migration instead",
                i + 1
            );
        }
    }

    #[test]
    fn refuses_a_newer_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("x.db")).unwrap();
        c.pragma_update(None, "user_version", LATEST + 1).unwrap();
        assert!(matches!(
            migrate_to(&mut c, LATEST),
            Err(Error::StoreVersion { .. })
        ));
    }
}
