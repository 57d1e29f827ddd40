//! Integration tests of the core store: real SQLite databases and part files in temporary
//! folders, the development key guard in an explicit keyring folder, and a test-side
//! "endpoint" holding the secret key the store seals to.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::{PartOpener, ciphertext_len, wrap};
use apoyo_sync::testkit::store::{PART_FILE_TRAILER_LEN, migrations};
use apoyo_sync::wire::ImageFormat;
use apoyo_sync::wire::Manifest;
use apoyo_sync::{
    CaptureId, CardFields, Collector, CredentialModel, Error, ErrorClass, FileKeyGuard, Images,
    Location, NewCapture, PartKind,
};
use time::OffsetDateTime;

use common::*;

const IMAGE_KINDS: [PartKind; 4] = [
    PartKind::Front,
    PartKind::Back,
    PartKind::Selfie,
    PartKind::Signature,
];

/// What a test captured, to compare with what comes back.
struct Captured {
    id: CaptureId,
    process_id: String,
    fields: CardFields,
    location: Option<Location>,
    images: Images,
}

fn capture(store: &mut Store, c: NewCapture) -> Captured {
    let (process_id, fields, location, images) = (
        c.process_id.clone(),
        c.fields.clone(),
        c.location,
        c.images.clone(),
    );
    let id = store.capture(c).expect("capture");
    Captured {
        id,
        process_id,
        fields,
        location,
        images,
    }
}

fn read_part(store: &Store, id: &CaptureId, kind: PartKind) -> apoyo_sync::Result<Vec<u8>> {
    let mut out = Vec::new();
    let n = store.read_part(id, kind, &mut out)?;
    assert_eq!(n as usize, out.len(), "read_part's count");
    Ok(out)
}

/// Every part of `c` decrypts (device copy) to exactly what was captured.
fn assert_intact(store: &Store, c: &Captured) {
    for kind in IMAGE_KINDS {
        let got = read_part(store, &c.id, kind)
            .unwrap_or_else(|e| panic!("{} of {}: {e:?}", kind.name(), c.id));
        assert!(
            got == c.images.get(kind).expect("image"),
            "{} of {} is not byte-identical",
            kind.name(),
            c.id
        );
    }
    let m = store
        .manifest(&c.id)
        .unwrap_or_else(|e| panic!("manifest of {}: {e:?}", c.id));
    assert_eq!(m.capture_id, c.id);
    assert_eq!(m.process_id, c.process_id);
    assert_eq!(m.fields, c.fields);
    assert_eq!(m.location, c.location);
}

fn part_record(
    store: &Store,
    id: &CaptureId,
    kind: PartKind,
) -> apoyo_sync::testkit::store::PartRecord {
    store
        .parts(id)
        .expect("parts")
        .into_iter()
        .find(|p| p.kind == kind)
        .expect("part record")
}

fn part_file(fx: &Fixture, id: &CaptureId) -> PathBuf {
    fx.parts_dir().join(format!("{id}.parts"))
}

fn is_integrity(r: &apoyo_sync::Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(Error::Integrity { .. }))
}

fn is_integrity_class(r: &apoyo_sync::Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(e) if e.class() == ErrorClass::Integrity)
}

// ---- no plaintext on disk -------------------------------------------------------------------

/// Personal data of one capture that must never be written in the clear.
struct Secrets {
    marker: Vec<u8>,
    clave: String,
    curp: String,
    ocr: String,
    lat: f64,
    lon: f64,
}

/// Which secrets occur in which file (empty when nothing leaks).
fn find_leaks(files: &BTreeMap<PathBuf, Vec<u8>>, secrets: &[Secrets]) -> Vec<String> {
    let mut probes: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        for (what, needle) in [
            ("image marker", s.marker.clone()),
            ("clave de elector", s.clave.as_bytes().to_vec()),
            ("CURP", s.curp.as_bytes().to_vec()),
            ("OCR", s.ocr.as_bytes().to_vec()),
            ("latitude (text)", format!("{}", s.lat).into_bytes()),
            ("longitude (text)", format!("{}", s.lon).into_bytes()),
            ("latitude (f64 BE)", s.lat.to_be_bytes().to_vec()),
            ("latitude (f64 LE)", s.lat.to_le_bytes().to_vec()),
            ("longitude (f64 BE)", s.lon.to_be_bytes().to_vec()),
        ] {
            probes.push((format!("{what} of capture {i}"), needle));
        }
    }
    let needles: Vec<&[u8]> = probes.iter().map(|(_, n)| n.as_slice()).collect();
    let mut leaks = Vec::new();
    for (path, bytes) in files {
        for (hit, (what, _)) in occurring(bytes, &needles).into_iter().zip(&probes) {
            if hit {
                leaks.push(format!("{what} in {}", path.display()));
            }
        }
    }
    leaks
}

#[test]
fn no_plaintext_on_disk_while_open_and_after_close() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for i in 0..4u32 {
        let marker = random_bytes(24);
        let lat = 19.432_607_7 + f64::from(i) * 0.000_123_4;
        let lon = -99.133_208_3 - f64::from(i) * 0.000_456_7;
        let ocr = format!("1234{:09}", 987_654_321 - i);
        let mut signature = png(3_000);
        signature[1_000..1_024].copy_from_slice(&marker);
        let images = Images {
            // Multi-chunk, with the marker inside the second chunk.
            front: jpeg_with_marker(150_000, &marker, 70_000),
            back: jpeg_with_marker(5_000, &marker, 4),
            selfie: jpeg_with_marker(20_000, &marker, 19_000),
            signature,
        };
        let fields = CardFields {
            clave_elector: clave(4_000 + i),
            entidad: Some(9),
            seccion: Some(1234),
            curp: Some(curp(300 + i)),
            ocr: Some(ocr.clone()),
            cic: Some(format!("{:09}", 123_456_789 - i)),
            numero_emision: Some(3),
            vigencia: Some(2029),
        };
        secrets.push(Secrets {
            marker,
            clave: fields.clave_elector.clone(),
            curp: fields.curp.clone().expect("curp"),
            ocr,
            lat,
            lon,
        });
        let c = NewCapture {
            process_id: "nacional".into(),
            model: CredentialModel::parse("G").expect("model"),
            fields,
            location: Some(Location {
                lat,
                lon,
                accuracy_m: 7.5,
            }),
            images,
            collector: None,
        };
        ids.push(store.capture(c).expect("capture"));
    }

    // Positive control: the same search finds every secret in the decrypted export.
    let export_dir = fx.root.path().join("export");
    store.export(&ids[0], &export_dir).expect("export");
    let exported = find_leaks(&snapshot(&export_dir), &secrets[..1]);
    for what in [
        "image marker",
        "clave de elector",
        "CURP",
        "OCR",
        "latitude (text)",
    ] {
        assert!(
            exported.iter().any(|l| l.starts_with(what)),
            "the search does not find the {what} in the export: {exported:?}"
        );
    }

    // While the store is open: the WAL holds the recent commits.
    let wal = fx.store_dir().join("apoyo.db-wal");
    assert!(
        fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false),
        "expected a non-empty WAL while the store is open"
    );
    let open_files = snapshot(&fx.store_dir());
    assert!(open_files.keys().any(|p| p.starts_with("parts")));
    let leaks = find_leaks(&open_files, &secrets);
    assert!(leaks.is_empty(), "plaintext on disk while open: {leaks:?}");

    drop(store);
    let closed_files = snapshot(&fx.store_dir());
    assert!(closed_files.contains_key(Path::new("apoyo.db")));
    let leaks = find_leaks(&closed_files, &secrets);
    assert!(leaks.is_empty(), "plaintext on disk after close: {leaks:?}");

    // And the data is really there (encrypted), not merely absent.
    let store = fx.open().expect("reopen");
    for (id, s) in ids.iter().zip(&secrets) {
        let m = store.manifest(id).expect("manifest");
        assert_eq!(m.fields.clave_elector, s.clave);
        assert!(contains(
            &read_part(&store, id, PartKind::Front).expect("front"),
            &s.marker
        ));
    }
}

// ---- tamper ---------------------------------------------------------------------------------

fn three_captures(fx: &Fixture) -> (Store, Vec<Captured>) {
    let mut store = fx.init();
    let mut out = Vec::new();
    for i in 0..3u32 {
        let mut c = capture_of("nacional", &clave(10 + i));
        c.fields.curp = Some(curp(10 + i));
        c.location = Some(Location {
            lat: 20.0 + f64::from(i),
            lon: -100.0,
            accuracy_m: 5.0,
        });
        // Multi-chunk selfie so that a flip can land in a middle chunk.
        c.images.selfie = jpeg(140_000);
        out.push(capture(&mut store, c));
    }
    for c in &out {
        assert_intact(&store, c);
    }
    (store, out)
}

#[test]
fn tampered_part_file_fails_integrity_and_spares_the_others() {
    let fx = Fixture::new();
    let (store, caps) = three_captures(&fx);
    let a = &caps[0];
    let selfie = part_record(&store, &a.id, PartKind::Selfie);
    flip_byte(
        &part_file(&fx, &a.id),
        selfie.file_offset + selfie.ct_len / 2,
    );

    let r = read_part(&store, &a.id, PartKind::Selfie);
    assert!(is_integrity(&r), "tampered selfie: {r:?}");
    // The capture's other parts, and the other captures, are unaffected.
    for kind in [PartKind::Front, PartKind::Back, PartKind::Signature] {
        assert!(
            read_part(&store, &a.id, kind).expect("untouched part")
                == a.images.get(kind).expect("image")
        );
    }
    assert_intact(&store, &caps[1]);
    assert_intact(&store, &caps[2]);

    // Same after reopening.
    drop(store);
    let store = fx.open().expect("reopen");
    let r = read_part(&store, &a.id, PartKind::Selfie);
    assert!(is_integrity(&r), "tampered selfie after reopen: {r:?}");
    let r = store.export(&a.id, &fx.root.path().join("export-a"));
    assert!(is_integrity(&r), "export of a tampered capture: {r:?}");
    assert_intact(&store, &caps[1]);
    assert_intact(&store, &caps[2]);
}

#[test]
fn tampered_device_wrap_fails_integrity_and_spares_the_others() {
    let fx = Fixture::new();
    let (store, caps) = three_captures(&fx);
    let b = &caps[1];
    let sealed_before = store.endpoint_seal(&b.id).expect("seal");
    let device_public = store.device_public();
    drop(store);

    {
        let conn = rusqlite::Connection::open(fx.db_path()).expect("open db");
        let mut w: Vec<u8> = conn
            .query_row(
                "SELECT device_wrap FROM capture_keys WHERE capture_id = ?1",
                [b.id.to_string()],
                |r| r.get(0),
            )
            .expect("device_wrap");
        assert_eq!(w.len(), wrap::WRAP_LEN);
        w[40] ^= 0x01;
        let n = conn
            .execute(
                "UPDATE capture_keys SET device_wrap = ?1 WHERE capture_id = ?2",
                rusqlite::params![w, b.id.to_string()],
            )
            .expect("update");
        assert_eq!(n, 1);
    }

    let store = fx.open().expect("the store still opens");
    for kind in PartKind::ALL {
        let r = read_part(&store, &b.id, kind);
        assert!(is_integrity(&r), "{} of B: {r:?}", kind.name());
    }
    let r = store.manifest(&b.id);
    assert!(is_integrity(&r), "manifest of B: {r:?}");
    assert_intact(&store, &caps[0]);
    assert_intact(&store, &caps[2]);
    // INE's copy of B's key is a separate wrap and still opens.
    assert_eq!(store.endpoint_seal(&b.id).expect("seal"), sealed_before);
    wrap::open_from_device(
        &fx.endpoint,
        &device_public,
        b.id.as_bytes(),
        &sealed_before,
    )
    .expect("the endpoint copy still opens");
}

#[test]
fn tampered_manifest_fails_integrity_and_spares_the_others() {
    let fx = Fixture::new();
    let (store, caps) = three_captures(&fx);
    let c = &caps[2];
    let m = part_record(&store, &c.id, PartKind::Manifest);
    assert!(m.ct_len > 17);
    flip_byte(&part_file(&fx, &c.id), m.file_offset + m.ct_len / 2);

    let r = store.manifest(&c.id);
    assert!(is_integrity(&r), "tampered manifest: {r:?}");
    assert!(is_integrity(&read_part(&store, &c.id, PartKind::Manifest)));
    for kind in IMAGE_KINDS {
        assert!(
            read_part(&store, &c.id, kind).expect("image part")
                == c.images.get(kind).expect("image")
        );
    }
    assert_intact(&store, &caps[0]);
    assert_intact(&store, &caps[1]);
}

/// Sets `column` of capture `id`'s `kind` row in the `parts` table (the store must be closed).
fn set_part_column(fx: &Fixture, id: &CaptureId, kind: PartKind, column: &str, value: i64) {
    let conn = rusqlite::Connection::open(fx.db_path()).expect("open db");
    let n = conn
        .execute(
            &format!("UPDATE parts SET {column} = ?1 WHERE capture_id = ?2 AND kind = ?3"),
            rusqlite::params![value, id.to_string(), kind.name()],
        )
        .expect("update");
    assert_eq!(n, 1);
}

#[test]
fn tampered_part_offsets_and_lengths_fail_integrity() {
    let fx = Fixture::new();
    let (store, caps) = three_captures(&fx);
    let a = &caps[0];
    let file_len = fs::metadata(part_file(&fx, &a.id)).expect("file").len() as i64;
    let selfie = part_record(&store, &a.id, PartKind::Selfie);
    let manifest = part_record(&store, &a.id, PartKind::Manifest);
    drop(store);

    let (s_off, s_len) = (selfie.file_offset as i64, selfie.ct_len as i64);
    let m_len = manifest.ct_len as i64;
    // (part, column, tampered value, original value)
    let cases: [(PartKind, &str, i64, i64); 6] = [
        (PartKind::Selfie, "file_offset", file_len, s_off),
        (PartKind::Selfie, "file_offset", s_off + 1, s_off),
        (PartKind::Selfie, "ct_len", s_len + 1, s_len),
        (PartKind::Selfie, "ct_len", s_len - 16, s_len),
        (PartKind::Manifest, "ct_len", m_len + 1, m_len),
        (PartKind::Selfie, "ct_len", 0, s_len),
    ];
    for (kind, column, value, original) in cases {
        set_part_column(&fx, &a.id, kind, column, value);
        let store = fx.open().expect("open");
        // Integrity, or an unknown version byte read at a shifted offset: both are of the
        // Integrity class (the bytes do not authenticate).
        let r = read_part(&store, &a.id, kind);
        assert!(
            is_integrity_class(&r),
            "{} {column} = {value}: {r:?}",
            kind.name()
        );
        drop(store);
        set_part_column(&fx, &a.id, kind, column, original);
    }
    let store = fx.open().expect("open");
    assert_intact(&store, &caps[1]);
    assert_intact(&store, a);
}

#[test]
fn negative_part_offsets_and_lengths_fail_integrity_without_panicking() {
    let fx = Fixture::new();
    let (store, caps) = three_captures(&fx);
    let id = caps[0].id;
    let selfie = part_record(&store, &id, PartKind::Selfie);
    drop(store);
    for (column, value, original) in [
        ("file_offset", -1i64, selfie.file_offset as i64),
        ("ct_len", -1, selfie.ct_len as i64),
        ("file_offset", i64::MAX, selfie.file_offset as i64),
    ] {
        set_part_column(&fx, &id, PartKind::Selfie, column, value);
        let store = fx.open().expect("open");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_part(&store, &id, PartKind::Selfie)
        }));
        match r {
            Ok(r) => assert!(is_integrity_class(&r), "{column} = {value}: {r:?}"),
            Err(_) => panic!("read_part panicked for a parts row with {column} = {value}"),
        }
        drop(store);
        set_part_column(&fx, &id, PartKind::Selfie, column, original);
    }
}

#[test]
fn a_failed_export_leaves_no_partial_image() {
    let fx = Fixture::new();
    let (store, caps) = three_captures(&fx);
    let a = &caps[0];
    let selfie = part_record(&store, &a.id, PartKind::Selfie);
    // Damage the last chunk, so the first chunks authenticate and are written.
    flip_byte(
        &part_file(&fx, &a.id),
        selfie.file_offset + selfie.ct_len - 5,
    );
    let out = fx.root.path().join("export-a");
    let r = store.export(&a.id, &out);
    assert!(is_integrity(&r), "{r:?}");
    if out.exists() {
        for (path, bytes) in snapshot(&out) {
            let kind = PartKind::from_name(
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .expect("file stem"),
            );
            let original = kind.and_then(|k| a.images.get(k));
            assert!(
                original.is_some_and(|o| o == bytes.as_slice()),
                "a failed export left {} ({} bytes), not the captured image",
                path.display(),
                bytes.len()
            );
        }
    }
}

// ---- device binding -------------------------------------------------------------------------

#[test]
fn a_store_opens_only_with_the_keyring_that_made_it() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let c = capture(&mut store, capture_of("nacional", &clave(1)));
    drop(store);
    let before = snapshot_without_lock(&fx.store_dir());

    // Another device's keyring (e.g. the store folder copied to another phone).
    let k2 = FileKeyGuard::open_or_create(&fx.root.path().join("keyring-2")).expect("k2");
    let err = Store::open(&fx.store_dir(), &k2, StoreOptions::default())
        .expect_err("K2 opened the store");
    assert!(matches!(err, Error::WrongDevice), "{err:?}");
    assert_eq!(err.class(), ErrorClass::KeyUnavailable);
    assert_untouched(&before, &fx.store_dir());

    // An empty keyring folder (the key was lost) or no folder at all: no key to try.
    let empty = fx.root.path().join("keyring-empty");
    fs::create_dir(&empty).expect("mkdir");
    let err = FileKeyGuard::open(&empty)
        .err()
        .expect("an empty keyring gave a key");
    assert!(matches!(err, Error::KeyUnavailable(_)), "{err:?}");
    let err = FileKeyGuard::open(&fx.root.path().join("keyring-missing"))
        .err()
        .expect("a missing keyring gave a key");
    assert!(matches!(err, Error::KeyUnavailable(_)), "{err:?}");
    // A keyring file of the wrong size is no key either.
    let bad = fx.root.path().join("keyring-bad");
    fs::create_dir(&bad).expect("mkdir");
    fs::write(bad.join("apoyo-dev-keyring.key"), [7u8; 31]).expect("write");
    let err = FileKeyGuard::open(&bad)
        .err()
        .expect("a 31-byte key was accepted");
    assert!(matches!(err, Error::KeyUnavailable(_)), "{err:?}");
    assert_untouched(&before, &fx.store_dir());

    // The right keyring still opens it, and the capture reads back.
    let store = fx.open().expect("K1 opens");
    assert_intact(&store, &c);
}

#[test]
fn a_keyring_inside_the_store_folder_is_refused() {
    // At init: the keyring folder inside the folder the store is made in.
    let root = tempfile::tempdir().expect("tmp");
    let ep = apoyo_sync::wire::crypto::EndpointSecretKey::generate().expect("ep");
    let dir = root.path().join("store");
    let inside = FileKeyGuard::open_or_create(&dir.join("keyring")).expect("keyring");
    let err = Store::init(
        &dir,
        &inside,
        &common::provisioning_for(&ep),
        None,
        StoreOptions::default(),
    )
    .expect_err("init with the keyring inside the store");
    assert!(matches!(err, Error::KeyringInsideStore), "{err:?}");
    assert!(!dir.join("apoyo.db").exists());

    // At open, however the path to the keyring is spelled.
    let fx = Fixture::new();
    drop(fx.init());
    let link = fx.root.path().join("link-to-store");
    std::os::unix::fs::symlink(fx.store_dir(), &link).expect("symlink");
    let spellings = [
        fx.store_dir().join("keys"),
        fx.root
            .path()
            .join("elsewhere")
            .join("..")
            .join("store")
            .join("keys-dotdot"),
        link.join("keys-via-link"),
        fx.store_dir().join("parts").join("keys-deep"),
    ];
    for kr_dir in spellings {
        let kr = FileKeyGuard::open_or_create(&kr_dir).expect("keyring");
        let err = Store::open(&fx.store_dir(), &kr, StoreOptions::default())
            .expect_err("opened with the keyring inside the store");
        assert!(
            matches!(err, Error::KeyringInsideStore),
            "{}: {err:?}",
            kr_dir.display()
        );
    }
    // A keyring merely *named* like the store, beside it, is fine (no prefix confusion).
    let beside = FileKeyGuard::open_or_create(&fx.root.path().join("store-keyring")).expect("kr");
    let err = Store::open(&fx.store_dir(), &beside, StoreOptions::default())
        .expect_err("a foreign keyring opened the store");
    assert!(matches!(err, Error::WrongDevice), "{err:?}");
    fx.open().expect("the real keyring still opens the store");
}

// ---- corrupt or unknown stores --------------------------------------------------------------

/// A store with some captures, closed (WAL checkpointed into apoyo.db).
fn closed_store_with_captures(fx: &Fixture, n: u32) -> Vec<Captured> {
    let mut store = fx.init();
    let caps = (0..n)
        .map(|i| capture(&mut store, capture_of("nacional", &clave(500 + i))))
        .collect();
    drop(store);
    let wal = fx.store_dir().join("apoyo.db-wal");
    assert!(
        !wal.exists() || fs::metadata(&wal).expect("wal").len() == 0,
        "the WAL was not checkpointed at close"
    );
    caps
}

/// `Store::open` refuses with `CorruptStore`, twice, without changing or deleting anything;
/// then `set_aside` moves every byte aside and a fresh store can be made.
fn assert_corrupt_untouched_and_set_aside(fx: &Fixture) {
    let dir = fx.store_dir();
    let before = snapshot_without_lock(&dir);
    assert!(before.contains_key(Path::new("apoyo.db")));
    for attempt in 0..2 {
        let err = fx.open().expect_err("a corrupt store opened");
        assert!(
            matches!(err, Error::CorruptStore { .. }),
            "attempt {attempt}: {err:?}"
        );
        assert_eq!(err.class(), ErrorClass::StoreUnusable);
        assert_untouched(&before, &dir);
    }

    let target = Store::set_aside(&dir).expect("set_aside");
    assert_eq!(target.parent(), Some(dir.as_path()));
    let name = target
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("set-aside-"), "{name}");
    let moved = snapshot(&target);
    for (path, bytes) in &before {
        let got = moved
            .get(path)
            .unwrap_or_else(|| panic!("{} was not set aside", path.display()));
        assert!(got == bytes, "{} changed while set aside", path.display());
    }
    assert!(!fx.db_path().exists());

    // A fresh store in the same folder; the set-aside copy stays as it was.
    let mut fresh = fx.init();
    assert_eq!(fresh.status().expect("status").captured, 0);
    fresh
        .capture(capture_of("nacional", &clave(9_999)))
        .expect("capture in the fresh store");
    drop(fresh);
    drop(fx.open().expect("the fresh store reopens"));
    assert_eq!(snapshot(&target), moved, "the set-aside copy changed");
}

#[test]
fn a_damaged_page_is_corrupt_store_and_left_untouched() {
    let fx = Fixture::new();
    closed_store_with_captures(&fx, 30);
    let mut db = fs::read(fx.db_path()).expect("db");
    let page_size = match u16::from_be_bytes([db[16], db[17]]) {
        1 => 65_536,
        n => usize::from(n),
    };
    let pages = db.len() / page_size;
    assert!(pages >= 4, "only {pages} pages");
    let victim = pages / 2;
    db[victim * page_size..(victim + 1) * page_size].fill(0xA5);
    fs::write(fx.db_path(), &db).expect("write");
    assert_corrupt_untouched_and_set_aside(&fx);
}

#[test]
fn a_garbage_database_is_corrupt_store_and_left_untouched() {
    let fx = Fixture::new();
    closed_store_with_captures(&fx, 2);
    let len = fs::metadata(fx.db_path()).expect("db").len() as usize;
    fs::write(fx.db_path(), random_bytes(len)).expect("write");
    assert_corrupt_untouched_and_set_aside(&fx);
}

#[test]
fn a_truncated_database_is_corrupt_store_and_left_untouched() {
    for keep in [10usize, 0] {
        let fx = Fixture::new();
        closed_store_with_captures(&fx, 2);
        let db = fs::read(fx.db_path()).expect("db");
        fs::write(fx.db_path(), &db[..keep]).expect("truncate");
        assert_corrupt_untouched_and_set_aside(&fx);
    }
}

#[test]
fn a_foreign_sqlite_database_is_corrupt_store_and_left_untouched() {
    let fx = Fixture::new();
    closed_store_with_captures(&fx, 1);
    fs::remove_file(fx.db_path()).expect("rm");
    {
        let conn = rusqlite::Connection::open(fx.db_path()).expect("db");
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42);")
            .expect("create");
    }
    assert_corrupt_untouched_and_set_aside(&fx);
}

#[test]
fn a_newer_schema_version_is_refused_and_left_untouched() {
    let fx = Fixture::new();
    closed_store_with_captures(&fx, 2);
    let newer = migrations::LATEST + 7;
    {
        let conn = rusqlite::Connection::open(fx.db_path()).expect("db");
        conn.pragma_update(None, "user_version", newer)
            .expect("user_version");
    }
    let before = snapshot_without_lock(&fx.store_dir());
    for _ in 0..2 {
        let err = fx.open().expect_err("a newer store opened");
        match &err {
            Error::StoreVersion { found, supported } => {
                assert_eq!(*found, newer);
                assert_eq!(*supported, migrations::LATEST);
            }
            other => panic!("expected StoreVersion, got {other:?}"),
        }
        assert_eq!(err.class(), ErrorClass::StoreUnusable);
        assert_untouched(&before, &fx.store_dir());
    }
    let conn = rusqlite::Connection::open(fx.db_path()).expect("db");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, newer, "the version was rewritten");
}

#[test]
fn a_zero_or_negative_schema_version_is_a_corrupt_store_left_untouched() {
    for bad in [0i64, -3] {
        let fx = Fixture::new();
        closed_store_with_captures(&fx, 1);
        {
            let conn = rusqlite::Connection::open(fx.db_path()).expect("db");
            conn.pragma_update(None, "user_version", bad)
                .expect("user_version");
        }
        let before = snapshot_without_lock(&fx.store_dir());
        let err = fx
            .open()
            .expect_err("a store with a damaged version opened");
        assert!(
            matches!(err, Error::CorruptStore { .. }),
            "version {bad}: expected CorruptStore, got {err:?}"
        );
        assert_eq!(err.class(), ErrorClass::StoreUnusable);
        assert_untouched(&before, &fx.store_dir());
    }
}

#[test]
// Regression test: set-aside folders were named by the second only, so a second set-aside
// within the same second failed with Io(AlreadyExists) (fixed in b39a8b2).
fn set_aside_twice_within_a_second_works() {
    let fx = Fixture::new();
    closed_store_with_captures(&fx, 1);
    fs::write(fx.db_path(), b"garbage").expect("write");
    let first = Store::set_aside(&fx.store_dir()).expect("first set_aside");
    drop(fx.init());
    fs::write(fx.db_path(), b"garbage again").expect("write");
    let second = Store::set_aside(&fx.store_dir()).expect("second set_aside");
    assert_ne!(first, second);
    assert_eq!(fs::read(first.join("apoyo.db")).expect("first"), b"garbage");
    assert_eq!(
        fs::read(second.join("apoyo.db")).expect("second"),
        b"garbage again"
    );
}

#[test]
fn missing_and_existing_stores() {
    let fx = Fixture::new();
    let err = fx.open().expect_err("opened a store that does not exist");
    assert!(matches!(err, Error::NoStore(_)), "{err:?}");
    drop(fx.init());
    let err = Store::init(
        &fx.store_dir(),
        &fx.guard(),
        &fx.provisioning(),
        None,
        StoreOptions::default(),
    )
    .expect_err("init over an existing store");
    assert!(matches!(err, Error::StoreExists(_)), "{err:?}");
    drop(fx.open().expect("the existing store still opens"));
}

#[test]
fn init_never_adopts_what_an_earlier_store_left_behind() {
    // A set-aside cut after moving the database: its WAL (or a part file) is still here.
    for leftover in ["apoyo.db-wal", "parts"] {
        let fx = Fixture::new();
        closed_store_with_captures(&fx, 1);
        let dir = fx.store_dir();
        let aside = fx.root.path().join("aside.db");
        std::fs::rename(fx.db_path(), &aside).expect("move the database");
        if leftover == "parts" {
            // Only the part file is left (a closed store may also have removed its WAL).
            let _ = std::fs::remove_file(dir.join("apoyo.db-wal"));
            let _ = std::fs::remove_file(dir.join("apoyo.db-shm"));
            assert!(!part_file_names(&dir).is_empty());
        } else {
            std::fs::write(dir.join("apoyo.db-wal"), b"old wal frames").expect("wal");
        }
        let before = snapshot_without_lock(&dir);
        let err = Store::init(
            &dir,
            &fx.guard(),
            &fx.provisioning(),
            None,
            StoreOptions::default(),
        )
        .expect_err("init adopted an earlier store's files");
        assert!(matches!(err, Error::StoreExists(_)), "{leftover}: {err:?}");
        assert!(!fx.db_path().exists(), "{leftover}: a database was made");
        assert_untouched(&before, &dir);
    }
}

// ---- one process at a time ------------------------------------------------------------------

#[test]
fn a_second_open_while_the_first_is_alive_is_store_busy() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let c = capture(&mut store, capture_of("nacional", &clave(3)));

    let err = fx.open().expect_err("second open");
    assert!(matches!(err, Error::StoreBusy), "{err:?}");
    let err = Store::set_aside(&fx.store_dir()).expect_err("set_aside of an open store");
    assert!(matches!(err, Error::StoreBusy), "{err:?}");
    assert!(fx.db_path().exists());
    // The first handle is unaffected.
    assert_intact(&store, &c);

    drop(store);
    let store = fx.open().expect("open after the first closed");
    assert_intact(&store, &c);
}

// ---- the endpoint's copy (HPKE) ------------------------------------------------------------

#[test]
fn the_endpoint_opens_every_capture_and_part() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let mut caps = Vec::new();
    let start = OffsetDateTime::now_utc();
    for i in 0..3u32 {
        let mut c = capture_of(if i == 1 { "otro" } else { "nacional" }, &clave(40 + i));
        c.fields.curp = Some(curp(40 + i));
        c.fields.vigencia = Some(2030);
        c.location = Some(Location {
            lat: 21.5 + f64::from(i),
            lon: -101.25,
            accuracy_m: 12.0,
        });
        if i == 2 {
            // Several chunks per part, and a PNG selfie.
            c.images.front = jpeg(300_000);
            c.images.selfie = png(140_000);
            c.collector = Some(Collector::Auxiliar("AUX-0001".into()));
        }
        caps.push(capture(&mut store, c));
    }
    let end = OffsetDateTime::now_utc();
    let device_public = store.device_public();
    let other_endpoint = apoyo_sync::wire::crypto::EndpointSecretKey::generate().expect("ep2");

    for (i, c) in caps.iter().enumerate() {
        let sealed = store.endpoint_seal(&c.id).expect("endpoint_seal");
        assert_eq!(sealed.len(), wrap::SEALED_KEY_LEN);
        let dk = wrap::open_from_device(&fx.endpoint, &device_public, c.id.as_bytes(), &sealed)
            .expect("the endpoint opens the sealed key");
        // Only INE's key, for this device and this capture, opens it.
        assert!(
            wrap::open_from_device(&other_endpoint, &device_public, c.id.as_bytes(), &sealed)
                .is_err()
        );
        let other_id = caps[(i + 1) % caps.len()].id;
        assert!(
            wrap::open_from_device(&fx.endpoint, &device_public, other_id.as_bytes(), &sealed)
                .is_err()
        );

        let parts = store.parts(&c.id).expect("parts");
        assert_eq!(
            parts.iter().map(|p| p.kind).collect::<Vec<_>>(),
            PartKind::ALL.to_vec()
        );
        let mut manifest_bytes = Vec::new();
        for part in &parts {
            let mut ct = Vec::new();
            std::io::Read::read_to_end(
                &mut store.part_reader(&c.id, part).expect("part_reader"),
                &mut ct,
            )
            .expect("read ciphertext");
            assert_eq!(ct.len() as u64, part.ct_len);
            assert_eq!(
                apoyo_sync::testkit::crypto::sha256(&ct),
                part.sha256,
                "recorded digest"
            );
            let mut plain = Vec::new();
            PartOpener::new(&dk, c.id.as_bytes(), part.kind)
                .expect("opener")
                .open_to(part.ct_len, &ct[..], &mut plain)
                .expect("the endpoint decrypts the part");
            match c.images.get(part.kind) {
                Some(img) => {
                    assert!(plain == img, "{} differs", part.kind.name());
                    assert_eq!(part.ct_len, ciphertext_len(img.len() as u64));
                }
                None => manifest_bytes = plain,
            }
            // A part opened as another kind fails (kinds are bound).
            let wrong = if part.kind == PartKind::Front {
                PartKind::Back
            } else {
                PartKind::Front
            };
            assert!(
                PartOpener::new(&dk, c.id.as_bytes(), wrong)
                    .expect("opener")
                    .open_to(part.ct_len, &ct[..], &mut std::io::sink())
                    .is_err()
            );
        }

        let m = Manifest::from_cbor(&manifest_bytes).expect("manifest decodes");
        assert_eq!(m.v, Manifest::VERSION);
        assert_eq!(m.capture_id, c.id);
        assert_eq!(m.process_id, c.process_id);
        assert_eq!(m.model.as_str(), "G");
        assert_eq!(m.fields, c.fields);
        assert_eq!(m.location, c.location);
        assert!(!m.engine_version.is_empty());
        assert!(
            m.captured_at >= start - time::Duration::seconds(1)
                && m.captured_at <= end + time::Duration::seconds(1),
            "captured_at {} outside the capture window",
            m.captured_at
        );
        let expected_collector = if i == 2 {
            Collector::Auxiliar("AUX-0001".into())
        } else {
            Collector::MiApoyo(store.device_id().to_string())
        };
        assert_eq!(m.collector, expected_collector);
        assert_eq!(m.formats.front, ImageFormat::Jpeg);
        assert_eq!(m.formats.back, ImageFormat::Jpeg);
        assert_eq!(
            m.formats.selfie,
            if i == 2 {
                ImageFormat::Png
            } else {
                ImageFormat::Jpeg
            }
        );
        assert_eq!(m.formats.signature, ImageFormat::Png);
        // The device's own copy agrees.
        assert_eq!(store.manifest(&c.id).expect("device manifest"), m);
    }
}

// ---- duplicates, backpressure, status, export, orphans -------------------------------------

#[test]
fn the_same_clave_twice_in_a_process_is_a_duplicate() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let k = clave(77);
    let first = capture(&mut store, capture_of("nacional", &k));
    let status_before = store.status().expect("status");
    let files_before = part_file_names(&fx.store_dir());

    let err = store
        .capture(capture_of("nacional", &k))
        .expect_err("duplicate accepted");
    match &err {
        Error::Duplicate { process, earlier } => {
            assert_eq!(process, "nacional");
            assert_eq!(*earlier, first.id.to_string());
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Duplicate);
    assert!(!err.to_string().contains(&k), "the message holds the clave");
    assert_eq!(store.status().expect("status"), status_before);
    assert_eq!(part_file_names(&fx.store_dir()), files_before);

    // Still a duplicate after reopening (the check is persistent).
    drop(store);
    let mut store = fx.open().expect("reopen");
    let err = store
        .capture(capture_of("nacional", &k))
        .expect_err("duplicate after reopen");
    assert!(matches!(&err, Error::Duplicate { earlier, .. } if *earlier == first.id.to_string()));

    // The same citizen may support a different process.
    let other = capture(&mut store, capture_of("otro", &k));
    assert_ne!(other.id, first.id);
    assert_intact(&store, &other);
    assert_eq!(store.status().expect("status").captured, 2);
    // And a different citizen the first process.
    capture(&mut store, capture_of("nacional", &clave(78)));
    assert_eq!(store.status().expect("status").captured, 3);
}

#[test]
fn a_quarantined_citizen_may_be_captured_again() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let k = clave(88);
    let first = capture(&mut store, capture_of("nacional", &k));
    store
        .quarantine(&first.id, "credential_expired")
        .expect("quarantine");
    // The quarantined capture does not block a new one of the same citizen...
    let second = capture(&mut store, capture_of("nacional", &k));
    // ...which does.
    let err = store
        .capture(capture_of("nacional", &k))
        .expect_err("third capture of the same citizen");
    assert!(
        matches!(&err, Error::Duplicate { earlier, .. } if *earlier == second.id.to_string()),
        "{err:?}"
    );
    let st = store.status().expect("status");
    assert_eq!((st.captured, st.quarantined), (1, 1));
    assert_intact(&store, &first);
    assert_intact(&store, &second);
}

#[test]
fn storage_full_refuses_and_stores_nothing() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let c = capture(&mut store, capture_of("nacional", &clave(5)));
    drop(store);

    let opts = StoreOptions {
        disk_reserve_bytes: u64::MAX / 4,
        ..Default::default()
    };
    let mut store = fx.open_with(opts).expect("open");
    let status_before = store.status().expect("status");
    let files_before = part_file_names(&fx.store_dir());
    let err = store
        .capture(capture_of("nacional", &clave(6)))
        .expect_err("captured beyond the reserve");
    match &err {
        Error::StorageFull { available, needed } => {
            assert!(*needed >= u64::MAX / 4, "needed {needed}");
            assert!(available < needed);
        }
        other => panic!("expected StorageFull, got {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::StorageFull);
    assert_eq!(store.status().expect("status"), status_before);
    assert_eq!(store.list().expect("list").len(), 1);
    assert_eq!(part_file_names(&fx.store_dir()), files_before);
    // Nothing was evicted to make room.
    assert_intact(&store, &c);
    drop(store);

    // The largest reserve there is (an app's or a tester's "never write") is storage full
    // too, not an overflow that wraps to a small number and lets the capture through.
    let mut store = fx
        .open_with(StoreOptions {
            disk_reserve_bytes: u64::MAX,
            ..Default::default()
        })
        .expect("open");
    match store.capture(capture_of("nacional", &clave(6))) {
        Err(Error::StorageFull { needed, .. }) => assert_eq!(needed, u64::MAX),
        other => panic!("expected StorageFull, got {other:?}"),
    }
    drop(store);

    // With the default reserve the same capture goes through (it was not a duplicate).
    let mut store = fx.open().expect("open");
    capture(&mut store, capture_of("nacional", &clave(6)));
    assert_eq!(store.status().expect("status").captured, 2);
}

#[test]
fn status_counts_captures_and_pending_bytes() {
    let fx = Fixture::new();
    let mut store = fx.init();
    assert_eq!(
        store.status().expect("status"),
        apoyo_sync::Status::default()
    );
    let sizes = [
        (3_000usize, 2_000usize, 5_000usize, 800usize),
        (65_536, 65_537, 131_072, 1),
        (400_000, 10, 250_000, 20_000),
    ];
    let mut ids = Vec::new();
    for (i, (f, b, s, g)) in sizes.into_iter().enumerate() {
        let mut c = capture_of("nacional", &clave(900 + i as u32));
        c.images = Images {
            front: jpeg(f.max(8)),
            back: jpeg(b.max(8)),
            selfie: jpeg(s.max(8)),
            signature: png(g.max(16)),
        };
        ids.push(capture(&mut store, c));
    }

    let mut expected = 0u64;
    for c in &ids {
        let parts = store.parts(&c.id).expect("parts");
        assert_eq!(parts.len(), 5);
        let sum: u64 = parts.iter().map(|p| p.ct_len).sum();
        // Parts lie back to back in the capture's file.
        let mut offset = 0;
        for p in &parts {
            assert_eq!(p.file_offset, offset, "{} offset", p.kind.name());
            offset += p.ct_len;
            if let Some(img) = c.images.get(p.kind) {
                assert_eq!(p.ct_len, ciphertext_len(img.len() as u64));
            }
        }
        // Then the trailer that makes the file a record of its own (ADR 0013); the file is
        // what the capture holds on the device.
        let held = sum + PART_FILE_TRAILER_LEN;
        assert_eq!(
            fs::metadata(part_file(&fx, &c.id)).expect("file").len(),
            held
        );
        assert_eq!(store.info(&c.id).expect("info").total_bytes, held);
        expected += held;
    }

    let st = store.status().expect("status");
    assert_eq!(st.captured, ids.len() as u64);
    assert_eq!(
        (st.uploading, st.committed, st.quarantined, st.purged),
        (0, 0, 0, 0)
    );
    assert_eq!(st.pending_bytes, expected);
    let list = store.list().expect("list");
    assert_eq!(
        list.iter().map(|i| i.id).collect::<Vec<_>>(),
        ids.iter().map(|c| c.id).collect::<Vec<_>>(),
        "list is oldest first"
    );
    assert!(list.iter().all(|i| i.state == apoyo_sync::State::Captured));

    drop(store);
    assert_eq!(fx.open().expect("reopen").status().expect("status"), st);
}

#[test]
fn export_writes_the_images_and_fields() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let mut c = capture_of("nacional", &clave(321));
    c.images = Images {
        front: jpeg(70_000),
        back: png(9_000),
        selfie: jpeg(12_345),
        signature: png(2_222),
    };
    c.fields.curp = Some(curp(321));
    c.fields.vigencia = Some(2031);
    c.location = Some(Location {
        lat: 25.686_614,
        lon: -100.316_113,
        accuracy_m: 4.0,
    });
    let c = capture(&mut store, c);

    let out = fx.root.path().join("out");
    let mut written = store.export(&c.id, &out).expect("export");
    written.sort();
    let mut expected: Vec<PathBuf> = [
        "back.png",
        "fields.json",
        "front.jpg",
        "selfie.jpg",
        "signature.png",
    ]
    .iter()
    .map(|n| out.join(n))
    .collect();
    expected.sort();
    assert_eq!(written, expected);
    let on_disk: Vec<PathBuf> = snapshot(&out).keys().map(|p| out.join(p)).collect();
    assert_eq!(on_disk, expected, "export wrote other files");

    for (kind, name) in [
        (PartKind::Front, "front.jpg"),
        (PartKind::Back, "back.png"),
        (PartKind::Selfie, "selfie.jpg"),
        (PartKind::Signature, "signature.png"),
    ] {
        assert!(
            fs::read(out.join(name)).expect("image") == c.images.get(kind).expect("img"),
            "{name} differs"
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("fields.json")).expect("fields.json"))
            .expect("fields.json parses");
    assert_eq!(json["capture_id"], c.id.to_string());
    assert_eq!(json["process_id"], "nacional");
    assert_eq!(json["model"], "G");
    assert_eq!(json["fields"]["clave_elector"], c.fields.clave_elector);
    assert_eq!(json["fields"]["curp"], c.fields.curp.clone().expect("curp"));
    assert_eq!(json["fields"]["vigencia"], 2031);
    assert_eq!(json["location"]["lat"], 25.686_614);
    assert_eq!(json["collector"]["id"], store.device_id());

    // Exporting an unknown capture names it as unknown.
    let unknown = CaptureId::new_v7(OffsetDateTime::now_utc());
    let err = store
        .export(&unknown, &fx.root.path().join("out2"))
        .expect_err("exported an unknown capture");
    assert!(
        matches!(err, Error::UnknownCapture(_)),
        "unknown capture: {err:?}"
    );
}

#[test]
fn part_files_of_interrupted_captures_are_removed_at_open() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let a = capture(&mut store, capture_of("nacional", &clave(61)));
    let b = capture(&mut store, capture_of("nacional", &clave(62)));
    drop(store);

    // A capture killed before its file was complete: no trailer, never reported.
    let orphan = CaptureId::new_v7(OffsetDateTime::now_utc());
    let orphan_path = part_file(&fx, &orphan);
    fs::write(&orphan_path, random_bytes(4_321)).expect("orphan");
    // One killed after its parts but before its trailer: a's bytes, minus the trailer.
    let cut = CaptureId::new_v7(OffsetDateTime::now_utc());
    let a_bytes = fs::read(part_file(&fx, &a.id)).expect("a");
    let cut_path = part_file(&fx, &cut);
    fs::write(
        &cut_path,
        &a_bytes[..a_bytes.len() - PART_FILE_TRAILER_LEN as usize],
    )
    .expect("cut");
    // A file that is not a part file is not the store's to delete.
    let stranger = fx.parts_dir().join("README.txt");
    fs::write(&stranger, b"not a part file").expect("stranger");
    let b_bytes = fs::read(part_file(&fx, &b.id)).expect("b");

    let store = fx.open().expect("open");
    assert!(!orphan_path.exists(), "the orphan part file is still there");
    assert!(
        !cut_path.exists(),
        "the file without a trailer is still there"
    );
    assert!(stranger.exists(), "a non-part file was deleted");
    let report = store.open_report();
    assert_eq!(report.removed_incomplete, 2);
    assert!(report.recovered.is_empty() && report.damaged.is_empty());
    assert_eq!(fs::read(part_file(&fx, &a.id)).expect("a"), a_bytes);
    assert_eq!(fs::read(part_file(&fx, &b.id)).expect("b"), b_bytes);
    let mut names = part_file_names(&fx.store_dir());
    names.retain(|n| n.ends_with(".parts"));
    let mut expected = vec![format!("{}.parts", a.id), format!("{}.parts", b.id)];
    expected.sort();
    assert_eq!(names, expected);
    assert_intact(&store, &a);
    assert_intact(&store, &b);
    assert_eq!(store.status().expect("status").captured, 2);
    drop(store);
    // Nothing left to do at the next open.
    assert_eq!(
        fx.open().expect("reopen").open_report(),
        &Default::default()
    );
}

/// The database files of a closed store, to put back later: what the disk held before a
/// commit that a power loss then undid.
fn database_snapshot(fx: &Fixture) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let path = PathBuf::from(format!("{}{suffix}", fx.db_path().display()));
            let bytes = fs::read(&path).ok();
            (path, bytes)
        })
        .collect()
}

fn restore_database(snapshot: &[(PathBuf, Option<Vec<u8>>)]) {
    for (path, bytes) in snapshot {
        match bytes {
            Some(b) => fs::write(path, b).expect("restore"),
            None => {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// A capture's queue rows are committed without a flush of their own (ADR 0013): its part
/// file, trailer included, is the durable record. Here the rows are lost as a power loss
/// would lose them (the database put back as it was before the capture), and the next open
/// rebuilds them: the capture opens byte-identically, is a duplicate for its citizen, and
/// INE's sealed key opens again.
#[test]
fn a_capture_whose_rows_a_power_loss_rolled_back_is_rebuilt_from_its_file() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let a = capture(&mut store, capture_of("nacional", &clave(63)));
    drop(store);
    let before = database_snapshot(&fx);

    let mut store = fx.open().expect("open");
    let mut c = capture_of("otro", &clave(64));
    c.fields.curp = Some(curp(64));
    c.fields.vigencia = Some(2031);
    c.location = Some(Location {
        lat: 17.06,
        lon: -96.72,
        accuracy_m: 8.0,
    });
    c.images.front = jpeg(200_000); // several chunks
    c.collector = Some(Collector::Auxiliar("AUX-0042".into()));
    let b = capture(&mut store, c);
    let b_info = store.info(&b.id).expect("info");
    let b_parts = store.parts(&b.id).expect("parts");
    drop(store);
    let b_file = fs::read(part_file(&fx, &b.id)).expect("b's file");

    restore_database(&before);
    let mut store = fx.open().expect("open after the loss");
    assert_eq!(store.open_report().recovered, vec![b.id]);
    assert_eq!(store.open_report().removed_incomplete, 0);
    assert!(store.open_report().damaged.is_empty());
    assert_eq!(fs::read(part_file(&fx, &b.id)).expect("b's file"), b_file);

    // The same queue row and parts as before the loss.
    assert_eq!(store.info(&b.id).expect("info"), b_info);
    assert_eq!(store.parts(&b.id).expect("parts"), b_parts);
    assert_eq!(
        store.capture_collector(&b.id).expect("collector"),
        Collector::Auxiliar("AUX-0042".into())
    );
    assert_intact(&store, &a);
    assert_intact(&store, &b);
    assert_eq!(store.status().expect("status").captured, 2);

    // INE opens the (re-made) sealed key and every part.
    let sealed = store.endpoint_seal(&b.id).expect("endpoint seal");
    let dk = wrap::open_from_device(
        &fx.endpoint,
        &store.device_public(),
        b.id.as_bytes(),
        &sealed,
    )
    .expect("the endpoint opens the rebuilt seal");
    for part in &b_parts {
        let reader = store.part_reader(&b.id, part).expect("reader");
        let mut plain = Vec::new();
        PartOpener::new(&dk, b.id.as_bytes(), part.kind)
            .expect("opener")
            .open_to(part.ct_len, reader, &mut plain)
            .expect("the endpoint decrypts");
        if let Some(img) = b.images.get(part.kind) {
            assert!(plain == img, "{} differs", part.kind.name());
        }
    }

    // The citizen is still a duplicate in that process, naming the rebuilt capture.
    let err = store
        .capture(capture_of("otro", &clave(64)))
        .expect_err("duplicate accepted");
    assert!(matches!(&err, Error::Duplicate { earlier, .. } if *earlier == b.id.to_string()));
    drop(store);
    // Rebuilt once: the rows are durable now.
    assert_eq!(
        fx.open().expect("reopen").open_report(),
        &Default::default()
    );
}

/// A part file with a trailer whose parts do not authenticate (damaged, or flushed only in
/// part when the power went) is not rebuilt and not deleted: it is moved to `damaged/`.
#[test]
fn a_damaged_part_file_without_rows_is_kept_aside_not_deleted() {
    let fx = Fixture::new();
    let mut store = fx.init();
    let a = capture(&mut store, capture_of("nacional", &clave(65)));
    drop(store);
    let before = database_snapshot(&fx);
    let mut store = fx.open().expect("open");
    let b = capture(&mut store, capture_of("nacional", &clave(66)));
    let c = capture(&mut store, capture_of("nacional", &clave(67)));
    drop(store);
    restore_database(&before);

    // b: one byte of the selfie flipped; c: a trailer that names another capture's wrap.
    let b_path = part_file(&fx, &b.id);
    let mut b_bytes = fs::read(&b_path).expect("b");
    let selfie_at = (ciphertext_len(b.images.front.len() as u64)
        + ciphertext_len(b.images.back.len() as u64)
        + 100) as usize;
    b_bytes[selfie_at] ^= 0x40;
    fs::write(&b_path, &b_bytes).expect("tamper b");
    let c_path = part_file(&fx, &c.id);
    let mut c_bytes = fs::read(&c_path).expect("c");
    let a_bytes = fs::read(part_file(&fx, &a.id)).expect("a");
    let t = PART_FILE_TRAILER_LEN as usize;
    let (cl, al) = (c_bytes.len(), a_bytes.len());
    c_bytes[cl - t + 40..cl - t + 113].copy_from_slice(&a_bytes[al - t + 40..al - t + 113]);
    fs::write(&c_path, &c_bytes).expect("tamper c");

    let store = fx.open().expect("open");
    let report = store.open_report().clone();
    assert!(report.recovered.is_empty(), "{report:?}");
    assert_eq!(report.removed_incomplete, 0);
    let damaged = fx.store_dir().join("damaged");
    let mut expected = vec![
        damaged.join(format!("{}.parts", b.id)),
        damaged.join(format!("{}.parts", c.id)),
    ];
    expected.sort();
    let mut got = report.damaged.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        fs::read(damaged.join(format!("{}.parts", b.id))).expect("kept"),
        b_bytes
    );
    assert_eq!(
        fs::read(damaged.join(format!("{}.parts", c.id))).expect("kept"),
        c_bytes
    );
    assert!(!b_path.exists() && !c_path.exists());
    assert!(matches!(store.info(&b.id), Err(Error::UnknownCapture(_))));
    assert_intact(&store, &a);
    assert_eq!(store.status().expect("status").captured, 1);
}
