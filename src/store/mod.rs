//! The encrypted, durable capture store: one SQLite database (WAL) for the queue and the
//! catalog, one file per capture for the part ciphertexts, one exclusive lock per store.
//!
//! ```text
//! STORE/
//!   apoyo.db (+ -wal, -shm)   device keys (wrapped), processes, queue rows, key wraps, receipts
//!   parts/<capture id>.parts  the capture's part ciphertexts, back to back, then a trailer
//!   damaged/                  part files that failed to authenticate at open, kept
//!   store.lock                held exclusively by the one process that has the store open
//!   session                   the clean-close marker (`session.rs`)
//! ```
//!
//! This file holds the [`Store`] itself; each concern has its own file:
//!
//! | file | owns |
//! |---|---|
//! | `open.rs` | `Store::init`, `Store::open`, `Store::set_aside`: the lock, the checks, the key unwrap |
//! | `recover.rs` | reconciling `parts/` with the queue at open: rebuild, remove or set damaged files aside |
//! | `session.rs` | the clean-close marker: which checks an open can skip |
//! | `capture.rs` | `Store::capture`: validate, check space, seal the parts, index the capture |
//! | `rows.rs` | the rows that index a capture (`captures`, `parts`, `capture_keys`) |
//! | `read.rs` | queue reads (`status`, `list`, `info`, `parts`) and readers over stored ciphertext |
//! | `export.rs` | decrypting the device's own copy (`read_part`, `manifest`, `export`) |
//! | `purge.rs` | crypto-shredding an acknowledged capture |
//! | `processes.rs` | the process catalog |
//! | `sync_state.rs` | registration, activation, upload progress, retries, receipts |
//! | `link_state.rs` | what the last sync run learned about the link, when the catalog was refreshed (ADR 0023) |
//! | `files.rs` | where part files live and listing them |
//! | `trailer.rs` | the part-file trailer (ADR 0013) and shredding it |
//! | `part_fs.rs` | the seam every part-file write, flush, removal and rename goes through (a fault layer in tests, ADR 0017) |
//! | `part_writer.rs` | writing a part file durably on two threads |
//! | `block_ring.rs` | the ring of aligned blocks the part writer fills and writes back |
//! | `db.rs`, `migrations.rs` | the SQLite connection, its pragmas, the schema |

#[cfg(unix)]
mod block_ring;
mod capture;
mod db;
mod export;
mod files;
mod link_state;
pub mod migrations;
mod open;
pub mod part_fs;
mod part_writer;
mod processes;
mod purge;
mod read;
mod recover;
mod rows;
mod session;
mod sync_state;
mod trailer;
mod trust;

#[cfg(any(test, feature = "testkit"))]
pub use capture::MAX_COLLECTOR_ID_LEN;
pub use link_state::LinkRow;
pub use read::{CaptureInfo, PartRecord, Status};
pub use recover::OpenReport;
#[cfg(any(test, feature = "testkit"))]
pub use sync_state::Activation;
pub use sync_state::ReceiptInfo;
pub use trust::InePublicKeys;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use time::format_description::well_known::Rfc3339;

/// Bytes a part file holds after its parts: the trailer that makes it a self-describing record
/// of the capture (ADR 0013).
pub const PART_FILE_TRAILER_LEN: u64 = trailer::Trailer::LEN as u64;

use crate::clock::{SharedClock, SystemClock};
use crate::crypto::{self, DeviceIdentity, EndpointPublicKey, SecretKey};
use crate::error::{Error, Result};
use crate::limits::DEFAULT_DISK_RESERVE_BYTES;
use crate::model::Collector;

const DB_FILE: &str = "apoyo.db";
const LOCK_FILE: &str = "store.lock";

/// Options for opening or creating a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Free bytes that must remain after a capture is written (see [`DEFAULT_DISK_RESERVE_BYTES`]).
    pub disk_reserve_bytes: u64,
    pub clock: SharedClock,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            disk_reserve_bytes: DEFAULT_DISK_RESERVE_BYTES,
            clock: Arc::new(SystemClock),
        }
    }
}

struct DeviceKeys {
    master: SecretKey,
    identity: DeviceIdentity,
    dup_key: SecretKey,
}

impl DeviceKeys {
    /// The local duplicate key of a citizen in a process (ADR 0009).
    fn dup_key_of(&self, process_id: &str, clave_elector: &str) -> Result<[u8; 32]> {
        crypto::hmac_sha256(
            self.dup_key.as_bytes(),
            &[process_id.as_bytes(), &[0], clave_elector.as_bytes()],
        )
    }
}

/// The device store. One per device; one process at a time.
pub struct Store {
    conn: Connection,
    dir: PathBuf,
    keys: DeviceKeys,
    store_id: [u8; 16],
    device_id: String,
    /// The seal key new captures are sealed to: the newest one the INE root certified, else
    /// the provisioned one.
    endpoint_public: EndpointPublicKey,
    collector: Collector,
    opts: StoreOptions,
    opened: OpenReport,
    /// How the previous holder left the store (`session.rs`).
    previous_shutdown: &'static str,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

fn now_text(clock: &SharedClock) -> Result<String> {
    clock
        .now()
        .format(&Rfc3339)
        .map_err(|e| Error::Internal(e.to_string()))
}

impl Store {
    /// What opening the store found among the part files (see [`OpenReport`]).
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }
    /// How the previous holder left the store, as this open found it (`session.rs`):
    /// `clean` (closed: the whole-database check and the part-file scan were skipped),
    /// `killed` (never closed, same boot: part files reconciled, the database file trusted),
    /// `unknown` (another boot, no marker, or changed since: both ran).
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub fn previous_shutdown(&self) -> &'static str {
        self.previous_shutdown
    }

    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn device_id(&self) -> &str {
        &self.device_id
    }
    pub fn device_public(&self) -> [u8; 32] {
        self.keys.identity.public()
    }
    /// The seal key new captures are sealed to (the newest certified one, else the
    /// provisioned one).
    pub fn endpoint_public(&self) -> EndpointPublicKey {
        self.endpoint_public
    }
    pub(crate) fn set_seal_key(&mut self, key: EndpointPublicKey) {
        self.endpoint_public = key;
    }
    pub fn collector(&self) -> &Collector {
        &self.collector
    }
    pub fn clock(&self) -> &SharedClock {
        &self.opts.clock
    }
    pub(crate) fn identity(&self) -> &DeviceIdentity {
        &self.keys.identity
    }
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
    pub(crate) fn master(&self) -> &SecretKey {
        &self.keys.master
    }
    pub(crate) fn store_id(&self) -> &[u8; 16] {
        &self.store_id
    }
    pub(crate) fn now_text(&self) -> Result<String> {
        now_text(&self.opts.clock)
    }
}
