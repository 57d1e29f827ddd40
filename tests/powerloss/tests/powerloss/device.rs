//! A device store for the suites: made once in a template folder, copied afresh for each run,
//! and the checks every run ends with (the store opens, its database passes
//! `PRAGMA integrity_check`, every capture whose `capture()` returned reads back byte for byte,
//! and no capture is there in part).

use std::fs;
use std::path::{Path, PathBuf};

use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::testkit::crypto::Ed25519Secret;
use apoyo_sync::testkit::model::{CaptureId, Images, PartKind};
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::{ManualClock, Store};
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::{FileKeyGuard, IneRoot, Process, State};

use crate::support::{copy_dir, integrity, temp_root};

pub const PROCESSES: &str = r#"[
  {"id": "nacional", "name": "Proceso nacional de prueba", "accepted_models": ["E", "F", "G", "H"],
   "vigencia_cutoff": "2022-01-01", "scope": "national"}
]"#;

/// A store template and the folder each run works in. The keyring is beside them, outside
/// the folder whose power is cut.
pub struct Device {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Device {
    /// A device store initialised with [`PROCESSES`], provisioned for `provisioning` (a fresh
    /// seal key and INE root if `None`).
    pub fn new(provisioning: Option<InePublicKeys>) -> Device {
        let (tmp, root) = temp_root();
        let d = Device { _tmp: tmp, root };
        let provisioning = provisioning.unwrap_or_else(|| InePublicKeys {
            seal_key: EndpointSecretKey::generate().expect("seal key").public(),
            ine_root: IneRoot::from_bytes(&Ed25519Secret::generate().expect("root").public())
                .expect("root key"),
        });
        let mut store = Store::init(
            &d.template(),
            &d.guard(),
            &provisioning,
            None,
            StoreOptions::default(),
        )
        .expect("Store::init");
        let list = Process::parse_json_list(PROCESSES.as_bytes()).expect("processes");
        store.put_processes(&list).expect("put_processes");
        d
    }

    pub fn template(&self) -> PathBuf {
        self.root.join("template")
    }

    /// The folder the runs work in (and whose power is cut).
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn guard(&self) -> FileKeyGuard {
        FileKeyGuard::open_or_create(&self.root.join("keyring")).expect("keyring")
    }

    /// The run folder, reset to the template.
    pub fn fresh_run(&self) -> PathBuf {
        copy_dir(&self.template(), &self.run());
        self.run()
    }

    /// Replaces the template with the run folder as it is now.
    pub fn keep_run_as_template(&self) {
        copy_dir(&self.run(), &self.template());
    }

    /// Opens the run's store on a clock whose instant stands still (it moves only by the
    /// engine's own sleeps): the PATCH sizing (ADR 0018, 0022) then never sees a slow round
    /// trip, so every run passes the same sync points as its dry run whatever the machine's
    /// load (a loaded machine used to make the dry run's PATCHes smaller, and more, than a
    /// later run's).
    pub fn open(&self) -> apoyo_sync::Result<Store> {
        let clock: apoyo_sync::SharedClock =
            std::sync::Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let opts = StoreOptions {
            clock,
            ..StoreOptions::default()
        };
        Store::open(&self.run(), &self.guard(), opts)
    }
}

/// What a run did before the power went out: the captures whose `capture()` returned, and
/// the images of the one in flight, if any.
#[derive(Default)]
pub struct Captured {
    pub returned: Vec<(CaptureId, Images)>,
    pub in_flight: Option<Images>,
}

/// Checks the run folder after a power loss; `ctx` names the run (and how to replay it).
/// Returns the store, opened.
pub fn check_after_power_loss(device: &Device, captured: &Captured, ctx: &str) -> Store {
    let store = device.open().unwrap_or_else(|e| {
        let db = device.run().join("apoyo.db");
        let header = std::fs::read(&db).map(|b| b.into_iter().take(16).collect::<Vec<u8>>());
        let sqlite = std::panic::catch_unwind(|| integrity(&db));
        panic!(
            "{ctx}: the store does not open after the power loss: {e} (first bytes of the file: {header:?}; SQLite's own integrity_check: {sqlite:?})"
        )
    });
    let list = store.list().expect("list");
    for (id, images) in &captured.returned {
        let info = list
            .iter()
            .find(|c| c.id == *id)
            .unwrap_or_else(|| panic!("{ctx}: capture {id} returned but is gone"));
        if info.state != State::Purged {
            assert!(
                reads_back(&store, id, images),
                "{ctx}: capture {id} returned but does not read back whole"
            );
        }
    }
    for info in &list {
        if info.state == State::Purged || captured.returned.iter().any(|(id, _)| *id == info.id) {
            continue;
        }
        let whole = captured
            .in_flight
            .as_ref()
            .is_some_and(|images| reads_back(&store, &info.id, images));
        assert!(
            whole,
            "{ctx}: capture {} is in the store but is not the one in flight, whole",
            info.id
        );
    }
    check_folders(device, &list, captured, ctx);
    store
}

/// `parts/` holds exactly the files of the captures still held; `damaged/` none of a capture
/// that returned.
fn check_folders(
    device: &Device,
    list: &[apoyo_sync::CaptureInfo],
    captured: &Captured,
    ctx: &str,
) {
    let mut files: Vec<String> = names(&device.run().join("parts"));
    files.sort();
    let mut held: Vec<String> = list
        .iter()
        .filter(|c| c.state != State::Purged)
        .map(|c| format!("{}.parts", c.id))
        .collect();
    held.sort();
    assert_eq!(
        files, held,
        "{ctx}: parts/ does not match the captures held"
    );
    for name in names(&device.run().join("damaged")) {
        assert!(
            !captured
                .returned
                .iter()
                .any(|(id, _)| name.starts_with(&id.to_string())),
            "{ctx}: the part file of returned capture {name} was set aside as damaged"
        );
    }
}

fn names(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether every image of capture `id` reads back equal to `images` (and its manifest reads).
pub fn reads_back(store: &Store, id: &CaptureId, images: &Images) -> bool {
    PartKind::ALL.iter().all(|&kind| {
        let mut out = Vec::new();
        store.read_part(id, kind, &mut out).is_ok()
            && images.get(kind).is_none_or(|img| out.as_slice() == img)
    })
}

/// The store database passes `PRAGMA integrity_check` (call with the store closed).
pub fn check_integrity(device: &Device, ctx: &str) {
    let result = integrity(&device.run().join("apoyo.db"));
    assert_eq!(result, "ok", "{ctx}: integrity_check");
}
