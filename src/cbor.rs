//! CBOR encoding and bounded decoding (the only way bytes from disk or the wire become types).
//!
//! Decoding checks the input length against a documented maximum *before* parsing and uses
//! ciborium's recursion limit, so a short hostile input cannot make us allocate or recurse
//! without bound.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::limits::MAX_CBOR_DEPTH;

/// Encodes a value as CBOR.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)
        .map_err(|e| Error::Internal(format!("CBOR encode: {e}")))?;
    Ok(out)
}

/// Decodes `bytes` as a `T`, refusing inputs over `limit` bytes or nested deeper than
/// [`MAX_CBOR_DEPTH`]. `what` names the message in the error.
pub fn from_slice<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T> {
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            what,
            len: bytes.len() as u64,
            limit: limit as u64,
        });
    }
    ciborium::de::from_reader_with_recursion_limit(bytes, MAX_CBOR_DEPTH)
        .map_err(|e| Error::Decode(format!("{what}: {}", describe(&e))))
}

// ciborium's messages can quote input; keep only the kind of failure and its offset.
fn describe(e: &ciborium::de::Error<std::io::Error>) -> String {
    match e {
        ciborium::de::Error::Io(_) => "truncated input".into(),
        ciborium::de::Error::Syntax(off) => format!("syntax error at byte {off}"),
        ciborium::de::Error::Semantic(off, msg) => match off {
            Some(o) => format!("unexpected content at byte {o}: {}", redact(msg)),
            None => format!("unexpected content: {}", redact(msg)),
        },
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".into(),
    }
}

// Serde messages may include a value ("invalid value: string \"...\"", "unknown field `...`",
// "character 'x'"), and a value may itself contain quote marks (escaped or not), so nothing
// after the first quote mark can be trusted to be the message's own text: keep what comes
// before it.
fn redact(msg: &str) -> String {
    match msg.find(['"', '`', '\'']) {
        Some(i) => format!("{}\"…\"", &msg[..i]),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversized_before_parsing() {
        let big = vec![0u8; 100];
        let r: Result<u8> = from_slice(&big, 10, "thing");
        assert!(matches!(
            r,
            Err(Error::TooLarge {
                len: 100,
                limit: 10,
                ..
            })
        ));
    }

    #[test]
    fn refuses_deep_nesting() {
        // 1000 nested one-element arrays.
        let mut v = vec![0x81u8; 1000];
        v.push(0x00);
        let r: Result<ciborium::Value> = from_slice(&v, 10_000, "thing");
        assert!(matches!(r, Err(Error::Decode(_))), "{r:?}");
    }

    #[test]
    fn huge_declared_length_does_not_allocate() {
        // A byte string claiming 2^63 bytes, with 3 bytes present.
        let v = [
            0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
        ];
        let r: Result<serde_bytes_like::Bytes> = from_slice(&v, 1000, "thing");
        assert!(r.is_err());
    }

    mod serde_bytes_like {
        #[derive(Debug, serde::Deserialize)]
        #[serde(transparent)]
        pub struct Bytes(#[allow(dead_code)] pub Vec<u8>);
    }

    #[test]
    fn redacts_quoted_values() {
        assert_eq!(
            redact("invalid value: string \"ABCD\", expected x"),
            "invalid value: string \"…\""
        );
        // A value holding quote marks of its own leaks nothing either.
        for msg in [
            "invalid value: string \"AB\\\"CD\\\"EF\", expected x",
            "unknown field `AB`CD`EF`, expected one of `a`",
            "invalid value: string \"AB`CD`EF\", expected x",
            "invalid type: character 'Z', expected x",
        ] {
            let out = redact(msg);
            for secret in ["AB", "CD", "EF", "Z'"] {
                assert!(!out.contains(secret), "{msg} -> {out}");
            }
        }
    }
}
