//! The open whose cost does not grow with the queue (issue 16): after a clean close the
//! whole-database check and the part-file scan are skipped (`src/store/session.rs`), and the
//! per-state counters of schema 4 that `status` reads stay exact through every change. Also
//! the part digests a sync's first use computes and records together.

mod common;

use apoyo_sync::State;
use apoyo_sync::testkit::store::migrations;
use rusqlite::Connection;

use common::*;

#[test]
fn a_clean_close_is_recognised_and_anything_else_is_checked() {
    let fx = Fixture::new();
    let mut store = fx.init();
    for i in 0..3 {
        store
            .capture(capture_of("nacional", &clave(700 + i)))
            .expect("capture");
    }
    drop(store);
    let store = fx.open().expect("open");
    assert_eq!(store.previous_shutdown(), "clean");
    assert_eq!(store.status().expect("status").captured, 3);
    drop(store);
    // A database changed behind the store's back after its close is checked again.
    let conn = Connection::open(fx.db_path()).expect("db");
    conn.execute(
        "UPDATE processes SET updated_at = '2000-01-01T00:00:00Z'",
        [],
    )
    .expect("touch");
    drop(conn);
    let store = fx.open().expect("open");
    assert_eq!(store.previous_shutdown(), "unknown");
    drop(store);
    assert_eq!(fx.open().expect("open").previous_shutdown(), "clean");
}

fn counts(conn: &Connection) -> Vec<(String, i64, i64)> {
    let q = |sql: &str| -> Vec<(String, i64, i64)> {
        conn.prepare(sql)
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let kept = q("SELECT state, n, bytes FROM queue_counts WHERE n <> 0 ORDER BY state");
    let real =
        q("SELECT state, count(*), sum(total_bytes) FROM captures GROUP BY state ORDER BY state");
    assert_eq!(kept, real, "the counters drifted from the rows");
    kept
}

fn insert(conn: &Connection, i: u32, state: &str, bytes: i64) {
    conn.execute(
        "INSERT INTO captures (id, process_id, collector_kind, collector_id, captured_at, dup_key, state, total_bytes, updated_at)
         VALUES (?1, 'p', 'auxiliar', 'a1', '2022-01-01T00:00:00Z', ?2, ?3, ?4, '2022-01-01T00:00:00Z')",
        rusqlite::params![format!("0190000{i}-0000-7000-8000-000000000000"), vec![i as u8; 32], state, bytes],
    )
    .expect("insert");
}

#[test]
fn migration_4_counts_the_rows_it_finds_and_the_triggers_keep_them_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = Connection::open(dir.path().join("s.db")).expect("db");
    migrations::migrate_to(&mut conn, 3).expect("v3");
    insert(&conn, 1, "captured", 10);
    insert(&conn, 2, "uploading", 20);
    insert(&conn, 3, "purged", 0);
    insert(&conn, 4, "captured", 5);
    migrations::migrate_to(&mut conn, migrations::LATEST).expect("latest");
    assert_eq!(
        counts(&conn),
        [
            ("captured".to_string(), 2, 15),
            ("purged".to_string(), 1, 0),
            ("uploading".to_string(), 1, 20)
        ]
    );
    insert(&conn, 5, "quarantined", 7);
    conn.execute(
        "UPDATE captures SET state = 'purged', total_bytes = 0 WHERE state = 'uploading'",
        [],
    )
    .expect("purge");
    conn.execute("UPDATE captures SET attempts = attempts + 1", [])
        .expect("attempts");
    conn.execute(
        "DELETE FROM captures WHERE id = '01900004-0000-7000-8000-000000000000'",
        [],
    )
    .expect("delete");
    assert_eq!(
        counts(&conn),
        [
            ("captured".to_string(), 1, 10),
            ("purged".to_string(), 2, 0),
            ("quarantined".to_string(), 1, 7)
        ]
    );
    let _ = State::Captured; // the states above are the queue's (src/queue.rs)
}

#[test]
fn part_digests_are_computed_on_first_use_and_recorded_together_for_later_uses() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let id = store
        .capture(capture_of("nacional", &clave(720)))
        .expect("capture");
    let missing = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM parts WHERE capture_id = ?1 AND sha256 IS NULL",
            [id.to_string()],
            |r| r.get(0),
        )
        .expect("count")
    };
    let conn = Connection::open(fx.db_path()).expect("db");
    // The capture path does not hash: every part waits for its first use.
    assert_eq!(missing(&conn), 5);
    let parts = store.parts(&id).expect("parts");
    assert_eq!(parts.len(), 5);
    for p in &parts {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut store.part_reader(&id, p).expect("reader"), &mut bytes)
            .expect("read");
        assert_eq!(
            p.sha256,
            apoyo_sync::wire::crypto::sha256(&bytes),
            "{:?}",
            p.kind
        );
    }
    // All five recorded (one transaction), and read back as they were computed.
    assert_eq!(missing(&conn), 0);
    let again = store.parts(&id).expect("parts again");
    let digests = |ps: &[apoyo_sync::testkit::store::PartRecord]| -> Vec<[u8; 32]> {
        ps.iter().map(|p| p.sha256).collect()
    };
    assert_eq!(digests(&again), digests(&parts));
    // A recorded digest is what later uses read: change it behind the store's back and the
    // next use reports the recorded one, not a fresh hash.
    conn.execute(
        "UPDATE parts SET sha256 = zeroblob(32) WHERE capture_id = ?1",
        [id.to_string()],
    )
    .expect("zero");
    let zeroed = store.parts(&id).expect("parts zeroed");
    assert!(zeroed.iter().all(|p| p.sha256 == [0; 32]));
}
