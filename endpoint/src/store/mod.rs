//! The storage seam (ADR 0019): every query the endpoint makes, one method per query group, on
//! one of two backends — the embedded SQLite file (the default: one process, one connection
//! behind a mutex) or PostgreSQL (any number of replicas on one database, a connection pool).
//!
//! A handler's database work runs on a blocking thread with a [`Db`] (a commit's reading,
//! hashing and decryption run outside it, between a short read and a short decision
//! transaction: ADR 0020), so the seam is synchronous and the PostgreSQL backend drives its
//! async client from that thread. Exactly-once across
//! replicas comes from the database (unique keys, `INSERT … ON CONFLICT`, transaction-scoped
//! advisory locks on the key being decided), never from a lock in a replica's memory; a
//! transaction that lost a race to another replica fails with [`StoreError::is_conflict`] and
//! is run again from the start by `AppState::db`.

mod migrate;
mod postgres;
mod rows;
mod sqlite;
mod url;

use std::collections::HashSet;

pub(crate) use postgres::Pg;
pub(crate) use rows::{NewRegistration, NewUpload, StoredAnswer, SupportRow, UploadRow};
pub(crate) use sqlite::SqliteDb;
pub use url::DatabaseUrl;

/// A failure of the database.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Shown by [`StoreError::redacted`] only: a server's DETAIL line can quote key values.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(String),
}

impl StoreError {
    /// Whether the transaction lost a race to another connection (serialization failure,
    /// deadlock, or a unique key another transaction took first): running it again from the
    /// start sees the winner's commit and decides accordingly.
    pub(crate) fn is_conflict(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            StoreError::Postgres(e) => e.code().is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::UNIQUE_VIOLATION
            }),
            _ => false,
        }
    }

    /// The error without values a server may quote (PostgreSQL's DETAIL line): the SQLSTATE
    /// and message only.
    pub(crate) fn redacted(&self) -> String {
        match self {
            StoreError::Postgres(e) => match e.as_db_error() {
                Some(db) => format!("postgres {}: {}", db.code().code(), db.message()),
                None => format!("postgres: {e}"),
            },
            other => other.to_string(),
        }
    }
}

/// The event logs behind the rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventLog {
    /// Failed activations per device key.
    ActivationFailures,
    /// Registrations that mailed a code, per subject (HMAC of address or device key).
    RegistrationAttempts,
    /// Registrations that mailed a code, per source (HMAC of the client's address or /64).
    RegistrationSources,
    /// Registrations that mailed a code, all sources together (one fixed subject).
    RegistrationsGlobal,
    /// Refused commits that made the endpoint read part bytes (`part_mismatch`, or
    /// `upload_missing` found while reading), per device id (`support::limit`).
    CommitRefusals,
}

impl EventLog {
    fn table(self) -> &'static str {
        match self {
            EventLog::ActivationFailures => "activation_failures",
            EventLog::RegistrationAttempts => "registration_attempts",
            EventLog::RegistrationSources => "registration_sources",
            EventLog::RegistrationsGlobal => "registrations_global",
            EventLog::CommitRefusals => "commit_refusals",
        }
    }

    fn subject_column(self) -> &'static str {
        match self {
            EventLog::ActivationFailures => "device_public",
            EventLog::RegistrationAttempts
            | EventLog::RegistrationSources
            | EventLog::RegistrationsGlobal => "subject",
            EventLog::CommitRefusals => "device",
        }
    }
}

type R<T> = Result<T, StoreError>;
/// `(device_public, signing_public)` of a token.
pub(crate) type TokenRow = (Vec<u8>, Option<Vec<u8>>);
/// `(capture_id, device_id, collector_kind, collector_id)` of a counted support.
pub(crate) type CountedRow = (String, String, String, String);
/// `(process_id, result, reason or '', count)`.
pub(crate) type CountRow = (String, String, String, i64);
/// The upload ids and the support folders the database names.
pub(crate) type BlobNames = (HashSet<String>, HashSet<String>);

/// One connection's queries, grouped as the handlers use them. `begin`/`commit` bracket a
/// transaction; one left open when the handler returns is rolled back.
pub(crate) trait Db {
    /// Starts a write transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN`, READ
    /// COMMITTED).
    fn begin(&self) -> R<()>;
    fn commit(&self) -> R<()>;
    /// `SELECT 1` (readiness).
    fn ping(&self) -> R<()>;

    // --- tokens (`auth`) ---
    /// `(device_public, signing_public)` of an unexpired token.
    fn token_device(&self, token_sha256: &[u8], now: i64) -> R<Option<TokenRow>>;

    // --- auxiliar bindings (`collector`) ---
    fn auxiliar_owner(&self, auxiliar_id: &str) -> R<Option<Vec<u8>>>;
    /// Binds when unbound; false when another binding was there first.
    fn bind_auxiliar(&self, auxiliar_id: &str, device_public: &[u8], now: i64) -> R<bool>;

    // --- rate limits (`routes::rate_limit`) ---
    /// `count(*), min(at)` of a subject's events after `since`. PostgreSQL first takes a
    /// transaction lock on (log, subject), so that concurrent checks of one subject on any
    /// replica see each other's events.
    fn recent_events(&self, log: EventLog, subject: &[u8], since: i64) -> R<(i64, Option<i64>)>;
    /// Forgets every event at or before `until`.
    fn forget_events(&self, log: EventLog, until: i64) -> R<()>;
    fn add_event(&self, log: EventLog, subject: &[u8], at: i64) -> R<()>;

    // --- activation (`routes::activation`) ---
    /// `(device_public, expires_at)` of an issued code, by its keyed hash.
    fn activation_code(&self, code_hmac: &[u8]) -> R<Option<(Vec<u8>, i64)>>;
    /// Marks the registration the code was issued for as activated (kept by the sweep).
    fn mark_activated(&self, code_hmac: &[u8], now: i64) -> R<()>;
    /// Forgets expired nonces, then records this one; false when it was used before.
    fn use_nonce(&self, device_public: &[u8], nonce: &[u8], expires_at: i64, now: i64) -> R<bool>;
    fn insert_token(
        &self,
        token_sha256: &[u8],
        device_public: &[u8],
        now: i64,
        expires_at: i64,
        signing_public: Option<&[u8]>,
    ) -> R<()>;

    // --- registration (`routes::devices`, `routes::dev`) ---
    fn registration_owner(&self, registration_id: &str) -> R<Option<Vec<u8>>>;
    /// The device and its registration (each kept when already there: the caller reads the
    /// owner afterwards, so two devices racing for one id never both succeed).
    fn insert_registration(&self, r: &NewRegistration<'_>) -> R<()>;
    /// Deletes up to `limit` registrations never activated, recorded at or before `before`,
    /// none of whose codes is still valid at `now`: their codes, and their device when nothing
    /// else names it. How many were deleted.
    fn sweep_registrations(&self, before: i64, now: i64, limit: i64) -> R<u64>;
    fn code_taken(&self, code_hmac: &[u8]) -> R<bool>;
    fn insert_activation_code(
        &self,
        code_hmac: &[u8],
        device_public: &[u8],
        registration_id: &str,
        now: i64,
        expires_at: i64,
    ) -> R<()>;
    fn put_dev_mailbox(&self, email: &str, code: &str, expires_at: i64) -> R<()>;
    /// `(email, code, expires_at)`.
    fn dev_mailbox(&self, email: &str) -> R<Option<(String, String, i64)>>;

    // --- uploads (`routes::uploads::rows`, `support::parts`) ---
    /// Starts a write transaction whose commit is not flushed on its own (ADR 0021): SQLite
    /// `synchronous = NORMAL` for it (WAL: the next flushed commit makes it durable, in order),
    /// PostgreSQL `SET LOCAL synchronous_commit = off`. For an upload's creation and offset
    /// only: losing them at a power loss is safe for tus (the client asks HEAD).
    fn begin_unflushed(&self) -> R<()>;
    /// Commits a transaction begun by [`Db::begin_unflushed`] (SQLite: and puts the
    /// connection back to `synchronous = FULL`).
    fn commit_unflushed(&self) -> R<()>;
    fn upload(&self, id: &str) -> R<Option<UploadRow>>;
    /// PostgreSQL: a transaction lock on the upload, so two PATCHes of one upload on two
    /// replicas take turns. SQLite: the write transaction already excludes.
    fn lock_upload(&self, id: &str) -> R<()>;
    fn count_uploads(&self, device_id: &str) -> R<i64>;
    fn insert_upload(&self, u: &NewUpload<'_>) -> R<()>;
    fn expired_uploads(&self, before: i64, limit: i64) -> R<Vec<String>>;
    fn delete_upload(&self, id: &str) -> R<()>;
    /// Sets an upload's offset and, in the same row write, its running digest state (`None`
    /// when not kept or complete) and its final SHA-256 (`Some` once complete).
    fn advance_upload(
        &self,
        id: &str,
        offset: i64,
        digest_state: Option<&[u8]>,
        sha256: Option<&[u8; 32]>,
    ) -> R<()>;

    // --- supports (`support`, `stats`) ---
    /// PostgreSQL: a transaction lock on (device, capture id), so deliveries of one capture
    /// through several replicas are decided one after the other.
    fn lock_capture(&self, device_id: &str, capture_id: &str) -> R<()>;
    fn stored_answer(&self, device_id: &str, capture_id: &str) -> R<Option<StoredAnswer>>;
    /// `(capture_id, device_id, collector_kind, collector_id)` of the counted support.
    fn counted_by_dup_key(&self, dup_key: &[u8]) -> R<Option<CountedRow>>;
    /// The support's row and its parts' rows.
    fn insert_support(&self, s: &SupportRow<'_>) -> R<()>;
    /// `(process_id, result, reason or '', count)`.
    fn support_counts(&self) -> R<Vec<CountRow>>;
    /// The upload ids and support folders rows name (what the blob sweep keeps).
    fn live_blob_names(&self) -> R<BlobNames>;
}

/// A 64-bit advisory-lock key for `parts` under `namespace` (SHA-256, first 8 bytes).
pub(crate) fn lock_key(namespace: &str, parts: &[&[u8]]) -> i64 {
    let mut input: Vec<&[u8]> = vec![namespace.as_bytes(), &[0]];
    for p in parts {
        input.push(p);
        input.push(&[0]);
    }
    let d = apoyo_sync::wire::crypto::sha256(&input.concat());
    let mut k = [0u8; 8];
    k.copy_from_slice(&d[..8]);
    i64::from_be_bytes(k)
}
