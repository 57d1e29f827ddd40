//! The encrypted, durable capture store: one SQLite database (WAL) for the queue and the
//! catalog, one file per capture for the part ciphertexts, one exclusive lock per store.
//!
//! ```text
//! STORE/
//!   apoyo.db (+ -wal, -shm)   device keys (wrapped), processes, queue rows, key wraps, receipts
//!   parts/<capture id>.parts  the capture's part ciphertexts, back to back
//!   store.lock                held exclusively by the one process that has the store open
//! ```

mod db;
mod files;
pub mod migrations;
mod sync_state;
mod trust;

pub use sync_state::{Activation, ReceiptInfo};
pub use trust::Provisioning;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use files::fsync_dir;

/// Bytes a part file holds after its parts: the trailer that makes it a self-describing record
/// of the capture (ADR 0013).
pub const PART_FILE_TRAILER_LEN: u64 = files::Trailer::LEN as u64;

use crate::clock::{SharedClock, SystemClock};
use crate::crypto::{
    self, DeviceIdentity, EndpointPublicKey, KeyGuard, PartOpener, PartSealer, SecretKey, wrap,
};
use crate::error::{Error, Result};
use crate::limits::DEFAULT_DISK_RESERVE_BYTES;
use crate::model::{CaptureId, Collector, Manifest, NewCapture, PartKind};
use crate::process::Process;
use crate::queue::State;

const DB_FILE: &str = "apoyo.db";
const LOCK_FILE: &str = "store.lock";
/// Room for the capture's rows, WAL frames and index pages on top of its part bytes.
const ROW_OVERHEAD_BYTES: u64 = 64 * 1024;

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

/// Counts per queue state and the bytes still held on the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub captured: u64,
    pub uploading: u64,
    pub committed: u64,
    pub quarantined: u64,
    pub purged: u64,
    /// Ciphertext bytes held for captures not yet purged.
    pub pending_bytes: u64,
}

/// A queue row, as the app may list it (no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureInfo {
    pub id: CaptureId,
    pub process_id: String,
    pub state: State,
    pub reason: Option<String>,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    pub total_bytes: u64,
}

/// One stored part's location and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub kind: PartKind,
    pub file_offset: u64,
    pub ct_len: u64,
    pub sha256: [u8; 32],
    pub upload_url: Option<String>,
    /// The upload's `Upload-Expires`, as the endpoint sent it (HTTP date).
    pub upload_expires: Option<String>,
    pub uploaded_bytes: u64,
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

/// The queue rows of a new capture (`captures` and its five `parts`), as `capture` writes them
/// and as `Store::open` rebuilds them from a part file's trailer.
struct QueueRow<'a> {
    id: String,
    process_id: &'a str,
    collector: &'a Collector,
    captured_at: String,
    dup_key: [u8; 32],
    total_bytes: u64,
    parts: Vec<files::PartSpan>,
}

impl QueueRow<'_> {
    fn insert(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let (ck, cid) = collector_parts(self.collector);
        tx.prepare_cached(
            "INSERT INTO captures (id, process_id, collector_kind, collector_id, captured_at, dup_key, state, total_bytes, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'captured', ?7, ?5)",
        )?
        .execute(params![
            self.id,
            self.process_id,
            ck,
            cid,
            self.captured_at,
            &self.dup_key[..],
            self.total_bytes as i64
        ])?;
        let mut part = tx.prepare_cached(
            "INSERT INTO parts (capture_id, kind, file_offset, ct_len) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (kind, offset, len) in &self.parts {
            part.execute(params![self.id, kind.name(), *offset as i64, *len as i64])?;
        }
        Ok(())
    }
}

/// Drops `value` (which wipes itself) on a short-lived thread, or here if none can start.
fn wipe_off_path<T: Send + 'static>(value: T) {
    // On a spawn error the closure, and the value with it, is dropped right here.
    let _ = std::thread::Builder::new()
        .name("apoyo-wipe".into())
        .spawn(move || drop(value));
}

/// The two wraps of a capture's data key.
/// `seal_key_id`: the key id of the seal key `endpoint_seal` was sealed to.
fn insert_keys(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    device_wrap: &[u8],
    endpoint_seal: &[u8],
    seal_key_id: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO capture_keys (capture_id, device_wrap, endpoint_seal, seal_key_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, device_wrap, endpoint_seal, seal_key_id])?;
    Ok(())
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
    _lock: File,
}

/// What [`Store::open`] found and did among the part files (ADR 0013). Empty after a clean
/// shutdown or a kill between captures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// Captures whose queue rows a power loss had rolled back, rebuilt from their part files.
    pub recovered: Vec<CaptureId>,
    /// Part files of captures interrupted before they returned (no trailer), removed.
    pub removed_incomplete: u64,
    /// Part files with a trailer whose parts did not authenticate, moved to `damaged/` and
    /// kept (never deleted).
    pub damaged: Vec<PathBuf>,
}

enum Recovery {
    Recovered,
    Incomplete,
    Damaged,
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

fn lock_store(dir: &Path) -> Result<File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::StoreBusy),
        Err(fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn check_keyring_outside(store_dir: &Path, guard: &dyn KeyGuard) -> Result<()> {
    if let Some(kr) = guard.location() {
        let s = store_dir.canonicalize()?;
        let k = kr.canonicalize().unwrap_or_else(|_| kr.to_path_buf());
        if k.starts_with(&s) {
            return Err(Error::KeyringInsideStore);
        }
    }
    Ok(())
}

fn derive_dup_key(master: &SecretKey) -> Result<SecretKey> {
    crypto::derive_key(master.as_bytes(), &[b"duplicate-key"])
}

/// Whether `dir` holds a file of an earlier store besides its database: `apoyo.db-wal`,
/// `apoyo.db-shm`, or a part file.
fn leftover_store_files(dir: &Path) -> Result<bool> {
    for suffix in ["-wal", "-shm"] {
        let mut name = std::ffi::OsString::from(DB_FILE);
        name.push(suffix);
        if dir.join(name).exists() {
            return Ok(true);
        }
    }
    for entry in fs::read_dir(files::parts_dir(dir))? {
        if entry?.file_name().to_string_lossy().ends_with(".parts") {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// Creates a new device store in `dir`: a master key wrapped by `guard`, a fresh X25519
    /// identity and Ed25519 commit-signing key, and what the app provisions (INE's seal key and
    /// the INE root). Fails with [`Error::StoreExists`] if there is one.
    pub fn init(
        dir: &Path,
        guard: &dyn KeyGuard,
        provisioning: &Provisioning,
        collector: Option<Collector>,
        opts: StoreOptions,
    ) -> Result<Store> {
        crypto::anchor::check_x25519_public(&provisioning.seal_key.0, "INE seal key")?;
        let endpoint_public = provisioning.seal_key;
        let db_path = dir.join(DB_FILE);
        if db_path.exists() {
            return Err(Error::StoreExists(dir.to_path_buf()));
        }
        fs::create_dir_all(files::parts_dir(dir))?;
        check_keyring_outside(dir, guard)?;
        let lock = lock_store(dir)?;
        // Under the lock: any file an earlier store left (its WAL, which SQLite would replay
        // into the new database, or part files) means this folder still holds captures. They
        // are never adopted or overwritten: the new store goes elsewhere.
        if db_path.exists() || leftover_store_files(dir)? {
            return Err(Error::StoreExists(dir.to_path_buf()));
        }
        // Build the database under a temporary name and rename it into place once complete, so
        // a crash during init never leaves a half-made store.
        let partial = dir.join(format!("{DB_FILE}.partial"));
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", partial.display()));
            if p.exists() {
                fs::remove_file(p)?;
            }
        }
        let mut store_id = [0u8; 16];
        crypto::fill_random(&mut store_id)?;
        let master = crypto::random_key()?;
        let identity = DeviceIdentity::generate()?;
        let device_id = identity.device_id();
        let collector = collector.unwrap_or_else(|| Collector::MiApoyo(device_id.clone()));
        check_collector(&collector)?;
        {
            let mut conn = db::create(&partial)?;
            migrations::migrate_to(&mut conn, migrations::LATEST)?;
            let wrapped_master = guard.wrap(&store_id, &master)?;
            let wrapped_identity = wrap::wrap(&master, "identity", &store_id, identity.secret())?;
            let (ck, cid) = collector_parts(&collector);
            conn.execute(
                "INSERT INTO device (singleton, store_id, device_id, created_at, wrapped_master, wrapped_identity,
                                     identity_public, endpoint_public, collector_kind, collector_id)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    &store_id[..],
                    device_id,
                    now_text(&opts.clock)?,
                    wrapped_master,
                    wrapped_identity,
                    &identity.public()[..],
                    &endpoint_public.0[..],
                    ck,
                    cid
                ],
            )?;
            conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
            conn.close().map_err(|(_, e)| Error::Sqlite(e))?;
        }
        fs::rename(&partial, &db_path)?;
        fsync_dir(dir)?;
        drop(lock);
        let mut store = Store::open(dir, guard, opts)?;
        store.provision(provisioning)?;
        Ok(store)
    }

    /// Opens an existing store. Never deletes or rewrites anything on failure: a damaged file
    /// gives [`Error::CorruptStore`], a newer schema [`Error::StoreVersion`], the wrong keyring
    /// [`Error::WrongDevice`].
    pub fn open(dir: &Path, guard: &dyn KeyGuard, opts: StoreOptions) -> Result<Store> {
        let db_path = dir.join(DB_FILE);
        if !db_path.is_file() {
            return Err(Error::NoStore(dir.to_path_buf()));
        }
        check_keyring_outside(dir, guard)?;
        let lock = lock_store(dir)?;
        // Everything up to the key unwrap reads through a read-only connection, so a refused
        // store (foreign keyring, no device record) is left byte for byte as it was.
        let ro = db::open_existing(&db_path)?;
        let v = migrations::version(&ro)?;
        if v > migrations::LATEST {
            return Err(Error::StoreVersion {
                found: v,
                supported: migrations::LATEST,
            });
        }
        // Unwrap the keys before changing anything: a foreign store stays untouched.
        type DeviceRow = (Vec<u8>, String, Vec<u8>, Vec<u8>, Vec<u8>, String, String);
        let row: Option<DeviceRow> = ro
            .query_row(
                "SELECT store_id, device_id, wrapped_master, wrapped_identity, endpoint_public, collector_kind, collector_id
                 FROM device WHERE singleton = 1",
                [],
                |r| r.try_into(),
            )
            .optional()
            .map_err(|_| Error::CorruptStore { path: db_path.clone(), detail: "no device record".into() })?;
        let Some((sid, device_id, wm, wi, ep, ck, cid)) = row else {
            return Err(Error::CorruptStore {
                path: db_path,
                detail: "no device record".into(),
            });
        };
        let store_id: [u8; 16] = sid.try_into().map_err(|_| Error::CorruptStore {
            path: db_path.clone(),
            detail: "bad store id".into(),
        })?;
        let master = guard.unwrap(&store_id, &wm)?;
        let identity = DeviceIdentity::from_secret(wrap::unwrap(
            &master,
            "identity",
            &store_id,
            &wi,
            "device identity",
        )?);
        let endpoint_public =
            EndpointPublicKey(ep.try_into().map_err(|_| Error::CorruptStore {
                path: db_path.clone(),
                detail: "bad endpoint key".into(),
            })?);
        let collector = match ck.as_str() {
            "auxiliar" => Collector::Auxiliar(cid),
            _ => Collector::MiApoyo(cid),
        };
        drop(ro);
        let mut conn = db::open_read_write(&db_path)?;
        db::apply_pragmas(&conn)?;
        migrations::migrate_to(&mut conn, migrations::LATEST)?;
        fs::create_dir_all(files::parts_dir(dir))?;
        let dup_key = derive_dup_key(&master)?;
        let store = Store {
            conn,
            dir: dir.to_path_buf(),
            keys: DeviceKeys {
                master,
                identity,
                dup_key,
            },
            store_id,
            device_id,
            endpoint_public,
            collector,
            opts,
            opened: OpenReport::default(),
            _lock: lock,
        };
        let mut store = store;
        store.ensure_signing_key()?;
        store.refresh_seal_key()?;
        store.opened = store.reconcile_part_files()?;
        Ok(store)
    }

    /// Moves a store that cannot be opened (corrupt, unknown version) aside into
    /// `dir/set-aside-<time>/`, keeping every byte, so a fresh store can be made. Returns where
    /// it went. Nothing is deleted: the set-aside copy may hold the only copy of unsent supports.
    pub fn set_aside(dir: &Path) -> Result<PathBuf> {
        let lock = lock_store(dir)?;
        let now = OffsetDateTime::now_utc();
        let mut n = 0u32;
        let target = loop {
            let candidate = dir.join(format!("set-aside-{}-{n}", now.unix_timestamp()));
            match fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e.into()),
            }
        };
        for name in [
            DB_FILE.to_string(),
            format!("{DB_FILE}-wal"),
            format!("{DB_FILE}-shm"),
            files::PARTS_DIR.to_string(),
            files::DAMAGED_DIR.to_string(),
        ] {
            let from = dir.join(&name);
            if from.exists() {
                fs::rename(&from, target.join(&name))?;
            }
        }
        fsync_dir(&target)?;
        fsync_dir(dir)?;
        drop(lock);
        Ok(target)
    }

    /// Reconciles `parts/` with the queue rows: a file whose capture was purged is removed (its
    /// keys are gone); a file without a row is either a capture whose indexing commit a power
    /// loss rolled back — it carries a trailer and authenticates, and its rows are rebuilt —
    /// or an interrupted capture that never returned (no trailer), removed. A file with a
    /// trailer that fails to authenticate is moved to `damaged/`, never deleted. ADR 0013.
    fn reconcile_part_files(&self) -> Result<OpenReport> {
        let mut report = OpenReport::default();
        let mut changed = false;
        for (path, id) in files::list_part_files(&self.dir)? {
            let Some(id) = id else { continue };
            let held: Option<String> = self
                .conn
                .query_row(
                    "SELECT state FROM captures WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            match held.as_deref() {
                Some("purged") => {
                    // A purge cut between its commit and its shred: shred the trailer's key
                    // wrap first, as the purge would have.
                    files::shred_trailer(&path)?;
                    fs::remove_file(&path)?;
                    changed = true;
                }
                Some(_) => {}
                None => match self.recover(&path, &id)? {
                    Recovery::Recovered => report.recovered.push(id),
                    Recovery::Incomplete => {
                        fs::remove_file(&path)?;
                        report.removed_incomplete += 1;
                        changed = true;
                    }
                    Recovery::Damaged => {
                        let damaged = self.dir.join(files::DAMAGED_DIR);
                        fs::create_dir_all(&damaged)?;
                        let target = damaged.join(path.file_name().unwrap_or_default());
                        fs::rename(&path, &target)?;
                        fsync_dir(&damaged)?;
                        report.damaged.push(target);
                        changed = true;
                    }
                },
            }
        }
        if changed {
            fsync_dir(&files::parts_dir(&self.dir))?;
        }
        Ok(report)
    }

    /// Rebuilds the queue rows of the capture in `path`, which has none, from its trailer,
    /// after checking that every part authenticates under the device's keys and that the
    /// manifest names this capture.
    fn recover(&self, path: &Path, id: &CaptureId) -> Result<Recovery> {
        let mut f = File::open(path)?;
        let file_len = f.metadata()?.len();
        let Some(trailer_at) = file_len.checked_sub(files::Trailer::LEN as u64) else {
            return Ok(Recovery::Incomplete);
        };
        let mut bytes = [0u8; files::Trailer::LEN];
        f.seek(SeekFrom::Start(trailer_at))?;
        f.read_exact(&mut bytes)?;
        drop(f);
        let Some(trailer) = files::Trailer::decode(&bytes) else {
            return Ok(Recovery::Incomplete);
        };
        struct Verified {
            manifest: Manifest,
            data_key: SecretKey,
            parts: Vec<files::PartSpan>,
            file_len: u64,
        }
        let checked = (|| -> Result<Verified> {
            let (parts, len) = trailer
                .layout()
                .ok_or_else(|| Error::integrity("part file (lengths)"))?;
            if len != file_len {
                return Err(Error::integrity("part file (length)"));
            }
            let data_key = wrap::unwrap(
                &self.keys.master,
                "data-key",
                id.as_bytes(),
                &trailer.device_wrap,
                "data key wrap",
            )?;
            let mut manifest = zeroize::Zeroizing::new(Vec::new());
            for &(kind, file_offset, ct_len) in &parts {
                let record = PartRecord {
                    kind,
                    file_offset,
                    ct_len,
                    sha256: [0; 32],
                    upload_url: None,
                    upload_expires: None,
                    uploaded_bytes: 0,
                };
                let reader = self.part_reader(id, &record)?;
                let mut opener = PartOpener::new(&data_key, id.as_bytes(), kind)?;
                if kind == PartKind::Manifest {
                    opener.open_to(ct_len, reader, &mut *manifest)?;
                } else {
                    opener.open_to(ct_len, reader, &mut std::io::sink())?;
                }
            }
            let m = Manifest::from_cbor(&manifest)
                .map_err(|_| Error::integrity("manifest (decoding)"))?;
            if m.capture_id != *id {
                return Err(Error::integrity("manifest (capture id)"));
            }
            Ok(Verified {
                manifest: m,
                data_key,
                parts,
                file_len: len,
            })
        })();
        let Verified {
            manifest: m,
            data_key,
            parts,
            file_len: total_bytes,
        } = match checked {
            Ok(v) => v,
            Err(e) if e.class() == crate::error::ErrorClass::Integrity => {
                return Ok(Recovery::Damaged);
            }
            Err(e) => return Err(e),
        };
        let row = QueueRow {
            id: id.to_string(),
            process_id: &m.process_id,
            collector: &m.collector,
            captured_at: m
                .captured_at
                .format(&Rfc3339)
                .map_err(|e| Error::Internal(e.to_string()))?,
            dup_key: self
                .keys
                .dup_key_of(&m.process_id, &m.fields.clave_elector)?,
            total_bytes,
            parts,
        };
        let endpoint_seal = crypto::wrap::seal_to_endpoint(
            &self.endpoint_public,
            &self.keys.identity,
            id.as_bytes(),
            &data_key,
        )?;
        // `conn` is borrowed shared here; the unchecked transaction is still one transaction,
        // committed with `synchronous=FULL`.
        let tx = self.conn.unchecked_transaction()?;
        row.insert(&tx)?;
        insert_keys(
            &tx,
            &row.id,
            &trailer.device_wrap,
            &endpoint_seal,
            &self.endpoint_public.key_id(),
        )?;
        tx.commit()?;
        Ok(Recovery::Recovered)
    }

    /// What opening the store found among the part files (see [`OpenReport`]).
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

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

    // ---- processes -------------------------------------------------------------------------

    /// Adds or replaces process definitions.
    pub fn put_processes(&mut self, list: &[Process]) -> Result<()> {
        let now = self.now_text()?;
        let tx = self.conn.transaction()?;
        for p in list {
            p.check()?;
            tx.execute(
                "INSERT INTO processes (id, definition, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
                params![p.id, p.to_json()?, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The process catalog.
    pub fn processes(&self) -> Result<Vec<Process>> {
        let mut st = self
            .conn
            .prepare("SELECT definition FROM processes ORDER BY id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.extend(Process::parse_json_list(json?.as_bytes())?);
        }
        Ok(out)
    }

    /// One process by id.
    pub fn process(&self, id: &str) -> Result<Process> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT definition FROM processes WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let json = json.ok_or_else(|| Error::UnknownProcess(id.to_string()))?;
        Process::parse_json_list(json.as_bytes())?
            .pop()
            .ok_or_else(|| Error::UnknownProcess(id.to_string()))
    }

    // ---- capture ---------------------------------------------------------------------------

    /// Validates, encrypts and durably stores a capture. When this returns `Ok`, the capture
    /// is on disk (its part file, trailer included, and the folder entry fsync'd; then the
    /// queue rows committed, which a power loss may roll back but the next open rebuilds from
    /// the file: ADR 0013) and will survive a kill or a power loss.
    pub fn capture(&mut self, mut c: NewCapture) -> Result<CaptureId> {
        let now = self.opts.clock.now();
        let process = self.process(&c.process_id)?;
        if !process.is_open_at(now) {
            return Err(Error::ProcessClosed {
                process: process.id,
            });
        }
        let formats = crate::validate::validate(&c, &process)?;
        let dup_key = self.keys.dup_key_of(&process.id, &c.fields.clave_elector)?;
        if let Some(earlier) = self
            .conn
            .prepare_cached(
                "SELECT id FROM captures WHERE dup_key = ?1 AND state <> 'quarantined' ORDER BY id LIMIT 1",
            )?
            .query_row([&dup_key[..]], |r| r.get::<_, String>(0))
            .optional()?
        {
            return Err(Error::Duplicate { process: process.id, earlier });
        }

        let id = CaptureId::new_v7(now);
        let collector = c
            .collector
            .clone()
            .unwrap_or_else(|| self.collector.clone());
        check_collector(&collector)?;
        let manifest = Manifest {
            v: Manifest::VERSION,
            capture_id: id,
            process_id: process.id.clone(),
            collector: collector.clone(),
            model: c.model.clone(),
            fields: c.fields.clone(),
            location: c.location,
            captured_at: now,
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            formats,
        };
        let mut manifest_bytes = zeroize::Zeroizing::new(manifest.to_cbor()?);

        // Backpressure: refuse rather than fill the phone; never evict unsent data.
        let part_bytes: u64 = PART_FILE_TRAILER_LEN
            + PartKind::ALL
                .iter()
                .map(|k| {
                    crypto::ciphertext_len(
                        c.images.get(*k).map_or(manifest_bytes.len(), <[u8]>::len) as u64,
                    )
                })
                .sum::<u64>();
        let needed = part_bytes
            .saturating_add(ROW_OVERHEAD_BYTES)
            .saturating_add(self.opts.disk_reserve_bytes);
        let available = fs4::available_space(&self.dir)?;
        if available < needed {
            return Err(Error::StorageFull { available, needed });
        }

        let data_key = crypto::random_key()?;
        let device_wrap = wrap::wrap(&self.keys.master, "data-key", id.as_bytes(), &data_key)?;
        let path = files::part_file(&self.dir, &id);
        let mut jobs = Vec::with_capacity(PartKind::ALL.len());
        let mut records = Vec::with_capacity(PartKind::ALL.len());
        let mut trailer = files::Trailer {
            part_lens: [0; 5],
            device_wrap: device_wrap
                .as_slice()
                .try_into()
                .map_err(|_| Error::Internal("data key wrap length".into()))?,
        };
        let mut offset = 0u64;
        for (i, kind) in PartKind::ALL.into_iter().enumerate() {
            let plain: &[u8] = match c.images.get(kind) {
                Some(img) => img,
                None => &manifest_bytes[..],
            };
            let ct_len = crypto::ciphertext_len(plain.len() as u64);
            jobs.push(files::PartJob {
                plain,
                sealer: PartSealer::new(&data_key, id.as_bytes(), kind)?,
                offset,
            });
            records.push((kind, offset, ct_len));
            trailer.part_lens[i] = ct_len;
            offset += ct_len;
        }
        let row = QueueRow {
            id: id.to_string(),
            process_id: &process.id,
            collector: &collector,
            captured_at: now
                .format(&Rfc3339)
                .map_err(|e| Error::Internal(e.to_string()))?,
            dup_key,
            total_bytes: offset + PART_FILE_TRAILER_LEN,
            parts: records,
        };
        let (keys, endpoint_public) = (&self.keys, self.endpoint_public);
        // The part file, its trailer included, is the durable record of the capture (ADR 0013):
        // the transaction that indexes it commits after the file and its folder entry are
        // durable, and without a flush of its own.
        let committed = db::with_unflushed_commit(&mut self.conn, |conn| {
            // The work around the file is placed where a core is idle (see
            // `files::write_parts_durably`): INE's seal of the data key (HPKE, X25519,
            // ≈ 0.2 ms) on the sealing helper while the file is flushed; the rows in the
            // transaction before the flush.
            files::write_parts_durably(
                &path,
                &jobs,
                &trailer.encode(),
                || {
                    crypto::wrap::seal_to_endpoint(
                        &endpoint_public,
                        &keys.identity,
                        id.as_bytes(),
                        &data_key,
                    )
                },
                || {
                    let tx = conn.transaction()?;
                    row.insert(&tx)?;
                    Ok(tx)
                },
                |endpoint_seal, tx| {
                    insert_keys(
                        &tx,
                        &row.id,
                        &device_wrap,
                        &endpoint_seal,
                        &endpoint_public.key_id(),
                    )?;
                    Ok(tx)
                },
            )?
            .commit()
            .map_err(|e| {
                // Never reported as captured: its file must not linger. (On an error before
                // this point `write_parts_durably` has already removed it.)
                let _ = fs::remove_file(&path);
                Error::from(e)
            })
        });
        drop(jobs);
        zeroize::Zeroize::zeroize(&mut *manifest_bytes);
        // Wiping the caller's ≈ 2 MB of images (`Images` zeroizes on drop, with volatile
        // writes: ≈ 0.5 ms) is not part of making the capture durable: it runs on a
        // short-lived thread once the capture is committed (inline if none can be started).
        wipe_off_path(std::mem::take(&mut c.images));
        committed?;
        Ok(id)
    }

    // ---- reading ---------------------------------------------------------------------------

    /// Counts per state and the bytes still held.
    pub fn status(&self) -> Result<Status> {
        let mut s = Status::default();
        let mut st = self.conn.prepare(
            "SELECT state, count(*), coalesce(sum(total_bytes), 0) FROM captures GROUP BY state",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (state, n, bytes) = row?;
            let n = n as u64;
            match state.as_str() {
                "captured" => s.captured = n,
                "uploading" => s.uploading = n,
                "committed" => s.committed = n,
                "quarantined" => s.quarantined = n,
                "purged" => s.purged = n,
                _ => {}
            }
            if state != "purged" {
                s.pending_bytes += bytes as u64;
            }
        }
        Ok(s)
    }

    /// Every capture in the queue, oldest first.
    pub fn list(&self) -> Result<Vec<CaptureInfo>> {
        let mut st = self.conn.prepare(
            "SELECT id, process_id, state, reason, attempts, captured_at, total_bytes FROM captures ORDER BY id",
        )?;
        let rows = st.query_map([], row_to_info)?;
        rows.map(|r| r.map_err(Error::from).and_then(|x| x))
            .collect()
    }

    /// One capture's queue row.
    pub fn info(&self, id: &CaptureId) -> Result<CaptureInfo> {
        self.conn
            .query_row(
                "SELECT id, process_id, state, reason, attempts, captured_at, total_bytes FROM captures WHERE id = ?1",
                [id.to_string()],
                row_to_info,
            )
            .optional()?
            .ok_or_else(|| Error::UnknownCapture(id.to_string()))?
    }

    /// Who captured a capture (kept in the queue row: an opaque id, never a name).
    pub fn capture_collector(&self, id: &CaptureId) -> Result<Collector> {
        let (kind, cid): (String, String) = self
            .conn
            .query_row(
                "SELECT collector_kind, collector_id FROM captures WHERE id = ?1",
                [id.to_string()],
                |r| r.try_into(),
            )
            .optional()?
            .ok_or_else(|| Error::UnknownCapture(id.to_string()))?;
        Ok(if kind == "auxiliar" {
            Collector::Auxiliar(cid)
        } else {
            Collector::MiApoyo(cid)
        })
    }

    /// The stored parts of a capture.
    pub fn parts(&self, id: &CaptureId) -> Result<Vec<PartRecord>> {
        let mut st = self.conn.prepare(
            "SELECT kind, file_offset, ct_len, sha256, upload_url, uploaded_bytes, upload_expires FROM parts WHERE capture_id = ?1",
        )?;
        type Row = (
            String,
            i64,
            i64,
            Option<Vec<u8>>,
            Option<String>,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = st
            .query_map([id.to_string()], |r| r.try_into())?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for (kind, off, len, sha, url, up, expires) in rows {
            let kind = PartKind::from_name(&kind).ok_or_else(|| Error::integrity("part kind"))?;
            let bad = || Error::integrity(format!("{} part (offset or length)", kind.name()));
            let mut rec = PartRecord {
                kind,
                file_offset: u64::try_from(off).map_err(|_| bad())?,
                ct_len: u64::try_from(len).map_err(|_| bad())?,
                sha256: [0; 32],
                upload_url: url,
                upload_expires: expires,
                uploaded_bytes: u64::try_from(up).unwrap_or(0),
            };
            rec.sha256 = match sha {
                Some(sha) => sha
                    .try_into()
                    .map_err(|_| Error::integrity("part digest"))?,
                // Hashed on first use rather than on the capture path (the AEAD tags already
                // detect damage); recorded so it is computed once.
                None => {
                    let digest = self.hash_part(id, &rec)?;
                    self.conn.execute(
                        "UPDATE parts SET sha256 = ?3 WHERE capture_id = ?1 AND kind = ?2",
                        params![id.to_string(), kind.name(), &digest[..]],
                    )?;
                    digest
                }
            };
            out.push(rec);
        }
        out.sort_by_key(|p| p.kind);
        Ok(out)
    }

    fn hash_part(&self, id: &CaptureId, part: &PartRecord) -> Result<[u8; 32]> {
        use sha2::Digest;
        let mut reader = self.part_reader(id, part)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; crate::limits::CHUNK_SIZE];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finalize().into());
            }
            hasher.update(&buf[..n]);
        }
    }

    /// A reader over the ciphertext of one part, exactly the bytes to upload.
    pub fn part_reader(
        &self,
        id: &CaptureId,
        part: &PartRecord,
    ) -> Result<impl Read + Seek + use<>> {
        let mut f = File::open(files::part_file(&self.dir, id)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::integrity(format!("{} part (file missing)", part.kind.name()))
            }
            _ => Error::Io(e),
        })?;
        let file_len = f.metadata()?.len();
        if part
            .file_offset
            .checked_add(part.ct_len)
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::integrity(format!(
                "{} part (file truncated)",
                part.kind.name()
            )));
        }
        f.seek(SeekFrom::Start(part.file_offset))?;
        Ok(PartRange {
            file: f,
            start: part.file_offset,
            len: part.ct_len,
            pos: 0,
        })
    }

    /// The endpoint-sealed data key of a capture (sent in the commit).
    pub fn endpoint_seal(&self, id: &CaptureId) -> Result<Vec<u8>> {
        self.conn
            .query_row(
                "SELECT endpoint_seal FROM capture_keys WHERE capture_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| self.gone(id))
    }

    fn gone(&self, id: &CaptureId) -> Error {
        match self.info(id) {
            Ok(info) => Error::CaptureGone {
                id: id.to_string(),
                state: info.state.as_str().to_string(),
            },
            Err(e) => e,
        }
    }

    fn device_data_key(&self, id: &CaptureId) -> Result<SecretKey> {
        let w: Vec<u8> = self
            .conn
            .query_row(
                "SELECT device_wrap FROM capture_keys WHERE capture_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| self.gone(id))?;
        wrap::unwrap(
            &self.keys.master,
            "data-key",
            id.as_bytes(),
            &w,
            "data key wrap",
        )
    }

    /// Decrypts one part of the device's own copy into `out` (streaming, one chunk of memory).
    pub fn read_part<W: Write>(&self, id: &CaptureId, kind: PartKind, out: &mut W) -> Result<u64> {
        let dk = self.device_data_key(id)?;
        let part = self
            .parts(id)?
            .into_iter()
            .find(|p| p.kind == kind)
            .ok_or_else(|| Error::integrity(format!("{} part (missing)", kind.name())))?;
        let reader = self.part_reader(id, &part)?;
        PartOpener::new(&dk, id.as_bytes(), kind)?.open_to(part.ct_len, reader, out)
    }

    /// Decrypts and decodes a capture's manifest (device copy).
    pub fn manifest(&self, id: &CaptureId) -> Result<Manifest> {
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        self.read_part(id, PartKind::Manifest, &mut *buf)?;
        let m = Manifest::from_cbor(&buf)?;
        if m.capture_id != *id {
            return Err(Error::integrity("manifest (capture id)"));
        }
        Ok(m)
    }

    /// Writes the device's copy of a capture into `out_dir`: `front.<ext>`, `back.<ext>`,
    /// `selfie.<ext>`, `signature.<ext>` (byte-identical to what was captured) and `fields.json`.
    pub fn export(&self, id: &CaptureId, out_dir: &Path) -> Result<Vec<PathBuf>> {
        let m = self.manifest(id)?;
        fs::create_dir_all(out_dir)?;
        let mut written = Vec::new();
        for kind in PartKind::ALL {
            let Some(fmt) = m.formats.get(kind) else {
                continue;
            };
            let path = out_dir.join(format!("{}.{}", kind.name(), fmt.extension()));
            // Decrypt into a temporary name: a part that fails authentication halfway must not
            // leave a truncated image that looks like the real one.
            let tmp = out_dir.join(format!(".{}.partial", kind.name()));
            let mut f = File::create(&tmp)?;
            if let Err(e) = self
                .read_part(id, kind, &mut f)
                .and_then(|_| Ok(f.sync_all()?))
            {
                drop(f);
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            fs::rename(&tmp, &path)?;
            written.push(path);
        }
        let path = out_dir.join("fields.json");
        let json = serde_json::json!({
            "capture_id": m.capture_id,
            "process_id": m.process_id,
            "collector": m.collector,
            "model": m.model,
            "captured_at": m.captured_at.format(&Rfc3339).map_err(|e| Error::Internal(e.to_string()))?,
            "engine_version": m.engine_version,
            "fields": m.fields,
            "location": m.location,
        });
        fs::write(
            &path,
            serde_json::to_vec_pretty(&json).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        written.push(path);
        Ok(written)
    }

    /// Crypto-shreds a capture the endpoint acknowledged: deletes both key wraps (the bytes
    /// become unreadable), overwrites the copy of the device wrap in the part file's trailer,
    /// then removes the part file, then makes the deletion reach the disk
    /// (`secure_delete` overwrites freed pages; a TRUNCATE checkpoint empties the WAL, which
    /// would otherwise still hold the old pages).
    pub(crate) fn purge(&mut self, id: &CaptureId) -> Result<()> {
        let now = self.now_text()?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM capture_keys WHERE capture_id = ?1",
            [id.to_string()],
        )?;
        tx.execute(
            "UPDATE captures SET state = 'purged', total_bytes = 0, updated_at = ?2 WHERE id = ?1 AND state = 'committed'",
            params![id.to_string(), now],
        )?;
        tx.commit()?;
        let path = files::part_file(&self.dir, id);
        files::shred_trailer(&path)?;
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&files::parts_dir(&self.dir))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Longest collector id: auxiliar registration ids and device ids are short codes; the bound
/// keeps every commit under `protocol::limits::MAX_COMMIT_BYTES`.
pub const MAX_COLLECTOR_ID_LEN: usize = 64;

/// [`Store::process`] with its statement cached: `capture` looks the process up every time.
fn check_collector(c: &Collector) -> Result<()> {
    let id = c.id();
    if id.is_empty() || id.len() > MAX_COLLECTOR_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::invalid(
            crate::error::Field::Collector,
            "must be 1-64 printable ASCII characters",
        ));
    }
    // v1.1 (§6.5): an auxiliar id is an opaque code, never free text that could hold a name.
    if let Collector::Auxiliar(id) = c
        && !crate::model::is_auxiliar_id(id)
    {
        return Err(Error::invalid(
            crate::error::Field::Collector,
            "an auxiliar id is 3-32 characters of A-Z, 0-9 and '-'",
        ));
    }
    Ok(())
}

fn collector_parts(c: &Collector) -> (&'static str, &str) {
    match c {
        Collector::MiApoyo(id) => ("mi_apoyo", id),
        Collector::Auxiliar(id) => ("auxiliar", id),
    }
}

fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<CaptureInfo>> {
    let id: String = r.get(0)?;
    let process_id: String = r.get(1)?;
    let state: String = r.get(2)?;
    let reason: Option<String> = r.get(3)?;
    let attempts: i64 = r.get(4)?;
    let captured_at: String = r.get(5)?;
    let total: i64 = r.get(6)?;
    Ok((|| {
        Ok(CaptureInfo {
            id: id.parse()?,
            process_id,
            state: State::parse(&state)?,
            reason,
            attempts: attempts.max(0) as u32,
            captured_at: OffsetDateTime::parse(&captured_at, &Rfc3339)
                .map_err(|_| Error::integrity("captured_at"))?,
            total_bytes: total.max(0) as u64,
        })
    })())
}

/// A bounded view of one part inside a capture's file.
struct PartRange {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for PartRange {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        let got = self.file.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for PartRange {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => p as i64,
            SeekFrom::Current(d) => self.pos as i64 + d,
            SeekFrom::End(d) => self.len as i64 + d,
        };
        if target < 0 || target as u64 > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek outside the part",
            ));
        }
        self.file
            .seek(SeekFrom::Start(self.start + target as u64))?;
        self.pos = target as u64;
        Ok(self.pos)
    }
}
