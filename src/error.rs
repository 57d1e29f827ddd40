//! The engine's error type.
//!
//! One enum, every variant typed and named after what went wrong, never carrying personal
//! data: a validation error names the *field*, never its value. Each variant maps to a stable
//! numeric [`ErrorCode`] (the C ABI, Java and Swift bindings rely on these numbers; never
//! renumber one) and to an [`ErrorClass`] that tells the app what to do next.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The input was wrong: show the message, let the user correct it.
    InvalidInput,
    /// The citizen already gave this support: show the earlier capture.
    Duplicate,
    /// The device is out of space: ask the user to free some. Nothing was evicted.
    StorageFull,
    /// The key or device binding is missing or wrong: the store cannot be read here.
    KeyUnavailable,
    /// Stored or received data failed authentication: report it; other captures are fine.
    Integrity,
    /// The store file is damaged or of an unknown version: it was left untouched; report it.
    StoreUnusable,
    /// A network or endpoint problem that a later attempt may overcome.
    Transient,
    /// The endpoint refused for a documented reason that a retry will not change.
    Rejected,
    /// A bug or an unexpected local condition (I/O, SQLite): report it.
    Internal,
}

/// A field of a capture, named in validation errors (the value is never included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    ClaveElector,
    Curp,
    Ocr,
    Cic,
    NumeroEmision,
    Entidad,
    Seccion,
    Vigencia,
    Model,
    Location,
    Front,
    Back,
    Selfie,
    Signature,
    Process,
    Collector,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Field::ClaveElector => "clave de elector",
            Field::Curp => "CURP",
            Field::Ocr => "OCR",
            Field::Cic => "CIC",
            Field::NumeroEmision => "número de emisión",
            Field::Entidad => "entidad",
            Field::Seccion => "sección",
            Field::Vigencia => "vigencia",
            Field::Model => "credential model",
            Field::Location => "location",
            Field::Front => "front image",
            Field::Back => "back image",
            Field::Selfie => "selfie image",
            Field::Signature => "signature image",
            Field::Process => "process",
            Field::Collector => "collector",
        };
        f.write_str(s)
    }
}

/// Every error the engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field}: {problem}")]
    Invalid { field: Field, problem: &'static str },
    #[error("the credential model is not accepted by process {process}")]
    ModelNotAccepted { process: String },
    #[error("the credential's vigencia ends before the process cutoff {cutoff}")]
    CredentialExpired { cutoff: String },
    #[error("the credential's {field} is outside the scope of process {process}")]
    OutOfScope { field: Field, process: String },
    #[error("unknown process {0}")]
    UnknownProcess(String),
    #[error("process {process} is not open for captures now")]
    ProcessClosed { process: String },
    #[error("invalid process definition: {0}")]
    InvalidProcess(String),
    #[error("duplicate: this citizen already supported process {process} in capture {earlier}")]
    Duplicate { process: String, earlier: String },
    #[error(
        "storage full: {available} bytes free, {needed} needed (reserve included); nothing was evicted"
    )]
    StorageFull { available: u64, needed: u64 },
    #[error("unknown capture {0}")]
    UnknownCapture(String),
    #[error("capture {id} no longer holds its parts (state {state})")]
    CaptureGone { id: String, state: String },

    #[error("the device key is not available in the keyring: {0}")]
    KeyUnavailable(String),
    #[error("the device key in the keyring does not open this store (copied from another device?)")]
    WrongDevice,
    #[error("integrity check failed for {what}")]
    Integrity { what: String },
    #[error("unsupported ciphertext version {0}")]
    CiphertextVersion(u8),

    #[error("no store at {0}")]
    NoStore(PathBuf),
    #[error("a store already exists at {0}")]
    StoreExists(PathBuf),
    #[error("the store is in use by another process")]
    StoreBusy,
    #[error("the store at {path} is corrupt ({detail}); it was left untouched")]
    CorruptStore { path: PathBuf, detail: String },
    #[error("the store has schema version {found}, this engine supports up to {supported}")]
    StoreVersion { found: i64, supported: i64 },
    #[error("the keyring folder must be outside the store folder")]
    KeyringInsideStore,

    #[error("malformed message: {0}")]
    Decode(String),
    #[error("message too large: {what} is {len} bytes, limit {limit}")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("the device is not registered")]
    NotRegistered,
    #[error("the device is not activated (or its activation expired)")]
    NotActivated,
    #[error("activation refused: {0}")]
    Activation(String),
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("the endpoint rejected the request: {reason}")]
    Rejected { reason: String },
    #[error("the endpoint's receipt does not verify")]
    BadReceipt,
    /// A provisioned or configured key file is not the key it should be (a private key where
    /// the public one belongs, another key's file, a zero or low-order key). Never the text.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The store was provisioned with another INE root than the one given now.
    #[error("this store was provisioned with another INE root")]
    ProvisioningMismatch,

    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
    #[error("internal error: {0}")]
    Internal(String),

    #[error("the engine is closed")]
    EngineClosed,
    #[error("a sync is already running on this engine")]
    SyncRunning,
}

/// Stable numeric codes for the C ABI and the bindings. Never renumber; only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(i32)]
pub enum ErrorCode {
    Invalid = 1,
    ModelNotAccepted = 2,
    CredentialExpired = 3,
    OutOfScope = 4,
    UnknownProcess = 5,
    ProcessClosed = 6,
    InvalidProcess = 7,
    Duplicate = 8,
    StorageFull = 9,
    UnknownCapture = 10,
    CaptureGone = 11,
    KeyUnavailable = 20,
    WrongDevice = 21,
    Integrity = 22,
    CiphertextVersion = 23,
    NoStore = 30,
    StoreExists = 31,
    StoreBusy = 32,
    CorruptStore = 33,
    StoreVersion = 34,
    KeyringInsideStore = 35,
    Decode = 40,
    TooLarge = 41,
    NotRegistered = 42,
    NotActivated = 43,
    Activation = 44,
    Transient = 45,
    Rejected = 46,
    BadReceipt = 47,
    Sqlite = 90,
    Io = 91,
    Crypto = 92,
    Internal = 99,
    EngineClosed = 48,
    SyncRunning = 49,
}

impl ErrorCode {
    /// Every code, in the order they were appended (bindings check their mapping against it).
    pub const ALL: [ErrorCode; 35] = [
        ErrorCode::Invalid,
        ErrorCode::ModelNotAccepted,
        ErrorCode::CredentialExpired,
        ErrorCode::OutOfScope,
        ErrorCode::UnknownProcess,
        ErrorCode::ProcessClosed,
        ErrorCode::InvalidProcess,
        ErrorCode::Duplicate,
        ErrorCode::StorageFull,
        ErrorCode::UnknownCapture,
        ErrorCode::CaptureGone,
        ErrorCode::KeyUnavailable,
        ErrorCode::WrongDevice,
        ErrorCode::Integrity,
        ErrorCode::CiphertextVersion,
        ErrorCode::NoStore,
        ErrorCode::StoreExists,
        ErrorCode::StoreBusy,
        ErrorCode::CorruptStore,
        ErrorCode::StoreVersion,
        ErrorCode::KeyringInsideStore,
        ErrorCode::Decode,
        ErrorCode::TooLarge,
        ErrorCode::NotRegistered,
        ErrorCode::NotActivated,
        ErrorCode::Activation,
        ErrorCode::Transient,
        ErrorCode::Rejected,
        ErrorCode::BadReceipt,
        ErrorCode::Sqlite,
        ErrorCode::Io,
        ErrorCode::Crypto,
        ErrorCode::Internal,
        ErrorCode::EngineClosed,
        ErrorCode::SyncRunning,
    ];

    /// The code with this number, if there is one.
    pub fn from_i32(n: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as i32 == n)
    }

    /// The code's name as the bindings spell it (`snake_case`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::ModelNotAccepted => "model_not_accepted",
            ErrorCode::CredentialExpired => "credential_expired",
            ErrorCode::OutOfScope => "out_of_scope",
            ErrorCode::UnknownProcess => "unknown_process",
            ErrorCode::ProcessClosed => "process_closed",
            ErrorCode::InvalidProcess => "invalid_process",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::UnknownCapture => "unknown_capture",
            ErrorCode::CaptureGone => "capture_gone",
            ErrorCode::KeyUnavailable => "key_unavailable",
            ErrorCode::WrongDevice => "wrong_device",
            ErrorCode::Integrity => "integrity",
            ErrorCode::CiphertextVersion => "ciphertext_version",
            ErrorCode::NoStore => "no_store",
            ErrorCode::StoreExists => "store_exists",
            ErrorCode::StoreBusy => "store_busy",
            ErrorCode::CorruptStore => "corrupt_store",
            ErrorCode::StoreVersion => "store_version",
            ErrorCode::KeyringInsideStore => "keyring_inside_store",
            ErrorCode::Decode => "decode",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::NotActivated => "not_activated",
            ErrorCode::Activation => "activation",
            ErrorCode::Transient => "transient",
            ErrorCode::Rejected => "rejected",
            ErrorCode::BadReceipt => "bad_receipt",
            ErrorCode::Sqlite => "sqlite",
            ErrorCode::Io => "io",
            ErrorCode::Crypto => "crypto",
            ErrorCode::Internal => "internal",
            ErrorCode::EngineClosed => "engine_closed",
            ErrorCode::SyncRunning => "sync_running",
        }
    }
}

impl Error {
    /// The stable numeric code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid { .. } => ErrorCode::Invalid,
            Error::ModelNotAccepted { .. } => ErrorCode::ModelNotAccepted,
            Error::CredentialExpired { .. } => ErrorCode::CredentialExpired,
            Error::OutOfScope { .. } => ErrorCode::OutOfScope,
            Error::UnknownProcess(_) => ErrorCode::UnknownProcess,
            Error::ProcessClosed { .. } => ErrorCode::ProcessClosed,
            Error::InvalidProcess(_) => ErrorCode::InvalidProcess,
            Error::Duplicate { .. } => ErrorCode::Duplicate,
            Error::StorageFull { .. } => ErrorCode::StorageFull,
            Error::UnknownCapture(_) => ErrorCode::UnknownCapture,
            Error::CaptureGone { .. } => ErrorCode::CaptureGone,
            Error::KeyUnavailable(_) => ErrorCode::KeyUnavailable,
            Error::WrongDevice => ErrorCode::WrongDevice,
            Error::Integrity { .. } => ErrorCode::Integrity,
            Error::CiphertextVersion(_) => ErrorCode::CiphertextVersion,
            Error::NoStore(_) => ErrorCode::NoStore,
            Error::StoreExists(_) => ErrorCode::StoreExists,
            Error::StoreBusy => ErrorCode::StoreBusy,
            Error::CorruptStore { .. } => ErrorCode::CorruptStore,
            Error::StoreVersion { .. } => ErrorCode::StoreVersion,
            Error::KeyringInsideStore => ErrorCode::KeyringInsideStore,
            Error::Decode(_) => ErrorCode::Decode,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            Error::NotRegistered => ErrorCode::NotRegistered,
            Error::NotActivated => ErrorCode::NotActivated,
            Error::Activation(_) => ErrorCode::Activation,
            Error::Transient(_) => ErrorCode::Transient,
            Error::Rejected { .. } => ErrorCode::Rejected,
            Error::BadReceipt => ErrorCode::BadReceipt,
            // No codes of their own (the bindings' tables stay as they are): a bad key file is
            // invalid input, a store provisioned with another root cannot be used with this one.
            Error::BadKey(_) => ErrorCode::Invalid,
            Error::ProvisioningMismatch => ErrorCode::KeyUnavailable,
            Error::Sqlite(_) => ErrorCode::Sqlite,
            Error::Io(_) => ErrorCode::Io,
            Error::Crypto(_) => ErrorCode::Crypto,
            Error::Internal(_) => ErrorCode::Internal,
            Error::EngineClosed => ErrorCode::EngineClosed,
            Error::SyncRunning => ErrorCode::SyncRunning,
        }
    }

    /// What the caller should do next.
    pub fn class(&self) -> ErrorClass {
        use ErrorCode as C;
        match self.code() {
            C::Invalid
            | C::ModelNotAccepted
            | C::CredentialExpired
            | C::OutOfScope
            | C::UnknownProcess
            | C::ProcessClosed
            | C::InvalidProcess
            | C::UnknownCapture
            | C::CaptureGone
            | C::NoStore
            | C::StoreExists
            | C::KeyringInsideStore
            | C::NotRegistered
            | C::NotActivated
            | C::Activation
            | C::EngineClosed => ErrorClass::InvalidInput,
            C::Duplicate => ErrorClass::Duplicate,
            C::StorageFull => ErrorClass::StorageFull,
            C::KeyUnavailable | C::WrongDevice => ErrorClass::KeyUnavailable,
            C::Integrity | C::CiphertextVersion | C::BadReceipt => ErrorClass::Integrity,
            C::StoreBusy | C::Transient | C::SyncRunning => ErrorClass::Transient,
            C::CorruptStore | C::StoreVersion => ErrorClass::StoreUnusable,
            C::Decode | C::TooLarge | C::Rejected => ErrorClass::Rejected,
            C::Sqlite | C::Io | C::Crypto | C::Internal => ErrorClass::Internal,
        }
    }

    pub(crate) fn invalid(field: Field, problem: &'static str) -> Self {
        Error::Invalid { field, problem }
    }

    pub(crate) fn integrity(what: impl Into<String>) -> Self {
        Error::Integrity { what: what.into() }
    }
}
