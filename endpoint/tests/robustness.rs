//! Bad input on every route gets a 4xx with an ErrorBody, never a 5xx or a crash: malformed
//! CBOR, oversized bodies (refused before being buffered), stalled bodies (408), wrong headers,
//! unknown routes.
//! Also the development routes' switch and the chaos hook.

mod common;

use std::sync::{Arc, Mutex};

use apoyo_endpoint::{Chaos, Injected, Route};
use apoyo_sync::wire::{self as protocol, Reason, limits};
use apoyo_sync::{CaptureId, PartKind};
use common::*;
use reqwest::Method;

/// Bodies that are not the message: empty, not CBOR, truncated, wrong types, nested deep,
/// a byte string that claims 2^63 bytes.
fn garbage() -> Vec<Vec<u8>> {
    let mut deep = vec![0x81u8; 500];
    deep.push(0);
    vec![
        vec![],
        b"{\"v\":1}".to_vec(),
        vec![0xff; 64],
        vec![0xa1, 0x61, b'v'],
        vec![0xa1, 0x61, b'v', 0x63, b'o', b'n', b'e'],
        deep,
        vec![
            0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
        ],
        protocol::encode(&serde_json::json!({"v": 1, "device_public": "not bytes"})).unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cbor_is_400_on_every_route() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    let id = CaptureId::new_v7(time::OffsetDateTime::now_utc()).to_string();
    for body in garbage() {
        h.post_cbor("/v1/devices", body.clone())
            .await
            .refused(400, Reason::Malformed);
        h.post_cbor("/v1/devices/activate", body.clone())
            .await
            .refused(400, Reason::Malformed);
        let a = h
            .send(
                h.req(Method::PUT, &format!("/v1/supports/{id}"))
                    .bearer_auth(&token)
                    .header("idempotency-key", &id)
                    .body(body.clone()),
            )
            .await;
        a.refused(400, Reason::Malformed);
    }
    // Well-formed CBOR of the right shape but a wrong field: a 15-byte nonce.
    let dev = RawDevice::new();
    let mut req = dev.activate_request(&h.endpoint_public(), "ABCDEFGHJK");
    req.nonce.pop();
    h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await
        .refused(400, Reason::Malformed);
    let mut req = dev.activate_request(&h.endpoint_public(), "");
    req.v = 1;
    h.post_cbor("/v1/devices/activate", protocol::encode(&req).unwrap())
        .await
        .refused(400, Reason::Malformed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_get_a_5xx() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    let id = CaptureId::new_v7(time::OffsetDateTime::now_utc()).to_string();
    let upload = h
        .create_upload(
            &token,
            &CaptureId::new_v7(time::OffsetDateTime::now_utc()),
            PartKind::Front,
            1000,
        )
        .await;
    let upload = upload.header("location").unwrap().to_string();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..60 {
        let len = rng.usize(0..3000);
        let body: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Sometimes a valid CBOR map prefix, to get past the first byte.
        let body = if i % 3 == 0 {
            [&[0xa7u8, 0x61, b'v', 0x01][..], &body].concat()
        } else {
            body
        };
        let answers = [
            h.post_cbor("/v1/devices", body.clone()).await,
            h.post_cbor("/v1/devices/activate", body.clone()).await,
            h.send(
                h.req(Method::PUT, &format!("/v1/supports/{id}"))
                    .bearer_auth(&token)
                    .header("idempotency-key", &id)
                    .body(body.clone()),
            )
            .await,
            h.patch(
                &token,
                &upload,
                0,
                &body[..body.len().min(1000)],
                Some([9u8; 32]),
            )
            .await,
        ];
        for a in answers {
            assert!(
                (400..500).contains(&a.status),
                "{} for {} random bytes",
                a.status,
                body.len()
            );
            assert!(a.error().is_some());
        }
    }
}

fn head_for(method: &str, path: &str, extra: &str, content_length: Option<usize>) -> String {
    let cl = content_length
        .map(|n| format!("Content-Length: {n}\r\n"))
        .unwrap_or_else(|| "Transfer-Encoding: chunked\r\n".into());
    let ct = if extra.contains("Content-Type") {
        ""
    } else {
        "Content-Type: application/cbor\r\n"
    };
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{ct}{extra}{cl}\r\n")
}

fn chunked(total: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(16 * 1024);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(0xa5u8, n));
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_before_being_buffered() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    let id = CaptureId::new_v7(time::OffsetDateTime::now_utc()).to_string();
    let auth = format!("Authorization: Bearer {token}\r\nIdempotency-Key: {id}\r\n");
    let upload = h
        .create_upload(
            &token,
            &CaptureId::new_v7(time::OffsetDateTime::now_utc()),
            PartKind::Selfie,
            3_000_000,
        )
        .await;
    let upload = upload.header("location").unwrap().to_string();
    let tus =
        format!("Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n");
    let routes: Vec<(String, String, String, usize)> = vec![
        (
            "POST".into(),
            "/v1/devices".into(),
            String::new(),
            limits::MAX_REGISTER_BYTES,
        ),
        (
            "POST".into(),
            "/v1/devices/activate".into(),
            String::new(),
            limits::MAX_ACTIVATE_BYTES,
        ),
        (
            "PUT".into(),
            format!("/v1/supports/{id}"),
            auth.clone(),
            limits::MAX_SIGNED_COMMIT_BYTES,
        ),
        (
            "PATCH".into(),
            upload.clone(),
            tus.replace(
                "Upload-Offset",
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset",
            ),
            1024 * 1024,
        ),
    ];
    for (method, path, extra, limit) in routes {
        // A declared length over the limit: answered at once, without sending the body (a
        // server that waited for it would time out here).
        let (status, body) = raw_http(
            h.addr,
            head_for(&method, &path, &extra, Some(limit + 1)),
            Vec::new(),
        )
        .await;
        assert_eq!(
            (status, reason_of(&body)),
            (413, Reason::TooLarge),
            "{method} {path} declared"
        );
        // No declared length, a chunked body that keeps coming: refused once past the limit.
        let (status, body) = raw_http(
            h.addr,
            head_for(&method, &path, &extra, None),
            chunked(limit + 100_000),
        )
        .await;
        assert_eq!(
            (status, reason_of(&body)),
            (413, Reason::TooLarge),
            "{method} {path} chunked"
        );
    }
    // Nothing was stored by any of it.
    assert_eq!(
        h.head(&token, &upload).await.header("upload-offset"),
        Some("0")
    );
    assert_eq!(h.stats().await["received"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408_and_nothing_is_stored() {
    let h = Harness::start_with(Opts {
        body_idle_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let (_, token) = h.raw_device("a").await;
    let id = CaptureId::new_v7(time::OffsetDateTime::now_utc()).to_string();
    let upload = h
        .create_upload(
            &token,
            &CaptureId::new_v7(time::OffsetDateTime::now_utc()),
            PartKind::Selfie,
            3_000_000,
        )
        .await;
    let upload = upload.header("location").unwrap().to_string();
    let routes = [
        ("POST", "/v1/devices".to_string(), String::new()),
        ("POST", "/v1/devices/activate".to_string(), String::new()),
        (
            "PUT",
            format!("/v1/supports/{id}"),
            format!("Authorization: Bearer {token}\r\nIdempotency-Key: {id}\r\n"),
        ),
        (
            "PATCH",
            upload.clone(),
            format!(
                "Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
                 Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            ),
        ),
    ];
    for (method, path, extra) in routes {
        // 100 bytes announced, 10 sent, then silence (the connection stays open for 5 s): the
        // endpoint gives up after its 1 s idle timeout with a transient 408, well before then.
        let started = std::time::Instant::now();
        let (status, body) = raw_http(
            h.addr,
            head_for(method, &path, &extra, Some(100)),
            vec![0xa5; 10],
        )
        .await;
        assert_eq!(
            (status, reason_of(&body)),
            (408, Reason::Other),
            "{method} {path}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{method} {path}: answered only when the client closed"
        );
    }
    assert_eq!(
        h.head(&token, &upload).await.header("upload-offset"),
        Some("0")
    );
    assert_eq!(h.stats().await["received"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_headers_and_shape_are_checked() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(1));
    let b = dev.bundle(&id);
    let req = b.commit_request(h.upload_all(&dev.token, &b, 64 * 1024).await);
    // v1.1: the body is the device-signed commit.
    let signed = protocol::trust::sign_commit(&dev.store.signing_key().unwrap(), &req).unwrap();
    let body = protocol::encode(&signed).unwrap();
    let put = |path: String| {
        h.req(Method::PUT, &path)
            .header("content-type", protocol::CBOR)
            .body(body.clone())
    };
    let path = format!("/v1/supports/{id}");
    // No token, an unknown one: 401.
    h.send(put(path.clone()).header("idempotency-key", id.to_string()))
        .await
        .refused(401, Reason::Unauthorized);
    h.send(
        put(path.clone())
            .bearer_auth("00")
            .header("idempotency-key", id.to_string()),
    )
    .await
    .refused(401, Reason::Unauthorized);
    // Idempotency-Key missing, or not the path's id.
    h.send(put(path.clone()).bearer_auth(&dev.token))
        .await
        .refused(400, Reason::Malformed);
    let other = CaptureId::new_v7(time::OffsetDateTime::now_utc()).to_string();
    h.send(
        put(path.clone())
            .bearer_auth(&dev.token)
            .header("idempotency-key", &other),
    )
    .await
    .refused(400, Reason::Malformed);
    // The path's id is not the body's.
    h.send(
        put(format!("/v1/supports/{other}"))
            .bearer_auth(&dev.token)
            .header("idempotency-key", &other),
    )
    .await
    .refused(400, Reason::Malformed);
    // Not an id at all.
    h.send(
        put("/v1/supports/nope".into())
            .bearer_auth(&dev.token)
            .header("idempotency-key", "nope"),
    )
    .await
    .refused(400, Reason::Malformed);
    // Four parts, or one kind twice.
    let mut four = req.clone();
    four.parts.pop();
    h.commit(&dev.token, &four)
        .await
        .refused(400, Reason::Malformed);
    let mut twice = req.clone();
    twice.parts[1] = twice.parts[0].clone();
    h.commit(&dev.token, &twice)
        .await
        .refused(400, Reason::Malformed);
    let mut v2 = req.clone();
    v2.v = 2;
    h.commit(&dev.token, &v2)
        .await
        .refused(400, Reason::Malformed);
    // None of that was recorded: the real commit is counted.
    assert_eq!(h.commit(&dev.token, &req).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_an_error_body() {
    let h = Harness::start().await;
    for path in [
        "/",
        "/v2/devices",
        "/v1/uploads/a/b",
        "/v1/supports",
        "/v1/admin/other",
    ] {
        h.send(h.req(Method::GET, path))
            .await
            .refused(404, Reason::NotFound);
    }
    h.send(h.req(Method::GET, "/v1/devices"))
        .await
        .refused(405, Reason::Other);
    h.send(h.req(Method::DELETE, "/v1/processes"))
        .await
        .refused(405, Reason::Other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_routes_exist_only_in_dev_mode() {
    let h = Harness::start_with(Opts {
        dev: false,
        ..Default::default()
    })
    .await;
    let dev = RawDevice::new();
    let a = h
        .post_cbor(
            "/v1/devices",
            protocol::encode(&dev.register_request(&h.endpoint_public(), "a@example.org")).unwrap(),
        )
        .await;
    assert_eq!(a.status, 201);
    h.send(h.req(Method::GET, "/v1/dev/mailbox/a@example.org"))
        .await
        .refused(404, Reason::NotFound);
    h.send(h.req(Method::GET, "/v1/admin/stats"))
        .await
        .refused(404, Reason::NotFound);
    // In-process stats still work.
    assert_eq!(
        h.ep.as_ref().unwrap().stats().await,
        apoyo_endpoint::Stats::default()
    );
}

/// Answers `status` to every request of `route`, recording the device ids it was told about.
struct Inject {
    route: Route,
    status: u16,
    seen: Mutex<Vec<Option<String>>>,
}

impl Chaos for Inject {
    fn before(&self, route: Route, device_id: Option<&str>) -> Option<Injected> {
        if route != self.route {
            return None;
        }
        self.seen
            .lock()
            .unwrap()
            .push(device_id.map(str::to_string));
        Some(Injected::Status {
            status: self.status,
            retry_after_secs: Some(7),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_answers_instead_of_handling() {
    for (status, reason) in [
        (503, Reason::Unavailable),
        (429, Reason::RateLimited),
        (500, Reason::Other),
    ] {
        let chaos = Arc::new(Inject {
            route: Route::Commit,
            status,
            seen: Mutex::new(Vec::new()),
        });
        let h = Harness::start_with(Opts {
            chaos: Some(chaos.clone()),
            ..Default::default()
        })
        .await;
        let mut dev = h.store_device("a").await;
        let id = dev.capture_clave(REVOCACION, &clave(1));
        let a = h.deliver(&dev.token, &dev.bundle(&id)).await;
        a.refused(status, reason);
        assert_eq!(a.header("retry-after"), Some("7"));
        assert_eq!(
            *chaos.seen.lock().unwrap(),
            vec![Some(dev.store.device_id().to_string())]
        );
        // Nothing was done: no support recorded, the uploads untouched.
        assert_eq!(h.stats().await["received"], 0);
        assert_eq!(
            std::fs::read_dir(h.blob_dir().join("uploads"))
                .unwrap()
                .count(),
            5
        );
    }
    // On a tus route the answer still carries Tus-Resumable; without a token the hook gets None.
    let chaos = Arc::new(Inject {
        route: Route::UploadOptions,
        status: 503,
        seen: Mutex::new(Vec::new()),
    });
    let h = Harness::start_with(Opts {
        chaos: Some(chaos.clone()),
        ..Default::default()
    })
    .await;
    let a = h.send(h.req(Method::OPTIONS, "/v1/uploads")).await;
    a.refused(503, Reason::Unavailable);
    assert_eq!(a.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(*chaos.seen.lock().unwrap(), vec![None]);
}
