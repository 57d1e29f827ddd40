//! The layers really lose what was not synced: a part-file write and an SQLite commit that
//! were never flushed are gone after a simulated power loss (for the seeds whose fate drops
//! them), while flushed ones are always there. Without this, a suite that never loses
//! anything would pass whatever the store does.

use std::fs;

use apoyo_sync::testkit::store::part_fs::PartFs;

use crate::support::{FaultFs, Power, temp_root};

#[test]
fn an_unsynced_part_file_write_is_gone_after_a_power_loss() {
    let (_tmp, root) = temp_root();
    let path = root.join("x.parts");
    let mut dropped = 0;
    for seed in 0..64 {
        let _ = fs::remove_file(&path);
        let power = Power::on(&root, seed, None);
        let fs_layer = FaultFs(power.disk.clone());
        let file = fs_layer.create_new(&path).expect("create");
        fs_layer
            .write_at(&file, &path, &[1; 4096], 0)
            .expect("write");
        fs_layer.sync_data(&file, &path).expect("fdatasync");
        fs_layer.sync_dir(&root).expect("fsync the folder");
        fs_layer
            .write_at(&file, &path, &[2; 4096], 4096)
            .expect("write");
        // Written: the process reads it back (the page cache).
        assert_eq!(fs::read(&path).expect("read").len(), 8192);
        drop(file);
        let losses = power.cut();
        let after = fs::read(&path).expect("a synced file survives");
        assert_eq!(
            &after[..4096],
            &[1; 4096][..],
            "seed {seed}: synced bytes changed"
        );
        if losses.dropped == 1 {
            assert_eq!(
                after.len(),
                4096,
                "seed {seed}: a dropped write is still there"
            );
            dropped += 1;
        }
    }
    assert!(dropped > 0, "no seed dropped the unsynced write");
}

#[test]
fn an_unsynced_sqlite_commit_is_gone_after_a_power_loss() {
    let (_tmp, root) = temp_root();
    let db = root.join("t.db");
    let mut gone = 0;
    for seed in 0..64 {
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", db.display()));
        }
        {
            let conn = rusqlite::Connection::open(&db).expect("open");
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('synced');",
            )
            .expect("setup");
        }
        let power = Power::on(&root, seed, None);
        {
            let conn = rusqlite::Connection::open(&db).expect("open");
            // Closing must not checkpoint: the commit stays in the WAL, never synced.
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .expect("no checkpoint on close");
            conn.execute_batch("PRAGMA synchronous=OFF; INSERT INTO t VALUES ('unsynced');")
                .expect("unsynced commit");
            let seen: i64 = conn
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .expect("count");
            assert_eq!(seen, 2, "the commit is visible before the power loss");
        }
        let losses = power.cut();
        let conn = rusqlite::Connection::open(&db).expect("reopen");
        let rows: Vec<String> = conn
            .prepare("SELECT x FROM t")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(rows[0], "synced", "seed {seed}");
        if rows.len() == 1 {
            assert!(losses.damaged() > 0, "seed {seed}: lost without a loss");
            gone += 1;
        }
    }
    assert!(gone > 0, "no seed lost the unsynced commit");
}
