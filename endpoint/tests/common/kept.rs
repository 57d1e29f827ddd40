//! What a refused receipt must leave behind, shared by the receipt tests: the sync options they
//! run with, a snapshot of a store's part files, and the check that the capture kept every byte.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::sync::{BackoffPolicy, SyncOptions};
use apoyo_sync::{CaptureId, PartKind, State};

use super::image;

pub fn opts(budget: Duration) -> SyncOptions {
    SyncOptions {
        budget,
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        seed: Some(7),
        progress: None,
        control: None,
    }
}

/// Every file of a store folder but its lock, with its bytes.
pub fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("parts")).unwrap() {
        let p = e.unwrap().path();
        out.insert(p.clone(), std::fs::read(&p).unwrap());
    }
    out
}

/// What a refused receipt must leave: no receipt, the capture in `state` with every byte.
pub fn assert_kept(
    store: &Store,
    id: &CaptureId,
    state: State,
    before: &BTreeMap<PathBuf, Vec<u8>>,
) {
    let info = store.info(id).unwrap();
    assert_eq!(info.state, state, "{:?}", info.reason);
    if state == State::Quarantined {
        assert_eq!(info.reason.as_deref(), Some("receipt_invalid"));
    }
    assert!(store.receipts().unwrap().is_empty(), "no receipt recorded");
    assert_eq!(
        &files_of(store.dir()),
        before,
        "every byte of the capture kept"
    );
    // The data key is still there: the capture opens byte for byte.
    let mut out = Vec::new();
    store.read_part(id, PartKind::Front, &mut out).unwrap();
    assert_eq!(out, image("front.jpg"));
}
