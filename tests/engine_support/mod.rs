//! Shared helpers for the `Engine` facade tests: a real reference endpoint in-process on
//! loopback (real HTTP, real SQLite), engines in temporary folders with a development keyring
//! outside the store, an event recorder, a transport that slows every exchange (so another
//! thread can act during a run), and a TCP relay that counts the bytes really on the wire.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apoyo_endpoint::{EndpointConfig, RunningEndpoint};
use apoyo_sync::testkit::sync::transport::{Method, Request, SendFuture};
use apoyo_sync::testkit::sync::{BackoffPolicy, HttpTransport, TlsConfig, Transport};
use apoyo_sync::wire::crypto::EndpointSecretKey;
use apoyo_sync::{
    CardFields, CredentialModel, Engine, EngineOptions, Event, FileKeyGuard, Images, Listener,
    NewCapture, Process, Progress, Provider, Provisioning,
};

pub const PROCESSES: &str = include_str!("../../examples/processes.json");

/// A running reference endpoint and a folder for device stores.
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    ep: Option<RunningEndpoint>,
    pub url: String,
    pub key: EndpointSecretKey,
    /// The INE root that certifies the endpoint's keys (protocol v1.1).
    pub ine_root: apoyo_sync::IneRoot,
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(ep) = self.ep.take() {
            self.rt.block_on(ep.shutdown());
        }
    }
}

pub fn start() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = apoyo_sync::testkit::crypto::Ed25519Secret::generate().expect("root");
    let ring = apoyo_endpoint::KeyRing::generate(&root, time::OffsetDateTime::now_utc())
        .expect("key ring");
    let key = EndpointSecretKey::from_bytes(*ring.seal[0].secret.as_bytes());
    let ine_root = ring.root;
    let mut cfg = EndpointConfig::new(
        dir.path().join("endpoint.db"),
        ring,
        Process::parse_json_list(PROCESSES.as_bytes()).expect("processes"),
    );
    cfg.dev = true;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ep = rt
        .block_on(apoyo_endpoint::start(
            cfg,
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("endpoint");
    let url = ep.url();
    Env {
        rt,
        ep: Some(ep),
        url,
        key,
        ine_root,
        dir,
    }
}

impl Env {
    pub fn provisioning(&self) -> Provisioning {
        Provisioning::new(self.key.public(), self.ine_root)
    }

    pub fn store_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn guard(&self, name: &str) -> FileKeyGuard {
        FileKeyGuard::open_or_create(&self.dir.path().join(format!("{name}-keyring")))
            .expect("keyring")
    }

    fn dev_get(&self, path: &str) -> serde_json::Value {
        let t = HttpTransport::new(&self.url, &TlsConfig::default()).expect("transport");
        let resp = self
            .rt
            .block_on(t.send(
                Request::new(Method::Get, path, Duration::from_secs(10)),
                1 << 20,
            ))
            .expect("dev route");
        assert_eq!(resp.status, 200, "{path}");
        serde_json::from_slice(&resp.body).expect("json")
    }

    pub fn mailbox_code(&self, email: &str) -> String {
        self.dev_get(&format!("/v1/dev/mailbox/{email}"))["code"]
            .as_str()
            .expect("code")
            .to_string()
    }

    pub fn stats(&self) -> serde_json::Value {
        self.dev_get("/v1/admin/stats")
    }

    /// A new engine (store initialised), not registered.
    pub fn engine(&self, name: &str, opts: EngineOptions) -> Engine {
        Engine::init(
            &self.store_dir(name),
            &self.guard(name),
            self.provisioning(),
            opts,
        )
        .expect("init")
    }

    /// A new engine, registered with and activated by the endpoint at `url`.
    pub fn activated_at(&self, name: &str, url: &str, opts: EngineOptions) -> Engine {
        let e = self.engine(name, opts);
        let email = format!("{name}@example.org");
        e.register(url, &email, Provider::Google, &jpeg(3000))
            .expect("register");
        e.activate(&self.mailbox_code(&email)).expect("activate");
        e
    }

    pub fn activated(&self, name: &str, opts: EngineOptions) -> Engine {
        self.activated_at(name, &self.url.clone(), opts)
    }
}

/// Engine options for tests: short backoff, replayable jitter.
pub fn fast() -> EngineOptions {
    EngineOptions {
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        seed: Some(7),
        default_budget: Duration::from_secs(60),
        ..Default::default()
    }
}

/// A synthetic JPEG of `len` bytes (random payload; no real person's data).
pub fn jpeg(len: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    v.extend((0..len.saturating_sub(4)).map(|i| (i * 131 % 251) as u8));
    v
}

pub fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (i * 17 % 253) as u8));
    v
}

/// A well-formed clave de elector, distinct for every `i` below 26^3.
pub fn clave(i: usize) -> String {
    let l = |n: usize| char::from(b'A' + (n % 26) as u8);
    format!(
        "{}{}{}XYZ900101{:02}H{:03}",
        l(i / 676),
        l(i / 26),
        l(i),
        1 + i % 32,
        i % 1000
    )
}

/// A capture for `process` of citizen `i`, with images of about `kib` KiB in all.
pub fn capture(process: &str, i: usize, kib: usize) -> NewCapture {
    let quarter = kib * 1024 / 4;
    NewCapture {
        process_id: process.into(),
        model: CredentialModel::parse("G").expect("model"),
        fields: CardFields {
            clave_elector: clave(i),
            ..Default::default()
        },
        location: None,
        images: Images {
            front: jpeg(quarter),
            back: jpeg(quarter),
            selfie: jpeg(quarter),
            signature: png(quarter.min(500 * 1024)),
        },
        collector: None,
    }
}

/// Records every event and progress snapshot.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
    pub progress: Mutex<Vec<Progress>>,
}

impl Listener for Recorder {
    fn on_event(&self, e: &Event) {
        self.events.lock().expect("events").push(e.clone());
    }
    fn on_progress(&self, p: &Progress) {
        self.progress.lock().expect("progress").push(*p);
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }
}

/// Real HTTP, each exchange delayed by `delay` before it goes out, counting requests.
pub struct SlowTransport {
    pub inner: HttpTransport,
    pub delay: Duration,
    pub requests: AtomicU64,
}

impl SlowTransport {
    pub fn new(url: &str, delay: Duration) -> Arc<Self> {
        Arc::new(SlowTransport {
            inner: HttpTransport::new(url, &TlsConfig::default()).expect("transport"),
            delay,
            requests: AtomicU64::new(0),
        })
    }
}

impl Transport for SlowTransport {
    fn send(&self, req: Request, limit: usize) -> SendFuture<'_> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.inner.send(req, limit).await
        })
    }
}

/// A TCP relay on loopback in front of the endpoint that counts every byte it forwards, both
/// ways: what really went over the wire.
pub struct Relay {
    pub url: String,
    pub bytes: Arc<AtomicU64>,
}

pub fn relay(target: &str) -> Relay {
    let target = target.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let bytes = Arc::new(AtomicU64::new(0));
    let counter = bytes.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            pump(&client, &server, counter.clone());
            pump(&server, &client, counter.clone());
        }
    });
    Relay { url, bytes }
}

fn pump(from: &TcpStream, to: &TcpStream, counter: Arc<AtomicU64>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}
