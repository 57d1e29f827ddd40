//! The storage seam from outside: the suite runs on the backend `APOYO_TEST_DATABASE_URL`
//! selects (and says so through `/readyz`), health and readiness answer, and a PostgreSQL URL's
//! password never shows in the configuration's or the state's `Debug`, nor in a start error.

mod common;

use apoyo_endpoint::{DatabaseUrl, EndpointConfig, KeyRing};
use apoyo_sync::testkit::crypto::Ed25519Secret;
use common::*;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_name_the_backend_in_use() {
    let h = Harness::start().await;
    let health = h.send(h.req(Method::GET, "/healthz")).await;
    assert_eq!(health.status, 200);
    let ready = h.send(h.req(Method::GET, "/readyz")).await;
    assert_eq!(ready.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    let expected = if backend::server_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(body["database"], expected, "{body}");
    assert_eq!(body["ready"], true);
    // Without its blob folder the endpoint is not ready.
    std::fs::rename(h.blob_dir(), h.dir.path().join("moved")).unwrap();
    let ready = h.send(h.req(Method::GET, "/readyz")).await;
    assert_eq!(ready.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_is_never_printed() {
    let password = "Pw-never-shown-7731";
    let dir = tempfile::tempdir().unwrap();
    let root = Ed25519Secret::generate().unwrap();
    let ring = KeyRing::generate(&root, time::OffsetDateTime::now_utc()).unwrap();
    let mut cfg = EndpointConfig::new(dir.path().join("x.db"), ring, processes(PROCESSES));
    // Nothing listens on port 9 (discard): the connection fails.
    let url: DatabaseUrl = format!("postgres://apoyo:{password}@127.0.0.1:9/apoyo")
        .parse()
        .unwrap();
    cfg.database = Some(url);
    cfg.blob_dir = Some(dir.path().join("blobs"));
    let shown = format!("{cfg:?}");
    assert!(!shown.contains(password), "{shown}");
    assert!(shown.contains("apoyo@127.0.0.1:9/apoyo"), "{shown}");
    let err = apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect_err("no server on port 9");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(password), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_runs_on_the_backend_it_was_given() {
    let h = Harness::start().await;
    let (_, token) = h.raw_device("a").await;
    assert!(!token.is_empty());
    match backend::server_url() {
        // The token row is in this test's own PostgreSQL schema, and nothing is in a SQLite file.
        Some(_) => {
            let n = h.query("SELECT count(*) FROM tokens", None).await[0][0].int();
            assert_eq!(n, Some(1));
            assert!(!db_path(h.dir.path()).exists());
        }
        None => assert!(db_path(h.dir.path()).exists()),
    }
}
