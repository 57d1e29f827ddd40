//! Target 2: tus header parsing and the upload-offset logic of the endpoint, in-process.
//!
//! One activated device drives a sequence of tus requests whose headers are either what a
//! correct client sends or arbitrary text (Upload-Length, Upload-Metadata, Upload-Offset,
//! Upload-Checksum, Content-Type, Content-Length, Tus-Resumable), with bodies cut midway and
//! virtual time passing. A model of every upload's offset is kept.
//!
//! After every step: no 5xx; every refusal is a CBOR `ErrorBody` (HEAD excepted: no body);
//! every tus answer says `Tus-Resumable: 1.0.0`; a correct request succeeds; an accepted PATCH
//! moves the offset by exactly its body; HEAD agrees with the model; the stored bytes of every
//! upload are exactly the accepted bodies at their offsets, never past Upload-Length.
#![no_main]

use apoyo_fuzz::router::{Answer, call};
use apoyo_fuzz::{VirtualClock, check, paused_runtime, world};
use apoyo_sync::testkit::crypto;
use apoyo_sync::wire::{self as protocol, ErrorBody};
use apoyo_sync::{CaptureId, PartKind};
use arbitrary::Arbitrary;
use axum::Router;
use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Num {
    Right,
    Value(u64),
    Raw(String),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Meta {
    Right {
        kind: u8,
    },
    Raw(String),
    Fields {
        capture: String,
        kind: String,
        extra: String,
    },
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Checksum {
    Right,
    Wrong([u8; 32]),
    Raw(String),
    OtherAlgorithm,
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Create {
        length: Num,
        meta: Meta,
        bad_tus: bool,
        defer: bool,
        len_pick: u16,
    },
    Patch {
        slot: u8,
        offset: Num,
        checksum: Checksum,
        bad_type: bool,
        bad_tus: bool,
        len: u16,
        seed: u8,
        content_length: Option<Num>,
        cut: Option<u16>,
    },
    Head {
        slot: u8,
        bad_tus: bool,
    },
    Delete {
        slot: u8,
    },
    Options,
    Advance {
        minutes: u16,
    },
    BadToken {
        slot: u8,
        token: String,
    },
}

struct Upload {
    path: String,
    length: u64,
    bytes: Vec<u8>,
    expires_at: tokio::time::Instant,
    deleted: bool,
}

struct Run {
    router: Router,
    token: String,
    blobs: std::path::PathBuf,
    ups: Vec<Upload>,
    start: tokio::time::Instant,
}

fn tus_headers(token: &str, bad_tus: bool) -> Vec<(String, String)> {
    vec![
        (
            "tus-resumable".into(),
            if bad_tus {
                "0.2.2".into()
            } else {
                "1.0.0".into()
            },
        ),
        ("authorization".into(), format!("Bearer {token}")),
    ]
}

fn num(n: &Num, right: u64, name: &str, h: &mut Vec<(String, String)>) -> bool {
    match n {
        Num::Right => h.push((name.into(), right.to_string())),
        Num::Value(v) => h.push((name.into(), v.to_string())),
        Num::Raw(s) => h.push((name.into(), s.clone())),
        Num::Missing => {}
    }
    matches!(n, Num::Right) || matches!(n, Num::Value(v) if *v == right)
}

/// The checks every answer gets.
fn common(a: &Answer, method: &Method) {
    check!(a.status < 500, "{method} answered {}", a.status);
    check!(
        a.header("tus-resumable") == Some("1.0.0"),
        "{method} {} without Tus-Resumable",
        a.status
    );
    if a.status >= 400 && method != Method::HEAD {
        let body: Result<ErrorBody, _> = protocol::decode(&a.body, 1 << 16, "error");
        check!(body.is_ok(), "{method} {} without an ErrorBody", a.status);
    }
}

impl Run {
    async fn send(
        &self,
        m: Method,
        path: &str,
        h: Vec<(String, String)>,
        body: Vec<u8>,
        cut: Option<usize>,
    ) -> Option<Answer> {
        let a = call(&self.router, m.clone(), path, &h, body, cut).await?;
        common(&a, &m);
        Some(a)
    }

    fn slot(&self, s: u8) -> Option<usize> {
        (!self.ups.is_empty()).then(|| s as usize % self.ups.len())
    }

    fn live(&self, i: usize) -> bool {
        !self.ups[i].deleted && tokio::time::Instant::now() < self.ups[i].expires_at
    }

    async fn create(
        &mut self,
        length: &Num,
        meta: &Meta,
        bad_tus: bool,
        defer: bool,
        len_pick: u16,
    ) {
        let right_len = 1 + u64::from(len_pick % 4096);
        let mut h = tus_headers(&self.token, bad_tus);
        let len_ok = num(length, right_len, "upload-length", &mut h);
        let id = CaptureId::new_v7(time::OffsetDateTime::UNIX_EPOCH);
        let meta_ok = match meta {
            Meta::Right { kind } => {
                let k = PartKind::ALL[*kind as usize % 5];
                h.push((
                    "upload-metadata".into(),
                    format!(
                        "capture_id {},kind {}",
                        B64.encode(id.to_string()),
                        B64.encode(k.name())
                    ),
                ));
                true
            }
            Meta::Raw(s) => {
                h.push(("upload-metadata".into(), s.clone()));
                false
            }
            Meta::Fields {
                capture,
                kind,
                extra,
            } => {
                h.push((
                    "upload-metadata".into(),
                    format!(
                        "capture_id {},kind {},{extra}",
                        B64.encode(capture),
                        B64.encode(kind)
                    ),
                ));
                false
            }
            Meta::Missing => false,
        };
        if defer {
            h.push(("upload-defer-length".into(), "1".into()));
        }
        let Some(a) = self
            .send(Method::POST, "/v1/uploads", h, Vec::new(), None)
            .await
        else {
            return;
        };
        let correct = len_ok && meta_ok && !bad_tus && !defer;
        check!(
            !correct || a.status == 201,
            "a correct creation answered {}",
            a.status
        );
        if a.status != 201 {
            return;
        }
        let loc = a.header("location").unwrap_or_default().to_string();
        check!(
            loc.starts_with("/v1/uploads/") && a.header("upload-expires").is_some(),
            "201 without Location/Upload-Expires"
        );
        // The declared length as the endpoint understood it (the header may have been odd).
        let Some(hd) = self
            .send(
                Method::HEAD,
                &loc,
                tus_headers(&self.token, false),
                Vec::new(),
                None,
            )
            .await
        else {
            return;
        };
        check!(hd.status == 200, "HEAD of a fresh upload: {}", hd.status);
        let length: u64 = hd
            .header("upload-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        check!(
            hd.header("upload-offset") == Some("0"),
            "fresh upload not at 0"
        );
        check!(
            length >= 1 && length <= apoyo_sync::wire::limits::MAX_PART_BYTES,
            "accepted Upload-Length {length}"
        );
        if len_ok {
            check!(
                length == right_len,
                "Upload-Length {right_len} recorded as {length}"
            );
        }
        self.ups.push(Upload {
            path: loc,
            length,
            bytes: Vec::new(),
            expires_at: tokio::time::Instant::now() + apoyo_endpoint::DEFAULT_UPLOAD_TTL,
            deleted: false,
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &mut self,
        slot: u8,
        offset: &Num,
        checksum: &Checksum,
        bad_type: bool,
        bad_tus: bool,
        len: u16,
        seed: u8,
        content_length: &Option<Num>,
        cut: Option<u16>,
    ) {
        let Some(i) = self.slot(slot) else { return };
        let body: Vec<u8> = (0..len as usize)
            .map(|j| (j as u8).wrapping_mul(seed | 1) ^ seed)
            .collect();
        let mut h = tus_headers(&self.token, bad_tus);
        let cur = self.ups[i].bytes.len() as u64;
        let off_ok = num(offset, cur, "upload-offset", &mut h);
        h.push((
            "content-type".into(),
            if bad_type {
                "application/cbor".into()
            } else {
                protocol_offset_stream()
            },
        ));
        let sum_ok = match checksum {
            Checksum::Right => {
                h.push((
                    "upload-checksum".into(),
                    format!("sha256 {}", B64.encode(crypto::sha256(&body))),
                ));
                true
            }
            Checksum::Wrong(d) => {
                h.push((
                    "upload-checksum".into(),
                    format!("sha256 {}", B64.encode(d)),
                ));
                *d == crypto::sha256(&body)
            }
            Checksum::Raw(s) => {
                h.push(("upload-checksum".into(), s.clone()));
                false
            }
            Checksum::OtherAlgorithm => {
                h.push((
                    "upload-checksum".into(),
                    format!("md5 {}", B64.encode([0u8; 16])),
                ));
                false
            }
            Checksum::Missing => true,
        };
        let cl_ok = match content_length {
            None => true,
            Some(n) => num(n, body.len() as u64, "content-length", &mut h),
        };
        let cut = cut.map(|c| c as usize).filter(|c| *c < body.len());
        let fits = cur + body.len() as u64 <= self.ups[i].length;
        let path = self.ups[i].path.clone();
        let Some(a) = self.send(Method::PATCH, &path, h, body.clone(), cut).await else {
            return;
        };
        let correct = self.live(i)
            && off_ok
            && sum_ok
            && !bad_type
            && !bad_tus
            && cl_ok
            && cut.is_none()
            && fits;
        check!(
            !correct || a.status == 204,
            "a correct PATCH answered {}",
            a.status
        );
        if a.status == 204 {
            check!(
                self.live(i) && off_ok && cut.is_none() && fits && !bad_tus,
                "PATCH accepted what it must refuse"
            );
            let new = cur + body.len() as u64;
            check!(
                a.header("upload-offset") == Some(new.to_string().as_str()),
                "PATCH offset {:?}, expected {new}",
                a.header("upload-offset")
            );
            self.ups[i].bytes.extend_from_slice(&body);
        }
    }

    /// HEAD agrees with the model and the stored bytes are the accepted ones.
    async fn verify(&self, i: usize, bad_tus: bool) {
        let u = &self.ups[i];
        let Some(a) = self
            .send(
                Method::HEAD,
                &u.path,
                tus_headers(&self.token, bad_tus),
                Vec::new(),
                None,
            )
            .await
        else {
            return;
        };
        if bad_tus {
            check!(
                a.status == 412,
                "HEAD without tus 1.0.0 answered {}",
                a.status
            );
            return;
        }
        if u.deleted {
            check!(a.status == 404, "a deleted upload answered {}", a.status);
            return;
        }
        if !self.live(i) {
            check!(
                a.status == 410 || a.status == 404,
                "an expired upload answered {}",
                a.status
            );
            return;
        }
        check!(
            a.status == 200,
            "HEAD of a live upload answered {}",
            a.status
        );
        let off = u.bytes.len().to_string();
        check!(
            a.header("upload-offset") == Some(off.as_str()),
            "HEAD offset {:?}, model {off}",
            a.header("upload-offset")
        );
        let id = u.path.trim_start_matches("/v1/uploads/");
        let stored = std::fs::read(self.blobs.join("uploads").join(id)).unwrap_or_default();
        check!(
            stored.len() as u64 <= u.length,
            "stored {} bytes past Upload-Length {}",
            stored.len(),
            u.length
        );
        check!(
            stored[..u.bytes.len().min(stored.len())] == u.bytes[..u.bytes.len().min(stored.len())]
                && stored.len() >= u.bytes.len(),
            "stored bytes differ from the accepted bodies"
        );
    }

    async fn step(&mut self, op: &Op) {
        match op {
            Op::Create {
                length,
                meta,
                bad_tus,
                defer,
                len_pick,
            } => self.create(length, meta, *bad_tus, *defer, *len_pick).await,
            Op::Patch {
                slot,
                offset,
                checksum,
                bad_type,
                bad_tus,
                len,
                seed,
                content_length,
                cut,
            } => {
                self.patch(
                    *slot,
                    offset,
                    checksum,
                    *bad_type,
                    *bad_tus,
                    *len,
                    *seed,
                    content_length,
                    *cut,
                )
                .await
            }
            Op::Head { slot, bad_tus } => {
                if let Some(i) = self.slot(*slot) {
                    self.verify(i, *bad_tus).await
                }
            }
            Op::Delete { slot } => {
                let Some(i) = self.slot(*slot) else { return };
                let path = self.ups[i].path.clone();
                if let Some(a) = self
                    .send(
                        Method::DELETE,
                        &path,
                        tus_headers(&self.token, false),
                        Vec::new(),
                        None,
                    )
                    .await
                {
                    let expect = if self.ups[i].deleted { 404 } else { 204 };
                    check!(
                        a.status == expect,
                        "DELETE answered {}, expected {expect}",
                        a.status
                    );
                    self.ups[i].deleted = true;
                }
            }
            Op::Options => {
                if let Some(a) = self
                    .send(Method::OPTIONS, "/v1/uploads", Vec::new(), Vec::new(), None)
                    .await
                {
                    check!(
                        a.status == 204 && a.header("tus-version") == Some("1.0.0"),
                        "OPTIONS {}",
                        a.status
                    );
                }
            }
            Op::Advance { minutes } => {
                // Stay within the token's 24 hours.
                let limit = self.start + std::time::Duration::from_secs(23 * 3600);
                let by = std::time::Duration::from_secs(u64::from(*minutes % 600) * 60);
                if tokio::time::Instant::now() + by < limit {
                    tokio::time::advance(by).await;
                }
            }
            Op::BadToken { slot, token } => {
                let Some(i) = self.slot(*slot) else { return };
                let path = self.ups[i].path.clone();
                let h = tus_headers(token, false);
                if let Some(a) = self.send(Method::HEAD, &path, h, Vec::new(), None).await {
                    check!(
                        a.status == 401 || *token == self.token,
                        "a foreign token got {}",
                        a.status
                    );
                }
            }
        }
        for i in 0..self.ups.len() {
            self.verify(i, false).await;
        }
    }
}

fn protocol_offset_stream() -> String {
    apoyo_sync::wire::tus::OFFSET_STREAM.into()
}

fuzz_target!(|ops: Vec<Op>| {
    if ops.len() > 24 {
        return;
    }
    let t = world::template();
    let dir = apoyo_fuzz::tempdir();
    paused_runtime().block_on(async {
        let clock = VirtualClock::new(t.t0).shared();
        let (_state, router) = t.endpoint(dir.path(), clock);
        let mut run = Run {
            router,
            token: t.devices[0].token.clone(),
            blobs: dir.path().join("endpoint/endpoint.db.blobs"),
            ups: Vec::new(),
            start: tokio::time::Instant::now(),
        };
        for op in &ops {
            run.step(op).await;
        }
    });
});
