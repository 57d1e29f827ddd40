//! tus 1.0 at /v1/uploads: creation, HEAD, PATCH (offsets, checksums, cut bodies), termination,
//! expiration, ownership, and what a commit makes of incomplete or foreign uploads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::PartKind;
use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::crypto;
use apoyo_sync::wire::{Reason, limits};
use common::*;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_advertises_the_protocol_without_a_token() {
    let h = Harness::start().await;
    let a = h.send(h.req(Method::OPTIONS, "/v1/uploads")).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(a.header("tus-version"), Some("1.0.0"));
    assert_eq!(
        a.header("tus-extension"),
        Some("creation,checksum,termination,expiration")
    );
    assert_eq!(
        a.header("tus-max-size"),
        Some(limits::MAX_PART_BYTES.to_string().as_str())
    );
    assert_eq!(a.header("tus-checksum-algorithm"), Some("sha1,sha256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_requests_need_the_version_header_and_a_token() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(1));
    // No Tus-Resumable: 412, still with the header on the answer.
    let a = h
        .send(
            h.req(Method::POST, "/v1/uploads")
                .bearer_auth(&dev.token)
                .header("upload-length", "10"),
        )
        .await;
    a.refused(412, Reason::Other);
    assert_eq!(
        (a.header("tus-resumable"), a.header("tus-version")),
        (Some("1.0.0"), Some("1.0.0"))
    );
    // No token, an unknown token, another scheme: 401.
    let no_token = h
        .send(
            h.req(Method::POST, "/v1/uploads")
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "10"),
        )
        .await;
    no_token.refused(401, Reason::Unauthorized);
    assert_eq!(no_token.header("tus-resumable"), Some("1.0.0"));
    h.create_upload(&"ab".repeat(32), &id, PartKind::Front, 10)
        .await
        .refused(401, Reason::Unauthorized);
    let basic = h
        .send(
            h.req(Method::POST, "/v1/uploads")
                .header("tus-resumable", "1.0.0")
                .basic_auth("u", Some("p")),
        )
        .await;
    basic.refused(401, Reason::Unauthorized);
    // HEAD, PATCH, DELETE without a token.
    let path = h
        .create_upload(&dev.token, &id, PartKind::Front, 10)
        .await
        .header("location")
        .unwrap()
        .to_string();
    for m in [Method::HEAD, Method::PATCH, Method::DELETE] {
        let a = h
            .send(h.req(m.clone(), &path).header("tus-resumable", "1.0.0"))
            .await;
        assert_eq!(a.status, 401, "{m}");
    }
    // Unknown upload ids: 404.
    for p in [
        "/v1/uploads/0123456789abcdef0123456789abcdef",
        "/v1/uploads/not-an-id",
    ] {
        assert_eq!(h.head(&dev.token, p).await.status, 404);
        h.patch(&dev.token, p, 0, b"x", None)
            .await
            .refused(404, Reason::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_checks_length_and_metadata() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(2));
    h.create_upload(
        &dev.token,
        &id,
        PartKind::Selfie,
        limits::MAX_PART_BYTES + 1,
    )
    .await
    .refused(413, Reason::TooLarge);
    h.create_upload(
        &dev.token,
        &id,
        PartKind::Manifest,
        limits::MAX_MANIFEST_CT_BYTES + 1,
    )
    .await
    .refused(413, Reason::TooLarge);
    h.create_upload(&dev.token, &id, PartKind::Front, 0)
        .await
        .refused(400, Reason::Malformed);
    let base = || h.tus(Method::POST, "/v1/uploads", &dev.token);
    h.send(base().header("upload-metadata", "kind ZnJvbnQ="))
        .await
        .refused(400, Reason::Malformed); // no Upload-Length
    h.send(
        base()
            .header("upload-length", "x")
            .header("upload-metadata", "kind ZnJvbnQ="),
    )
    .await
    .refused(400, Reason::Malformed);
    h.send(base().header("upload-length", "10"))
        .await
        .refused(400, Reason::Malformed); // no metadata
    h.send(
        base()
            .header("upload-length", "10")
            .header("upload-metadata", "kind ZnJvbnQ="),
    )
    .await
    .refused(400, Reason::Malformed);
    let bad_kind = format!(
        "capture_id {},kind {}",
        b64(&id.to_string()),
        b64("passport")
    );
    h.send(
        base()
            .header("upload-length", "10")
            .header("upload-metadata", bad_kind),
    )
    .await
    .refused(400, Reason::Malformed);
    let bad_id = format!("capture_id {},kind {}", b64("nope"), b64("front"));
    h.send(
        base()
            .header("upload-length", "10")
            .header("upload-metadata", bad_id),
    )
    .await
    .refused(400, Reason::Malformed);
    let not_b64 = format!("capture_id {},kind !!!", b64(&id.to_string()));
    h.send(
        base()
            .header("upload-length", "10")
            .header("upload-metadata", not_b64),
    )
    .await
    .refused(400, Reason::Malformed);
    // A good one: 201 with Location and an HTTP-date expiry.
    let a = h.create_upload(&dev.token, &id, PartKind::Front, 10).await;
    assert_eq!(a.status, 201);
    assert!(a.header("location").unwrap().starts_with("/v1/uploads/"));
    let expires = httpdate_parse(a.header("upload-expires").unwrap());
    let ttl = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        ttl > Duration::from_secs(23 * 3600) && ttl <= Duration::from_secs(24 * 3600),
        "{ttl:?}"
    );
    // A body past Upload-Length is refused and nothing is stored.
    let path = a.header("location").unwrap();
    h.patch(&dev.token, path, 0, &[7u8; 11], None)
        .await
        .refused(413, Reason::TooLarge);
    assert_eq!(
        h.head(&dev.token, path).await.header("upload-offset"),
        Some("0")
    );
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn httpdate_parse(s: &str) -> std::time::SystemTime {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s, &f).unwrap().assume_utc();
    t.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_checksum_is_460_and_stores_nothing() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(3));
    let b = dev.bundle(&id);
    let front = b.part(PartKind::Front);
    let path = h
        .create_upload(&dev.token, &id, PartKind::Front, front.len() as u64)
        .await
        .header("location")
        .unwrap()
        .to_string();
    let piece = &front[..20_000];
    let mut wrong = crypto::sha256(piece);
    wrong[0] ^= 1;
    let a = h.patch(&dev.token, &path, 0, piece, Some(wrong)).await;
    a.refused(460, Reason::Other);
    assert_eq!(a.header("tus-resumable"), Some("1.0.0"));
    let head = h.head(&dev.token, &path).await;
    assert_eq!(
        (head.status, head.header("upload-offset")),
        (200, Some("0"))
    );
    assert_eq!(
        head.header("upload-length"),
        Some(front.len().to_string().as_str())
    );
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert!(head.header("upload-expires").is_some());
    // Another algorithm is a 400; a garbled header too.
    let rb = |v: &str| {
        h.tus(Method::PATCH, &path, &dev.token)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", "0")
            .header("upload-checksum", v.to_string())
            .body(piece.to_vec())
    };
    h.send(rb("md5 AAAA")).await.refused(400, Reason::Malformed);
    h.send(rb("sha256")).await.refused(400, Reason::Malformed);
    h.send(rb("sha256 bm90IGEgZGlnZXN0"))
        .await
        .refused(400, Reason::Malformed);
    // The right checksum is accepted.
    let a = h
        .patch(&dev.token, &path, 0, piece, Some(crypto::sha256(piece)))
        .await;
    assert_eq!((a.status, a.header("upload-offset")), (204, Some("20000")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_offset_or_content_type_is_refused() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(4));
    let path = h
        .create_upload(&dev.token, &id, PartKind::Back, 1000)
        .await
        .header("location")
        .unwrap()
        .to_string();
    let a = h.patch(&dev.token, &path, 5, &[1u8; 10], None).await;
    a.refused(409, Reason::Other);
    assert_eq!(a.error().unwrap().detail, "offset mismatch");
    assert_eq!(
        h.patch(&dev.token, &path, 0, &[1u8; 10], None).await.status,
        204
    );
    h.patch(&dev.token, &path, 0, &[1u8; 10], None)
        .await
        .refused(409, Reason::Other);
    let a = h
        .send(
            h.tus(Method::PATCH, &path, &dev.token)
                .header("content-type", "application/cbor")
                .header("upload-offset", "10")
                .body(vec![1u8; 10]),
        )
        .await;
    a.refused(415, Reason::Other);
    let a = h
        .send(
            h.tus(Method::PATCH, &path, &dev.token)
                .header("content-type", "application/offset+octet-stream")
                .body(vec![1u8]),
        )
        .await;
    a.refused(400, Reason::Malformed); // no Upload-Offset
    // An empty PATCH at the right offset changes nothing.
    let a = h.patch(&dev.token, &path, 10, &[], None).await;
    assert_eq!((a.status, a.header("upload-offset")), (204, Some("10")));
    // A PATCH over the 1 MiB body limit is refused.
    let big = h
        .create_upload(&dev.token, &id, PartKind::Selfie, 3 * 1024 * 1024)
        .await
        .header("location")
        .unwrap()
        .to_string();
    h.patch(&dev.token, &big, 0, &vec![0u8; 1024 * 1024 + 1], None)
        .await
        .refused(413, Reason::TooLarge);
    assert_eq!(
        h.head(&dev.token, &big).await.header("upload-offset"),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_cut_midway_stores_nothing() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(5));
    let path = h
        .create_upload(&dev.token, &id, PartKind::Back, 100_000)
        .await
        .header("location")
        .unwrap()
        .to_string();
    assert_eq!(
        h.patch(&dev.token, &path, 0, &[1u8; 30_000], None)
            .await
            .status,
        204
    );
    // 40 000 bytes announced, 20 000 sent, then the link drops.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from(vec![2u8; 20_000])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "link dropped",
        )),
    ];
    let cut = h
        .tus(Method::PATCH, &path, &dev.token)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "30000")
        .header("content-length", "40000")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    assert!(cut.is_err() || cut.unwrap().status().as_u16() >= 400);
    let head = h.head(&dev.token, &path).await;
    assert_eq!(head.header("upload-offset"), Some("30000"));
    // The device resumes from there.
    assert_eq!(
        h.patch(&dev.token, &path, 30_000, &[3u8; 70_000], None)
            .await
            .header("upload-offset"),
        Some("100000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_an_incomplete_upload_is_upload_missing() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(6));
    let b = dev.bundle(&id);
    let mut parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    // The selfie again, only half sent.
    let selfie = b.part(PartKind::Selfie);
    let path = h
        .create_upload(&dev.token, &id, PartKind::Selfie, selfie.len() as u64)
        .await
        .header("location")
        .unwrap()
        .to_string();
    assert_eq!(
        h.patch(&dev.token, &path, 0, &selfie[..selfie.len() / 2], None)
            .await
            .status,
        204
    );
    let complete = std::mem::replace(&mut parts[2].upload, path.clone());
    assert_eq!(parts[2].kind, PartKind::Selfie);
    h.commit(&dev.token, &b.commit_request(parts.clone()))
        .await
        .refused(409, Reason::UploadMissing);
    // Nothing was recorded: once complete, the same commit is counted.
    assert_eq!(
        h.patch(
            &dev.token,
            &path,
            (selfie.len() / 2) as u64,
            &selfie[selfie.len() / 2..],
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        h.commit(&dev.token, &b.commit_request(parts.clone()))
            .await
            .status,
        201
    );
    // The other selfie upload is still there (not consumed); the consumed ones are gone.
    assert_eq!(h.head(&dev.token, &complete).await.status, 200);
    assert_eq!(h.head(&dev.token, &parts[0].upload).await.status, 404);
    assert_eq!(h.stats().await["received"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_naming_the_wrong_uploads_is_upload_missing() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(7));
    let b = dev.bundle(&id);
    let parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    // Two parts swapped: each upload holds another kind.
    let mut swapped = parts.clone();
    let (u0, u1) = (swapped[0].upload.clone(), swapped[1].upload.clone());
    swapped[0].upload = u1;
    swapped[1].upload = u0;
    h.commit(&dev.token, &b.commit_request(swapped))
        .await
        .refused(409, Reason::UploadMissing);
    // A URL that is not an upload of this endpoint.
    let mut foreign = parts.clone();
    foreign[4].upload = "https://elsewhere.example/files/1".into();
    h.commit(&dev.token, &b.commit_request(foreign))
        .await
        .refused(409, Reason::UploadMissing);
    // Another device cannot see, use or delete these uploads.
    let other = h.store_device("b").await;
    assert_eq!(h.head(&other.token, &parts[0].upload).await.status, 404);
    let a = h
        .send(h.tus(Method::DELETE, &parts[0].upload, &other.token))
        .await;
    a.refused(404, Reason::NotFound);
    // (Crediting itself, so that the v1.1 collector check passes and the uploads are judged.)
    let mut theirs = b.commit_request(parts.clone());
    theirs.collector = apoyo_sync::Collector::MiApoyo(other.store.device_id().into());
    h.commit(&other.token, &theirs)
        .await
        .refused(409, Reason::UploadMissing);
    // The owner's commit still works.
    assert_eq!(
        h.commit(&dev.token, &b.commit_request(parts)).await.status,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_lengths_and_digests_must_match_the_bytes() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(8));
    let b = dev.bundle(&id);
    let parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    let mut wrong_sha = parts.clone();
    wrong_sha[1].sha256[5] ^= 1;
    h.commit(&dev.token, &b.commit_request(wrong_sha))
        .await
        .refused(422, Reason::PartMismatch);
    let mut wrong_len = parts.clone();
    wrong_len[3].length += 1;
    h.commit(&dev.token, &b.commit_request(wrong_len))
        .await
        .refused(422, Reason::PartMismatch);
    // Not recorded: the right commit is still counted.
    assert_eq!(
        h.commit(&dev.token, &b.commit_request(parts)).await.status,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_terminates_an_upload() {
    let h = Harness::start().await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(9));
    let path = h
        .create_upload(&dev.token, &id, PartKind::Front, 100)
        .await
        .header("location")
        .unwrap()
        .to_string();
    assert_eq!(
        h.patch(&dev.token, &path, 0, &[1u8; 50], None).await.status,
        204
    );
    let file = h
        .blob_dir()
        .join("uploads")
        .join(path.rsplit('/').next().unwrap());
    assert_eq!(std::fs::read(&file).unwrap().len(), 50);
    let a = h.send(h.tus(Method::DELETE, &path, &dev.token)).await;
    assert_eq!((a.status, a.header("tus-resumable")), (204, Some("1.0.0")));
    assert!(!file.exists());
    assert_eq!(h.head(&dev.token, &path).await.status, 404);
    h.patch(&dev.token, &path, 50, &[1u8; 50], None)
        .await
        .refused(404, Reason::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upload_is_gone() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let h = Harness::start_with(Opts {
        clock: Some(clock.clone()),
        upload_ttl: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(10));
    let b = dev.bundle(&id);
    let parts = h.upload_all(&dev.token, &b, 64 * 1024).await;
    let pending = h
        .create_upload(&dev.token, &id, PartKind::Front, 100)
        .await
        .header("location")
        .unwrap()
        .to_string();
    clock.advance(time::Duration::seconds(61));
    let head = h.head(&dev.token, &pending).await;
    assert_eq!((head.status, head.body.len()), (410, 0)); // HEAD answers carry no body
    h.patch(&dev.token, &pending, 0, &[1u8; 10], None)
        .await
        .refused(410, Reason::UploadMissing);
    h.commit(&dev.token, &b.commit_request(parts))
        .await
        .refused(409, Reason::UploadMissing);
    // Uploaded again, the capture is counted.
    assert_eq!(h.deliver(&dev.token, &b).await.status, 201);
    // Long after expiry, creating uploads sweeps the old ones away (bytes too).
    let file = h
        .blob_dir()
        .join("uploads")
        .join(pending.rsplit('/').next().unwrap());
    assert!(file.exists());
    clock.advance(time::Duration::hours(2));
    assert_eq!(
        h.create_upload(&dev.token, &id, PartKind::Front, 100)
            .await
            .status,
        201
    );
    assert!(!file.exists());
    assert_eq!(h.head(&dev.token, &pending).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_one_upload_do_not_interleave() {
    let h = Arc::new(Harness::start().await);
    let mut dev = h.store_device("a").await;
    let id = dev.capture_clave(REVOCACION, &clave(11));
    let path = h
        .create_upload(&dev.token, &id, PartKind::Back, 20_000)
        .await
        .header("location")
        .unwrap()
        .to_string();
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let (h, path, token) = (h.clone(), path.clone(), dev.token.clone());
        tasks.push(tokio::spawn(async move {
            h.patch(&token, &path, 0, &[i; 10_000], None).await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![204, 409, 409, 409, 409, 409]);
    let head = h.head(&dev.token, &path).await;
    assert_eq!(head.header("upload-offset"), Some("10000"));
    let bytes = std::fs::read(
        h.blob_dir()
            .join("uploads")
            .join(path.rsplit('/').next().unwrap()),
    )
    .unwrap();
    assert_eq!(bytes.len(), 10_000);
    assert!(bytes.iter().all(|&b| b == bytes[0]));
}
