//! More integration tests of the store: crypto-shredding leaves no key wrap in the database
//! files, committed and purged captures still count as duplicates, a store made at schema
//! version 1 upgrades on open, a tampered endpoint seal fails at the endpoint, and a retry keeps
//! the consumed uploads only after a rejection the endpoint stores.
//!
//! A capture reaches `committed` and `purged` through the same public calls the sync engine
//! makes after a verified receipt: [`Store::record_receipt`] then [`Store::purge_committed`].

mod common;
#[path = "common/schema.rs"]
mod schema;

use std::fs;
use std::path::Path;

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::crypto::wrap;
use apoyo_sync::testkit::store::migrations;
use apoyo_sync::wire::{Receipt, ReceiptResult};
use apoyo_sync::{CaptureId, Clock, Error, ErrorClass, Images, PartKind, State};
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;

use common::*;
use schema::schema_of;

/// Marks `id` committed, as the sync engine does once the endpoint's receipt verified.
fn commit(store: &mut Store, id: &CaptureId) {
    let receipt = Receipt {
        v: 1,
        capture_id: *id,
        process_id: "nacional".into(),
        device_id: store.device_id().to_string(),
        result: ReceiptResult::Counted,
        first_capture_id: None,
        parts: Vec::new(),
        counted_at: OffsetDateTime::now_utc(),
        endpoint_key_id: "0011223344556677".into(),
        collector: store.collector().clone(),
        captured_at: OffsetDateTime::now_utc(),
        sealed_key_sha256: [0; 32],
    };
    store
        .record_receipt(&receipt, b"receipt bytes", b"signature bytes")
        .expect("record_receipt");
    assert_eq!(store.info(id).expect("info").state, State::Committed);
}

/// The two key wraps of a capture, read straight from the database (`device_wrap`,
/// `endpoint_seal`), through a read-only connection beside the store's own.
fn key_wraps(db: &Path, id: &CaptureId) -> (Vec<u8>, Vec<u8>) {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
    conn.query_row(
        "SELECT device_wrap, endpoint_seal FROM capture_keys WHERE capture_id = ?1",
        [id.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("capture_keys row")
}

/// The bytes of the database and of its WAL (empty when there is none).
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = fs::read(db).expect("read db");
    match fs::read(format!("{}-wal", db.display())) {
        Ok(wal) => bytes.extend_from_slice(&wal),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("read wal: {e}"),
    }
    bytes
}

fn is_integrity_class<T: std::fmt::Debug>(r: &apoyo_sync::Result<T>) -> bool {
    matches!(r, Err(e) if e.class() == ErrorClass::Integrity)
}

// ---- crypto-shredding --------------------------------------------------------------------

/// A crash between recording a verified receipt and the purge (found by the simulation, seeds
/// 95 and 137) leaves a committed capture with its part file and keys; the next open finishes
/// the purge instead of waiting for a sync run that an idle app may never start.
#[test]
fn a_purge_cut_short_by_a_crash_is_finished_at_open() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let c = store
        .capture(capture_of("nacional", &clave(900)))
        .expect("capture");
    commit(&mut store, &c);
    drop(store); // the crash: the purge never ran
    let file = fx.store_dir().join("parts").join(format!("{c}.parts"));
    assert!(
        file.exists(),
        "the committed capture's file is still there before reopening"
    );

    let store = fx.open().expect("open");
    assert_eq!(store.open_report().purged_committed, 1);
    assert_eq!(store.info(&c).expect("info").state, State::Purged);
    assert!(!file.exists(), "the part file is gone after the open");
    assert_eq!(store.pending_count().expect("pending"), 0);
}

/// `secure_delete`: purging deletes a capture's key wraps, and their bytes are overwritten,
/// not left in the freed space of the page, so neither the database nor its WAL holds them
/// once the store is closed. (The pragma is per connection, so only this behaviour shows it.)
#[test]
fn a_purged_capture_leaves_no_key_wrap_in_the_database_files() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let ids: Vec<CaptureId> = (0..3)
        .map(|i| {
            store
                .capture(capture_of("nacional", &clave(500 + i)))
                .expect("capture")
        })
        .collect();
    let wraps: Vec<(Vec<u8>, Vec<u8>)> =
        ids.iter().map(|id| key_wraps(&fx.db_path(), id)).collect();
    for (id, (_, seal)) in ids.iter().zip(&wraps) {
        assert_eq!(&store.endpoint_seal(id).expect("endpoint_seal"), seal);
    }
    let victim = 1;
    let (device_wrap, endpoint_seal) = &wraps[victim];
    assert_eq!(device_wrap.len(), wrap::WRAP_LEN);
    assert_eq!(endpoint_seal.len(), wrap::SEALED_KEY_LEN);
    // The search finds them before the purge.
    let before = database_bytes(&fx.db_path());
    assert_eq!(
        occurring(&before, &[device_wrap, endpoint_seal]),
        [true, true],
        "the key wraps are not in the database files before the purge"
    );

    commit(&mut store, &ids[victim]);
    assert_eq!(store.purge_committed().expect("purge"), 1);
    assert_eq!(store.info(&ids[victim]).expect("info").state, State::Purged);
    assert!(matches!(
        store.endpoint_seal(&ids[victim]),
        Err(Error::CaptureGone { .. })
    ));
    assert!(
        !fx.parts_dir()
            .join(format!("{}.parts", ids[victim]))
            .exists()
    );
    drop(store);

    let after = database_bytes(&fx.db_path());
    assert_eq!(
        occurring(&after, &[device_wrap, endpoint_seal]),
        [false, false],
        "a purged capture's key wraps (device wrap, endpoint seal) are still in the database files"
    );
    // The other captures' wraps are where they were (the search works on these files).
    for (i, (dw, es)) in wraps.iter().enumerate().filter(|(i, _)| *i != victim) {
        assert_eq!(occurring(&after, &[dw, es]), [true, true], "capture {i}");
    }
    let store = fx.open().expect("reopen");
    assert_eq!(store.status().expect("status").purged, 1);
    assert_eq!(store.status().expect("status").captured, 2);
}

// ---- duplicates ----------------------------------------------------------------------------

fn assert_duplicate_of(store: &mut Store, clave: &str, earlier: &CaptureId, when: &str) {
    let status = store.status().expect("status");
    let files = part_file_names(store.dir());
    let err = store
        .capture(capture_of("nacional", clave))
        .expect_err(when);
    match &err {
        Error::Duplicate {
            process,
            earlier: e,
        } => {
            assert_eq!(process, "nacional", "{when}");
            assert_eq!(*e, earlier.to_string(), "{when}");
        }
        other => panic!("{when}: expected Duplicate, got {other:?}"),
    }
    assert_eq!(store.status().expect("status"), status, "{when}");
    assert_eq!(part_file_names(store.dir()), files, "{when}");
}

/// The endpoint counted the citizen: a new capture of the same clave in the same process is a
/// duplicate while the first is committed, after it was purged (its keys gone, the row kept)
/// and after a reopen.
#[test]
fn a_committed_or_purged_citizen_is_still_a_duplicate() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let k = clave(321);
    let first = store.capture(capture_of("nacional", &k)).expect("capture");
    let other = store
        .capture(capture_of("nacional", &clave(322)))
        .expect("capture");

    commit(&mut store, &first);
    assert_duplicate_of(&mut store, &k, &first, "committed");

    assert_eq!(store.purge_committed().expect("purge"), 1);
    assert_eq!(store.info(&first).expect("info").state, State::Purged);
    assert_duplicate_of(&mut store, &k, &first, "purged");

    drop(store);
    let mut store = fx.open().expect("reopen");
    assert_duplicate_of(&mut store, &k, &first, "purged, after a reopen");
    // The other citizen's capture is untouched, and the same citizen may support another
    // process.
    assert_eq!(store.info(&other).expect("info").state, State::Captured);
    store
        .capture(capture_of("otro", &k))
        .expect("another process");
}

/// Every part's (upload URL, expiry, uploaded bytes).
fn uploads(store: &Store, id: &CaptureId) -> Vec<(Option<String>, Option<String>, u64)> {
    let parts = store.parts(id).expect("parts");
    parts
        .into_iter()
        .map(|p| (p.upload_url, p.upload_expires, p.uploaded_bytes))
        .collect()
}

#[test]
fn a_retry_keeps_the_consumed_uploads_only_after_a_stored_verdict() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let expires = "Sun, 21 Nov 2021 16:50:00 GMT";
    // (reason, whether every part was complete, whether the retry keeps the uploads)
    let cases = [
        ("credential_expired", true, true),
        ("undecryptable", true, true),
        ("card_invalid", false, false),
        ("part_mismatch", true, false),
        ("receipt_invalid", true, false),
        ("local_integrity", true, false),
    ];
    for (i, (reason, complete, kept)) in cases.into_iter().enumerate() {
        let id = store
            .capture(capture_of("nacional", &clave(700 + i as u32)))
            .expect("capture");
        let parts = store.parts(&id).expect("parts");
        for (n, p) in parts.iter().enumerate() {
            let url = format!("/v1/uploads/{i}{n}");
            store
                .set_upload(&id, p.kind, &url, Some(expires))
                .expect("set_upload");
            let done = if complete || n > 0 { p.ct_len } else { 1 };
            store.set_uploaded(&id, p.kind, done).expect("set_uploaded");
        }
        let before = uploads(&store, &id);
        store.quarantine(&id, reason).expect("quarantine");
        store.retry_quarantined(&id).expect("retry");
        assert_eq!(store.info(&id).expect("info").state, State::Captured);
        let expected: Vec<_> = if kept {
            // The paths and offsets stay (complete, so the commit goes first); the expiry of
            // an upload the endpoint consumed no longer applies.
            before.into_iter().map(|(u, _, b)| (u, None, b)).collect()
        } else {
            vec![(None, None, 0); parts.len()]
        };
        assert_eq!(uploads(&store, &id), expected, "after {reason}");
    }
}

// ---- migrations ------------------------------------------------------------------------------

fn schema_of_file(db: &Path) -> Vec<String> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
    schema_of(&conn)
}

/// A store whose captures were made by a real `Store`, with its database rebuilt at schema
/// version 1 (the rows of every table version 1 has, the columns version 2 added left out),
/// opens: `Store::open` migrates it, every capture still decrypts byte for byte, the sync
/// state works, and the schema is then exactly that of a store created fresh.
#[test]
fn a_version_1_store_made_by_a_real_store_upgrades_on_open() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let mut captured: Vec<(CaptureId, Images)> = Vec::new();
    for i in 0..3u32 {
        let c = capture_of("nacional", &clave(700 + i));
        let images = c.images.clone();
        captured.push((store.capture(c).expect("capture"), images));
    }
    store
        .quarantine(&captured[2].0, "credential_expired")
        .expect("quarantine");
    let status = store.status().expect("status");
    let list = store.list().expect("list");
    let seals: Vec<Vec<u8>> = captured
        .iter()
        .map(|(id, _)| store.endpoint_seal(id).expect("seal"))
        .collect();
    drop(store);

    // Rebuild the database at version 1 from the real store's rows.
    let db = fx.db_path();
    let v1_path = fx.store_dir().join("v1.db");
    {
        let mut v1 = Connection::open(&v1_path).expect("create v1 db");
        v1.pragma_update(None, "application_id", 0x4150_5953_i64)
            .expect("application id");
        migrations::migrate_to(&mut v1, 1).expect("migrate to 1");
        assert_eq!(migrations::version(&v1).expect("version"), 1);
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
        for table in ["endpoint", "receipts"] {
            let n: i64 = v1
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .expect("schema");
            assert_eq!(n, 0, "{table} exists at version 1");
        }
        let n: i64 = v1
            .query_row("SELECT count(*) FROM capture_keys", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 3);
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", db.display());
        if Path::new(&p).exists() {
            fs::remove_file(&p).expect("remove current db");
        }
    }
    fs::rename(&v1_path, &db).expect("put the v1 db in place");

    let mut store = fx.open().expect("a version 1 store opens");
    // v1.1 (migration 3): the store has a commit-signing key from its first open, no INE root
    // until the app provisions one (so no receipt could be trusted before), and its captures
    // name the provisioned seal key.
    let signing = store.signing_public().expect("a signing key made at open");
    assert_eq!(store.ine_root().expect("root"), None);
    let provisioning = fx.provisioning();
    store.provision(&provisioning).expect("provision");
    assert_eq!(store.ine_root().expect("root"), Some(provisioning.ine_root));
    assert_eq!(store.signing_public().expect("same key"), signing);
    let other_root = Fixture::new().provisioning();
    assert!(matches!(
        store.provision(&other_root),
        Err(Error::ProvisioningMismatch)
    ));
    assert_eq!(
        store
            .capture_seal_key_id(&captured[0].0)
            .expect("seal key id"),
        fx.endpoint.public().key_id()
    );
    assert_eq!(store.status().expect("status"), status);
    assert_eq!(store.list().expect("list"), list);
    for ((id, images), seal) in captured.iter().zip(&seals) {
        for kind in PartKind::ALL {
            let mut out = Vec::new();
            store.read_part(id, kind, &mut out).expect("read_part");
            if let Some(img) = images.get(kind) {
                assert!(out == img, "{} of {id} is not byte-identical", kind.name());
            }
        }
        assert_eq!(store.manifest(id).expect("manifest").capture_id, *id);
        assert_eq!(&store.endpoint_seal(id).expect("seal"), seal);
        let r = store.parts(id).expect("parts");
        assert_eq!(r.len(), PartKind::ALL.len());
    }
    // What version 2 added works: the sync state, and a new capture goes through the sync path.
    store
        .set_endpoint_url("https://endpoint.invalid")
        .expect("set_endpoint_url");
    assert_eq!(
        store.endpoint_url().expect("endpoint_url").as_deref(),
        Some("https://endpoint.invalid")
    );
    commit(&mut store, &captured[0].0);
    assert_eq!(store.purge_committed().expect("purge"), 1);
    assert_eq!(store.receipts().expect("receipts").len(), 1);
    store
        .capture(capture_of("nacional", &clave(799)))
        .expect("a new capture");
    drop(store);

    {
        let conn =
            Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
        assert_eq!(
            migrations::version(&conn).expect("version"),
            migrations::LATEST
        );
    }
    let fresh = Fixture::new();
    drop(fresh.init());
    let (upgraded, fresh) = (schema_of_file(&db), schema_of_file(&fresh.db_path()));
    assert!(
        fresh
            .iter()
            .any(|l| l.starts_with("table receipts: CREATE TABLE receipts")),
        "{fresh:#?}"
    );
    assert_eq!(upgraded, fresh);
}

// ---- the endpoint's copy -------------------------------------------------------------------

/// INE's copy of a capture's data key, as the store hands it to the sync engine, with any one
/// byte flipped (version, encapsulated key, ciphertext, tag) fails at the endpoint as an
/// integrity error; the untouched seal still opens.
#[test]
fn a_tampered_endpoint_seal_fails_integrity_at_the_endpoint() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let id = store
        .capture(capture_of("nacional", &clave(450)))
        .expect("capture");
    let sealed = store.endpoint_seal(&id).expect("endpoint_seal");
    let device_public = store.device_public();
    assert_eq!(sealed.len(), wrap::SEALED_KEY_LEN);
    let open =
        |bytes: &[u8]| wrap::open_from_device(&fx.endpoint, &device_public, id.as_bytes(), bytes);

    for pos in 0..sealed.len() {
        let mut t = sealed.clone();
        t[pos] ^= 0x01;
        let r = open(&t);
        assert!(is_integrity_class(&r), "byte {pos} flipped: {r:?}");
    }
    let mut t = sealed.clone();
    t[0] ^= 0x01;
    assert!(matches!(open(&t), Err(Error::CiphertextVersion(_))));

    // The untouched seal opens, and decrypts the capture's parts.
    let dk = open(&sealed).expect("the endpoint opens the untouched seal");
    let part = store
        .parts(&id)
        .expect("parts")
        .into_iter()
        .find(|p| p.kind == PartKind::Manifest)
        .expect("manifest part");
    let mut plain = Vec::new();
    apoyo_sync::testkit::crypto::PartOpener::new(&dk, id.as_bytes(), PartKind::Manifest)
        .expect("opener")
        .open_to(
            part.ct_len,
            store.part_reader(&id, &part).expect("part_reader"),
            &mut plain,
        )
        .expect("the endpoint decrypts the manifest");
    assert_eq!(
        apoyo_sync::wire::Manifest::from_cbor(&plain)
            .expect("manifest")
            .capture_id,
        id
    );
}

/// ADR 0015: a purged capture's keyed duplicate hash stays while its process is open (the
/// same citizen is still refused on this phone after the purge) and is overwritten once the
/// process has closed, so the phone keeps nothing that could test whether a clave supported.
#[test]
fn the_duplicate_hash_of_a_purged_capture_is_forgotten_when_its_process_closes() {
    use apoyo_sync::testkit::ManualClock;
    let closes = time::macros::datetime!(2031-01-01 00:00 UTC);
    let clock = ManualClock::new(closes - time::Duration::days(10));
    let fx = Fixture::new();
    let opts = apoyo_sync::testkit::StoreOptions {
        clock: std::sync::Arc::new(clock.clone()),
        ..Default::default()
    };
    let mut store = fx.init_with_processes(
        opts,
        r#"[{"id": "corto", "name": "Proceso que cierra", "accepted_models": ["G"],
             "vigencia_cutoff": "2022-01-01", "scope": "national",
             "closes": "2031-01-01T00:00:00Z"},
            {"id": "nacional", "name": "Abierto", "accepted_models": ["G"],
             "vigencia_cutoff": "2022-01-01", "scope": "national"}]"#,
    );
    let id = store
        .capture(capture_of("corto", &clave(900)))
        .expect("capture");
    let open_id = store
        .capture(capture_of("nacional", &clave(900)))
        .expect("capture");
    commit(&mut store, &id);
    commit(&mut store, &open_id);
    store.purge_committed().expect("purge");
    let dup_keys = |db: &Path| -> Vec<Vec<u8>> {
        let conn =
            Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
        let mut st = conn
            .prepare("SELECT dup_key FROM captures ORDER BY process_id")
            .expect("prepare");
        st.query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let before = dup_keys(&fx.db_path());

    // Still open: nothing forgotten, and the citizen is still refused on this phone.
    assert_eq!(
        store.forget_closed_duplicates(clock.now()).expect("forget"),
        0
    );
    let again = store.capture(capture_of("corto", &clave(900)));
    assert!(matches!(again, Err(Error::Duplicate { .. })), "{again:?}");
    assert_eq!(dup_keys(&fx.db_path()), before);

    // Closed: the purged capture's hash is overwritten; the open process's one stays.
    clock.set(closes);
    assert_eq!(
        store.forget_closed_duplicates(clock.now()).expect("forget"),
        1
    );
    let after = dup_keys(&fx.db_path());
    assert_eq!(after[0], vec![0u8; 32], "corto's hash is gone");
    assert_eq!(after[1], before[1], "nacional's hash stays");
    assert!(!after.contains(&before[0]));
    // Idempotent.
    assert_eq!(
        store.forget_closed_duplicates(clock.now()).expect("forget"),
        0
    );
}

/// Protocol v1.1 (6.5): an auxiliar id is an opaque code of `A-Z`, `0-9` and `-` (3-32): free
/// text could carry a name in the clear. The device refuses it at init and at capture, naming
/// the field and never the value.
#[test]
fn a_free_text_auxiliar_id_is_refused_on_the_device() {
    use apoyo_sync::testkit::StoreOptions;
    use apoyo_sync::{Collector, Field};
    let fx = Fixture::new();
    for bad in ["Juan Perez", "aux-0001", "AB", "AUX_0001", "ÁLVARO-01"] {
        let err = Store::init(
            &fx.store_dir(),
            &fx.guard(),
            &fx.provisioning(),
            Some(Collector::Auxiliar(bad.into())),
            StoreOptions::default(),
        )
        .expect_err("a free-text auxiliar id");
        assert!(
            matches!(
                err,
                Error::Invalid {
                    field: Field::Collector,
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
        assert!(!err.to_string().contains(bad), "the value is never echoed");
    }
    let mut store = fx.init();
    let mut c = capture_of("nacional", &clave(950));
    c.collector = Some(Collector::Auxiliar("Maria Lopez".into()));
    let err = store.capture(c).expect_err("a free-text auxiliar id");
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: Field::Collector,
                ..
            }
        ),
        "{err:?}"
    );
    let mut c = capture_of("nacional", &clave(951));
    c.collector = Some(Collector::Auxiliar("AUX-0951".into()));
    store.capture(c).expect("a well-formed auxiliar id");
}
