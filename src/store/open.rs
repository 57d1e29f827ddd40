//! Creating, opening and setting aside a store: the exclusive lock, the checks made before
//! anything is changed (schema version, keyring outside the store, the device record), and the
//! unwrap of the device keys. Reconciling the part files at open is `recover.rs`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::capture::check_collector;
use super::rows::collector_parts;
use super::session::{self, Shutdown};
use super::{
    DB_FILE, DeviceKeys, InePublicKeys, LOCK_FILE, OpenReport, Store, StoreOptions, db, files,
    migrations, now_text,
};
use crate::crypto::{self, DeviceIdentity, EndpointPublicKey, KeyGuard, SecretKey, wrap};
use crate::error::{Error, Result};
use crate::fsutil::fsync_dir;
use crate::model::Collector;

/// How long an open waits for a lock held by another holder before `StoreBusy`: long enough
/// for a holder that is closing, or a child process forked while this process held the lock
/// and not yet past its `exec` (the lock is on the open file, which the child shares until
/// then); short enough that a store really in use is reported at once to a person.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(10);

fn lock_store(dir: &Path) -> Result<File> {
    crate::fsutil::precreate_private(&dir.join(LOCK_FILE))?;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    let start = std::time::Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(LOCK_POLL)
            }
            Err(fs::TryLockError::WouldBlock) => return Err(Error::StoreBusy),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
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

/// The device record as stored: its keys still wrapped.
struct DeviceRecord {
    store_id: [u8; 16],
    device_id: String,
    wrapped_master: Vec<u8>,
    wrapped_identity: Vec<u8>,
    endpoint_public: Vec<u8>,
    collector: Collector,
}

/// Checks the schema version and reads the device record, through a read-only connection.
fn read_device_record(ro: &Connection, db_path: &Path) -> Result<DeviceRecord> {
    let v = migrations::version(ro)?;
    if v > migrations::LATEST {
        return Err(Error::StoreVersion {
            found: v,
            supported: migrations::LATEST,
        });
    }
    type DeviceRow = (Vec<u8>, String, Vec<u8>, Vec<u8>, Vec<u8>, String, String);
    let no_record = || Error::CorruptStore {
        path: db_path.to_path_buf(),
        detail: "no device record".into(),
    };
    let row: Option<DeviceRow> = ro
        .query_row(
            "SELECT store_id, device_id, wrapped_master, wrapped_identity, endpoint_public, collector_kind, collector_id
             FROM device WHERE singleton = 1",
            [],
            |r| r.try_into(),
        )
        .optional()
        .map_err(|_| no_record())?;
    let Some((sid, device_id, wm, wi, ep, ck, cid)) = row else {
        return Err(no_record());
    };
    let store_id: [u8; 16] = sid.try_into().map_err(|_| Error::CorruptStore {
        path: db_path.to_path_buf(),
        detail: "bad store id".into(),
    })?;
    let collector = match ck.as_str() {
        "auxiliar" => Collector::Auxiliar(cid),
        _ => Collector::MiApoyo(cid),
    };
    Ok(DeviceRecord {
        store_id,
        device_id,
        wrapped_master: wm,
        wrapped_identity: wi,
        endpoint_public: ep,
        collector,
    })
}

/// Unwraps the master key with `guard`, then the device identity with it, and decodes INE's
/// public key. Changes nothing: a foreign keyring fails here with the store untouched.
fn unwrap_device_keys(
    record: &DeviceRecord,
    guard: &dyn KeyGuard,
    db_path: &Path,
) -> Result<(SecretKey, DeviceIdentity, EndpointPublicKey)> {
    let master = guard.unwrap(&record.store_id, &record.wrapped_master)?;
    let identity = DeviceIdentity::from_secret(wrap::unwrap(
        &master,
        "identity",
        &record.store_id,
        &record.wrapped_identity,
        "device identity",
    )?);
    let endpoint_public =
        EndpointPublicKey(record.endpoint_public.clone().try_into().map_err(|_| {
            Error::CorruptStore {
                path: db_path.to_path_buf(),
                detail: "bad endpoint key".into(),
            }
        })?);
    Ok((master, identity, endpoint_public))
}

/// What a new store's device record holds.
struct NewDevice<'a> {
    store_id: [u8; 16],
    master: &'a SecretKey,
    identity: &'a DeviceIdentity,
    endpoint_public: &'a EndpointPublicKey,
    collector: &'a Collector,
}

/// Builds a complete new database at `partial`: the schema, then the device record with its
/// keys wrapped, then a checkpoint that leaves everything in the main file.
fn create_database(
    partial: &Path,
    guard: &dyn KeyGuard,
    device: &NewDevice<'_>,
    opts: &StoreOptions,
) -> Result<()> {
    let mut conn = db::create(partial)?;
    migrations::migrate_to(&mut conn, migrations::LATEST)?;
    let wrapped_master = guard.wrap(&device.store_id, device.master)?;
    let wrapped_identity = wrap::wrap(
        device.master,
        "identity",
        &device.store_id,
        device.identity.secret(),
    )?;
    let (ck, cid) = collector_parts(device.collector);
    conn.execute(
        "INSERT INTO device (singleton, store_id, device_id, created_at, wrapped_master, wrapped_identity,
                             identity_public, endpoint_public, collector_kind, collector_id)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            &device.store_id[..],
            device.identity.device_id(),
            now_text(&opts.clock)?,
            wrapped_master,
            wrapped_identity,
            &device.identity.public()[..],
            &device.endpoint_public.0[..],
            ck,
            cid
        ],
    )?;
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    conn.close().map_err(|(_, e)| Error::Sqlite(e))?;
    Ok(())
}

/// Removes what an interrupted init left under the temporary name.
fn remove_partial(partial: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", partial.display()));
        if p.exists() {
            fs::remove_file(p)?;
        }
    }
    Ok(())
}

impl Store {
    /// Creates a new device store in `dir`: a master key wrapped by `guard`, a fresh X25519
    /// identity and Ed25519 commit-signing key, and what the app provisions (INE's seal key and
    /// the INE root, protocol v1.1). Fails with [`Error::StoreExists`] if there is one.
    pub fn init(
        dir: &Path,
        guard: &dyn KeyGuard,
        provisioning: &InePublicKeys,
        collector: Option<Collector>,
        opts: StoreOptions,
    ) -> Result<Store> {
        let mut store = Store::init_unanchored(dir, guard, provisioning.seal_key, collector, opts)?;
        store.provision(provisioning)?;
        Ok(store)
    }

    /// Creates a store with INE's seal key but no INE root yet (an app build that provisions
    /// none): it captures and syncs, but trusts no receipt, so it deletes nothing, until
    /// [`Store::provision`] gives it the root.
    pub fn init_unanchored(
        dir: &Path,
        guard: &dyn KeyGuard,
        endpoint_public: EndpointPublicKey,
        collector: Option<Collector>,
        opts: StoreOptions,
    ) -> Result<Store> {
        crypto::anchor::check_x25519_public(&endpoint_public.0, "INE seal key")?;
        let db_path = dir.join(DB_FILE);
        if db_path.exists() {
            return Err(Error::StoreExists(dir.to_path_buf()));
        }
        crate::fsutil::create_private_dir(files::parts_dir(dir).as_path())?;
        fsync_dir(dir)?;
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
        remove_partial(&partial)?;
        let mut store_id = [0u8; 16];
        crypto::fill_random(&mut store_id)?;
        let master = crypto::random_key()?;
        let identity = DeviceIdentity::generate()?;
        let collector = collector.unwrap_or_else(|| Collector::MiApoyo(identity.device_id()));
        check_collector(&collector)?;
        let device = NewDevice {
            store_id,
            master: &master,
            identity: &identity,
            endpoint_public: &endpoint_public,
            collector: &collector,
        };
        create_database(&partial, guard, &device, &opts)?;
        fs::rename(&partial, &db_path)?;
        fsync_dir(dir)?;
        drop(lock);
        Store::open(dir, guard, opts)
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
        let shutdown = session::previous(dir);
        // Everything up to the key unwrap reads through a read-only connection, so a refused
        // store (foreign keyring, no device record) is left byte for byte as it was.
        let full = db::full_disk(dir);
        let ro = db::open_existing(&db_path, full, !shutdown.skips_db_check())?;
        let record = read_device_record(&ro, &db_path)?;
        // Unwrap the keys before changing anything: a foreign store stays untouched.
        let (master, identity, endpoint_public) = unwrap_device_keys(&record, guard, &db_path)?;
        drop(ro);
        // From here on the store may be written: no "closed" marker may survive a power loss.
        session::mark_open(dir)?;
        let mut conn = db::open_read_write(&db_path, full)?;
        db::apply_pragmas(&conn)?;
        migrations::migrate_to(&mut conn, migrations::LATEST)?;
        crate::fsutil::create_private_dir_durably(&files::parts_dir(dir))?;
        let dup_key = derive_dup_key(&master)?;
        let mut store = Store {
            conn,
            dir: dir.to_path_buf(),
            keys: DeviceKeys {
                master,
                identity,
                dup_key,
            },
            store_id: record.store_id,
            device_id: record.device_id,
            endpoint_public,
            collector: record.collector,
            opts,
            opened: OpenReport::default(),
            previous_shutdown: "",
            _lock: lock,
        };
        // v1.1: a store made before has no signing key yet; the seal key is the newest
        // certified one.
        store.ensure_signing_key()?;
        store.refresh_seal_key()?;
        // After a clean close every part file has its rows: nothing to reconcile.
        if shutdown != Shutdown::Clean {
            store.opened = store.reconcile_part_files()?;
        }
        // A crash between recording a receipt and its purge leaves a committed capture whose
        // bytes and keys are still here: finish the purge now, not at the next sync run.
        store.opened.purged_committed = store.purge_committed()?;
        store.previous_shutdown = shutdown.name();
        Ok(store)
    }

    /// Moves a store that cannot be opened (corrupt, unknown version) aside into
    /// `dir/set-aside-<time>-<n>/`, keeping every byte, so a fresh store can be made. Returns
    /// where it went. Nothing is deleted: the set-aside copy may hold the only copy of unsent
    /// supports.
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
            session::SESSION_FILE.to_string(),
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
}
