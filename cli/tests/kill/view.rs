//! What the kill loops read of the two databases, opened **read-only** with rusqlite (a
//! read-only connection never checkpoints or rewrites a file a kill left behind): the device's
//! captures, parts, keys and receipts, and the endpoint's uploads and supports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub fn open_ro(path: &Path) -> Connection {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c
}

/// `PRAGMA integrity_check` of a database, read-only: "ok" or the problems found.
pub fn integrity(path: &Path) -> String {
    let c = open_ro(path);
    let mut st = c.prepare("PRAGMA integrity_check").expect("prepare");
    let rows: Vec<String> = st
        .query_map([], |r| r.get(0))
        .expect("integrity_check")
        .map(|r| r.expect("row"))
        .collect();
    rows.join("; ")
}

/// The activation code the development mailbox holds for `email`.
pub fn mailbox_code(endpoint_db: &Path, email: &str) -> String {
    open_ro(endpoint_db)
        .query_row(
            "SELECT code FROM dev_mailbox WHERE email = lower(?1)",
            [email],
            |r| r.get(0),
        )
        .expect("an activation code in the mailbox")
}

/// A device store as a kill left it.
#[derive(Debug, Clone, Default)]
pub struct DeviceView {
    /// capture id -> state.
    pub states: BTreeMap<String, String>,
    /// capture id -> number of parts (images and manifest).
    pub parts: BTreeMap<String, u64>,
    /// Captures that still have their keys.
    pub keys: BTreeSet<String>,
    /// capture id -> (result, verified).
    pub receipts: BTreeMap<String, (String, bool)>,
    /// Capture ids named by the files in `parts/`.
    pub files: BTreeSet<String>,
}

impl DeviceView {
    pub fn read(store: &Path) -> DeviceView {
        let c = open_ro(&store.join("apoyo.db"));
        let tx = c.unchecked_transaction().expect("read transaction");
        let pairs = |sql: &str| -> Vec<(String, String)> {
            let mut st = tx.prepare(sql).expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect()
        };
        let states = pairs("SELECT id, state FROM captures")
            .into_iter()
            .collect();
        let parts = pairs("SELECT capture_id, CAST(count(*) AS TEXT) FROM parts GROUP BY 1")
            .into_iter()
            .map(|(id, n)| (id, n.parse().expect("count")))
            .collect();
        let keys = pairs("SELECT capture_id, '' FROM capture_keys")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let receipts = pairs("SELECT capture_id, result || ' ' || verified FROM receipts")
            .into_iter()
            .map(|(id, rv)| {
                let (result, verified) = rv.split_once(' ').expect("result verified");
                (id, (result.to_string(), verified == "1"))
            })
            .collect();
        drop(tx);
        let files = std::fs::read_dir(store.join("parts"))
            .expect("parts folder")
            .map(|e| {
                let name = e.expect("entry").file_name().to_string_lossy().into_owned();
                name.strip_suffix(".parts")
                    .unwrap_or_else(|| panic!("unexpected file in parts/: {name}"))
                    .to_string()
            })
            .collect();
        DeviceView {
            states,
            parts,
            keys,
            receipts,
            files,
        }
    }

    /// Captures still waiting to be sent (captured or mid-upload).
    pub fn pending(&self) -> usize {
        self.states
            .values()
            .filter(|s| *s == "captured" || *s == "uploading")
            .count()
    }
}

/// The endpoint's database as a kill left it.
#[derive(Debug, Clone, Default)]
pub struct EndpointView {
    /// capture id -> result.
    pub supports: BTreeMap<String, String>,
    /// upload id -> (capture id, offset, length).
    pub uploads: BTreeMap<String, (String, i64, i64)>,
}

impl EndpointView {
    pub fn read(db: &Path) -> EndpointView {
        let c = open_ro(db);
        let tx = c.unchecked_transaction().expect("read transaction");
        let supports = {
            let mut st = tx
                .prepare("SELECT capture_id, result FROM supports")
                .expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("supports")
                .map(|r| r.expect("row"))
                .collect()
        };
        let uploads = {
            let mut st = tx
                .prepare("SELECT id, capture_id, upload_offset, length FROM uploads")
                .expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
                .expect("uploads")
                .map(|r| r.expect("row"))
                .collect()
        };
        drop(tx);
        EndpointView { supports, uploads }
    }

    /// capture id -> (parts whose upload is complete, parts with an upload), for the uploads
    /// that differ from `before` (created or moved on since).
    pub fn moved_since(&self, before: &EndpointView) -> BTreeMap<String, (u64, u64)> {
        let mut moved: BTreeSet<&String> = BTreeSet::new();
        for (id, (capture, offset, _)) in &self.uploads {
            if before.uploads.get(id).map(|u| u.1) != Some(*offset) {
                moved.insert(capture);
            }
        }
        let mut out = BTreeMap::new();
        for (capture, offset, length) in self.uploads.values() {
            if moved.contains(capture) {
                let e = out.entry(capture.clone()).or_insert((0, 0));
                e.1 += 1;
                if offset == length {
                    e.0 += 1;
                }
            }
        }
        out
    }
}

/// Cheap counters polled while a process runs, to aim a kill at a phase.
pub struct Probe {
    device: Connection,
    endpoint: Connection,
}

impl Probe {
    pub fn new(store: &Path, endpoint_db: &Path) -> Probe {
        Probe {
            device: open_ro(&store.join("apoyo.db")),
            endpoint: open_ro(endpoint_db),
        }
    }

    /// Sum of upload offsets plus the number of uploads: moves at each create and PATCH.
    pub fn upload_mark(&self) -> i64 {
        self.endpoint
            .query_row(
                "SELECT coalesce(sum(upload_offset), 0) + count(*) FROM uploads",
                [],
                |r| r.get(0),
            )
            .expect("uploads")
    }

    pub fn supports(&self) -> i64 {
        self.endpoint
            .query_row("SELECT count(*) FROM supports", [], |r| r.get(0))
            .expect("supports")
    }

    /// (captures committed but not purged, captures with a receipt).
    pub fn receipted(&self) -> (i64, i64) {
        self.device
            .query_row(
                "SELECT coalesce(sum(state = 'committed'), 0), \
                        coalesce(sum(state IN ('committed', 'purged')), 0) FROM captures",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("captures")
    }
}
