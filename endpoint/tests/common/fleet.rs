//! Several `apoyo serve` processes on one PostgreSQL database and one shared blob folder, and
//! simulated devices that talk to them over real HTTP and fail over to another replica when
//! theirs stops answering (used by `tests/replicas.rs` and the replica benchmark).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apoyo_sync::wire::{self as protocol, CommitPart, trust};
use apoyo_sync::{CaptureId, EndpointPublicKey, PartKind, testkit::crypto};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;

use super::{Bundle, RawDevice};

/// The `apoyo` binary next to this test's binary (`cargo build -p apoyo-cli` builds it).
pub fn apoyo_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("apoyo");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p apoyo-cli` first",
        bin.display()
    );
    bin
}

/// One `apoyo serve` process.
pub struct Replica {
    pub url: String,
    child: Child,
    /// Everything it printed on stdout and stderr.
    pub output: Arc<Mutex<String>>,
}

impl Replica {
    /// Starts `apoyo serve --dev` on `database` with the shared `blobs` folder. A PostgreSQL
    /// URL goes in `APOYO_DATABASE_URL` (out of the process list), a SQLite path in `--db`.
    pub fn spawn(database: &str, blobs: &Path, keys: &Path) -> Replica {
        let processes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/processes.json");
        let mut cmd = Command::new(apoyo_bin());
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0"]);
        if database.starts_with("postgres") {
            cmd.env("APOYO_DATABASE_URL", database);
        } else {
            cmd.args(["--db", database]);
        }
        let mut child = cmd
            .arg("--blobs")
            .arg(blobs)
            .arg("--keys")
            .arg(keys)
            .arg("--processes")
            .arg(processes)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start apoyo serve");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
                out.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let err = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("apoyo serve did not start: {}", output.lock().unwrap());
            }
        };
        Replica { url, child, output }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response, or `None` when the replica did not answer (connection refused or cut).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// An HTTP client of the replicas that fails over: a replica that does not answer is marked
/// down and the request goes to the next one up.
pub struct Fleet {
    pub http: reqwest::Client,
    pub urls: Vec<String>,
    pub up: Vec<AtomicBool>,
    pub ep: EndpointPublicKey,
}

/// One request's answer, which replica gave it, and when it was sent and answered.
pub struct Timed {
    pub replica: usize,
    pub resp: Resp,
    pub sent: Instant,
    pub answered: Instant,
}

impl Fleet {
    pub fn new(urls: Vec<String>, ep: EndpointPublicKey) -> Fleet {
        Fleet {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            up: urls.iter().map(|_| AtomicBool::new(true)).collect(),
            urls,
            ep,
        }
    }

    /// Sends to `replica` only; `None` if it does not answer.
    pub async fn try_once(
        &self,
        replica: usize,
        build: &(dyn Fn(&str) -> reqwest::RequestBuilder + Sync),
    ) -> Option<Timed> {
        let sent = Instant::now();
        let resp = build(&self.urls[replica]).send().await.ok()?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.ok()?.to_vec();
        Some(Timed {
            replica,
            resp: Resp {
                status,
                location,
                body,
            },
            sent,
            answered: Instant::now(),
        })
    }

    /// Sends to `prefer`, or the next replica up when it does not answer.
    pub async fn send(
        &self,
        prefer: usize,
        build: &(dyn Fn(&str) -> reqwest::RequestBuilder + Sync),
    ) -> Timed {
        for attempt in 0..self.urls.len() * 3 {
            let r = (prefer + attempt) % self.urls.len();
            if !self.up[r].load(Ordering::SeqCst) {
                continue;
            }
            match self.try_once(r, build).await {
                Some(t) => return t,
                None => self.up[r].store(false, Ordering::SeqCst),
            }
        }
        panic!("no replica answered");
    }

    /// Registers and activates `dev` through `prefer`; its token.
    pub async fn enrol(&self, dev: &RawDevice, email: &str, prefer: usize) -> String {
        let reg = protocol::encode(&dev.register_request(&self.ep, email)).unwrap();
        let a = self
            .send(prefer, &|u| cbor(&self.http, u, "/v1/devices", reg.clone()))
            .await;
        assert_eq!(a.resp.status, 201, "register");
        let mb = self
            .send(prefer, &|u| {
                self.http.get(format!("{u}/v1/dev/mailbox/{email}"))
            })
            .await;
        let code: serde_json::Value = serde_json::from_slice(&mb.resp.body).unwrap();
        let code = code["code"].as_str().unwrap().to_string();
        // A fresh nonce per attempt: an activation a replica completed before it died has used
        // its nonce (single-use across replicas), so the same request would be refused.
        for _ in 0..3 {
            let act = protocol::encode(&dev.activate_request(&self.ep, &code)).unwrap();
            let a = self
                .send(prefer, &|u| {
                    cbor(&self.http, u, "/v1/devices/activate", act.clone())
                })
                .await;
            if a.resp.status == 200 {
                let resp: protocol::ActivateResponse =
                    protocol::decode(&a.resp.body, 1 << 22, "activation").unwrap();
                return resp.token;
            }
        }
        panic!("activation refused three times");
    }

    /// Uploads one part (one creation, one PATCH) through `prefer`, starting over through the
    /// next replica when one stops answering midway; the upload's path.
    pub async fn upload_part(
        &self,
        token: &str,
        id: &CaptureId,
        kind: PartKind,
        bytes: &[u8],
        prefer: usize,
    ) -> String {
        let meta = format!(
            "capture_id {},kind {}",
            B64.encode(id.to_string()),
            B64.encode(kind.name())
        );
        for attempt in 0..self.urls.len() * 3 {
            let at = (prefer + attempt) % self.urls.len();
            let created = self
                .send(at, &|u| {
                    tus(&self.http, Method::POST, &format!("{u}/v1/uploads"), token)
                        .header("upload-length", bytes.len().to_string())
                        .header("upload-metadata", meta.clone())
                })
                .await;
            assert_eq!(created.resp.status, 201, "create upload");
            let path = created.resp.location.clone().expect("a Location");
            let patched = self
                .try_once(created.replica, &|u| {
                    tus(&self.http, Method::PATCH, &format!("{u}{path}"), token)
                        .header("content-type", "application/offset+octet-stream")
                        .header("upload-offset", "0")
                        .header(
                            "upload-checksum",
                            format!("sha256 {}", B64.encode(crypto::sha256(bytes))),
                        )
                        .body(bytes.to_vec())
                })
                .await;
            match patched {
                Some(t) if t.resp.status == 204 => return path,
                Some(t) => panic!("PATCH answered {}", t.resp.status),
                None => self.up[created.replica].store(false, Ordering::SeqCst),
            }
        }
        panic!("no replica took the upload");
    }

    /// Uploads every part of `b`; the commit's part list.
    pub async fn upload_all(&self, token: &str, b: &Bundle, prefer: usize) -> Vec<CommitPart> {
        let mut parts = Vec::new();
        for (kind, bytes) in &b.parts {
            let upload = self.upload_part(token, &b.id, *kind, bytes, prefer).await;
            parts.push(CommitPart {
                kind: *kind,
                upload,
                sha256: crypto::sha256(bytes),
                length: bytes.len() as u64,
            });
        }
        parts
    }

    /// The signed commit body of `b` with `parts`, as `dev` signs it.
    pub fn commit_body(dev: &RawDevice, b: &Bundle, parts: Vec<CommitPart>) -> Vec<u8> {
        let req = b.commit_request(parts);
        protocol::encode(&trust::sign_commit(&dev.signer, &req).unwrap()).unwrap()
    }

    /// PUT of a commit body to one replica (`None` if it does not answer).
    pub async fn commit_at(
        &self,
        replica: usize,
        token: &str,
        id: &CaptureId,
        body: &[u8],
    ) -> Option<Timed> {
        if !self.up[replica].load(Ordering::SeqCst) {
            return None;
        }
        let t = self
            .try_once(replica, &|u| commit_req(&self.http, u, token, id, body))
            .await;
        if t.is_none() {
            self.up[replica].store(false, Ordering::SeqCst);
        }
        t
    }

    /// PUT of a commit body, failing over.
    pub async fn commit(&self, prefer: usize, token: &str, id: &CaptureId, body: &[u8]) -> Timed {
        self.send(prefer, &|u| commit_req(&self.http, u, token, id, body))
            .await
    }
}

fn cbor(http: &reqwest::Client, base: &str, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    http.post(format!("{base}{path}"))
        .header("content-type", protocol::CBOR)
        .body(body)
}

fn tus(http: &reqwest::Client, m: Method, url: &str, token: &str) -> reqwest::RequestBuilder {
    http.request(m, url)
        .header("tus-resumable", "1.0.0")
        .bearer_auth(token)
}

fn commit_req(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &CaptureId,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let id = id.to_string();
    http.put(format!("{base}/v1/supports/{id}"))
        .bearer_auth(token)
        .header("idempotency-key", id)
        .header("content-type", protocol::CBOR)
        .body(body.to_vec())
}
