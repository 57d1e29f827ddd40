//! Writes the seed corpus of `protocol_decode` from real protocol messages: a registration and
//! activation, and a sync of the template store against the endpoint, recorded on the wire
//! (every request and answer body; v1.1: the signed commit and the bare commit inside it, the
//! receipt key's certificate signed and bare), plus an error body and a manifest. Run once with
//! `APOYO_FUZZ_SEEDS=fuzz/corpus/protocol_decode cargo +nightly fuzz run protocol_decode -- -runs=1`
//! (docs/fuzzing.md); each file is `[selector] ++ message`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use apoyo_sync::testkit::sync::transport::{Request, SendFuture, Transport};
use apoyo_sync::testkit::sync::{SyncOptions, engine};
use apoyo_sync::wire::{self as protocol, Provider, SignedCommit, SignedReceipt};

use crate::router::RouterTransport;
use crate::world;

/// Records (path, request body, answer body) of every exchange.
struct Recorder {
    inner: RouterTransport,
    log: Mutex<Vec<(String, Vec<u8>, Vec<u8>)>>,
}

impl Transport for Recorder {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            let (path, body) = (req.path.clone(), req.body.clone());
            let r = self.inner.send(req, limit).await;
            if let Ok(resp) = &r {
                self.log
                    .lock()
                    .expect("log")
                    .push((path, body, resp.body.clone()));
            }
            r
        })
    }
}

fn selector(path: &str, request: bool) -> Option<u8> {
    Some(match (path, request) {
        ("/v1/devices", true) => 0,
        ("/v1/devices/activate", true) => 1,
        // v1.1: a commit travels signed (selector 11); 2 is the bare commit inside.
        (p, true) if p.starts_with("/v1/supports/") => 11,
        ("/v1/devices", false) => 4,
        ("/v1/devices/activate", false) => 5,
        ("/v1/processes", false) => 6,
        (p, false) if p.starts_with("/v1/supports/") => 7,
        _ => return None,
    })
}

pub fn write(dir: &Path) {
    std::fs::create_dir_all(dir).expect("corpus folder");
    let t = world::template();
    let tmp = crate::tempdir();
    let rt = crate::paused_runtime();
    let log = rt.block_on(async {
        let clock = crate::VirtualClock::new(t.t0).shared();
        let (_state, router) = t.endpoint(tmp.path(), clock.clone());
        let rec = Arc::new(Recorder {
            inner: RouterTransport {
                router: router.clone(),
            },
            log: Mutex::new(Vec::new()),
        });
        // A fresh device registers and activates through the core client.
        let kr = apoyo_sync::FileKeyGuard::open_or_create(&tmp.path().join("kr")).expect("keyring");
        let mut s = apoyo_sync::testkit::Store::init(
            &tmp.path().join("s2"),
            &kr,
            &t.provisioning(),
            None,
            world::store_options(clock.clone()),
        )
        .expect("init");
        apoyo_sync::testkit::sync::device::register(
            &mut s,
            &rec,
            "http://127.0.0.1:9",
            "seed@example.org",
            Provider::Google,
            &crate::bundle::jpeg(200, 1),
        )
        .await
        .expect("register");
        let a = crate::router::call(
            &router,
            axum::http::Method::GET,
            "/v1/dev/mailbox/seed@example.org",
            &[],
            Vec::new(),
            None,
        )
        .await
        .expect("mailbox");
        let m: protocol::Mailbox = serde_json::from_slice(&a.body).expect("mailbox");
        apoyo_sync::testkit::sync::device::activate(&mut s, &rec, &m.code)
            .await
            .expect("activate");
        // The template store syncs its two captures.
        let mut store = t.store(tmp.path(), clock);
        engine::run(&mut store, &rec, SyncOptions::default())
            .await
            .expect("sync");
        let log = rec.log.lock().expect("log").clone();
        log
    });
    let mut n = 0;
    let mut put = |sel: u8, bytes: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(bytes);
        std::fs::write(dir.join(format!("seed-{n:02}-{sel}")), v).expect("write seed");
        n += 1;
    };
    for (path, req, resp) in &log {
        if let Some(sel) = selector(path, true).filter(|_| !req.is_empty()) {
            put(sel, req);
            if sel == 11
                && let Ok(sc) = protocol::decode::<SignedCommit>(req, 1 << 22, "commit")
            {
                put(2, &sc.commit);
            }
        }
        if let Some(sel) = selector(path, false).filter(|_| !resp.is_empty()) {
            put(sel, resp);
            if sel == 7
                && let Ok(sr) = protocol::decode::<SignedReceipt>(resp, 1 << 16, "receipt")
            {
                put(8, &sr.receipt);
                if let Some(kc) = &sr.key_cert {
                    put(13, &protocol::encode(kc).expect("encode"));
                    put(12, &kc.cert);
                }
            }
        }
    }
    let err = protocol::encode(&protocol::ErrorBody {
        v: 1,
        reason: protocol::Reason::UploadMissing,
        detail: "an upload named in the commit is missing".into(),
    })
    .expect("encode");
    put(9, &err);
    let manifest = apoyo_sync::wire::Manifest {
        v: 1,
        capture_id: t.bundles[0][0].id,
        process_id: "revocacion-2022".into(),
        collector: t.bundles[0][0].collector.clone(),
        model: apoyo_sync::CredentialModel::parse("G").expect("model"),
        fields: crate::bundle::fields(0),
        location: Some(apoyo_sync::Location {
            lat: 19.43,
            lon: -99.13,
            accuracy_m: 8.0,
        }),
        captured_at: t.t0,
        engine_version: "seed".into(),
        formats: apoyo_sync::wire::ImageFormats {
            front: apoyo_sync::wire::ImageFormat::Jpeg,
            back: apoyo_sync::wire::ImageFormat::Jpeg,
            selfie: apoyo_sync::wire::ImageFormat::Jpeg,
            signature: apoyo_sync::wire::ImageFormat::Png,
        },
    };
    put(3, &manifest.to_cbor().expect("manifest"));
}
