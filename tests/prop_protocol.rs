//! Property tests (proptest) of the protocol's round trips and of opening sealed material: the
//! fast, always-run versions of the `protocol_decode` and `open_sealed` fuzz targets (see
//! docs/fuzzing.md). They run in `cargo test`; `PROPTEST_CASES` raises the case count.

use apoyo_sync::testkit::crypto::{self, PartOpener, PartSealer, SecretKey, wrap};
use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::limits::CHUNK_SIZE;
use apoyo_sync::wire::{
    self as protocol, ActivateRequest, CommitPart, CommitRequest, ErrorBody, ProcessList, Reason,
    Receipt, ReceiptPart, ReceiptResult, RegisterRequest, SignedCommit, SignedReceipt, limits,
    trust::{KeyPurpose, SignedKeyCert, key_cert},
};
use apoyo_sync::{CaptureId, Collector, Error, PartKind};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

fn capture_id() -> impl Strategy<Value = CaptureId> {
    any::<[u8; 16]>().prop_map(|b| CaptureId(uuid::Uuid::from_bytes(b)))
}

fn when() -> impl Strategy<Value = OffsetDateTime> {
    // RFC 3339 holds years 0000-9999.
    (-62_167_219_200i64..=253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| {
        OffsetDateTime::from_unix_timestamp(s)
            .expect("in range")
            .replace_nanosecond(n)
            .expect("nanos")
    })
}

fn kind() -> impl Strategy<Value = PartKind> {
    prop::sample::select(PartKind::ALL.to_vec())
}

fn receipt() -> impl Strategy<Value = Receipt> {
    (
        any::<u8>(),
        capture_id(),
        ".{0,40}",
        "[0-9a-f]{0,40}",
        any::<bool>(),
        prop::option::of(capture_id()),
        prop::collection::vec((kind(), any::<[u8; 32]>()), 0..6),
        when(),
        ".{0,20}",
        (collector(), when(), any::<[u8; 32]>()),
    )
        .prop_map(
            |(v, id, p, d, dup, first, parts, at, k, (c, cap, sk))| Receipt {
                v,
                capture_id: id,
                process_id: p,
                device_id: d,
                result: if dup {
                    ReceiptResult::Duplicate
                } else {
                    ReceiptResult::Counted
                },
                first_capture_id: first,
                parts: parts
                    .into_iter()
                    .map(|(kind, sha256)| ReceiptPart { kind, sha256 })
                    .collect(),
                counted_at: at,
                endpoint_key_id: k,
                collector: c,
                captured_at: cap,
                sealed_key_sha256: sk,
            },
        )
}

fn collector() -> impl Strategy<Value = Collector> {
    (any::<bool>(), ".{0,30}").prop_map(|(aux, id)| {
        if aux {
            Collector::Auxiliar(id)
        } else {
            Collector::MiApoyo(id)
        }
    })
}

fn commit() -> impl Strategy<Value = CommitRequest> {
    (
        any::<u8>(),
        capture_id(),
        ".{0,40}",
        when(),
        collector(),
        prop::collection::vec(any::<u8>(), 0..100),
        prop::collection::vec((kind(), ".{0,40}", any::<[u8; 32]>(), any::<u64>()), 0..6),
        (when(), ".{0,20}"),
    )
        .prop_map(
            |(v, id, p, at, collector, key, parts, (sent, sk))| CommitRequest {
                v,
                capture_id: id,
                process_id: p,
                captured_at: at,
                collector,
                sent_at: sent,
                seal_key_id: sk,
                sealed_key: key,
                parts: parts
                    .into_iter()
                    .map(|(kind, upload, sha256, length)| CommitPart {
                        kind,
                        upload,
                        sha256,
                        length,
                    })
                    .collect(),
            },
        )
}

fn identity<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    v: &T,
    what: &'static str,
) {
    let bytes = protocol::encode(v).expect("encodes");
    let back: T = protocol::decode(&bytes, bytes.len(), what).expect("its encoding decodes");
    assert_eq!(&back, v, "{what}: encode→decode is not the identity");
}

/// decode → encode → decode agree, for whatever decodes; refusals never quote the input.
fn agree<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) {
    match protocol::decode::<T>(bytes, limit, what) {
        Ok(v1) => {
            let e1 = protocol::encode(&v1).expect("re-encodes");
            let v2: T = protocol::decode(&e1, e1.len().max(limit), what).expect("decodes");
            assert_eq!(v1, v2, "{what}");
            assert_eq!(protocol::encode(&v2).expect("encodes"), e1, "{what}");
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Decode(_) | Error::TooLarge { .. }),
                "{e:?}"
            );
            let text = e.to_string();
            for (i, seg) in text.split('"').enumerate() {
                assert!(i % 2 == 0 || seg == "…", "a refusal quotes input: {text}");
            }
        }
    }
}

/// Mutates a CBOR encoding: flips a byte, truncates, or splices bytes in.
fn mutated(bytes: &[u8], op: u8, at: usize, byte: u8) -> Vec<u8> {
    let mut v = bytes.to_vec();
    let at = at % (v.len() + 1);
    match op % 3 {
        0 if !v.is_empty() => {
            let i = at.min(v.len() - 1);
            v[i] ^= byte | 1;
        }
        1 => v.truncate(at),
        _ => v.insert(at, byte),
    }
    v
}

proptest! {
    #[test]
    fn receipts_round_trip(
        r in receipt(), seal in any::<bool>(), key in any::<[u8; 32]>(), nb in when(), na in when(),
        certified in any::<bool>(),
    ) {
        identity(&r, "receipt");
        let purpose = if seal { KeyPurpose::Seal } else { KeyPurpose::Receipt };
        let cert = key_cert(purpose, key, nb, na);
        identity(&cert, "key certificate");
        let key_cert = certified.then(|| SignedKeyCert {
            cert: protocol::encode(&cert).expect("encode"),
            signature: vec![9; 64],
        });
        let signed = SignedReceipt { receipt: protocol::encode(&r).expect("encode"), signature: vec![7; 64], key_cert };
        identity(&signed, "signed receipt");
    }

    #[test]
    fn commits_round_trip(c in commit()) {
        identity(&c, "commit");
        let signed = SignedCommit { v: 1, commit: protocol::encode(&c).expect("encode"), device_signature: vec![5; 64] };
        identity(&signed, "signed commit");
    }

    #[test]
    fn small_messages_round_trip(
        reason in prop::sample::select(Reason::ALL.to_vec()),
        detail in ".{0,60}",
        code in ".{0,20}",
        key in any::<[u8; 32]>(),
        nonce in prop::collection::vec(any::<u8>(), 0..32),
        signing in prop::option::of(any::<[u8; 32]>()),
        aux in prop::option::of("[A-Z0-9-]{3,32}"),
    ) {
        identity(&ErrorBody { v: 1, reason, detail }, "error body");
        identity(
            &ActivateRequest { v: 1, device_public: key, code, nonce, proof: key, signing_public: signing, auxiliar_id: aux },
            "activation",
        );
    }

    /// Mutated encodings of real messages: whatever still decodes agrees with itself.
    #[test]
    fn mutated_messages_decode_consistently(
        r in receipt(), c in commit(), op in any::<u8>(), at in any::<usize>(), byte in any::<u8>()
    ) {
        let rb = mutated(&protocol::encode(&r).expect("encode"), op, at, byte);
        agree::<Receipt>(&rb, limits::MAX_RESPONSE_BYTES, "receipt");
        agree::<SignedReceipt>(&rb, limits::MAX_RESPONSE_BYTES, "signed receipt");
        agree::<ErrorBody>(&rb, limits::MAX_RESPONSE_BYTES, "error body");
        let cb = mutated(&protocol::encode(&c).expect("encode"), op, at, byte);
        agree::<CommitRequest>(&cb, limits::MAX_COMMIT_BYTES, "commit");
        agree::<SignedCommit>(&cb, limits::MAX_COMMIT_BYTES, "signed commit");
        agree::<SignedKeyCert>(&rb, limits::MAX_RESPONSE_BYTES, "key certificate");
        agree::<RegisterRequest>(&cb, limits::MAX_REGISTER_BYTES, "registration");
        agree::<ProcessList>(&cb, limits::MAX_CATALOG_BYTES, "process catalog");
    }

    #[test]
    fn arbitrary_bytes_decode_consistently(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        agree::<CommitRequest>(&bytes, limits::MAX_COMMIT_BYTES, "commit");
        agree::<Receipt>(&bytes, limits::MAX_RESPONSE_BYTES, "receipt");
        agree::<ActivateRequest>(&bytes, limits::MAX_ACTIVATE_BYTES, "activation");
        let _ = Manifest::from_cbor(&bytes);
    }

    /// An input over its limit is refused before parsing.
    #[test]
    fn oversized_inputs_are_refused_as_too_large(extra in 1usize..64) {
        let bytes = vec![0u8; limits::MAX_COMMIT_BYTES + extra];
        let r = protocol::decode::<CommitRequest>(&bytes, limits::MAX_COMMIT_BYTES, "commit");
        prop_assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
    }
}

const FULL: usize = CHUNK_SIZE + 16;

fn seal(key: &SecretKey, id: &[u8; 16], kind: PartKind, pt: &[u8]) -> Vec<u8> {
    let mut ct = Vec::new();
    PartSealer::new(key, id, kind)
        .and_then(|mut s| s.seal_to(pt, &mut ct))
        .expect("seal");
    ct
}

fn open(key: &SecretKey, id: &[u8; 16], kind: PartKind, ct: &[u8]) -> apoyo_sync::Result<Vec<u8>> {
    let mut out = Vec::new();
    PartOpener::new(key, id, kind)?.open_to(ct.len() as u64, ct, &mut out)?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A part opens to its plaintext; truncated, extended, flipped, chunk-swapped, chunk-dropped
    /// or taken from another capture, it is refused as an integrity failure.
    #[test]
    fn part_streams_refuse_every_change(
        key in any::<[u8; 32]>(), id in any::<[u8; 16]>(), k in kind(),
        len in 0usize..(3 * CHUNK_SIZE + 100), at in any::<usize>(), mask in 1u8..,
        change in 0u8..6,
    ) {
        let key = SecretKey::from_bytes(key);
        let pt: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let ct = seal(&key, &id, k, &pt);
        prop_assert_eq!(open(&key, &id, k, &ct).expect("opens"), pt.clone());
        let chunks = (ct.len() - 1).div_ceil(FULL);
        let bad = match change {
            0 => { let mut v = ct.clone(); v[at % ct.len()] ^= mask; v }
            1 => ct[..at % ct.len()].to_vec(),
            2 => { let mut v = ct.clone(); v.push(mask); v }
            3 if chunks >= 2 => {
                let (a, b) = (1..1 + FULL, 1 + FULL..(1 + 2 * FULL).min(ct.len()));
                if b.len() != FULL { return Ok(()); }
                let mut v = ct.clone();
                v[a.clone()].copy_from_slice(&ct[b.clone()]);
                v[b].copy_from_slice(&ct[a]);
                v
            }
            4 if chunks >= 2 => { let mut v = ct.clone(); v.drain(1..1 + FULL); v }
            _ => {
                let mut other = id;
                other[at % 16] ^= mask;
                seal(&key, &other, k, &pt)
            }
        };
        let r = open(&key, &id, k, &bad);
        prop_assert!(matches!(r, Err(Error::Integrity { .. }) | Err(Error::CiphertextVersion(_))), "{:?}", r.map(|v| v.len()));
    }

    /// A wrapped key opens only with its key, domain and label, unmodified; the HPKE envelope
    /// only for its device, capture and endpoint.
    #[test]
    fn key_wraps_and_envelopes_are_bound(
        kek in any::<[u8; 32]>(), secret in any::<[u8; 32]>(), at in 0usize..81, mask in 1u8..,
        dev in any::<[u8; 32]>(), ep in any::<[u8; 32]>(), id in any::<[u8; 16]>(),
    ) {
        let kek = SecretKey::from_bytes(kek);
        let secret = SecretKey::from_bytes(secret);
        let w = wrap::wrap(&kek, "data-key", &id, &secret).expect("wrap");
        prop_assert!(wrap::unwrap(&kek, "data-key", &id, &w, "k").expect("unwraps") == secret);
        let mut bad = w.clone();
        let i = at % bad.len();
        bad[i] ^= mask;
        prop_assert!(wrap::unwrap(&kek, "data-key", &id, &bad, "k").is_err());
        prop_assert!(wrap::unwrap(&kek, "identity", &id, &w, "k").is_err());

        let ep = apoyo_sync::wire::crypto::EndpointSecretKey::from_bytes(ep);
        let dev = crypto::DeviceIdentity::from_secret(SecretKey::from_bytes(dev));
        let Ok(sealed) = wrap::seal_to_endpoint(&ep.public(), &dev, &id, &secret) else { return Ok(()) };
        prop_assert!(wrap::open_from_device(&ep, &dev.public(), &id, &sealed).expect("opens") == secret);
        let mut bad = sealed.clone();
        let i = at % bad.len();
        bad[i] ^= mask;
        prop_assert!(wrap::open_from_device(&ep, &dev.public(), &id, &bad).is_err());
        let mut other = id;
        other[at % 16] ^= mask;
        prop_assert!(wrap::open_from_device(&ep, &dev.public(), &other, &sealed).is_err());
    }
}
