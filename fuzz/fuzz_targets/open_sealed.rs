//! Target 3: opening sealed material with arbitrary bytes and keys.
//!
//! - the HPKE envelope of a data key (`wrap::open_from_device`),
//! - a part's chunked AEAD stream (`PartOpener`): truncation, extension, bit flips, chunks
//!   swapped, dropped, duplicated, or taken from another part or another capture, a wrong
//!   declared length, the wrong kind or capture id,
//! - the symmetric key wraps (`wrap::unwrap`),
//! - a receipt signature (`receipt::verify`),
//! - the part-file trailer, through `Store::open`'s recovery of a part file without rows.
//!
//! The oracle: a genuine, unmodified ciphertext opened with its own keys and bindings opens to
//! exactly what was sealed; anything else is refused with `Integrity` (or `CiphertextVersion`
//! when the version byte changed) — never accepted, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use apoyo_fuzz::{bundle, check, world};
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::crypto::{self, DeviceIdentity, PartOpener, PartSealer, SecretKey, wrap};
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::wire::limits::CHUNK_SIZE;
use apoyo_sync::{CaptureId, Error, PartKind};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const TAG: usize = 16;
const FULL: usize = CHUNK_SIZE + TAG;

#[derive(Debug, Arbitrary)]
enum Mutation {
    None,
    Flip {
        at: u32,
        mask: u8,
    },
    Truncate {
        to: u32,
    },
    Extend(Vec<u8>),
    Splice {
        at: u32,
        bytes: Vec<u8>,
    },
    SwapChunks {
        a: u8,
        b: u8,
    },
    DropChunk {
        i: u8,
    },
    DupChunk {
        i: u8,
    },
    /// Chunk `i` replaced by chunk `i` of the other part (another kind or another capture
    /// under the same data key).
    ChunkFromOther {
        i: u8,
    },
    /// The whole other part instead of this one.
    WholeOther,
}

/// The byte range of chunk `i` of a part ciphertext of `len` bytes (after the version byte).
fn chunk(len: usize, i: usize) -> Option<std::ops::Range<usize>> {
    let start = 1 + i * FULL;
    (start < len).then(|| start..(start + FULL).min(len))
}

fn chunks(len: usize) -> usize {
    (0..).take_while(|&i| chunk(len, i).is_some()).count()
}

fn mutate(ct: &[u8], other: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = ct.to_vec();
    let n = chunks(ct.len()).max(1);
    match m {
        Mutation::None => {}
        Mutation::Flip { at, mask } => {
            if !v.is_empty() {
                let i = *at as usize % v.len();
                v[i] ^= mask;
            }
        }
        Mutation::Truncate { to } => v.truncate(*to as usize % (v.len() + 1)),
        Mutation::Extend(bytes) => v.extend_from_slice(bytes),
        Mutation::Splice { at, bytes } => {
            let at = *at as usize % (v.len() + 1);
            v.splice(at..at, bytes.iter().copied());
        }
        Mutation::SwapChunks { a, b } => {
            let (a, b) = (*a as usize % n, *b as usize % n);
            if let (Some(ra), Some(rb)) = (chunk(ct.len(), a), chunk(ct.len(), b)) {
                let mut out = ct[..1].to_vec();
                for i in 0..n {
                    let r = if i == a {
                        rb.clone()
                    } else if i == b {
                        ra.clone()
                    } else {
                        chunk(ct.len(), i).unwrap_or(0..0)
                    };
                    out.extend_from_slice(&ct[r]);
                }
                v = out;
            }
        }
        Mutation::DropChunk { i } => {
            if let Some(r) = chunk(ct.len(), *i as usize % n) {
                v.drain(r);
            }
        }
        Mutation::DupChunk { i } => {
            if let Some(r) = chunk(ct.len(), *i as usize % n) {
                let dup = ct[r.clone()].to_vec();
                v.splice(r.end..r.end, dup);
            }
        }
        Mutation::ChunkFromOther { i } => {
            let i = *i as usize % n;
            if let (Some(r), Some(ro)) = (chunk(ct.len(), i), chunk(other.len(), i)) {
                v.splice(r, other[ro].iter().copied());
            }
        }
        Mutation::WholeOther => v = other.to_vec(),
    }
    v
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1) ^ (i >> 8) as u8)
        .collect()
}

fn kind_of(b: u8) -> PartKind {
    PartKind::ALL[b as usize % 5]
}

#[derive(Debug, Arbitrary)]
struct PartCase {
    key: [u8; 32],
    id: [u8; 16],
    kind: u8,
    /// Plaintext length in 4-byte units (up to ~4 chunks).
    len4: u16,
    seed: u8,
    /// The other part: another capture id (else another kind), and its length.
    other_capture: bool,
    other_len4: u16,
    mutation: Mutation,
    /// Declared length = actual length + this (wrapping, clamped).
    len_delta: i8,
    /// Open as another kind / another capture.
    open_kind: Option<u8>,
    open_id: Option<[u8; 16]>,
}

fn part_case(c: PartCase) {
    let key = SecretKey::from_bytes(c.key);
    let kind = kind_of(c.kind);
    let pt = plaintext(c.len4 as usize * 4, c.seed);
    let seal = |id: &[u8; 16], kind: PartKind, pt: &[u8]| {
        let mut ct = Vec::new();
        PartSealer::new(&key, id, kind)
            .and_then(|mut s| s.seal_to(pt, &mut ct))
            .expect("sealing");
        ct
    };
    let ct = seal(&c.id, kind, &pt);
    check!(
        ct.len() as u64 == crypto::ciphertext_len(pt.len() as u64),
        "ciphertext_len"
    );
    let (oid, okind) = if c.other_capture {
        let mut o = c.id;
        o[15] ^= 1;
        (o, kind)
    } else {
        // The next kind (never the same one: two parts sealed under one key, id and kind would
        // reuse the STREAM nonces, which the store never does).
        let i = PartKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        (c.id, PartKind::ALL[(i + 1) % 5])
    };
    let other_pt = plaintext(c.other_len4 as usize * 4, c.seed ^ 0x55);
    let other = seal(&oid, okind, &other_pt);
    let bytes = mutate(&ct, &other, &c.mutation);
    let declared = (bytes.len() as i64 + i64::from(c.len_delta)).max(0) as u64;
    let open_kind = c.open_kind.map_or(kind, kind_of);
    let open_id = c.open_id.unwrap_or(c.id);
    let mut out = Vec::new();
    let r = PartOpener::new(&key, &open_id, open_kind)
        .and_then(|mut o| o.open_to(declared, &bytes[..], &mut out));
    // The opener reads exactly `declared` bytes: what it sees is that prefix. It must open
    // only a genuine ciphertext under its own bindings: this part's, or the other part's.
    let full = declared as usize <= bytes.len();
    let seen = &bytes[..(declared as usize).min(bytes.len())];
    let expected = if full && seen == &ct[..] && (open_kind, open_id) == (kind, c.id) {
        Some(&pt)
    } else if full && seen == &other[..] && (open_kind, open_id) == (okind, oid) {
        Some(&other_pt)
    } else {
        None
    };
    let genuine = expected.is_some();
    match r {
        Ok(n) => {
            check!(genuine, "a modified part opened: {:?}", c.mutation);
            let want = expected.map(|p| p.as_slice()).unwrap_or_default();
            check!(
                n as usize == want.len() && out == want,
                "a genuine part opened to other bytes"
            );
        }
        Err(Error::Integrity { .. }) => check!(!genuine, "a genuine part was refused"),
        Err(Error::CiphertextVersion(v)) => {
            check!(
                !genuine && v != crypto::CIPHERTEXT_VERSION,
                "version refusal of version 1"
            )
        }
        Err(e) => panic!("invariant violated: a part refused with {e:?}, not Integrity"),
    }
}

#[derive(Debug, Arbitrary)]
struct EnvelopeCase {
    endpoint: [u8; 32],
    device: [u8; 32],
    id: [u8; 16],
    data_key: [u8; 32],
    mutation: Mutation,
    /// Open with another device public key / capture id / endpoint key.
    other_device: Option<[u8; 32]>,
    other_id: Option<[u8; 16]>,
    other_endpoint: Option<[u8; 32]>,
    /// Also try these raw bytes as a sealed key.
    raw: Vec<u8>,
}

fn envelope_case(c: EnvelopeCase) {
    let ep = EndpointSecretKey::from_bytes(c.endpoint);
    let dev = DeviceIdentity::from_secret(SecretKey::from_bytes(c.device));
    let dk = SecretKey::from_bytes(c.data_key);
    let Ok(sealed) = wrap::seal_to_endpoint(&ep.public(), &dev, &c.id, &dk) else {
        return; // a degenerate endpoint key is refused at sealing: fine
    };
    let bytes = mutate(&sealed, &[], &c.mutation);
    let dev_pub = c.other_device.unwrap_or(dev.public());
    let id = c.other_id.unwrap_or(c.id);
    let ep_open = EndpointSecretKey::from_bytes(c.other_endpoint.unwrap_or(c.endpoint));
    let genuine = bytes == sealed
        && dev_pub == dev.public()
        && id == c.id
        && ep_open.public().0 == ep.public().0;
    match wrap::open_from_device(&ep_open, &dev_pub, &id, &bytes) {
        Ok(k) => {
            check!(genuine, "a modified or misbound envelope opened");
            check!(k == dk, "a genuine envelope opened to another key");
        }
        Err(Error::Integrity { .. } | Error::CiphertextVersion(_)) => {
            check!(!genuine, "a genuine envelope was refused")
        }
        Err(Error::Crypto(_)) => {} // an unusable endpoint key given by the fuzzer
        Err(e) => panic!("invariant violated: envelope refused with {e:?}"),
    }
    if let Ok(k) = wrap::open_from_device(&ep, &dev.public(), &c.id, &c.raw) {
        check!(
            c.raw == sealed && k == dk,
            "arbitrary bytes opened as a sealed key"
        );
    }
}

#[derive(Debug, Arbitrary)]
struct WrapCase {
    kek: [u8; 32],
    secret: [u8; 32],
    domain: String,
    label: Vec<u8>,
    mutation: Mutation,
    other_kek: Option<[u8; 32]>,
    other_domain: Option<String>,
    other_label: Option<Vec<u8>>,
    /// A receipt signature check on arbitrary input.
    sig_key: [u8; 32],
    sig_msg: Vec<u8>,
    sig: Vec<u8>,
}

fn wrap_case(c: WrapCase) {
    let kek = SecretKey::from_bytes(c.kek);
    let secret = SecretKey::from_bytes(c.secret);
    let w = wrap::wrap(&kek, &c.domain, &c.label, &secret).expect("wrap");
    let bytes = mutate(&w, &[], &c.mutation);
    let kek2 = SecretKey::from_bytes(c.other_kek.unwrap_or(c.kek));
    let domain = c.other_domain.clone().unwrap_or(c.domain.clone());
    let label = c.other_label.clone().unwrap_or(c.label.clone());
    // Domain and label are joined with a 0 byte: distinct pairs must stay distinct unless the
    // concatenations agree (a domain is a fixed constant in the crate, never input).
    let same_binding = [domain.as_bytes(), &[0], &label].concat()
        == [c.domain.as_bytes(), &[0], &c.label].concat();
    let genuine = bytes == w && kek2 == kek && same_binding;
    match wrap::unwrap(&kek2, &domain, &label, &bytes, "fuzz wrap") {
        Ok(k) => {
            check!(genuine, "a modified or misbound wrap opened");
            check!(k == secret, "a wrap opened to another key");
        }
        Err(Error::Integrity { .. } | Error::CiphertextVersion(_)) => {
            check!(!genuine, "a genuine wrap was refused")
        }
        Err(e) => panic!("invariant violated: wrap refused with {e:?}"),
    }
    let ok = apoyo_sync::testkit::crypto::receipt::verify(&c.sig_key, &c.sig_msg, &c.sig);
    check!(ok.is_err(), "an arbitrary receipt signature verified");
}

// ---- the part-file trailer ----------------------------------------------------------------

/// A capture's part file made by a store copy, and its id: the template store has no rows for
/// it, so placing it in a fresh copy's `parts/` is what a power loss before the indexing
/// commit leaves (ADR 0013).
struct Orphan {
    id: CaptureId,
    file: Vec<u8>,
}

fn orphan() -> &'static Orphan {
    static O: OnceLock<Orphan> = OnceLock::new();
    O.get_or_init(|| {
        let t = world::template();
        let dir = apoyo_fuzz::tempdir();
        let mut store = t.store(dir.path(), Arc::new(ManualClock::new(t.t0)));
        let id = store
            .capture(bundle::new_capture(bundle::CONSULTA, 7))
            .expect("capture");
        let path = dir.path().join("store/parts").join(format!("{id}.parts"));
        let file = std::fs::read(path).expect("part file");
        Orphan { id, file }
    })
}

/// The trailer format (store/files.rs, ADR 0013): magic, version, zero padding.
fn trailer_well_formed(file: &[u8]) -> bool {
    let Some(t) = file.len().checked_sub(128).map(|at| &file[at..]) else {
        return false;
    };
    &t[120..] == b"APOYOCAP" && t[119] == 1 && t[113..119].iter().all(|b| *b == 0)
}

#[derive(Debug, Arbitrary)]
struct TrailerCase {
    mutation: Mutation,
    /// Flip a byte within the trailer (the last 128 bytes).
    trailer_flip: Option<(u8, u8)>,
    /// Name the file after another capture id.
    rename: bool,
}

fn trailer_case(c: TrailerCase) {
    let t = world::template();
    let o = orphan();
    let mut bytes = mutate(&o.file, &[], &c.mutation);
    if let Some((at, mask)) = c.trailer_flip {
        let n = bytes.len();
        if n >= 128 {
            bytes[n - 128 + at as usize % 128] ^= mask;
        }
    }
    let id = if c.rename {
        CaptureId::new_v7(t.t0)
    } else {
        o.id
    };
    let dir = apoyo_fuzz::tempdir();
    let store_dir = t.copy_store(dir.path());
    let file = store_dir.join("parts").join(format!("{id}.parts"));
    std::fs::write(&file, &bytes).expect("plant the part file");
    let store = t
        .open_store(&store_dir, Arc::new(ManualClock::new(t.t0)))
        .unwrap_or_else(|e| panic!("invariant violated: a planted part file made open fail: {e}"));
    let report = store.open_report().clone();
    let genuine = bytes == o.file && id == o.id;
    if genuine {
        check!(
            report.recovered == vec![id],
            "a genuine orphan was not recovered: {report:?}"
        );
        let m = store.manifest(&id).expect("recovered manifest");
        check!(
            m.capture_id == id && m.fields == bundle::fields(7),
            "recovered another manifest"
        );
        return;
    }
    check!(
        report.recovered.is_empty(),
        "a modified part file was recovered: {c:?}"
    );
    if trailer_well_formed(&bytes) {
        // Looks complete but does not authenticate: kept, byte for byte, in damaged/.
        check!(
            report.damaged.len() == 1,
            "a damaged file not set aside: {report:?}"
        );
        let kept = std::fs::read(&report.damaged[0]).expect("the damaged file is kept");
        check!(kept == bytes, "the damaged file was changed");
    } else {
        // No trailer: an interrupted capture that never returned; removed.
        check!(
            report.removed_incomplete == 1 && !file.exists(),
            "{report:?}"
        );
    }
}

#[derive(Debug, Arbitrary)]
enum Case {
    Part(PartCase),
    Envelope(EnvelopeCase),
    Wrap(WrapCase),
    Trailer(TrailerCase),
}

fuzz_target!(|case: Case| match case {
    Case::Part(c) => part_case(c),
    Case::Envelope(c) => envelope_case(c),
    Case::Wrap(c) => wrap_case(c),
    Case::Trailer(c) => trailer_case(c),
});
