//! Step 8 of deciding a commit: the answer. A counted support gets 201 and a duplicate 200,
//! each with a receipt signed by the newest receipt key valid now and carrying that key's
//! certificate from the INE root (v1.1), so it verifies on its own after any rotation; a
//! rejection gets its error. The receipt covers the device, the collector, the capture time
//! and the sealed key's digest as well as the part hashes (in kind order).

use apoyo_sync::wire::crypto;
use apoyo_sync::wire::{
    self as protocol, Reason, Receipt, ReceiptPart, ReceiptResult, SignedReceipt,
};

use super::{Answer, Decided, Decision};
use crate::error::ApiError;
use crate::state::Inner;

/// The exact answer to a decided commit (also what a replay of it gets).
pub(super) fn answer(inner: &Inner, d: &Decided<'_>) -> Result<Answer, ApiError> {
    Ok(match d.decision {
        Decision::Counted { .. } => Answer {
            status: 201,
            body: signed_receipt(inner, d, ReceiptResult::Counted, None)?,
        },
        Decision::Duplicate { shown, .. } => Answer {
            status: 200,
            body: signed_receipt(inner, d, ReceiptResult::Duplicate, *shown)?,
        },
        Decision::Rejected(e) => Answer {
            status: e.status.as_u16(),
            body: e.body(),
        },
    })
}

/// Without a receipt key valid now (every certificate expired: rotate) the answer is
/// `503 unavailable`, never a receipt devices would refuse.
fn signed_receipt(
    inner: &Inner,
    d: &Decided<'_>,
    result: ReceiptResult,
    first_capture_id: Option<apoyo_sync::CaptureId>,
) -> Result<Vec<u8>, ApiError> {
    let key = inner.cfg.keys.signing_key(d.now).ok_or_else(|| {
        tracing::error!("no receipt key is valid now: rotate the endpoint's keys");
        ApiError::new(Reason::Unavailable, "no receipt key is valid now").retry_after(3600)
    })?;
    let mut parts: Vec<ReceiptPart> = d
        .held
        .iter()
        .map(|h| ReceiptPart {
            kind: h.kind,
            sha256: h.sha256,
        })
        .collect();
    parts.sort_by_key(|p| p.kind);
    let receipt = Receipt {
        v: protocol::VERSION,
        capture_id: d.req.capture_id,
        process_id: d.req.process_id.clone(),
        device_id: d.device.id.clone(),
        result,
        first_capture_id,
        parts,
        counted_at: d.now,
        endpoint_key_id: key.info.key_id.clone(),
        collector: d.req.collector.clone(),
        captured_at: d.req.captured_at,
        sealed_key_sha256: crypto::sha256(&d.req.sealed_key),
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
