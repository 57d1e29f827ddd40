//! The proxy is TLS-agnostic: a pinned HTTPS session (the sync engine's own transport, with the
//! endpoint's CA and its key pinned) passes through a shaping, jittering, lossy proxy untouched,
//! byte for byte; and the pin still holds through it (an endpoint with another key behind the
//! same proxy is refused by the phone, not by the proxy).

use std::sync::Arc;
use std::time::Duration;

use apoyo_fieldkit::profile::Profile;
use apoyo_fieldkit::proxy::{self, FaultLog, ProxyConfig};
use apoyo_sync::testkit::sync::pinning::spki_sha256;
use apoyo_sync::testkit::sync::transport::{Method, Request, TransportError};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the answer body: many segments, so pacing, jitter and loss all apply.
const BODY: usize = 60_000;

struct Tls {
    addr: std::net::SocketAddr,
    ca_pem: String,
    leaf_der: Vec<u8>,
}

fn body() -> Vec<u8> {
    (0..BODY).map(|i| (i * 7 % 251) as u8).collect()
}

/// A CA, a leaf for "localhost" signed by it, and a TLS server answering every request with
/// `body()` after reading the whole request.
async fn tls_server() -> Tls {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf_params
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\nconnection: close\r\n\r\n"
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Tls {
        addr,
        ca_pem: ca.pem(),
        leaf_der: leaf.der().to_vec(),
    }
}

async fn through_proxy(
    upstream: std::net::SocketAddr,
    tls: &TlsConfig,
) -> Result<Vec<u8>, TransportError> {
    let profile = Profile {
        up_kbps: Some(2_000.0),
        down_kbps: Some(4_000.0),
        delay_ms: 10,
        jitter_ms: 30,
        loss_pct: 5.0,
        ..Profile::passthrough("tls", "test")
    };
    let px = proxy::start(
        ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream,
            profile,
            seed: 3,
            http_mode: false,
            link: 0,
        },
        Arc::new(FaultLog::new(None)),
    )
    .await
    .unwrap();
    let url = format!("https://localhost:{}", px.addr.port());
    let t = HttpTransport::new(&url, tls).unwrap();
    let r = t
        .send(
            Request::new(Method::Get, "/v1/processes", Duration::from_secs(20)),
            BODY + 1,
        )
        .await?;
    assert_eq!(r.status, 200);
    assert!(
        px.link.wire_bytes() > BODY as u64,
        "the session went through the proxy"
    );
    Ok(r.body)
}

#[tokio::test]
async fn a_pinned_https_session_passes_through_the_proxy_untouched() {
    let server = tls_server().await;
    let pinned = TlsConfig {
        ca_pem: Some(server.ca_pem.clone().into_bytes()),
        pinned_spki_sha256: vec![spki_sha256(&server.leaf_der).unwrap()],
    };
    let got = through_proxy(server.addr, &pinned).await.unwrap();
    assert_eq!(got, body(), "every byte of the answer arrives unchanged");

    // The pin still holds through the proxy: another endpoint key behind it is refused.
    let other = tls_server().await;
    let err = through_proxy(other.addr, &pinned).await.unwrap_err();
    assert_eq!(err, TransportError::Tls);
}
