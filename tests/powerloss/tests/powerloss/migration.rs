//! A device store at schema version 1, for the migration suite: captures made by a real
//! `Store`, then its database rebuilt at version 1 from those rows (as
//! `tests/store_more.rs` does for its upgrade test), so opening it migrates.

use std::fs;
use std::path::Path;

use apoyo_sync::testkit::model::{CaptureId, Images};
use apoyo_sync::testkit::store::migrations;
use rusqlite::Connection;

use crate::device::Device;
use crate::support::capture;

/// Puts two captures in `device`'s template and rebuilds its database at version 1. Returns
/// the captures.
pub fn store_at_version_1(device: &Device) -> Vec<(CaptureId, Images)> {
    device.fresh_run();
    let mut held = Vec::new();
    {
        let mut store = device.open().expect("open");
        for i in 0..2 {
            let c = capture("nacional", 200 + i);
            let images = c.images.clone();
            held.push((store.capture(c).expect("capture"), images));
        }
    }
    let db = device.run().join("apoyo.db");
    let v1_path = device.run().join("v1.db");
    {
        let mut v1 = Connection::open(&v1_path).expect("create v1 db");
        v1.pragma_update(None, "application_id", 0x4150_5953_i64)
            .expect("application id");
        migrations::migrate_to(&mut v1, 1).expect("migrate to 1");
        v1.execute(
            "ATTACH DATABASE ?1 AS cur",
            [db.to_str().expect("utf-8 path")],
        )
        .expect("attach");
        let tx = v1.transaction().expect("tx");
        for copy in [
            "INSERT INTO main.device SELECT singleton, store_id, device_id, created_at, wrapped_master,
               wrapped_identity, identity_public, endpoint_public, collector_kind, collector_id
               FROM cur.device",
            "INSERT INTO main.processes SELECT * FROM cur.processes",
            "INSERT INTO main.captures SELECT * FROM cur.captures",
            "INSERT INTO main.parts (capture_id, kind, file_offset, ct_len, sha256)
               SELECT capture_id, kind, file_offset, ct_len, sha256 FROM cur.parts",
            "INSERT INTO main.capture_keys SELECT capture_id, device_wrap, endpoint_seal
               FROM cur.capture_keys",
        ] {
            tx.execute(copy, []).expect(copy);
        }
        tx.commit().expect("commit");
        v1.execute("DETACH DATABASE cur", []).expect("detach");
        v1.pragma_update(None, "journal_mode", "WAL").expect("wal");
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", db.display());
        if Path::new(&p).exists() {
            fs::remove_file(&p).expect("remove current db");
        }
    }
    fs::rename(&v1_path, &db).expect("put the v1 db in place");
    device.keep_run_as_template();
    held
}
