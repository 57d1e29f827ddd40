//! The shared state of a running endpoint: the configuration, the database behind the storage
//! seam (`store`: the one SQLite connection behind a mutex, so every write and every commit's
//! decision transaction is serialized in this process — a commit's reading, hashing and
//! decryption run outside it, ADR 0020; or a PostgreSQL pool shared with other replicas, where
//! the database serializes what must be), the blob tier and keys derived at start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_sync::wire::crypto::{self, SecretKey};
use apoyo_sync::wire::{self as protocol, ProcessList, limits};
use rusqlite::Connection;
use time::OffsetDateTime;

use crate::blob_store::{BlobStore, FolderBlobs};
use crate::config::EndpointConfig;
use crate::db;
use crate::error::{ApiError, EndpointError};
use crate::store::{Db, Pg, SqliteDb, StoreError};

/// Attempts of a transaction that keeps losing races to other replicas before the request is
/// answered `503 unavailable` (the device retries later).
const CONFLICT_ATTEMPTS: usize = 8;

/// The state handed to [`crate::router`]. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub cfg: EndpointConfig,
    pub backend: Backend,
    pub blobs: Box<dyn BlobStore>,
    /// Key of the duplicate HMAC: the ring's duplicate secret, independent of every HPKE key
    /// (kept in the key folder, never in the database).
    pub dup_key: SecretKey,
    /// Key of the registration rate limit's subjects (derived from the duplicate secret, never
    /// stored): the database keeps HMACs of addresses and device keys, not the addresses.
    pub rate_key: SecretKey,
    /// The encoded `ProcessList` (the catalog does not change while running).
    pub catalog: Vec<u8>,
    /// Transactions run again after losing a race to another replica (PostgreSQL only).
    pub conflicts_retried: AtomicU64,
    /// Commits this process decided and recorded (replays of a stored answer not counted).
    pub commits_decided: AtomicU64,
    /// One delivery of a capture at a time in this replica (`support::gate`).
    pub commit_gate: crate::support::CommitGate,
}

/// The database behind the storage seam.
pub(crate) enum Backend {
    /// The embedded default: one connection, one process.
    Sqlite(Mutex<Connection>),
    /// One database shared by every replica.
    Postgres(Pg),
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("cfg", &self.0.cfg)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the SQLite database and the blob folder, checks the configuration, and removes
    /// files a crash left without a database row. (A PostgreSQL database is opened by
    /// [`AppState::connect`].)
    pub fn open(cfg: EndpointConfig) -> Result<AppState, EndpointError> {
        if cfg.database.is_some() {
            return Err(EndpointError::Config(
                "a PostgreSQL database is opened with AppState::connect".into(),
            ));
        }
        let catalog = check_config(&cfg)?;
        let conn = db::open(&cfg.db_path)?;
        let backend = Backend::Sqlite(Mutex::new(conn));
        finish_open(cfg, catalog, backend)
    }

    /// Opens the configured database (SQLite, or PostgreSQL when `cfg.database` is set:
    /// connects and migrates) and the blob tier, as [`AppState::open`] does.
    pub async fn connect(cfg: EndpointConfig) -> Result<AppState, EndpointError> {
        let Some(url) = cfg.database.clone() else {
            return tokio::task::spawn_blocking(move || AppState::open(cfg))
                .await
                .map_err(|e| EndpointError::Internal(e.to_string()))?;
        };
        let catalog = check_config(&cfg)?;
        let backend = Backend::Postgres(Pg::open(&url).await?);
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _guard = rt.enter();
            finish_open(cfg, catalog, backend)
        })
        .await
        .map_err(|e| EndpointError::Internal(e.to_string()))?
    }

    /// Runs `f` with the database on a blocking thread (SQLite: holding the database mutex;
    /// PostgreSQL: on a pooled connection). A transaction `f` leaves open is rolled back; one
    /// that lost a race to another replica ([`StoreError::is_conflict`]) is run again from the
    /// start, so `f` must be repeatable: its effects outside the database are undone on error.
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, &Inner) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.0.clone();
        match &self.0.backend {
            Backend::Sqlite(_) => {
                tokio::task::spawn_blocking(move || {
                    let Backend::Sqlite(conn) = &inner.backend else {
                        return Err(ApiError::internal("backend changed"));
                    };
                    // A panic while holding the lock left at most an open transaction, rolled
                    // back below before the next use.
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    let db = SqliteDb(&conn);
                    db.finish();
                    let result = f(&db, &inner);
                    db.finish();
                    result
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let conn = pg.conn().await?;
                tokio::task::spawn_blocking(move || {
                    let retry = backon::ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(2))
                        .with_max_delay(Duration::from_millis(200))
                        .with_max_times(CONFLICT_ATTEMPTS)
                        .with_jitter();
                    let run = || {
                        let result = f(&conn, &inner);
                        conn.finish();
                        result
                    };
                    backon::BlockingRetryable::retry(run, retry)
                        .sleep(std::thread::sleep)
                        .when(|e: &ApiError| e.conflict)
                        .notify(|_, _| {
                            inner.conflicts_retried.fetch_add(1, Ordering::Relaxed);
                        })
                        .call()
                })
                .await?
            }
        }
    }

    /// Runs CPU-bound work (decryption) on a blocking thread, without the database.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    pub fn now(&self) -> OffsetDateTime {
        self.cfg.clock.now()
    }
}

/// Checks the configuration; the encoded catalog.
fn check_config(cfg: &EndpointConfig) -> Result<Vec<u8>, EndpointError> {
    let mut seen = HashSet::new();
    for p in &cfg.processes {
        p.check()?;
        if !seen.insert(p.id.clone()) {
            return Err(EndpointError::Config(format!(
                "process {} is defined twice",
                p.id
            )));
        }
    }
    if cfg.upload_ttl.as_secs() == 0 || cfg.upload_ttl > crate::MAX_UPLOAD_TTL {
        return Err(EndpointError::Config(format!(
            "upload_ttl must be between one second and {} days",
            crate::MAX_UPLOAD_TTL.as_secs() / 86_400
        )));
    }
    if cfg.header_read_timeout.is_zero() || cfg.body_idle_timeout.is_zero() {
        return Err(EndpointError::Config(
            "header_read_timeout and body_idle_timeout must be above zero".into(),
        ));
    }
    check_commit_budget(cfg)?;
    let catalog = protocol::encode(&ProcessList {
        v: protocol::VERSION,
        processes: cfg.processes.clone(),
    })?;
    if catalog.len() > limits::MAX_CATALOG_BYTES {
        return Err(EndpointError::Config(format!(
            "the process catalog encodes to {} bytes, over the protocol limit of {}",
            catalog.len(),
            limits::MAX_CATALOG_BYTES
        )));
    }
    cfg.keys.check()?;
    cfg.registration.check()?;
    Ok(catalog)
}

/// The refused-commit budget (`support::limit`): at least one refusal, over a window of one
/// second to a day.
fn check_commit_budget(cfg: &EndpointConfig) -> Result<(), EndpointError> {
    let window = cfg.commit_refusal_window.as_secs();
    if cfg.commit_refusals == 0 || window == 0 || window > 86_400 {
        return Err(EndpointError::Config(
            "commit_refusals must be at least 1 and commit_refusal_window between one second and a day"
                .into(),
        ));
    }
    Ok(())
}

/// Opens the blob tier (shared with other replicas on PostgreSQL), removes what a crash left
/// without a row, and derives the keys. On a blocking thread.
fn finish_open(
    cfg: EndpointConfig,
    catalog: Vec<u8>,
    backend: Backend,
) -> Result<AppState, EndpointError> {
    let shared = matches!(backend, Backend::Postgres(_));
    let blobs = FolderBlobs::open(&cfg.blob_dir(), shared)?;
    let removed = blobs.remove_orphans(&mut || {
        live_names(&backend).map_err(|e| std::io::Error::other(e.redacted()))
    })?;
    if removed > 0 {
        tracing::info!(removed, "removed blob files left by an interrupted request");
    }
    let dup_key = cfg.keys.dup_secret.clone();
    let rate_key = crypto::derive_key(
        cfg.keys.dup_secret.as_bytes(),
        &[b"apoyo-endpoint/v1.1/rate-limit-key"],
    )?;
    Ok(AppState(Arc::new(Inner {
        cfg,
        backend,
        blobs: Box::new(blobs),
        dup_key,
        rate_key,
        catalog,
        conflicts_retried: AtomicU64::new(0),
        commits_decided: AtomicU64::new(0),
        commit_gate: Default::default(),
    })))
}

/// The upload ids and support folders the database names.
fn live_names(backend: &Backend) -> Result<(HashSet<String>, HashSet<String>), StoreError> {
    match backend {
        Backend::Sqlite(conn) => {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            SqliteDb(&conn).live_blob_names()
        }
        Backend::Postgres(pg) => {
            let rt = tokio::runtime::Handle::current();
            rt.block_on(pg.conn())?.live_blob_names()
        }
    }
}
