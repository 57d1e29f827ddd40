//! The canonical digest of a commit's content, for idempotency: the same capture committed
//! again with the same content (even through re-created uploads) gets the first answer; the
//! same id with anything else different is a conflict.

use apoyo_sync::Collector;
use apoyo_sync::wire::CommitRequest;
use sha2::{Digest, Sha256};

const CONTEXT: &[u8] = b"apoyo-endpoint/v1/commit-digest\0";

/// SHA-256 over the committing device, the capture id, process, capture time, collector,
/// sealed key and its seal key id, and each part's kind, SHA-256 and length (in kind order).
/// The upload URLs are left out (a device that uploads a part again gets a new URL for the
/// same bytes), and so is `sent_at` (every attempt is sent at another time).
pub(crate) fn commit_digest(req: &CommitRequest, device_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CONTEXT);
    field(&mut h, device_id.as_bytes());
    h.update(req.capture_id.as_bytes());
    field(&mut h, req.process_id.as_bytes());
    h.update(req.captured_at.unix_timestamp_nanos().to_be_bytes());
    let (kind, id) = match &req.collector {
        Collector::MiApoyo(id) => (1u8, id),
        Collector::Auxiliar(id) => (2u8, id),
    };
    h.update([kind]);
    field(&mut h, id.as_bytes());
    field(&mut h, &req.sealed_key);
    field(&mut h, req.seal_key_id.as_bytes());
    let mut parts: Vec<_> = req.parts.iter().collect();
    parts.sort_by_key(|p| p.kind);
    h.update((parts.len() as u64).to_be_bytes());
    for p in parts {
        h.update([p.kind.code()]);
        h.update(p.sha256);
        h.update(p.length.to_be_bytes());
    }
    h.finalize().into()
}

/// A length-prefixed field, so that no two different contents hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apoyo_sync::wire::CommitPart;
    use apoyo_sync::{CaptureId, PartKind};

    fn req() -> CommitRequest {
        CommitRequest {
            v: 1,
            capture_id: CaptureId::new_v7(time::OffsetDateTime::UNIX_EPOCH),
            process_id: "p".into(),
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            collector: Collector::MiApoyo("d".into()),
            sealed_key: vec![1; 81],
            parts: PartKind::ALL
                .iter()
                .map(|&kind| CommitPart {
                    kind,
                    upload: format!("/v1/uploads/{}", kind.name()),
                    sha256: [kind.code(); 32],
                    length: 100,
                })
                .collect(),
            sent_at: time::OffsetDateTime::UNIX_EPOCH,
            seal_key_id: "0011223344556677".into(),
        }
    }

    #[test]
    fn urls_and_order_do_not_matter_content_does() {
        let a = req();
        let mut b = a.clone();
        b.parts.reverse();
        for p in &mut b.parts {
            p.upload = "/v1/uploads/elsewhere".into();
        }
        assert_eq!(commit_digest(&a, "dev"), commit_digest(&b, "dev"));
        assert_ne!(commit_digest(&a, "dev"), commit_digest(&a, "other"));
        let mut c = a.clone();
        c.parts[2].length += 1;
        assert_ne!(commit_digest(&a, "dev"), commit_digest(&c, "dev"));
        let mut d = a.clone();
        d.collector = Collector::Auxiliar("d".into());
        assert_ne!(commit_digest(&a, "dev"), commit_digest(&d, "dev"));
        let mut e = a.clone();
        e.captured_at += time::Duration::nanoseconds(1);
        assert_ne!(commit_digest(&a, "dev"), commit_digest(&e, "dev"));
        // v1.1: the send time differs on every attempt; the seal key is content.
        let mut f = a.clone();
        f.sent_at += time::Duration::hours(1);
        assert_eq!(commit_digest(&a, "dev"), commit_digest(&f, "dev"));
        let mut g = a.clone();
        g.seal_key_id = "8899aabbccddeeff".into();
        assert_ne!(commit_digest(&a, "dev"), commit_digest(&g, "dev"));
    }
}
