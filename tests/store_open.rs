//! The open whose cost does not grow with the queue (issue 16): after a clean close the
//! whole-database check and the part-file scan are skipped (`src/store/session.rs`), and the
//! per-state counters of schema 4 that `status` reads stay exact through every change.

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
