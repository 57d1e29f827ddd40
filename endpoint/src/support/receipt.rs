//! Step 8 of deciding a commit: the answer. A counted support gets 201 and a duplicate 200,
//! each with a receipt signed by the endpoint's receipt key; a rejection gets its error.

use apoyo_sync::protocol::{self, Receipt, ReceiptPart, ReceiptResult, SignedReceipt};

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
        Decision::Duplicate { first, .. } => Answer {
            status: 200,
            body: signed_receipt(inner, d, ReceiptResult::Duplicate, Some(*first))?,
        },
        Decision::Rejected(e) => Answer {
            status: e.status.as_u16(),
            body: e.body(),
        },
    })
}

fn signed_receipt(
    inner: &Inner,
    d: &Decided<'_>,
    result: ReceiptResult,
    first_capture_id: Option<apoyo_sync::CaptureId>,
) -> Result<Vec<u8>, ApiError> {
    let receipt = Receipt {
        v: protocol::VERSION,
        capture_id: d.req.capture_id,
        process_id: d.req.process_id.clone(),
        device_id: d.device.id.clone(),
        result,
        first_capture_id,
        parts: d
            .held
            .iter()
            .map(|h| ReceiptPart {
                kind: h.kind,
                sha256: h.sha256,
            })
            .collect(),
        counted_at: d.now,
        endpoint_key_id: inner.receipt_key_id.clone(),
    };
    let receipt = protocol::encode(&receipt)?;
    let signature = inner
        .cfg
        .signer
        .sign(&protocol::receipt_signing_input(&receipt))
        .to_vec();
    Ok(protocol::encode(&SignedReceipt { receipt, signature })?)
}
