//! Keeps the wire-contract documents in step with the code.
//!
//! `docs/protocol.md` is what another team builds an endpoint (or a device) from, so what it
//! says must be what the code does. These tests read it and check:
//! - every ```` ```cbor-hex NAME ```` example decodes as the Rust type NAME and re-encodes to the
//!   identical bytes, every message type has an example, and the ```` ```cbor-diag NAME ````
//!   block just before it is that same value in diagnostic notation;
//! - the reason-code table lists every [`Reason`] with its HTTP status and device action;
//! - every route and every size limit of the code is in the document, limits with their values;
//! - the cryptographic test vectors (```` ```hex NAME ```` blocks) hold, recomputed from the
//!   primitives exactly as the document describes them (HKDF, HMAC, ChaCha20-Poly1305 with the
//!   documented nonce and associated data, HPKE, Ed25519), and the engine's own functions agree;
//! - the HTTP examples (token, tus headers, checksum, lengths) match the vectors and messages;
//! - `schema/protocol.cddl` names every message rule, reason code and part kind.
//!
//! When a message changes, regenerate the examples with
//! `cargo test -p apoyo-sync --test protocol_docs -- --ignored --nocapture` and paste them.

use std::collections::{BTreeMap, BTreeSet};

use apoyo_sync::testkit::crypto::keys::device_id_of;
use apoyo_sync::testkit::crypto::receipt::ReceiptSigner;
use apoyo_sync::testkit::crypto::{
    self, DeviceIdentity, Ed25519Secret, EndpointSecretKey, PartOpener, PartSealer, SecretKey,
};
use apoyo_sync::testkit::model::{
    CaptureId, CardFields, Collector, CredentialModel, ImageFormat, ImageFormats, Location,
    Manifest, PartKind,
};
use apoyo_sync::wire::{
    self as protocol, Action, ActivateRequest, ActivateResponse, CommitPart, CommitRequest,
    ErrorBody, ProcessList, Provider, Reason, Receipt, ReceiptPart, ReceiptResult, RegisterRequest,
    RegisterResponse, SignedReceipt, limits, routes, tus,
};
use apoyo_sync::wire::{KeyCert, KeyPurpose, SignedCommit, SignedKeyCert};
use apoyo_sync::{Process, Scope, SeccionRef};
use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

const DOC: &str = include_str!("../docs/protocol.md");
const CDDL: &str = include_str!("../schema/protocol.cddl");
const PROTOCOL_SRC: &str = include_str!("../src/protocol/mod.rs");
const LIMITS_SRC: &str = include_str!("../src/limits.rs");

/// The message types that must each have at least one example.
const MESSAGES: [&str; 13] = [
    "RegisterRequest",
    "RegisterResponse",
    "ActivateRequest",
    "ActivateResponse",
    "ProcessList",
    "CommitRequest",
    "SignedCommit",
    "Receipt",
    "SignedReceipt",
    "KeyCert",
    "SignedKeyCert",
    "ErrorBody",
    "Manifest",
];

// ------------------------------------------------------------------------------------------
// Reading the document

/// A fenced code block: its info string, its text and the line it starts on (1-based).
struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in DOC.lines().enumerate() {
        let t = line.trim();
        match &mut open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    open = Some(Block {
                        info: info.trim().to_string(),
                        body: String::new(),
                        line: i + 1,
                    });
                }
            }
            Some(b) => {
                if t == "```" {
                    out.extend(open.take());
                } else {
                    b.body.push_str(line);
                    b.body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "docs/protocol.md ends inside a code block");
    out
}

fn hex_of(b: &Block) -> Vec<u8> {
    let digits: String = b.body.split_whitespace().collect();
    hex::decode(&digits).unwrap_or_else(|e| panic!("block at line {} is not hex: {e}", b.line))
}

/// Every `cbor-hex NAME` example of a message type, in document order.
fn examples(name: &str) -> Vec<Vec<u8>> {
    let info = format!("cbor-hex {name}");
    blocks()
        .iter()
        .filter(|b| b.info == info)
        .map(hex_of)
        .collect()
}

/// The first example of a message type, decoded.
fn example<T: DeserializeOwned>(name: &str) -> (T, Vec<u8>) {
    let bytes = examples(name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no example of {name}"));
    let v =
        protocol::decode(&bytes, usize::MAX, "example").unwrap_or_else(|e| panic!("{name}: {e}"));
    (v, bytes)
}

/// A `hex NAME` test vector (exactly one per name).
fn vector(name: &str) -> Vec<u8> {
    let info = format!("hex {name}");
    let found: Vec<Vec<u8>> = blocks()
        .iter()
        .filter(|b| b.info == info)
        .map(hex_of)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one ```{info}``` block in docs/protocol.md"
    );
    found.into_iter().next().unwrap_or_default()
}

fn vector32(name: &str) -> [u8; 32] {
    vector(name)
        .try_into()
        .unwrap_or_else(|_| panic!("test vector {name} must be 32 bytes"))
}

/// The text of the level-2 section titled `title` (`## 7. Reason codes` has the title
/// `Reason codes`), up to the next level-2 heading.
fn section(title: &str) -> &'static str {
    let is_heading = |line: &str| line.starts_with("## ");
    let titled = |line: &str| {
        let text = line.trim_start_matches('#').trim();
        let text = text
            .split_once(". ")
            .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
            .map_or(text, |(_, t)| t);
        text == title
    };
    let mut start = None;
    let mut offset = 0;
    for line in DOC.split_inclusive('\n') {
        match start {
            None if is_heading(line) && titled(line) => start = Some(offset + line.len()),
            Some(s) if is_heading(line) => return &DOC[s..offset],
            _ => {}
        }
        offset += line.len();
    }
    let s = start.unwrap_or_else(|| panic!("docs/protocol.md has no section titled {title:?}"));
    &DOC[s..]
}

/// Rows of the Markdown tables in `text` whose first cell is a `code` span: code → other cells.
fn table_rows(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let Some(inner) = line.trim().strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<String> = inner
            .trim_end_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let key = cells[0].trim_end_matches('`').to_string();
        rows.insert(key, cells[1..].to_vec());
    }
    rows
}

/// `pub const NAME` items of a source text (of one `pub mod NAME {` block, if given).
fn const_names(src: &str, module: Option<&str>) -> BTreeSet<String> {
    let body = match module {
        None => src,
        Some(m) => {
            let start = src
                .find(&format!("pub mod {m} {{"))
                .unwrap_or_else(|| panic!("no module {m}"));
            let end = src[start..].find("\n}").map_or(src.len(), |e| start + e);
            &src[start..end]
        }
    };
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

// ------------------------------------------------------------------------------------------
// CBOR diagnostic notation (RFC 8949 section 8; `<<…>>` for embedded CBOR, RFC 8610 app. G.3)

fn diag(v: &Value, key: Option<&Value>, indent: usize, out: &mut String) {
    let compact = diag_compact(v, key);
    let small_map = !matches!(v, Value::Map(m) if m.len() > 2);
    let embedded = matches!(key, Some(Value::Text(k)) if k == "receipt");
    if compact.len() + 2 * indent <= 90 && small_map && !embedded {
        out.push_str(&compact);
        return;
    }
    let pad = "  ".repeat(indent + 1);
    let close = "  ".repeat(indent);
    match v {
        Value::Bytes(b) if embedded => {
            let inner: Value = ciborium::from_reader(&b[..]).unwrap_or(Value::Null);
            out.push_str("<<");
            diag(&inner, None, indent, out);
            out.push_str(">>");
        }
        Value::Map(m) => {
            out.push_str("{\n");
            for (i, (k, val)) in m.iter().enumerate() {
                out.push_str(&pad);
                out.push_str(&diag_compact(k, None));
                out.push_str(": ");
                diag(val, Some(k), indent + 1, out);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push_str(&close);
            out.push('}');
        }
        Value::Array(a) => {
            out.push_str("[\n");
            for (i, val) in a.iter().enumerate() {
                out.push_str(&pad);
                diag(val, None, indent + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&close);
            out.push(']');
        }
        _ => out.push_str(&compact),
    }
}

fn diag_compact(v: &Value, key: Option<&Value>) -> String {
    match v {
        Value::Bytes(b) if matches!(key, Some(Value::Text(k)) if k == "receipt") => {
            let inner: Value = ciborium::from_reader(&b[..]).unwrap_or(Value::Null);
            format!("<<{}>>", diag_compact(&inner, None))
        }
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Bytes(b) => format!("h'{}'", hex::encode(b)),
        Value::Float(f) => format!("{f:?}"),
        Value::Text(t) => serde_json::to_string(t).unwrap_or_default(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Tag(t, v) => format!("{t}({})", diag_compact(v, None)),
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|x| diag_compact(x, None))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Map(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{}: {}", diag_compact(k, None), diag_compact(x, Some(k))))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => "undefined".into(),
    }
}

fn diag_of(bytes: &[u8]) -> String {
    let v: Value = ciborium::from_reader(bytes).unwrap_or(Value::Null);
    let mut s = String::new();
    diag(&v, None, 0, &mut s);
    s
}

fn without_whitespace(s: &str) -> String {
    s.split_whitespace().collect()
}

// ------------------------------------------------------------------------------------------
// Examples

/// Decodes `bytes` as a `T` within `limit` and checks it re-encodes to the same bytes.
fn roundtrip<T: Serialize + DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<(), String> {
    let value: T = protocol::decode(bytes, limit, "example").map_err(|e| e.to_string())?;
    let again = protocol::encode(&value).map_err(|e| e.to_string())?;
    if again == bytes {
        Ok(())
    } else {
        Err(format!(
            "re-encodes differently:\n  doc:  {}\n  code: {}",
            hex::encode(bytes),
            hex::encode(&again)
        ))
    }
}

fn check_example(name: &str, bytes: &[u8]) -> Result<(), String> {
    let value: Value = ciborium::from_reader(bytes).map_err(|e| e.to_string())?;
    let version = value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("v")));
    if let Some((_, v)) = version
        && v.as_integer() != Some(protocol::VERSION.into())
    {
        return Err(format!("`v` is {v:?}, not {}", protocol::VERSION));
    }
    match name {
        "RegisterRequest" => roundtrip::<RegisterRequest>(bytes, limits::MAX_REGISTER_BYTES),
        "RegisterResponse" => roundtrip::<RegisterResponse>(bytes, limits::MAX_RESPONSE_BYTES),
        "ActivateRequest" => roundtrip::<ActivateRequest>(bytes, limits::MAX_ACTIVATE_BYTES),
        "ActivateResponse" => roundtrip::<ActivateResponse>(bytes, limits::MAX_CATALOG_BYTES),
        "ProcessList" => roundtrip::<ProcessList>(bytes, limits::MAX_CATALOG_BYTES),
        "CommitRequest" => roundtrip::<CommitRequest>(bytes, limits::MAX_COMMIT_BYTES),
        "SignedCommit" => roundtrip::<SignedCommit>(bytes, limits::MAX_SIGNED_COMMIT_BYTES),
        "KeyCert" => roundtrip::<KeyCert>(bytes, protocol::trust::MAX_KEY_CERT_BYTES),
        "SignedKeyCert" => roundtrip::<SignedKeyCert>(bytes, limits::MAX_RESPONSE_BYTES),
        "Receipt" => roundtrip::<Receipt>(bytes, limits::MAX_RESPONSE_BYTES),
        "SignedReceipt" => roundtrip::<SignedReceipt>(bytes, limits::MAX_RESPONSE_BYTES),
        "ErrorBody" => roundtrip::<ErrorBody>(bytes, limits::MAX_RESPONSE_BYTES),
        "Manifest" => {
            Manifest::from_cbor(bytes).map_err(|e| e.to_string())?;
            roundtrip::<Manifest>(bytes, apoyo_sync::wire::limits::MAX_MANIFEST_BYTES)
        }
        other => Err(format!(
            "unknown message type {other:?} (add it to check_example)"
        )),
    }
}

#[test]
fn every_cbor_example_decodes_and_reencodes_identically() {
    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for b in blocks() {
        let Some(name) = b.info.strip_prefix("cbor-hex ") else {
            continue;
        };
        if let Err(e) = check_example(name, &hex_of(&b)) {
            failures.push(format!("line {} ({name}): {e}", b.line));
        }
        seen.insert(name.to_string());
    }
    assert!(
        failures.is_empty(),
        "examples that do not match the code:\n{}",
        failures.join("\n")
    );
    for m in MESSAGES {
        assert!(
            seen.contains(m),
            "docs/protocol.md has no ```cbor-hex {m}``` example"
        );
    }
}

#[test]
fn diagnostic_notation_matches_each_hex_example() {
    let all = blocks();
    for (i, b) in all.iter().enumerate() {
        let Some(name) = b.info.strip_prefix("cbor-hex ") else {
            continue;
        };
        let prev = i.checked_sub(1).map(|p| &all[p]);
        let Some(d) = prev.filter(|p| p.info == format!("cbor-diag {name}")) else {
            panic!(
                "the cbor-hex {name} block at line {} is not preceded by a cbor-diag {name} block",
                b.line
            )
        };
        let expected = diag_of(&hex_of(b));
        assert_eq!(
            without_whitespace(&d.body),
            without_whitespace(&expected),
            "cbor-diag {name} at line {} does not match its hex; it should read:\n{expected}",
            d.line
        );
    }
}

// ------------------------------------------------------------------------------------------
// Reason codes, routes, limits, constants

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Retry => "Retry",
        Action::Reupload => "Re-upload",
        Action::Reactivate => "Re-activate",
        Action::Quarantine => "Quarantine",
    }
}

#[test]
fn reason_table_lists_every_reason_with_its_status_and_action() {
    let rows = table_rows(section("Reason codes"));
    for r in Reason::ALL {
        let row = rows
            .get(r.code())
            .unwrap_or_else(|| panic!("reason {} is not in the reason table", r.code()));
        assert_eq!(
            row[0],
            r.http_status().to_string(),
            "HTTP status of {} in the reason table",
            r.code()
        );
        assert!(
            row[2].starts_with(action_word(r.action())),
            "the device action of {} must start with {:?}, found {:?}",
            r.code(),
            action_word(r.action()),
            row[2]
        );
    }
    let known: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    for code in rows.keys() {
        assert!(
            known.contains(code.as_str()),
            "the reason table lists {code}, which the code does not know"
        );
    }
}

#[test]
fn every_route_is_documented() {
    let documented = [
        ("REGISTER", routes::REGISTER),
        ("ACTIVATE", routes::ACTIVATE),
        ("PROCESSES", routes::PROCESSES),
        ("UPLOADS", routes::UPLOADS),
        ("SUPPORTS", routes::SUPPORTS),
        ("DEV_MAILBOX", routes::DEV_MAILBOX),
        ("ADMIN_STATS", routes::ADMIN_STATS),
    ];
    let names: BTreeSet<String> = documented.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        const_names(PROTOCOL_SRC, Some("routes")),
        names,
        "routes changed: update docs/protocol.md and this test"
    );
    let routes_section = section("Routes");
    for (name, path) in documented {
        assert!(
            routes_section.contains(&format!("`{path}")),
            "route {name} ({path}) is not in the Routes section"
        );
    }
}

#[test]
fn limits_table_matches_the_code() {
    let values: BTreeMap<&str, u64> = BTreeMap::from([
        ("MAX_REGISTER_BYTES", limits::MAX_REGISTER_BYTES as u64),
        ("MAX_ACTIVATE_BYTES", limits::MAX_ACTIVATE_BYTES as u64),
        ("MAX_RESPONSE_BYTES", limits::MAX_RESPONSE_BYTES as u64),
        ("MAX_CATALOG_BYTES", limits::MAX_CATALOG_BYTES as u64),
        ("MAX_COMMIT_BYTES", limits::MAX_COMMIT_BYTES as u64),
        (
            "MAX_SIGNED_COMMIT_BYTES",
            limits::MAX_SIGNED_COMMIT_BYTES as u64,
        ),
        ("PATCH_BYTES", limits::PATCH_BYTES as u64),
        ("MAX_PART_BYTES", limits::MAX_PART_BYTES),
        ("MAX_MANIFEST_CT_BYTES", limits::MAX_MANIFEST_CT_BYTES),
        ("ACTIVATION_CODE_LEN", limits::ACTIVATION_CODE_LEN as u64),
        ("CHUNK_SIZE", apoyo_sync::wire::limits::CHUNK_SIZE as u64),
        (
            "MAX_CARD_IMAGE_BYTES",
            apoyo_sync::wire::limits::MAX_CARD_IMAGE_BYTES as u64,
        ),
        (
            "MAX_SELFIE_BYTES",
            apoyo_sync::wire::limits::MAX_SELFIE_BYTES as u64,
        ),
        (
            "MAX_SIGNATURE_BYTES",
            apoyo_sync::wire::limits::MAX_SIGNATURE_BYTES as u64,
        ),
        (
            "MAX_MANIFEST_BYTES",
            apoyo_sync::wire::limits::MAX_MANIFEST_BYTES as u64,
        ),
        (
            "MAX_PROCESS_JSON_BYTES",
            apoyo_sync::wire::limits::MAX_PROCESS_JSON_BYTES as u64,
        ),
        (
            "DEFAULT_DISK_RESERVE_BYTES",
            apoyo_sync::wire::limits::DEFAULT_DISK_RESERVE_BYTES,
        ),
        (
            "MAX_CBOR_DEPTH",
            apoyo_sync::wire::limits::MAX_CBOR_DEPTH as u64,
        ),
        ("SEALED_KEY_LEN", crypto::wrap::SEALED_KEY_LEN as u64),
        ("WRAP_LEN", crypto::wrap::WRAP_LEN as u64),
    ]);
    let in_code: BTreeSet<String> = const_names(PROTOCOL_SRC, Some("limits"))
        .into_iter()
        .chain(const_names(LIMITS_SRC, None))
        .collect();
    for name in &in_code {
        assert!(
            values.contains_key(name.as_str()),
            "new limit {name}: document it in docs/protocol.md and list it here"
        );
    }
    let rows = table_rows(section("Size limits"));
    for (name, value) in values {
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("limit {name} is not in the size limits tables"));
        let first = row[0].split_whitespace().next().unwrap_or_default();
        assert_eq!(
            first,
            value.to_string(),
            "value of {name} in docs/protocol.md"
        );
    }
}

#[test]
fn protocol_constants_appear_in_the_document() {
    let texts = [
        tus::RESUMABLE,
        tus::EXTENSIONS,
        tus::CHECKSUM_ALGORITHMS,
        tus::OFFSET_STREAM,
        protocol::CBOR,
        "apoyo-sync/v1/activate",
        "apoyo-sync/v1/part",
        "apoyo-sync/v1/data-key",
    ];
    for t in texts {
        assert!(DOC.contains(t), "docs/protocol.md does not mention {t:?}");
    }
    let context = std::str::from_utf8(protocol::RECEIPT_CONTEXT).unwrap_or_default();
    assert!(
        DOC.contains(context),
        "docs/protocol.md does not give the receipt context {context:?}"
    );
    assert!(
        DOC.contains(&tus::CHECKSUM_MISMATCH.to_string()),
        "the tus checksum status is not documented"
    );
    assert!(
        DOC.contains(&format!("`v` = {}", protocol::VERSION)),
        "the protocol version is not stated as `v` = N"
    );
    assert_eq!(
        crypto::CIPHERTEXT_VERSION,
        1,
        "ciphertext version changed: update the crypto formats section"
    );
}

#[test]
fn cddl_names_every_message_reason_and_enum_value() {
    for rule in [
        "register-request",
        "register-response",
        "activate-request",
        "activate-response",
        "process-list",
        "commit-request",
        "signed-commit",
        "receipt",
        "signed-receipt",
        "key-cert",
        "signed-key-cert",
        "error-body",
        "manifest",
    ] {
        assert!(
            CDDL.contains(&format!("\n{rule} = ")),
            "schema/protocol.cddl has no rule {rule}"
        );
    }
    let quoted = |s: &str| format!("\"{s}\"");
    for r in Reason::ALL {
        assert!(
            CDDL.contains(&quoted(r.code())),
            "schema/protocol.cddl does not list reason {}",
            r.code()
        );
        assert!(
            DOC.contains(&format!("`{}`", r.code())),
            "docs/protocol.md does not name reason {}",
            r.code()
        );
    }
    for k in PartKind::ALL {
        assert!(
            CDDL.contains(&quoted(k.name())),
            "schema/protocol.cddl does not list part kind {}",
            k.name()
        );
    }
    for v in [
        "google",
        "facebook",
        "counted",
        "duplicate",
        "mi_apoyo",
        "auxiliar",
        "national",
        "jpeg",
        "png",
    ] {
        assert!(
            CDDL.contains(&quoted(v)),
            "schema/protocol.cddl does not list {v}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Cryptographic test vectors, recomputed from the primitives as the document describes them

/// `HKDF-SHA-256(salt = "apoyo-sync/v1", ikm, info)`, 32 bytes.
fn hkdf(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"apoyo-sync/v1"), ikm);
    let mut out = [0u8; 32];
    hk.expand(info, &mut out)
        .unwrap_or_else(|_| panic!("HKDF length"));
    out
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| panic!("HMAC key"));
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn x25519_public(secret: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes()
}

/// Opens a single-chunk part ciphertext by hand: version byte, then ChaCha20-Poly1305 with
/// nonce `0^7 || u32be(0) || 0x01` and the 64-byte associated data
/// `"apoyo-sync/v1/part" || 0x01 || capture_id || kind code || u32be(0) || 0x00 × 24`.
/// Also checks that the crate's own opener agrees.
fn open_single_chunk_part(
    part_key: &[u8; 32],
    data_key: &[u8; 32],
    capture_id: &[u8; 16],
    kind: PartKind,
    ct: &[u8],
) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    assert_eq!(ct[0], 0x01, "part ciphertext version");
    assert!(
        ct.len() - 1 <= apoyo_sync::wire::limits::CHUNK_SIZE + 16,
        "test vectors are single-chunk parts"
    );
    let mut nonce = [0u8; 12];
    nonce[11] = 1; // last chunk; counter 0
    let ad: Vec<u8> = [
        &b"apoyo-sync/v1/part"[..],
        &[0x01],
        capture_id,
        &[kind.code()],
        &0u32.to_be_bytes(),
        &[0u8; 24],
    ]
    .concat();
    assert_eq!(ad.len(), 64);
    let aead = chacha20poly1305::ChaCha20Poly1305::new_from_slice(part_key)
        .unwrap_or_else(|_| panic!("key length"));
    let plain = aead
        .decrypt(
            &chacha20poly1305::Nonce::from(nonce),
            Payload {
                msg: &ct[1..],
                aad: &ad,
            },
        )
        .unwrap_or_else(|_| {
            panic!(
                "the {} part vector does not open as section 5.2 describes",
                kind.name()
            )
        });
    let mut by_crate = Vec::new();
    PartOpener::new(&SecretKey::from_bytes(*data_key), capture_id, kind)
        .and_then(|mut o| o.open_to(ct.len() as u64, ct, &mut by_crate))
        .unwrap_or_else(|e| {
            panic!(
                "the engine does not open the {} part vector: {e}",
                kind.name()
            )
        });
    assert_eq!(
        by_crate,
        plain,
        "the engine and section 5.2 disagree on the {} part",
        kind.name()
    );
    plain
}

/// Opens an 81-byte sealed key by hand: HPKE (RFC 9180) mode_auth, DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, ChaCha20-Poly1305, info "apoyo-sync/v1/data-key", aad = the 16 id bytes.
fn open_sealed_key(
    endpoint_secret: &[u8; 32],
    device_public: &[u8; 32],
    id: &[u8; 16],
    sealed: &[u8],
) -> Vec<u8> {
    use hpke::Deserializable;
    type Kem = hpke::kem::X25519HkdfSha256;
    assert_eq!(sealed.len(), 81, "a sealed key is 81 bytes");
    assert_eq!(sealed[0], 0x01, "sealed key version");
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(endpoint_secret)
        .unwrap_or_else(|_| panic!("endpoint key"));
    let pk_s = <Kem as hpke::Kem>::PublicKey::from_bytes(device_public)
        .unwrap_or_else(|_| panic!("device key"));
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed[1..33])
        .unwrap_or_else(|_| panic!("enc"));
    let opened =
        hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
            &hpke::OpModeR::Auth(pk_s),
            &sk,
            &enc,
            b"apoyo-sync/v1/data-key",
            &sealed[33..],
            id,
        )
        .unwrap_or_else(|_| panic!("the sealed key does not open as section 5.3 describes"));
    let by_crate = crypto::wrap::open_from_device(
        &EndpointSecretKey::from_bytes(*endpoint_secret),
        device_public,
        id,
        sealed,
    )
    .unwrap_or_else(|e| panic!("the engine does not open the sealed key: {e}"));
    assert_eq!(
        by_crate.as_bytes()[..],
        opened[..],
        "the engine and section 5.3 disagree"
    );
    opened
}

#[test]
fn key_and_identifier_vectors_hold() {
    let endpoint_public = vector32("endpoint-public-key");
    assert_eq!(
        x25519_public(vector32("endpoint-secret-key")),
        endpoint_public
    );
    let device_public = vector32("device-public-key");
    assert_eq!(x25519_public(vector32("device-secret-key")), device_public);
    let receipt_public = vector32("receipt-public-key");
    assert_eq!(
        ReceiptSigner::from_bytes(&vector32("receipt-seed")).public(),
        receipt_public
    );

    // v1.1: the INE root and the device's commit-signing key.
    assert_eq!(
        Ed25519Secret::from_bytes(&vector32("ine-root-seed")).public(),
        vector32("ine-root-public-key")
    );
    assert_eq!(
        Ed25519Secret::from_bytes(&vector32("device-signing-seed")).public(),
        vector32("device-signing-public-key")
    );
    let root_text = format!(
        "apoyo-ine-root-v1 {}",
        hex::encode(vector32("ine-root-public-key"))
    );
    assert!(
        DOC.contains(&root_text),
        "the provisioned text form of the test INE root is shown"
    );
    assert!(apoyo_sync::IneRoot::from_text(&root_text).is_ok());

    let device_id = hex::encode(&crypto::sha256(&device_public)[..16]);
    assert_eq!(device_id, device_id_of(&device_public));
    let key_id = hex::encode(&crypto::sha256(&receipt_public)[..8]);

    let (register, _) = example::<RegisterRequest>("RegisterRequest");
    assert_eq!(register.device_public, device_public);
    let (activate, _) = example::<ActivateResponse>("ActivateResponse");
    assert_eq!(activate.receipt_key, receipt_public);
    assert_eq!(activate.receipt_key_id, key_id);
    let (receipt, _) = example::<Receipt>("Receipt");
    assert_eq!(receipt.device_id, device_id);
    assert_eq!(receipt.endpoint_key_id, key_id);
    let (commit, _) = example::<CommitRequest>("CommitRequest");
    assert_eq!(commit.collector, Collector::MiApoyo(device_id));
    assert!(
        DOC.contains(&format!("`{key_id}`")),
        "the receipt key id is not stated"
    );
    let endpoint_key_id = hex::encode(&crypto::sha256(&endpoint_public)[..8]);
    assert!(
        DOC.contains(&format!("`{endpoint_key_id}`")),
        "the endpoint key id is not stated"
    );
    let device_id = device_id_of(&device_public);
    assert!(
        DOC.contains(&format!("`{device_id}`")),
        "the device id is not stated"
    );
}

#[test]
fn activation_proof_vector_holds() {
    let (req, _) = example::<ActivateRequest>("ActivateRequest");
    let shared = vector32("activation-shared-secret");
    let device = x25519_dalek::StaticSecret::from(vector32("device-secret-key"));
    let endpoint = x25519_dalek::StaticSecret::from(vector32("endpoint-secret-key"));
    assert_eq!(
        device
            .diffie_hellman(&x25519_dalek::PublicKey::from(vector32(
                "endpoint-public-key"
            )))
            .to_bytes(),
        shared
    );
    assert_eq!(
        endpoint
            .diffie_hellman(&x25519_dalek::PublicKey::from(req.device_public))
            .to_bytes(),
        shared
    );
    let k = hkdf(&shared, b"activation");
    assert_eq!(k, vector32("activation-key"));
    let signing_public = req
        .signing_public
        .expect("a v1.1 request carries signing_public");
    assert_eq!(signing_public, vector32("device-signing-public-key"));
    let aux = req.auxiliar_id.clone().unwrap_or_default();
    let msg: Vec<u8> = [
        &b"apoyo-sync/v1.1/activate"[..],
        req.code.as_bytes(),
        &req.nonce,
        &req.device_public,
        &signing_public,
        &[aux.len() as u8],
        aux.as_bytes(),
    ]
    .concat();
    assert_eq!(
        hmac(&k, &msg),
        req.proof,
        "the ActivateRequest proof is not the documented HMAC"
    );
    assert_eq!(req.nonce.len(), 16);
    let ok = protocol::verify_activation_proof_v11(
        &SecretKey::from_bytes(shared),
        &req,
        &signing_public,
    );
    assert!(
        matches!(ok, Ok(true)),
        "the crate does not accept the documented proof"
    );
}

#[test]
fn registration_vector_holds() {
    let (req, _) = example::<RegisterRequest>("RegisterRequest");
    let id = req.registration_id.as_bytes();
    let dk: [u8; 32] = open_sealed_key(
        &vector32("endpoint-secret-key"),
        &req.device_public,
        id,
        &req.front_sealed_key,
    )
    .try_into()
    .unwrap_or_else(|_| panic!("a data key is 32 bytes"));
    assert_eq!(dk, vector32("registration-data-key"));
    let part_key = hkdf(&dk, &[&b"part"[..], id, &[PartKind::Front.code()]].concat());
    let front = open_single_chunk_part(&part_key, &dk, id, PartKind::Front, &req.front);
    assert_eq!(front, vector("image-jpeg"));
    let (resp, _) = example::<RegisterResponse>("RegisterResponse");
    assert_eq!(resp.registration_id, req.registration_id);
}

#[test]
fn capture_commit_and_receipt_vectors_hold() {
    let (commit, _) = example::<CommitRequest>("CommitRequest");
    let (manifest, manifest_bytes) = example::<Manifest>("Manifest");
    let id = commit.capture_id.as_bytes();
    let device_public = vector32("device-public-key");

    // The sealed key opens to the documented data key.
    let dk: [u8; 32] = open_sealed_key(
        &vector32("endpoint-secret-key"),
        &device_public,
        id,
        &commit.sealed_key,
    )
    .try_into()
    .unwrap_or_else(|_| panic!("a data key is 32 bytes"));
    assert_eq!(dk, vector32("capture-data-key"));

    // Every part: documented key, ciphertext hash and length as committed, plaintext as shown.
    assert_eq!(commit.parts.len(), 5);
    for (part, kind) in commit.parts.iter().zip(PartKind::ALL) {
        assert_eq!(
            part.kind, kind,
            "parts are listed in the order front, back, selfie, signature, manifest"
        );
        let key = hkdf(&dk, &[&b"part"[..], id, &[kind.code()]].concat());
        assert_eq!(key, vector32(&format!("part-key-{}", kind.name())));
        let ct = vector(&format!("part-ciphertext-{}", kind.name()));
        assert_eq!(crypto::sha256(&ct), part.sha256, "{} sha256", kind.name());
        assert_eq!(ct.len() as u64, part.length, "{} length", kind.name());
        assert_eq!(
            crypto::part::plaintext_len(part.length),
            Some(ct.len() as u64 - 17)
        );
        let plain = open_single_chunk_part(&key, &dk, id, kind, &ct);
        let expected = match kind {
            PartKind::Manifest => manifest_bytes.clone(),
            PartKind::Signature => vector("image-png"),
            _ => vector("image-jpeg"),
        };
        assert_eq!(plain, expected, "{} plaintext", kind.name());
        assert!(part.upload.starts_with(&format!("{}/", routes::UPLOADS)));
    }

    // The manifest agrees with the commit.
    assert_eq!(manifest.capture_id, commit.capture_id);
    assert_eq!(manifest.process_id, commit.process_id);
    assert_eq!(manifest.captured_at, commit.captured_at);
    assert_eq!(manifest.collector, commit.collector);

    // The counted receipt lists the committed parts and is what the SignedReceipt carries.
    let (receipt, receipt_bytes) = example::<Receipt>("Receipt");
    assert_eq!(receipt.capture_id, commit.capture_id);
    assert_eq!(receipt.process_id, commit.process_id);
    assert_eq!(receipt.result, ReceiptResult::Counted);
    let committed: Vec<(PartKind, [u8; 32])> =
        commit.parts.iter().map(|p| (p.kind, p.sha256)).collect();
    let receipted: Vec<(PartKind, [u8; 32])> =
        receipt.parts.iter().map(|p| (p.kind, p.sha256)).collect();
    assert_eq!(receipted, committed);
    let (signed, _) = example::<SignedReceipt>("SignedReceipt");
    assert_eq!(
        signed.receipt, receipt_bytes,
        "the SignedReceipt example carries the first Receipt example"
    );

    // The signature: Ed25519 (strict) over "apoyo-sync/v1/receipt" || receipt bytes.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&vector32("receipt-public-key"))
        .unwrap_or_else(|_| panic!("key"));
    let sig: [u8; 64] = signed
        .signature
        .clone()
        .try_into()
        .unwrap_or_else(|_| panic!("a signature is 64 bytes"));
    let msg = [&b"apoyo-sync/v1/receipt"[..], &signed.receipt].concat();
    assert!(
        vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok(),
        "the receipt signature"
    );
    assert_eq!(msg, protocol::receipt_signing_input(&signed.receipt));
    let by_crate =
        crypto::receipt::verify(&vector32("receipt-public-key"), &msg, &signed.signature);
    assert!(
        by_crate.is_ok(),
        "the engine does not accept the example receipt signature"
    );

    // v1.1: the commit travels signed by the device (5.8), over its exact bytes.
    let (signed_commit, _) = example::<SignedCommit>("SignedCommit");
    let (_, commit_bytes) = example::<CommitRequest>("CommitRequest");
    assert_eq!(
        signed_commit.commit, commit_bytes,
        "the SignedCommit example carries the CommitRequest example"
    );
    let commit_msg = [&b"apoyo-sync/v1.1/commit"[..], &signed_commit.commit].concat();
    let device_vk = ed25519_dalek::VerifyingKey::from_bytes(&vector32("device-signing-public-key"))
        .unwrap_or_else(|_| panic!("key"));
    let device_sig: [u8; 64] = signed_commit
        .device_signature
        .clone()
        .try_into()
        .unwrap_or_else(|_| panic!("64 bytes"));
    assert!(
        device_vk
            .verify_strict(
                &commit_msg,
                &ed25519_dalek::Signature::from_bytes(&device_sig)
            )
            .is_ok(),
        "the commit signature"
    );
    assert_eq!(
        protocol::trust::open_signed_commit(&vector32("device-signing-public-key"), &signed_commit)
            .unwrap_or_else(|e| panic!("{e}")),
        commit
    );
    assert_eq!(
        commit.seal_key_id,
        hex::encode(&crypto::sha256(&vector32("endpoint-public-key"))[..8])
    );

    // v1.1: the key certificate chains to the INE root (5.7), and the receipt passes the whole
    // device check (6.5) against the commit it answers.
    let root = apoyo_sync::IneRoot::from_bytes(&vector32("ine-root-public-key"))
        .unwrap_or_else(|e| panic!("{e}"));
    let cert = signed
        .key_cert
        .clone()
        .unwrap_or_else(|| panic!("a key_cert"));
    let root_vk = ed25519_dalek::VerifyingKey::from_bytes(&vector32("ine-root-public-key"))
        .unwrap_or_else(|_| panic!("key"));
    let cert_sig: [u8; 64] = cert
        .signature
        .clone()
        .try_into()
        .unwrap_or_else(|_| panic!("64 bytes"));
    assert!(
        root_vk
            .verify_strict(
                &[&b"apoyo-sync/v1.1/key-cert"[..], &cert.cert].concat(),
                &ed25519_dalek::Signature::from_bytes(&cert_sig)
            )
            .is_ok(),
        "the key certificate signature"
    );
    let info = cert
        .verify(&root, KeyPurpose::Receipt)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(info.key, vector32("receipt-public-key"));
    assert_eq!(info.key_id, receipt.endpoint_key_id);
    let checked =
        protocol::trust::verify_receipt(&root, &signed, &commit, &device_id_of(&device_public))
            .unwrap_or_else(|e| panic!("the example receipt fails the device check: {e:?}"));
    assert_eq!(checked, receipt);
    assert_eq!(
        receipt.sealed_key_sha256,
        crypto::sha256(&commit.sealed_key)
    );
    let (key_cert, key_cert_bytes) = example::<KeyCert>("KeyCert");
    let (signed_cert, _) = example::<SignedKeyCert>("SignedKeyCert");
    assert_eq!(signed_cert.cert, key_cert_bytes);
    assert_eq!(
        signed_cert.verify(&root, KeyPurpose::Seal),
        Ok(key_cert.clone())
    );
    assert_eq!(key_cert.key, vector32("endpoint-public-key"));
    let (activation, _) = example::<ActivateResponse>("ActivateResponse");
    assert!(activation.key_certs.contains(&signed_cert));
    assert!(activation.key_certs.contains(&cert));

    // The duplicate receipt names the counted capture.
    let receipts: Vec<Receipt> = examples("Receipt")
        .iter()
        .map(|b| {
            protocol::decode(b, limits::MAX_RESPONSE_BYTES, "receipt")
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let dup = receipts
        .iter()
        .find(|r| r.result == ReceiptResult::Duplicate)
        .unwrap_or_else(|| panic!("no duplicate receipt"));
    // v1.1: the duplicate came from another device and collector (an auxiliar), so it is not
    // told which capture counted (6.5 step 12).
    assert_ne!(dup.device_id, device_id_of(&device_public));
    assert_eq!(dup.first_capture_id, None);
    assert!(
        receipts
            .iter()
            .all(|r| r.first_capture_id.is_none() || r.result == ReceiptResult::Duplicate)
    );
}

/// The value of the first `Name: value` header line in the document's HTTP examples.
fn header(name: &str) -> &'static str {
    let prefix = format!("{name}: ");
    DOC.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} header in the HTTP examples"))
        .trim()
}

#[test]
fn http_examples_match_the_vectors() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let (commit, commit_bytes) = example::<CommitRequest>("CommitRequest");
    let (activation, _) = example::<ActivateResponse>("ActivateResponse");
    let front = &commit.parts[0];
    let ct = vector("part-ciphertext-front");
    let id = commit.capture_id.to_string();

    assert_eq!(
        header("Authorization"),
        format!("Bearer {}", activation.token)
    );
    assert_eq!(header("Upload-Length"), front.length.to_string());
    let b64_text =
        |v: &str| String::from_utf8(B64.decode(v).unwrap_or_default()).unwrap_or_default();
    let metadata: BTreeMap<&str, String> = header("Upload-Metadata")
        .split(',')
        .filter_map(|pair| pair.trim().split_once(' '))
        .map(|(k, v)| (k, b64_text(v)))
        .collect();
    assert_eq!(metadata.get("capture_id"), Some(&id));
    assert_eq!(metadata.get("kind").map(String::as_str), Some("front"));
    assert_eq!(header("Location"), front.upload);
    assert_eq!(
        header("Upload-Checksum"),
        format!("sha256 {}", B64.encode(crypto::sha256(&ct)))
    );
    assert!(DOC.contains(&format!("PATCH {} HTTP/1.1", front.upload)));
    assert!(DOC.contains(&format!("PUT {}/{id} HTTP/1.1", routes::SUPPORTS)));
    assert_eq!(header("Idempotency-Key"), id);
    let lengths: Vec<&str> = DOC
        .lines()
        .filter_map(|l| l.strip_prefix("Content-Length: "))
        .collect();
    // v1.1: the body is the SignedCommit carrying the CommitRequest.
    let (signed_commit, signed_commit_bytes) = example::<SignedCommit>("SignedCommit");
    assert_eq!(signed_commit.commit, commit_bytes);
    assert!(
        lengths.contains(&signed_commit_bytes.len().to_string().as_str()),
        "the commit's Content-Length"
    );
    assert!(
        lengths.contains(&ct.len().to_string().as_str()),
        "the PATCH's Content-Length"
    );
    assert_eq!(header("Tus-Max-Size"), limits::MAX_PART_BYTES.to_string());
    assert_eq!(header("Tus-Extension"), tus::EXTENSIONS);
    assert_eq!(header("Tus-Checksum-Algorithm"), tus::CHECKSUM_ALGORITHMS);
    assert_eq!(header("Content-Type"), tus::OFFSET_STREAM);
}

/// Section 11.10: a `captured_at` with nine fractional digits survives decoding and
/// re-encoding inside a commit, to the nanosecond; truncated to microseconds it is another
/// instant, so another content digest.
#[test]
fn nanosecond_captured_at_vector_holds() {
    let vector = vector("captured-at-nanos");
    let text: Value = ciborium::from_reader(&vector[..]).expect("the vector is CBOR");
    let (_, commit_bytes) = example::<CommitRequest>("CommitRequest");
    let mut commit: Value = ciborium::from_reader(&commit_bytes[..]).expect("example");
    let Value::Map(fields) = &mut commit else {
        panic!("a commit is a map")
    };
    for (k, v) in fields.iter_mut() {
        if k.as_text() == Some("captured_at") {
            *v = text.clone();
        }
    }
    let mut bytes = Vec::new();
    ciborium::into_writer(&commit, &mut bytes).expect("encode");
    let decoded: CommitRequest =
        protocol::decode(&bytes, limits::MAX_COMMIT_BYTES, "commit").expect("decodes");
    let at = decoded.captured_at;
    assert_eq!(at.unix_timestamp(), 1_637_426_525);
    assert_eq!(at.nanosecond(), 123_456_789);
    assert!(DOC.contains("1637426525 s + 123456789 ns"));
    assert_eq!(
        protocol::encode(&decoded).expect("encode"),
        bytes,
        "the commit re-encodes its captured_at to the same 9 digits"
    );
    let micros = at.replace_nanosecond(123_456_000).expect("valid");
    assert_ne!(micros, at);
    let truncated = time::format_description::well_known::Rfc3339;
    assert_eq!(
        micros.format(&truncated).expect("format"),
        "2021-11-20T16:42:05.123456Z"
    );
    assert!(DOC.contains("`2021-11-20T16:42:05.123456Z`"));
}

/// Section 6.5 step 8 writes the clave pattern with ASCII digit classes, as the CDDL and the
/// engine do: `\d` would take Unicode digits in many regex engines.
#[test]
fn the_clave_pattern_uses_ascii_digits_only() {
    let pattern = "^[A-Z]{6}[0-9]{6}[0-9]{2}[HMX][0-9]{3}$";
    assert!(section("Routes").contains(&format!("`{pattern}`")));
    assert!(
        !DOC.contains("\\d{") && !DOC.contains("\\d$") && !CDDL.contains("\\d"),
        "a pattern in the document or the CDDL uses \\d"
    );
    let cddl = &pattern[1..pattern.len() - 1].replace("[0-9]{6}[0-9]{2}", "[0-9]{8}");
    assert!(
        CDDL.contains(cddl.as_str()),
        "the CDDL's clave pattern differs"
    );
    apoyo_sync::wire::validate::validate_clave("MUESTR90010109H001").expect("the example clave");
    // Arabic-Indic digits where the birth date goes.
    let arabic = "MUESTR\u{0669}\u{0660}010109H001";
    assert!(apoyo_sync::wire::validate::validate_clave(arabic).is_err());
}

// ------------------------------------------------------------------------------------------
// The generator of the examples and vectors above (run by hand; see the module comment)

fn label_key(label: &str) -> [u8; 32] {
    crypto::sha256(format!("apoyo-sync protocol.md example: {label}").as_bytes())
}

fn uuid7(t: time::OffsetDateTime, label: &str) -> CaptureId {
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as u64;
    let mut r = [0u8; 10];
    r.copy_from_slice(&label_key(label)[..10]);
    CaptureId(uuid::Builder::from_unix_timestamp_millis(ms, &r).into_uuid())
}

fn hex_lines(b: &[u8]) -> String {
    let h = hex::encode(b);
    h.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_message<T: Serialize>(name: &str, msg: &T) -> Vec<u8> {
    let bytes = protocol::encode(msg).unwrap_or_default();
    println!(
        "```cbor-diag {name}\n{}\n```\n\n```cbor-hex {name}\n{}\n```\n",
        diag_of(&bytes),
        hex_lines(&bytes)
    );
    bytes
}

fn print_vector(name: &str, b: &[u8]) {
    println!("```hex {name}\n{}\n```\n", hex_lines(b));
}

fn models(list: &[&str]) -> Vec<CredentialModel> {
    list.iter()
        .filter_map(|m| CredentialModel::parse(m).ok())
        .collect()
}

/// A 22-byte JPEG (SOI, an empty JFIF APP0, EOI): enough for the magic-number check.
const JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xd9,
];
/// A 20-byte PNG (the signature and an IEND chunk).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82,
];

#[test]
#[ignore = "prints the examples of docs/protocol.md; run by hand with --nocapture"]
fn regenerate_examples() -> apoyo_sync::Result<()> {
    use time::macros::{date, datetime};
    // Keys (published test keys: never use them for anything else).
    let ep = EndpointSecretKey::from_bytes(label_key("endpoint X25519 secret key"));
    let dev =
        DeviceIdentity::from_secret(SecretKey::from_bytes(label_key("device X25519 secret key")));
    let signer = ReceiptSigner::from_bytes(&label_key("receipt Ed25519 seed"));
    let receipt_key_id = hex::encode(&crypto::sha256(&signer.public())[..8]);
    print_vector("endpoint-secret-key", ep.as_bytes());
    print_vector("endpoint-public-key", &ep.public().0);
    print_vector("device-secret-key", dev.secret().as_bytes());
    print_vector("device-public-key", &dev.public());
    println!("device id {}\n", dev.device_id());
    print_vector("receipt-seed", &signer.to_bytes());
    print_vector("receipt-public-key", &signer.public());
    println!("receipt key id {receipt_key_id}\n");
    print_vector("image-jpeg", JPEG);
    print_vector("image-png", PNG);
    // v1.1: the INE root and the device's commit-signing key.
    let root = Ed25519Secret::from_bytes(&label_key("INE root Ed25519 seed"));
    print_vector("ine-root-seed", &*root.to_bytes());
    print_vector("ine-root-public-key", &root.public());
    let device_signer = Ed25519Secret::from_bytes(&label_key("device Ed25519 signing seed"));
    print_vector("device-signing-seed", &*device_signer.to_bytes());
    print_vector("device-signing-public-key", &device_signer.public());

    // Registration and activation.
    let reg_at = datetime!(2021-11-20 15:04:11 UTC);
    let registration_id = uuid7(reg_at, "registration id");
    let reg_dk = SecretKey::from_bytes(label_key("registration data key"));
    print_vector("registration-data-key", reg_dk.as_bytes());
    let mut front = Vec::new();
    PartSealer::new(&reg_dk, registration_id.as_bytes(), PartKind::Front)?
        .seal_to(JPEG, &mut front)?;
    let front_sealed_key =
        crypto::wrap::seal_to_endpoint(&ep.public(), &dev, registration_id.as_bytes(), &reg_dk)?;
    let email = "ciudadana@example.org".to_string();
    let register = RegisterRequest {
        v: 1,
        device_public: dev.public(),
        email,
        provider: Provider::Google,
        registration_id,
        front_sealed_key,
        front,
    };
    print_message("RegisterRequest", &register);
    let code_expires_at = reg_at + time::Duration::hours(24);
    print_message(
        "RegisterResponse",
        &RegisterResponse {
            v: 1,
            registration_id,
            code_expires_at,
        },
    );
    let code = "K7QM4XW9PZ".to_string();
    let nonce = label_key("activation nonce")[..16].to_vec();
    let shared = dev.diffie_hellman(&ep.public().0);
    print_vector("activation-shared-secret", shared.as_bytes());
    print_vector(
        "activation-key",
        crypto::derive_key(shared.as_bytes(), &[b"activation"])?.as_bytes(),
    );
    let proof = protocol::activation_proof_v11(
        &shared,
        &code,
        &nonce,
        &dev.public(),
        &device_signer.public(),
        None,
    )?;
    print_message(
        "ActivateRequest",
        &ActivateRequest {
            v: 1,
            device_public: dev.public(),
            code,
            nonce,
            proof,
            signing_public: Some(device_signer.public()),
            auxiliar_id: None,
        },
    );
    let (valid_from, valid_to) = (
        datetime!(2021-11-01 00:00 UTC),
        datetime!(2023-11-01 00:00 UTC),
    );
    let seal_cert =
        protocol::trust::key_cert(KeyPurpose::Seal, ep.public().0, valid_from, valid_to);
    print_message("KeyCert", &seal_cert);
    let seal_cert = SignedKeyCert::issue(&root, &seal_cert)?;
    print_message("SignedKeyCert", &seal_cert);
    let receipt_cert = SignedKeyCert::issue(
        &root,
        &protocol::trust::key_cert(KeyPurpose::Receipt, signer.public(), valid_from, valid_to),
    )?;
    let revocacion = Process {
        id: "revocacion-2022".into(),
        name: "Revocación de Mandato 2021-2022".into(),
        accepted_models: models(&["E", "F", "G", "H"]),
        vigencia_cutoff: date!(2022 - 01 - 01),
        scope: Scope::national(),
        opens: Some(datetime!(2021-11-01 06:00 UTC)),
        closes: Some(datetime!(2021-12-26 06:00 UTC)),
    };
    let activation = ActivateResponse {
        v: 1,
        token: hex::encode(label_key("bearer token")),
        expires_at: code_expires_at,
        receipt_key: signer.public(),
        receipt_key_id: receipt_key_id.clone(),
        processes: vec![revocacion.clone()],
        key_certs: vec![seal_cert, receipt_cert.clone()],
    };
    print_message("ActivateResponse", &activation);
    let consulta = Process {
        id: "consulta-cdmx-demo".into(),
        name: "Consulta ciudadana de demostración".into(),
        accepted_models: models(&["G", "H"]),
        vigencia_cutoff: date!(2024 - 01 - 01),
        scope: Scope::Entidades {
            entidades: vec![9, 15],
        },
        opens: None,
        closes: None,
    };
    let distrito = Process {
        id: "diputacion-09-05-demo".into(),
        name: "Candidatura independiente, distrito 5 de la Ciudad de México (demostración)".into(),
        accepted_models: models(&["G", "H"]),
        vigencia_cutoff: date!(2024 - 01 - 01),
        scope: Scope::Secciones {
            secciones: vec![
                SeccionRef {
                    entidad: 9,
                    seccion: 1234,
                },
                SeccionRef {
                    entidad: 9,
                    seccion: 1235,
                },
            ],
        },
        opens: None,
        closes: Some(datetime!(2024-02-20 06:00 UTC)),
    };
    print_message(
        "ProcessList",
        &ProcessList {
            v: 1,
            processes: vec![revocacion, consulta, distrito],
        },
    );

    // A capture: manifest, parts, commit, receipts.
    let captured_at = datetime!(2021-11-20 16:42:05.123 UTC);
    let capture_id = uuid7(captured_at, "capture id");
    let collector = Collector::MiApoyo(dev.device_id());
    let manifest = Manifest {
        v: 1,
        capture_id,
        process_id: "revocacion-2022".into(),
        collector: collector.clone(),
        model: CredentialModel::parse("G")?,
        fields: CardFields {
            clave_elector: "MUESTR90010109H001".into(),
            entidad: Some(9),
            seccion: Some(1234),
            curp: Some("MUER900101HDFSTR09".into()),
            ocr: Some("1234000012345".into()),
            cic: Some("000123456".into()),
            numero_emision: Some(2),
            vigencia: Some(2029),
        },
        location: Some(Location {
            lat: 19.4326,
            lon: -99.1332,
            accuracy_m: 8.0,
        }),
        captured_at,
        engine_version: "0.1.0".into(),
        formats: ImageFormats {
            front: ImageFormat::Jpeg,
            back: ImageFormat::Jpeg,
            selfie: ImageFormat::Jpeg,
            signature: ImageFormat::Png,
        },
    };
    let manifest_bytes = print_message("Manifest", &manifest);
    let dk = SecretKey::from_bytes(label_key("capture data key"));
    print_vector("capture-data-key", dk.as_bytes());
    let mut parts = Vec::new();
    for kind in PartKind::ALL {
        let plain: &[u8] = match kind {
            PartKind::Signature => PNG,
            PartKind::Manifest => &manifest_bytes,
            _ => JPEG,
        };
        let key = crypto::derive_key(
            dk.as_bytes(),
            &[b"part", capture_id.as_bytes(), &[kind.code()]],
        )?;
        print_vector(&format!("part-key-{}", kind.name()), key.as_bytes());
        let mut ct = Vec::new();
        PartSealer::new(&dk, capture_id.as_bytes(), kind)?.seal_to(plain, &mut ct)?;
        print_vector(&format!("part-ciphertext-{}", kind.name()), &ct);
        let upload = format!(
            "{}/{}",
            routes::UPLOADS,
            hex::encode(&label_key(&format!("upload {}", kind.name()))[..16])
        );
        parts.push(CommitPart {
            kind,
            upload,
            sha256: crypto::sha256(&ct),
            length: ct.len() as u64,
        });
    }
    let receipt_parts: Vec<ReceiptPart> = parts
        .iter()
        .map(|p| ReceiptPart {
            kind: p.kind,
            sha256: p.sha256,
        })
        .collect();
    let sealed_key =
        crypto::wrap::seal_to_endpoint(&ep.public(), &dev, capture_id.as_bytes(), &dk)?;
    let process_id = "revocacion-2022".to_string();
    let commit = CommitRequest {
        v: 1,
        capture_id,
        process_id: process_id.clone(),
        captured_at,
        collector,
        sealed_key,
        parts,
        sent_at: datetime!(2021-11-20 17:03:26.9 UTC),
        seal_key_id: ep.public().key_id(),
    };
    let commit_bytes = print_message("CommitRequest", &commit);
    let device_signature = device_signer
        .sign(&protocol::trust::commit_signing_input(&commit_bytes))
        .to_vec();
    print_message(
        "SignedCommit",
        &SignedCommit {
            v: 1,
            commit: commit_bytes,
            device_signature,
        },
    );
    let receipt = Receipt {
        v: 1,
        capture_id,
        process_id: process_id.clone(),
        device_id: dev.device_id(),
        result: ReceiptResult::Counted,
        first_capture_id: None,
        parts: receipt_parts,
        counted_at: datetime!(2021-11-20 17:03:27.48 UTC),
        endpoint_key_id: receipt_key_id.clone(),
        collector: commit.collector.clone(),
        captured_at,
        sealed_key_sha256: crypto::sha256(&commit.sealed_key),
    };
    let receipt_bytes = print_message("Receipt", &receipt);
    let signature = signer
        .sign(&protocol::receipt_signing_input(&receipt_bytes))
        .to_vec();
    print_message(
        "SignedReceipt",
        &SignedReceipt {
            receipt: receipt_bytes,
            signature,
            key_cert: Some(receipt_cert),
        },
    );
    let duplicate = Receipt {
        v: 1,
        capture_id: uuid7(
            datetime!(2021-11-22 11:15:40.007 UTC),
            "duplicate capture id",
        ),
        process_id,
        device_id: "5d0c4b6e8f1a2b3c4d5e6f708192a3b4".into(),
        result: ReceiptResult::Duplicate,
        // Another device and collector: not told which capture counted (v1.1).
        first_capture_id: None,
        parts: PartKind::ALL
            .iter()
            .map(|k| ReceiptPart {
                kind: *k,
                sha256: label_key(&format!("duplicate {}", k.name())),
            })
            .collect(),
        counted_at: datetime!(2021-11-22 12:01:09 UTC),
        endpoint_key_id: receipt_key_id,
        collector: Collector::Auxiliar("AUX-0001".into()),
        captured_at: datetime!(2021-11-22 11:15:40.007 UTC),
        sealed_key_sha256: label_key("duplicate sealed key"),
    };
    print_message("Receipt", &duplicate);
    let detail =
        "the card's entidad is outside the scope of process consulta-cdmx-demo".to_string();
    print_message(
        "ErrorBody",
        &ErrorBody {
            v: 1,
            reason: Reason::OutOfScope,
            detail,
        },
    );
    let detail = "too many failed activation attempts for this device key".to_string();
    print_message(
        "ErrorBody",
        &ErrorBody {
            v: 1,
            reason: Reason::RateLimited,
            detail,
        },
    );
    Ok(())
}
