//! Target 1: every CBOR message of protocol v1, decoded as the endpoint decodes requests and as
//! the client decodes answers (same function, same documented limit).
//!
//! Invariants, for arbitrary bytes: an input over its limit is refused as `TooLarge` before
//! parsing; a refusal never quotes the input; whatever decodes re-encodes, the re-encoding
//! decodes to the same value, and encoding that gives the same bytes (decode → encode → decode
//! agree). For structured messages built by the fuzzer: encode → decode is the identity.
#![no_main]

use apoyo_fuzz::check;
use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::{
    self as protocol, ActivateRequest, ActivateResponse, CommitPart, CommitRequest, ErrorBody,
    ProcessList, Reason, Receipt, ReceiptPart, ReceiptResult, RegisterRequest, RegisterResponse,
    SignedCommit, SignedReceipt, limits,
    trust::{KeyCert, KeyPurpose, SignedKeyCert},
};
use apoyo_sync::{CaptureId, Collector, Error, PartKind};
use arbitrary::{Result as AResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};
use time::OffsetDateTime;

/// A refusal must not carry input text: every quoted stretch is the redaction mark.
fn check_redacted(e: &Error) {
    let text = e.to_string();
    for (i, seg) in text.split('"').enumerate() {
        check!(i % 2 == 0 || seg == "…", "an error quotes input: {text:?}");
    }
}

/// decode → encode → decode → encode; `same` compares the two decoded values when they have no
/// floats (NaN is not equal to itself; the bytes still must agree).
fn roundtrip<T, F>(bytes: &[u8], limit: usize, what: &'static str, same: F)
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
    F: Fn(&T, &T) -> bool,
{
    let first = protocol::decode::<T>(bytes, limit, what);
    if bytes.len() > limit {
        check!(
            matches!(first, Err(Error::TooLarge { .. })),
            "{what}: {} bytes over the {limit} limit not refused as too large",
            bytes.len()
        );
        return;
    }
    let v1 = match first {
        Ok(v) => v,
        Err(e) => {
            check!(
                matches!(e, Error::Decode(_)),
                "{what}: refused with {e:?}, not a decode error"
            );
            check_redacted(&e);
            return;
        }
    };
    let e1 =
        protocol::encode(&v1).unwrap_or_else(|e| panic!("{what} decoded but does not encode: {e}"));
    let v2: T = protocol::decode(&e1, e1.len().max(limit), what)
        .unwrap_or_else(|e| panic!("{what}: its own encoding does not decode: {e}"));
    check!(
        same(&v1, &v2),
        "{what}: decode→encode→decode changed it: {v1:?} vs {v2:?}"
    );
    let e2 = protocol::encode(&v2).expect("re-encode");
    check!(e1 == e2, "{what}: encodings differ after a round trip");
}

fn eq<T: PartialEq>(a: &T, b: &T) -> bool {
    a == b
}

fn decode_raw(sel: u8, bytes: &[u8]) {
    use limits::*;
    match sel % 14 {
        // Endpoint side: requests.
        0 => roundtrip::<RegisterRequest, _>(bytes, MAX_REGISTER_BYTES, "registration", eq),
        1 => roundtrip::<ActivateRequest, _>(bytes, MAX_ACTIVATE_BYTES, "activation", eq),
        2 => roundtrip::<CommitRequest, _>(bytes, MAX_COMMIT_BYTES, "commit", eq),
        3 => {
            // The manifest the endpoint decrypts (and the store recovers from a part file).
            if let Ok(m) = Manifest::from_cbor(bytes) {
                let e1 = m.to_cbor().expect("manifest re-encodes");
                let m2 = Manifest::from_cbor(&e1).expect("its encoding decodes");
                check!(
                    m2.to_cbor().expect("encode") == e1,
                    "manifest encodings differ"
                );
            }
            roundtrip::<Manifest, _>(
                bytes,
                apoyo_sync::wire::limits::MAX_MANIFEST_BYTES,
                "manifest",
                |_, _| true,
            )
        }
        // Client side: answers.
        4 => roundtrip::<RegisterResponse, _>(bytes, MAX_RESPONSE_BYTES, "registration answer", eq),
        5 => roundtrip::<ActivateResponse, _>(bytes, MAX_CATALOG_BYTES, "activation answer", eq),
        6 => roundtrip::<ProcessList, _>(bytes, MAX_CATALOG_BYTES, "process catalog", eq),
        7 => roundtrip::<SignedReceipt, _>(bytes, MAX_RESPONSE_BYTES, "receipt", eq),
        8 => roundtrip::<Receipt, _>(bytes, MAX_RESPONSE_BYTES, "receipt", eq),
        9 => roundtrip::<ErrorBody, _>(bytes, MAX_RESPONSE_BYTES, "error body", eq),
        // v1.1 (after the value, so the v1 seeds keep their selectors).
        11 => roundtrip::<SignedCommit, _>(bytes, MAX_COMMIT_BYTES, "signed commit", eq),
        12 => roundtrip::<KeyCert, _>(bytes, MAX_RESPONSE_BYTES, "key certificate", eq),
        13 => roundtrip::<SignedKeyCert, _>(bytes, MAX_RESPONSE_BYTES, "key certificate", eq),
        // Not a protocol message: the generic CBOR value, for coverage of the decoder itself
        // (bounded, no panic, redacted refusals). ciborium's `Value` is not canonical across
        // tags (a bignum tag decodes to an integer), so no round trip is claimed for it; the
        // protocol never decodes one.
        _ => {
            if let Err(e) = protocol::decode::<ciborium::Value>(bytes, MAX_RESPONSE_BYTES, "value")
            {
                check!(
                    bytes.len() <= MAX_RESPONSE_BYTES || matches!(e, Error::TooLarge { .. }),
                    "value over the limit"
                );
                check_redacted(&e);
            }
        }
    }
}

// ---- structured messages ----------------------------------------------------------------

fn capture_id(u: &mut Unstructured) -> AResult<CaptureId> {
    Ok(CaptureId(uuid_from(u.arbitrary::<[u8; 16]>()?)))
}

fn uuid_from(b: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(b)
}

fn time(u: &mut Unstructured) -> AResult<OffsetDateTime> {
    // RFC 3339 holds years 0000-9999.
    let secs = u.int_in_range(-62_167_219_200i64..=253_402_300_799)?;
    let nanos = u.int_in_range(0u32..=999_999_999)?;
    Ok(OffsetDateTime::from_unix_timestamp(secs)
        .expect("in range")
        .replace_nanosecond(nanos)
        .expect("nanos"))
}

fn kind(u: &mut Unstructured) -> AResult<PartKind> {
    Ok(*u.choose(&PartKind::ALL)?)
}

fn receipt(u: &mut Unstructured) -> AResult<Receipt> {
    let n = u.int_in_range(0..=6)?;
    Ok(Receipt {
        v: u.arbitrary()?,
        capture_id: capture_id(u)?,
        process_id: u.arbitrary()?,
        device_id: u.arbitrary()?,
        result: if u.arbitrary()? {
            ReceiptResult::Counted
        } else {
            ReceiptResult::Duplicate
        },
        first_capture_id: if u.arbitrary()? {
            Some(capture_id(u)?)
        } else {
            None
        },
        parts: (0..n)
            .map(|_| {
                Ok(ReceiptPart {
                    kind: kind(u)?,
                    sha256: u.arbitrary()?,
                })
            })
            .collect::<AResult<_>>()?,
        counted_at: time(u)?,
        endpoint_key_id: u.arbitrary()?,
        collector: collector(u)?,
        captured_at: time(u)?,
        sealed_key_sha256: u.arbitrary()?,
    })
}

fn collector(u: &mut Unstructured) -> AResult<Collector> {
    Ok(if u.arbitrary()? {
        Collector::MiApoyo(u.arbitrary()?)
    } else {
        Collector::Auxiliar(u.arbitrary()?)
    })
}

fn key_cert(u: &mut Unstructured) -> AResult<KeyCert> {
    Ok(KeyCert {
        v: u.arbitrary()?,
        purpose: *u.choose(&[KeyPurpose::Receipt, KeyPurpose::Seal])?,
        key: u.arbitrary()?,
        key_id: u.arbitrary()?,
        not_before: time(u)?,
        not_after: time(u)?,
    })
}

fn commit(u: &mut Unstructured) -> AResult<CommitRequest> {
    let n = u.int_in_range(0..=6)?;
    Ok(CommitRequest {
        v: u.arbitrary()?,
        capture_id: capture_id(u)?,
        process_id: u.arbitrary()?,
        captured_at: time(u)?,
        collector: collector(u)?,
        sealed_key: u.arbitrary()?,
        sent_at: time(u)?,
        seal_key_id: u.arbitrary()?,
        parts: (0..n)
            .map(|_| {
                Ok(CommitPart {
                    kind: kind(u)?,
                    upload: u.arbitrary()?,
                    sha256: u.arbitrary()?,
                    length: u.arbitrary()?,
                })
            })
            .collect::<AResult<_>>()?,
    })
}

/// encode → decode is the identity (and stays within the documented limit when it did).
fn identity<T>(v: &T, limit: usize, what: &'static str)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = protocol::encode(v).unwrap_or_else(|e| panic!("{what} does not encode: {e}"));
    let back: T = protocol::decode(&bytes, bytes.len().max(limit), what)
        .unwrap_or_else(|e| panic!("{what}: encoding does not decode: {e}"));
    check!(
        &back == v,
        "{what}: encode→decode changed it: {v:?} vs {back:?}"
    );
}

fn structured(u: &mut Unstructured) -> AResult<()> {
    match u.int_in_range(0..=6)? {
        0 => identity(&receipt(u)?, limits::MAX_RESPONSE_BYTES, "receipt"),
        1 => identity(&commit(u)?, limits::MAX_COMMIT_BYTES, "commit"),
        2 => identity(
            &SignedReceipt {
                receipt: u.arbitrary()?,
                signature: u.arbitrary()?,
                key_cert: if u.arbitrary()? {
                    Some(SignedKeyCert {
                        cert: u.arbitrary()?,
                        signature: u.arbitrary()?,
                    })
                } else {
                    None
                },
            },
            limits::MAX_RESPONSE_BYTES,
            "signed receipt",
        ),
        3 => identity(
            &ErrorBody {
                v: u.arbitrary()?,
                reason: *u.choose(&Reason::ALL)?,
                detail: u.arbitrary()?,
            },
            limits::MAX_RESPONSE_BYTES,
            "error body",
        ),
        4 => identity(&key_cert(u)?, limits::MAX_RESPONSE_BYTES, "key certificate"),
        5 => identity(
            &SignedCommit {
                v: u.arbitrary()?,
                commit: u.arbitrary()?,
                device_signature: u.arbitrary()?,
            },
            limits::MAX_COMMIT_BYTES,
            "signed commit",
        ),
        _ => identity(
            &ActivateRequest {
                v: u.arbitrary()?,
                device_public: u.arbitrary()?,
                code: u.arbitrary()?,
                nonce: u.arbitrary()?,
                proof: u.arbitrary()?,
                signing_public: u.arbitrary()?,
                auxiliar_id: u.arbitrary()?,
            },
            limits::MAX_ACTIVATE_BYTES,
            "activation",
        ),
    }
    Ok(())
}

// The first byte picks the message (selectors 0-13, as `decode_raw` numbers them; the seed
// corpus is `[selector] ++ message`), or, from 0xf0 on, a structured message built from the
// rest.
fuzz_target!(|data: &[u8]| {
    static SEEDS: std::sync::Once = std::sync::Once::new();
    SEEDS.call_once(|| {
        if let Some(dir) = std::env::var_os("APOYO_FUZZ_SEEDS") {
            apoyo_fuzz::seeds::write(std::path::Path::new(&dir));
        }
    });
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel < 0xf0 {
        decode_raw(sel, rest);
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});
