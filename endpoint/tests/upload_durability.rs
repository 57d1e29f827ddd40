//! One durable step per PATCH and the running digest (ADR 0021), from outside: a PATCH on
//! another replica (a second endpoint on the same database and blob folder) continues the
//! upload's SHA-256 from the state its row holds, and the digest stored at completion is the
//! SHA-256 of the bytes; the power-loss outcome (the row's last unflushed commits taken back,
//! the file ahead of it) is answered from the row, the extra bytes are cut, and the upload
//! completes with the right bytes and digest; a file shorter than its row is refused, never
//! filled; DELETE waits for the upload's lock, as a PATCH does.

mod common;

use apoyo_endpoint::{EndpointConfig, RunningEndpoint};
use apoyo_sync::testkit::crypto;
use apoyo_sync::{CaptureId, PartKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use reqwest::Method;

/// A second endpoint on the harness's database and blob folder: another replica.
async fn second_replica(h: &Harness) -> RunningEndpoint {
    let mut cfg = EndpointConfig::new(db_path(h.dir.path()), h.ring.clone(), h.processes.clone());
    cfg.dev = h.dev;
    cfg.upload_ttl = h.upload_ttl;
    cfg.body_idle_timeout = h.body_idle_timeout;
    if let Some(url) = &h.database {
        cfg.database = Some(url.parse().expect("a PostgreSQL URL"));
        cfg.blob_dir = Some(h.blob_dir());
    }
    apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("a second replica")
}

/// PATCHes `bytes` at `offset` through the endpoint at `base`, with their SHA-256.
async fn patch_via(
    h: &Harness,
    base: &str,
    token: &str,
    path: &str,
    offset: usize,
    bytes: &[u8],
) -> Answer {
    let rb = h
        .http
        .request(Method::PATCH, format!("{base}{path}"))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(token)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset.to_string())
        .header(
            "upload-checksum",
            format!("sha256 {}", B64.encode(crypto::sha256(bytes))),
        )
        .body(bytes.to_vec());
    h.send(rb).await
}

/// Test bytes that no piece boundary makes periodic.
fn payload(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `(upload_offset, digest_state, sha256)` of an upload's row.
async fn digest_columns(h: &Harness, id: &str) -> (Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>) {
    let rows = h
        .query(
            "SELECT upload_offset, digest_state, sha256 FROM uploads WHERE id = ?1",
            Some(id),
        )
        .await;
    let row = &rows[0];
    let bytes = |v: &backend::Val| match v {
        backend::Val::Null => None,
        other => Some(other.bytes()),
    };
    (row[0].int(), bytes(&row[1]), bytes(&row[2]))
}

/// Sets an upload's row behind the endpoint's back, as a power loss leaves it when its last
/// unflushed commits are lost: an earlier offset with the digest state it had then.
async fn roll_back_row(h: &Harness, id: &str, offset: i64, state: Option<Vec<u8>>) {
    match &h.database {
        Some(url) => {
            let c = backend::connect(url).await;
            c.execute(
                "UPDATE uploads SET upload_offset = $2, digest_state = $3, sha256 = NULL WHERE id = $1",
                &[&id, &offset, &state],
            )
            .await
            .unwrap();
        }
        None => {
            let c = rusqlite::Connection::open(db_path(h.dir.path())).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            c.execute(
                "UPDATE uploads SET upload_offset = ?2, digest_state = ?3, sha256 = NULL WHERE id = ?1",
                rusqlite::params![id, offset, state],
            )
            .unwrap();
        }
    }
}

fn upload_file(h: &Harness, id: &str) -> std::path::PathBuf {
    h.blob_dir().join("uploads").join(id)
}

/// A new front upload of `len` bytes; its path and id.
async fn create(h: &Harness, token: &str, len: usize) -> (String, String) {
    let capture = CaptureId::new_v7(time::OffsetDateTime::now_utc());
    let a = h
        .create_upload(token, &capture, PartKind::Front, len as u64)
        .await;
    assert_eq!(a.status, 201, "{:?}", a.error());
    let path = a.header("location").unwrap().to_string();
    let id = path.rsplit('/').next().unwrap().to_string();
    (path, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_another_replica_continues_the_digest() {
    let h = Harness::start().await;
    let other = second_replica(&h).await;
    let (_, token) = h.raw_device("a").await;
    let data = payload(150_001);
    let (path, id) = create(&h, &token, data.len()).await;
    // Pieces that end mid-block, alternating replicas.
    let cuts = [0usize, 70_001, 135_037, data.len()];
    let mut states = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let base = if i % 2 == 0 {
            h.url.clone()
        } else {
            other.url()
        };
        let a = patch_via(&h, &base, &token, &path, w[0], &data[w[0]..w[1]]).await;
        assert_eq!(a.status, 204, "{:?}", a.error());
        let (offset, state, sha256) = digest_columns(&h, &id).await;
        assert_eq!(offset, Some(w[1] as i64));
        if w[1] < data.len() {
            assert!(
                state.is_some() && sha256.is_none(),
                "the state is kept until complete"
            );
            states.push(state);
        } else {
            assert_eq!(state, None, "no state once complete");
            assert_eq!(
                sha256,
                Some(crypto::sha256(&data).to_vec()),
                "the stored digest is the bytes'"
            );
        }
    }
    assert_ne!(states[0], states[1]);
    assert_eq!(std::fs::read(upload_file(&h, &id)).unwrap(), data);
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_behind_its_file_is_the_truth() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    let data = payload(120_007);
    let (path, id) = create(&h, &token, data.len()).await;
    let (a, b) = (50_003, 90_001);
    assert_eq!(
        patch_via(&h, &h.url, &token, &path, 0, &data[..a])
            .await
            .status,
        204
    );
    let (_, state_at_a, _) = digest_columns(&h, &id).await;
    assert_eq!(
        patch_via(&h, &h.url, &token, &path, a, &data[a..b])
            .await
            .status,
        204
    );
    // A power loss took back the second PATCH's row (not its bytes, fdatasync'd before it),
    // and the file holds even more than that (junk past the upload's length).
    roll_back_row(&h, &id, a as i64, state_at_a).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(upload_file(&h, &id))
        .unwrap();
    std::io::Write::write_all(&mut f, &[0xEE; 40_000]).unwrap();
    drop(f);
    let head = h.head(&token, &path).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("upload-offset"),
        Some(a.to_string().as_str()),
        "the row is the truth"
    );
    // The client's acknowledged offset is gone: 409 there, and it continues from the HEAD's,
    // in smaller pieces than the lost PATCH (as after a cut).
    assert_eq!(
        patch_via(&h, &h.url, &token, &path, b, &data[b..])
            .await
            .status,
        409
    );
    let c = a + 20_000;
    for (from, to) in [(a, c), (c, data.len())] {
        let r = patch_via(&h, &h.url, &token, &path, from, &data[from..to]).await;
        assert_eq!(r.status, 204, "{:?}", r.error());
        assert_eq!(r.header("upload-offset"), Some(to.to_string().as_str()));
    }
    let (offset, state, sha256) = digest_columns(&h, &id).await;
    assert_eq!((offset, state), (Some(data.len() as i64), None));
    assert_eq!(sha256, Some(crypto::sha256(&data).to_vec()));
    assert_eq!(
        std::fs::read(upload_file(&h, &id)).unwrap(),
        data,
        "the extra bytes were cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shorter_than_its_row_is_refused_not_filled() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    let data = payload(9_000);
    let (path, id) = create(&h, &token, data.len()).await;
    assert_eq!(
        patch_via(&h, &h.url, &token, &path, 0, &data[..4_000])
            .await
            .status,
        204
    );
    // The bytes under the row's offset are gone (damage behind the endpoint's back).
    std::fs::OpenOptions::new()
        .write(true)
        .open(upload_file(&h, &id))
        .unwrap()
        .set_len(1_000)
        .unwrap();
    let r = patch_via(&h, &h.url, &token, &path, 4_000, &data[4_000..]).await;
    assert_eq!(r.status, 410, "{:?}", r.error());
    assert_eq!(r.reason(), apoyo_sync::wire::Reason::UploadMissing);
    assert_eq!(
        std::fs::metadata(upload_file(&h, &id)).unwrap().len(),
        1_000,
        "nothing filled in"
    );
    assert_eq!(
        digest_columns(&h, &id).await.0,
        Some(4_000),
        "the offset did not move"
    );
}

/// The transaction lock a PATCH of upload `id` takes on PostgreSQL (the endpoint's
/// `lock_key("upload", [id])`: SHA-256 of the namespace and parts, each followed by a zero,
/// first 8 bytes big-endian).
fn upload_lock_key(id: &str) -> i64 {
    let d = crypto::sha256(&[b"upload".as_slice(), &[0], id.as_bytes(), &[0]].concat());
    i64::from_be_bytes(d[..8].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_takes_the_upload_lock() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    let data = payload(3_000);
    let (path, id) = create(&h, &token, data.len()).await;
    assert_eq!(
        patch_via(&h, &h.url, &token, &path, 0, &data[..1_000])
            .await
            .status,
        204
    );
    // On PostgreSQL, hold the upload's lock as a PATCH midway on another replica would: the
    // DELETE must wait for it. (SQLite: the one connection's mutex already excludes.)
    let holder = match &h.database {
        Some(url) => {
            let c = backend::connect(url).await;
            c.execute("SELECT pg_advisory_lock($1)", &[&upload_lock_key(&id)])
                .await
                .unwrap();
            Some(c)
        }
        None => None,
    };
    let del = h.tus(Method::DELETE, &path, &token).send();
    let del = tokio::spawn(del);
    if let Some(c) = holder {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!del.is_finished(), "DELETE went ahead under a PATCH's lock");
        let head = h.head(&token, &path).await;
        assert_eq!(
            head.status, 200,
            "the upload is still there while the lock is held"
        );
        c.execute("SELECT pg_advisory_unlock($1)", &[&upload_lock_key(&id)])
            .await
            .unwrap();
    }
    let resp = del.await.unwrap().unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(h.head(&token, &path).await.status, 404);
    assert!(!upload_file(&h, &id).exists());
    assert!(
        h.query("SELECT id FROM uploads WHERE id = ?1", Some(&id))
            .await
            .is_empty()
    );
    let again = h.send(h.tus(Method::DELETE, &path, &token)).await;
    assert_eq!(again.status, 404);
}
