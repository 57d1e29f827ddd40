//! The PostgreSQL backend of the storage seam: a connection pool (deadpool-postgres over
//! tokio-postgres), numbered migrations (`endpoint/schema/postgres/NNNN_*.sql`, the same
//! numbers as SQLite's) applied at start under a session advisory lock so replicas starting
//! together migrate once, and the queries of [`Db`], run from a handler's blocking thread by
//! driving the async client on the runtime's handle (registration, activation and rate-limit
//! queries in `registration`).
//!
//! Transactions are READ COMMITTED. What must hold across replicas holds by the database:
//! unique keys with `INSERT … ON CONFLICT`, and advisory locks (`pg_advisory_xact_lock`) on the
//! key being decided (a device's capture, an upload, a rate-limit subject): two replicas
//! deciding one key take turns and the second sees the first's commit (ADR 0019). The
//! `uploads` queries live in `postgres/uploads.rs`.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

mod registration;
mod uploads;

use super::migrate::{MIGRATIONS, MigrateError, migrate};
use super::{
    BlobNames, CountRow, CountedRow, DatabaseUrl, Db, EventLog, NewRegistration, NewUpload, R,
    StoreError, StoredAnswer, SupportRow, TokenRow, UploadRow, lock_key,
};
use crate::error::EndpointError;

mod supports;

/// Connections per replica.
const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection, or for a new one, before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// A replica's connection pool.
#[derive(Clone)]
pub(crate) struct Pg {
    pool: Pool,
}

impl Pg {
    /// Connects and migrates.
    pub(crate) async fn open(url: &DatabaseUrl) -> Result<Pg, EndpointError> {
        let mut cfg = url.config().clone();
        cfg.connect_timeout(POOL_WAIT);
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| EndpointError::Database(format!("connection pool: {e}")))?;
        let pg = Pg { pool };
        let client = pg.client().await.map_err(|e| {
            EndpointError::Database(format!("cannot connect to {url}: {}", e.redacted()))
        })?;
        migrate(&client).await.map_err(|e| match e {
            MigrateError::Store(e) => {
                EndpointError::Database(format!("migrating {url}: {}", e.redacted()))
            }
            MigrateError::Newer(found) => EndpointError::SchemaVersion {
                found,
                supported: MIGRATIONS.len() as i64,
            },
        })?;
        Ok(pg)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(e.to_string()))
    }

    /// A connection for one handler's work on a blocking thread.
    pub(crate) async fn conn(&self) -> Result<PgDb, StoreError> {
        Ok(PgDb {
            client: self.client().await?,
            rt: Handle::current(),
            in_tx: Cell::new(false),
        })
    }

    /// Readiness: a connection answers `SELECT 1`.
    pub(crate) async fn ready(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}

/// One pooled connection, for one handler's work on a blocking thread.
pub(crate) struct PgDb {
    client: Object,
    rt: Handle,
    in_tx: Cell<bool>,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Drop for PgDb {
    /// A handler that panicked midway left its transaction open: roll it back before the
    /// connection goes back to the pool.
    fn drop(&mut self) {
        self.finish();
    }
}

impl PgDb {
    /// Rolls back a transaction the handler left open (it returned an error midway).
    pub(crate) fn finish(&self) {
        if self.in_tx.replace(false)
            && let Err(e) = self.rt.block_on(self.client.batch_execute("ROLLBACK"))
        {
            tracing::error!(error = %StoreError::from(e).redacted(), "could not roll back an abandoned transaction");
        }
    }

    fn rows(&self, sql: &str, params: Params<'_>) -> R<Vec<Row>> {
        self.rt.block_on(async {
            let st = self.client.prepare_cached(sql).await?;
            Ok(self.client.query(&st, params).await?)
        })
    }

    fn row(&self, sql: &str, params: Params<'_>) -> R<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    fn exec(&self, sql: &str, params: Params<'_>) -> R<u64> {
        self.rt.block_on(async {
            let st = self.client.prepare_cached(sql).await?;
            Ok(self.client.execute(&st, params).await?)
        })
    }

    fn xact_lock(&self, key: i64) -> R<()> {
        self.exec("SELECT pg_advisory_xact_lock($1)", &[&key])?;
        Ok(())
    }

    fn ids(&self, sql: &str) -> R<HashSet<String>> {
        Ok(self
            .rows(sql, &[])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }
}

impl Db for PgDb {
    fn begin(&self) -> R<()> {
        self.rt.block_on(self.client.batch_execute("BEGIN"))?;
        self.in_tx.set(true);
        Ok(())
    }

    fn commit(&self) -> R<()> {
        self.in_tx.set(false);
        self.rt.block_on(self.client.batch_execute("COMMIT"))?;
        Ok(())
    }

    fn ping(&self) -> R<()> {
        self.rt.block_on(self.client.simple_query("SELECT 1"))?;
        Ok(())
    }

    fn token_device(&self, token_sha256: &[u8], now: i64) -> R<Option<TokenRow>> {
        Ok(self
            .row(
                "SELECT device_public, signing_public FROM tokens WHERE token_sha256 = $1 AND expires_at > $2",
                &[&token_sha256, &now],
            )?
            .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()?)
    }

    fn auxiliar_owner(&self, auxiliar_id: &str) -> R<Option<Vec<u8>>> {
        Ok(self
            .row(
                "SELECT device_public FROM auxiliar_bindings WHERE auxiliar_id = $1",
                &[&auxiliar_id],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn bind_auxiliar(&self, auxiliar_id: &str, device_public: &[u8], now: i64) -> R<bool> {
        Ok(self.exec(
            "INSERT INTO auxiliar_bindings (auxiliar_id, device_public, bound_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&auxiliar_id, &device_public, &now],
        )? == 1)
    }

    fn recent_events(&self, log: EventLog, subject: &[u8], since: i64) -> R<(i64, Option<i64>)> {
        registration::recent_events(self, log, subject, since)
    }

    fn forget_events(&self, log: EventLog, until: i64) -> R<()> {
        registration::forget_events(self, log, until)
    }

    fn add_event(&self, log: EventLog, subject: &[u8], at: i64) -> R<()> {
        registration::add_event(self, log, subject, at)
    }

    fn activation_code(&self, code_hmac: &[u8]) -> R<Option<(Vec<u8>, i64)>> {
        registration::activation_code(self, code_hmac)
    }

    fn mark_activated(&self, code_hmac: &[u8], now: i64) -> R<()> {
        registration::mark_activated(self, code_hmac, now)
    }

    fn use_nonce(&self, device_public: &[u8], nonce: &[u8], expires_at: i64, now: i64) -> R<bool> {
        registration::use_nonce(self, device_public, nonce, expires_at, now)
    }

    fn insert_token(
        &self,
        token_sha256: &[u8],
        device_public: &[u8],
        now: i64,
        expires_at: i64,
        signing_public: Option<&[u8]>,
    ) -> R<()> {
        registration::insert_token(
            self,
            token_sha256,
            device_public,
            now,
            expires_at,
            signing_public,
        )
    }

    fn registration_owner(&self, registration_id: &str) -> R<Option<Vec<u8>>> {
        registration::registration_owner(self, registration_id)
    }

    fn insert_registration(&self, r: &NewRegistration<'_>) -> R<()> {
        registration::insert_registration(self, r)
    }

    fn sweep_registrations(&self, before: i64, now: i64, limit: i64) -> R<u64> {
        registration::sweep_registrations(self, before, now, limit)
    }

    fn code_taken(&self, code_hmac: &[u8]) -> R<bool> {
        registration::code_taken(self, code_hmac)
    }

    fn insert_activation_code(
        &self,
        code_hmac: &[u8],
        device_public: &[u8],
        registration_id: &str,
        now: i64,
        expires_at: i64,
    ) -> R<()> {
        registration::insert_activation_code(
            self,
            code_hmac,
            device_public,
            registration_id,
            now,
            expires_at,
        )
    }

    fn put_dev_mailbox(&self, email: &str, code: &str, expires_at: i64) -> R<()> {
        registration::put_dev_mailbox(self, email, code, expires_at)
    }

    fn dev_mailbox(&self, email: &str) -> R<Option<(String, String, i64)>> {
        registration::dev_mailbox(self, email)
    }

    fn begin_unflushed(&self) -> R<()> {
        uploads::begin_unflushed(self)
    }
    fn commit_unflushed(&self) -> R<()> {
        self.commit()
    }
    fn upload(&self, id: &str) -> R<Option<UploadRow>> {
        uploads::upload(self, id)
    }
    fn lock_upload(&self, id: &str) -> R<()> {
        uploads::lock_upload(self, id)
    }
    fn count_uploads(&self, device_id: &str) -> R<i64> {
        uploads::count_uploads(self, device_id)
    }
    fn insert_upload(&self, u: &NewUpload<'_>) -> R<()> {
        uploads::insert_upload(self, u)
    }
    fn expired_uploads(&self, before: i64, limit: i64) -> R<Vec<String>> {
        uploads::expired_uploads(self, before, limit)
    }
    fn delete_upload(&self, id: &str) -> R<()> {
        uploads::delete_upload(self, id)
    }
    fn advance_upload(
        &self,
        id: &str,
        offset: i64,
        digest_state: Option<&[u8]>,
        sha256: Option<&[u8; 32]>,
    ) -> R<()> {
        uploads::advance_upload(self, id, offset, digest_state, sha256)
    }

    fn lock_capture(&self, device_id: &str, capture_id: &str) -> R<()> {
        supports::lock_capture(self, device_id, capture_id)
    }

    fn stored_answer(&self, device_id: &str, capture_id: &str) -> R<Option<StoredAnswer>> {
        supports::stored_answer(self, device_id, capture_id)
    }

    fn counted_by_dup_key(&self, dup_key: &[u8]) -> R<Option<CountedRow>> {
        supports::counted_by_dup_key(self, dup_key)
    }

    fn insert_support(&self, s: &SupportRow<'_>) -> R<()> {
        supports::insert_support(self, s)
    }

    fn support_counts(&self) -> R<Vec<CountRow>> {
        supports::support_counts(self)
    }

    fn live_blob_names(&self) -> R<BlobNames> {
        Ok((
            self.ids("SELECT id FROM uploads")?,
            self.ids("SELECT blob_dir FROM supports")?,
        ))
    }
}
