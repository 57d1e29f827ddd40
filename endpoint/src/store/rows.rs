//! The rows the storage seam reads and writes as a whole.

/// One upload's row.
#[derive(Debug, Clone)]
pub(crate) struct UploadRow {
    pub device_id: String,
    pub capture_id: String,
    pub kind: String,
    pub length: i64,
    pub offset: i64,
    pub expires_at: i64,
    /// The serialized running SHA-256 of the first `offset` bytes (ADR 0021): `None` at offset
    /// 0, once complete, or when not kept (a row from before schema 0006).
    pub digest_state: Option<Vec<u8>>,
    /// SHA-256 of the whole upload, stored by the PATCH that completed it; `None` until then,
    /// or when the running digest was not kept (the commit then hashes the bytes).
    pub sha256: Option<[u8; 32]>,
}

/// A new upload.
pub(crate) struct NewUpload<'a> {
    pub id: &'a str,
    pub device_id: &'a str,
    pub capture_id: &'a str,
    pub kind: &'a str,
    pub length: i64,
    pub now: i64,
    pub expires_at: i64,
}

/// A registration ("Registro ciudadano") and its device.
pub(crate) struct NewRegistration<'a> {
    pub registration_id: &'a str,
    pub device_public: &'a [u8],
    pub device_id: &'a str,
    pub provider: &'a str,
    pub front_sealed_key: &'a [u8],
    pub front: &'a [u8],
    pub now: i64,
}

/// The recorded answer to a commit: its content digest, status and exact body.
pub(crate) struct StoredAnswer {
    pub digest: Vec<u8>,
    pub status: i64,
    pub body: Vec<u8>,
}

/// A decided support with its parts `(kind, length, sha256, consumed upload id)`.
pub(crate) struct SupportRow<'a> {
    pub device_id: &'a str,
    pub capture_id: &'a str,
    pub process_id: &'a str,
    pub result: &'a str,
    pub reason: Option<&'a str>,
    pub first_capture_id: Option<String>,
    pub dup_key: Option<&'a [u8]>,
    pub collector_kind: &'a str,
    pub collector_id: &'a str,
    pub captured_time: String,
    pub counted_time: String,
    pub digest: &'a [u8],
    pub status: i64,
    pub body: &'a [u8],
    pub blob_dir: &'a str,
    pub signed_commit: &'a [u8],
    pub device_signature: &'a [u8],
    pub sent_time: String,
    pub skew_seconds: Option<i64>,
    pub parts: Vec<(&'static str, i64, &'a [u8], &'a str)>,
}
