//! Issue 17, device side, the loose ends `tests/hardening.rs` does not cover: a transport
//! `Response` carrying a token is redacted in `Debug`; the folder fsyncs after a damaged part is
//! set aside and after the development keyring is made are really done (watched through the
//! `fsync_log` test seam); the card fields, the token and key file text are wiped.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use apoyo_sync::testkit::crypto::{Ed25519Secret, anchor};
use apoyo_sync::testkit::fsutil::fsync_log;
use apoyo_sync::testkit::model::CardFields;
use apoyo_sync::testkit::store::Activation;
use apoyo_sync::testkit::store::part_fs::{self, PartFs};
use apoyo_sync::testkit::sync::transport::Response;
use apoyo_sync::{FileKeyGuard, wire};
use common::{Fixture, capture_of, clave};
use zeroize::{Zeroize, Zeroizing};

const TOKEN: &str = "tok-deadbeefcafe0123456789";

/// The decimal bytes of `s` as `Debug` of a `Vec<u8>` prints them, without the brackets.
fn debug_bytes(s: &str) -> String {
    let full = format!("{:?}", s.as_bytes());
    full[1..full.len() - 1].to_string()
}

#[test]
fn a_transport_response_carrying_a_token_is_redacted() {
    let body = wire::encode(&wire::ActivateResponse {
        v: 1,
        token: TOKEN.into(),
        expires_at: time::OffsetDateTime::UNIX_EPOCH,
        receipt_key: [1; 32],
        receipt_key_id: "k".into(),
        processes: vec![],
        key_certs: vec![],
    })
    .expect("encode");
    let response = Response {
        status: 200,
        headers: vec![("Set-Cookie".into(), format!("session={TOKEN}"))],
        body,
    };
    let debug = format!("{response:?}");
    assert!(!debug.contains(TOKEN), "token in Debug: {debug}");
    assert!(
        !debug.contains(&debug_bytes(TOKEN)),
        "token bytes in Debug: {debug}"
    );
    assert!(
        debug.contains("200") && debug.contains("body_len"),
        "{debug}"
    );
}

/// Records every rename and folder fsync of part files under the store, in order.
#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl PartFs for Events {
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.push(format!("sync {}", dir.display()));
        wire::fsync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.push(format!("rename {}", to.display()));
        fs::rename(from, to)
    }
}

impl Events {
    fn push(&self, e: String) {
        self.0.lock().expect("events").push(e);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("events").clone()
    }
}

fn position(events: &[String], wanted: &str) -> usize {
    events
        .iter()
        .position(|e| e == wanted)
        .unwrap_or_else(|| panic!("no `{wanted}` in {events:#?}"))
}

/// A part file whose parts do not authenticate is moved to `STORE/damaged/`: the new folder's
/// entry (STORE), the moved file's entry (damaged/) and its removal from parts/ are each
/// made durable, the last two after the rename.
#[test]
fn a_damaged_part_set_aside_is_made_durable() {
    let fx = Fixture::new();
    let store = fx.init();
    drop(store);
    let db = fx.db_path();
    let snapshot: Vec<(PathBuf, Option<Vec<u8>>)> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let p = PathBuf::from(format!("{}{s}", db.display()));
            let b = fs::read(&p).ok();
            (p, b)
        })
        .collect();
    let mut store = fx.open().expect("open");
    let id = store
        .capture(capture_of("nacional", &clave(71)))
        .expect("capture");
    drop(store);
    // The rows are lost (the database as before the capture) and a part byte is flipped.
    for (p, b) in &snapshot {
        match b {
            Some(b) => fs::write(p, b).expect("restore"),
            None => {
                let _ = fs::remove_file(p);
            }
        }
    }
    let part = fx.parts_dir().join(format!("{id}.parts"));
    let mut bytes = fs::read(&part).expect("part file");
    bytes[200] ^= 0x40;
    fs::write(&part, &bytes).expect("tamper");

    let store_dir = fx.store_dir();
    let events = Arc::new(Events::default());
    let _layer = part_fs::install(&store_dir, events.clone());
    let recorder = fsync_log::record(&store_dir);
    let store = fx.open().expect("open");
    let damaged = store_dir.join("damaged");
    let target = damaged.join(format!("{id}.parts"));
    assert_eq!(store.open_report().damaged, vec![target.clone()]);
    drop(store);

    let events = events.all();
    let moved = position(&events, &format!("rename {}", target.display()));
    let synced_damaged = position(&events, &format!("sync {}", damaged.display()));
    let synced_parts = position(&events, &format!("sync {}", fx.parts_dir().display()));
    assert!(
        moved < synced_damaged && moved < synced_parts,
        "{events:#?}"
    );
    // The new damaged/ folder's own entry: its parent synced through the shared helper.
    assert!(
        recorder.synced().contains(&store_dir),
        "{:?}",
        recorder.synced()
    );
}

/// The development keyring made at `device init`: its folder's entry in the parent and the
/// key file's entry in the folder are both fsync'd.
#[test]
fn a_new_development_keyring_is_made_durable() {
    let root = tempfile::tempdir().expect("temp");
    let dir = root.path().join("keyring");
    let recorder = fsync_log::record(root.path());
    FileKeyGuard::open_or_create(&dir).expect("keyring");
    let synced = recorder.synced();
    assert!(synced.contains(&root.path().to_path_buf()), "{synced:?}");
    assert!(synced.contains(&dir), "{synced:?}");
}

/// The card fields are wiped field by field (the store wipes the caller's copy with this).
#[test]
fn card_fields_are_zeroized_whole() {
    fn zeroizable<T: Zeroize>() {}
    zeroizable::<CardFields>();
    let mut fields = CardFields {
        clave_elector: clave(72),
        curp: Some("GOMA850615MDFRRS09".into()),
        ocr: Some("1234567890123".into()),
        cic: Some("123456789".into()),
        entidad: Some(9),
        seccion: Some(1234),
        numero_emision: Some(2),
        vigencia: Some(2030),
    };
    fields.zeroize();
    assert_eq!(fields, CardFields::default());
}

/// The token is wiped when an activation is dropped (its `Drop` does it: the bound fails to
/// compile without one), and key file text comes in buffers wiped on drop (the type
/// annotations fail to compile if either returns a plain `String`).
#[test]
fn the_token_and_key_file_text_are_wiped() {
    #[allow(drop_bounds)]
    fn wiped_by_its_drop<T: Drop>() {}
    wiped_by_its_drop::<Activation>();
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<Zeroizing<String>>();

    let key = Ed25519Secret::generate().expect("key");
    let text: Zeroizing<String> = key.to_text("apoyo-test-key");
    assert!(text.starts_with("apoyo-test-key "));
    let mut raw: Zeroizing<String> = anchor::key_text("apoyo-test-key", &[0xab; 32]);
    assert!(raw.contains(&"ab".repeat(32)));
    // What dropping does to it: every byte of the text is wiped.
    raw.zeroize();
    assert!(raw.is_empty());
}
