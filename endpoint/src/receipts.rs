//! Signing receipts (protocol v1.1): the receipt covers the device, the collector, the capture
//! time and the sealed key's digest as well as the part hashes, and travels with the INE root's
//! certificate of the key that signed it, so it verifies on its own after any rotation.

use apoyo_sync::crypto;
use apoyo_sync::protocol::{
    self, CommitRequest, Reason, Receipt, ReceiptPart, ReceiptResult, SignedReceipt,
};
use apoyo_sync::{CaptureId, PartKind};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::Inner;

/// What a receipt says, besides the commit's own fields.
pub(crate) struct Outcome<'a> {
    pub device_id: &'a str,
    pub result: ReceiptResult,
    pub first_capture_id: Option<CaptureId>,
    /// The verified part hashes, in kind order.
    pub parts: Vec<(PartKind, [u8; 32])>,
    pub now: OffsetDateTime,
}

/// The encoded `SignedReceipt`, signed by the newest receipt key valid now. Without one (every
/// certificate expired: rotate) the answer is `503 unavailable`, never an unverifiable receipt.
pub(crate) fn sign(inner: &Inner, req: &CommitRequest, o: Outcome<'_>) -> Result<Vec<u8>, ApiError> {
    let key = inner.cfg.keys.signing_key(o.now).ok_or_else(|| {
        tracing::error!("no receipt key is valid now: rotate the endpoint's keys");
        ApiError::new(Reason::Unavailable, "no receipt key is valid now").retry_after(3600)
    })?;
    let mut parts = o.parts;
    parts.sort_by_key(|(k, _)| *k);
    let receipt = Receipt {
        v: protocol::VERSION,
        capture_id: req.capture_id,
        process_id: req.process_id.clone(),
        device_id: o.device_id.to_string(),
        result: o.result,
        first_capture_id: o.first_capture_id,
        parts: parts
            .into_iter()
            .map(|(kind, sha256)| ReceiptPart { kind, sha256 })
            .collect(),
        counted_at: o.now,
        endpoint_key_id: key.info.key_id.clone(),
        collector: req.collector.clone(),
        captured_at: req.captured_at,
        sealed_key_sha256: crypto::sha256(&req.sealed_key),
    };
    let receipt = protocol::encode(&receipt)?;
    let signature = key
        .signer
        .sign(&protocol::receipt_signing_input(&receipt))
        .to_vec();
    Ok(protocol::encode(&SignedReceipt {
        receipt,
        signature,
        key_cert: Some(key.cert.clone()),
    })?)
}
