//! TLS pinning of the HTTP transport, against a real rustls server on loopback.

use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::testkit::sync::transport::{Method, Request, TransportError};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    url: String,
    ca_pem: String,
    leaf_der: Vec<u8>,
}

/// A CA, a leaf for "localhost" signed by it, and a TLS server answering every request 200.
async fn server() -> Server {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let leaf_der = leaf.der().to_vec();

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
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        url: format!("https://localhost:{port}"),
        ca_pem: ca.pem(),
        leaf_der,
    }
}

async fn get(url: &str, tls: &TlsConfig) -> Result<u16, TransportError> {
    let t = HttpTransport::new(url, tls).unwrap();
    t.send(
        Request::new(Method::Get, "/", Duration::from_secs(10)),
        1024,
    )
    .await
    .map(|r| r.status)
}

#[tokio::test]
async fn trusts_only_the_configured_ca_or_pinned_certificate() {
    let s = server().await;
    let sha = apoyo_sync::testkit::sync::pinning::spki_sha256(&s.leaf_der).unwrap();
    // The pin names the key, not the certificate.
    assert_ne!(sha, apoyo_sync::testkit::crypto::sha256(&s.leaf_der));

    // The configured CA: accepted.
    let with_ca = TlsConfig {
        ca_pem: Some(s.ca_pem.clone().into_bytes()),
        pinned_spki_sha256: vec![],
    };
    assert_eq!(get(&s.url, &with_ca).await, Ok(200));

    // Another CA: refused.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = other.self_signed(&other_key).unwrap();
    let wrong_ca = TlsConfig {
        ca_pem: Some(other.pem().into_bytes()),
        pinned_spki_sha256: vec![],
    };
    assert!(get(&s.url, &wrong_ca).await.is_err());

    // Pinned certificate (with a backup pin that does not match): accepted.
    let pinned = TlsConfig {
        ca_pem: None,
        pinned_spki_sha256: vec![[9u8; 32], sha],
    };
    assert_eq!(get(&s.url, &pinned).await, Ok(200));

    // Only wrong pins: refused.
    let wrong_pin = TlsConfig {
        ca_pem: None,
        pinned_spki_sha256: vec![[9u8; 32]],
    };
    assert!(get(&s.url, &wrong_pin).await.is_err());

    // The right pin but the wrong host name: refused.
    let by_ip = s.url.replace("localhost", "127.0.0.1");
    assert!(get(&by_ip, &pinned).await.is_err());

    // CA and pin together: both must hold.
    let both = TlsConfig {
        ca_pem: Some(s.ca_pem.clone().into_bytes()),
        pinned_spki_sha256: vec![sha],
    };
    assert_eq!(get(&s.url, &both).await, Ok(200));
    let both_wrong_pin = TlsConfig {
        ca_pem: Some(s.ca_pem.clone().into_bytes()),
        pinned_spki_sha256: vec![[1u8; 32]],
    };
    assert!(get(&s.url, &both_wrong_pin).await.is_err());
}

#[test]
fn refuses_insecure_or_unpinned_configurations() {
    // Plain http only on loopback.
    assert!(HttpTransport::new("http://example.org", &TlsConfig::default()).is_err());
    assert!(HttpTransport::new("http://127.0.0.1:9", &TlsConfig::default()).is_ok());
    // https needs a CA or a pin: no silent fallback to "trust anything".
    assert!(HttpTransport::new("https://example.org", &TlsConfig::default()).is_err());
    assert!(HttpTransport::new("not a url", &TlsConfig::default()).is_err());
}
