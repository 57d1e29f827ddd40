//! Issue 17, tus 1.0 as written (what stock clients rely on): `X-HTTP-Method-Override` on a
//! POST, `sha1` checksums beside `sha256`, `Upload-Metadata` given back on HEAD, and a creation
//! request carrying bytes refused (creation-with-upload is not offered) instead of accepted
//! with its bytes dropped.

mod common;

use apoyo_sync::wire::Reason;
use apoyo_sync::{CaptureId, PartKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use reqwest::Method;
use sha1::Digest as _;

fn new_id() -> CaptureId {
    CaptureId::new_v7(time::OffsetDateTime::now_utc())
}

async fn created(h: &Harness, token: &str, length: u64) -> (String, CaptureId) {
    let id = new_id();
    let a = h.create_upload(token, &id, PartKind::Front, length).await;
    assert_eq!(a.status, 201, "{:?}", a.error());
    (a.header("location").unwrap().to_string(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_with_method_override_is_a_patch_or_a_delete() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("override").await;
    let (path, _) = created(&h, &token, 10).await;
    let a = h
        .send(
            h.tus(Method::POST, &path, &token)
                .header("x-http-method-override", "PATCH")
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", "0")
                .body(vec![7u8; 4]),
        )
        .await;
    assert_eq!((a.status, a.header("upload-offset")), (204, Some("4")));
    assert_eq!(
        h.head(&token, &path).await.header("upload-offset"),
        Some("4")
    );
    let a = h
        .send(
            h.tus(Method::POST, &path, &token)
                .header("x-http-method-override", "DELETE"),
        )
        .await;
    assert_eq!(a.status, 204);
    assert_eq!(h.head(&token, &path).await.status, 404);
    // A POST to an upload without the override is still not a method of the route.
    let (path, _) = created(&h, &token, 10).await;
    let a = h.send(h.tus(Method::POST, &path, &token)).await;
    assert_eq!(a.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha1_checksums_are_verified_beside_sha256() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("sha1").await;
    let (path, _) = created(&h, &token, 8).await;
    let piece = b"abcd".to_vec();
    let patch = |offset: &str, sum: String, body: Vec<u8>| {
        h.tus(Method::PATCH, &path, &token)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .header("upload-checksum", sum)
            .body(body)
    };
    let mut wrong = sha1::Sha1::digest(&piece).to_vec();
    wrong[0] ^= 1;
    let a = h
        .send(patch(
            "0",
            format!("sha1 {}", B64.encode(&wrong)),
            piece.clone(),
        ))
        .await;
    assert_eq!(a.status, 460);
    let right = sha1::Sha1::digest(&piece);
    let a = h
        .send(patch(
            "0",
            format!("sha1 {}", B64.encode(right)),
            piece.clone(),
        ))
        .await;
    assert_eq!((a.status, a.header("upload-offset")), (204, Some("4")));
    // A sha1 of the wrong length is malformed, like any other garbled checksum.
    h.send(patch("4", format!("sha1 {}", B64.encode([0u8; 32])), piece))
        .await
        .refused(400, Reason::Malformed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gives_back_the_upload_metadata() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("meta").await;
    let (path, id) = created(&h, &token, 10).await;
    let head = h.head(&token, &path).await;
    assert_eq!(head.status, 200);
    let expected = format!(
        "capture_id {},kind {}",
        B64.encode(id.to_string()),
        B64.encode("front")
    );
    assert_eq!(head.header("upload-metadata"), Some(expected.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_with_a_body_is_refused_and_creates_nothing() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("cwu").await;
    let id = new_id();
    let meta = format!(
        "capture_id {},kind {}",
        B64.encode(id.to_string()),
        B64.encode("front")
    );
    let a = h
        .send(
            h.tus(Method::POST, "/v1/uploads", &token)
                .header("upload-length", "10")
                .header("upload-metadata", meta)
                .header("content-type", "application/offset+octet-stream")
                .body(vec![1u8; 10]),
        )
        .await;
    a.refused(400, Reason::Malformed);
    assert!(a.header("location").is_none());
    // Nothing was created: the same part can still be created, and it starts at offset 0.
    let (path, _) = {
        let a = h.create_upload(&token, &id, PartKind::Front, 10).await;
        assert_eq!(a.status, 201, "{:?}", a.error());
        (a.header("location").unwrap().to_string(), ())
    };
    assert_eq!(
        h.head(&token, &path).await.header("upload-offset"),
        Some("0")
    );
}
