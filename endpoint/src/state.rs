//! The shared state of a running endpoint: the configuration, the one database connection
//! (behind a mutex: every write, and the whole of a commit, is serialized), the blob folder and
//! keys derived at start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use apoyo_sync::wire::crypto::{self, SecretKey};
use apoyo_sync::wire::{self as protocol, ProcessList, limits};
use rusqlite::Connection;
use time::OffsetDateTime;

use crate::blobs::Blobs;
use crate::config::EndpointConfig;
use crate::db;
use crate::error::{ApiError, EndpointError};

/// The state handed to [`crate::router`]. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub cfg: EndpointConfig,
    pub db: Mutex<Connection>,
    pub blobs: Blobs,
    /// Key of the duplicate HMAC: the ring's duplicate secret, independent of every HPKE key
    /// (kept in the key folder, never in the database).
    pub dup_key: SecretKey,
    /// Key of the registration rate limit's subjects (derived from the duplicate secret, never
    /// stored): the database keeps HMACs of addresses and device keys, not the addresses.
    pub rate_key: SecretKey,
    /// The encoded `ProcessList` (the catalog does not change while running).
    pub catalog: Vec<u8>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("cfg", &self.0.cfg)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the database and the blob folder, checks the configuration, and removes files a
    /// crash left without a database row.
    pub fn open(cfg: EndpointConfig) -> Result<AppState, EndpointError> {
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
        if cfg.upload_ttl.as_secs() == 0 {
            return Err(EndpointError::Config(
                "upload_ttl must be at least one second".into(),
            ));
        }
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
        let conn = db::open(&cfg.db_path)?;
        let blobs = Blobs::open(&cfg.blob_dir())?;
        let uploads = ids(&conn, "SELECT id FROM uploads")?;
        let supports = ids(&conn, "SELECT blob_dir FROM supports")?;
        let removed = blobs.remove_orphans(&uploads, &supports)?;
        if removed > 0 {
            tracing::info!(removed, "removed blob files left by an interrupted request");
        }
        cfg.keys.check()?;
        let dup_key = cfg.keys.dup_secret.clone();
        let rate_key = crypto::derive_key(
            cfg.keys.dup_secret.as_bytes(),
            &[b"apoyo-endpoint/v1.1/rate-limit-key"],
        )?;
        Ok(AppState(Arc::new(Inner {
            cfg,
            db: Mutex::new(conn),
            blobs,
            dup_key,
            rate_key,
            catalog,
        })))
    }

    /// Runs `f` with the database on a blocking thread, holding the database mutex.
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock rolled its transaction back (rusqlite rolls back on
            // drop), so the connection is still consistent.
            let mut conn = inner.db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn, &inner)
        })
        .await?
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

fn ids(conn: &Connection, sql: &str) -> Result<HashSet<String>, EndpointError> {
    let mut st = conn.prepare(sql)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<HashSet<_>, _>>()?)
}
