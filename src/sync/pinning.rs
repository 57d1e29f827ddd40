//! Certificate pinning inside the rustls verifier. A Rust client doing its own HTTP bypasses
//! Android's Network Security Config and iOS's pinning, so the engine pins by itself: it trusts
//! only the configured CA, and, when pins are configured, only end-entity certificates whose
//! SHA-256 is pinned (keep at least one backup pin for rotation).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::transport::TlsConfig;
use crate::error::{Error, Result};

/// Builds the rustls client configuration for `tls`.
pub fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::Internal("TLS protocol versions".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = &tls.ca_pem {
        let mut reader = std::io::BufReader::new(&pem[..]);
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|_| Error::Decode("CA file is not PEM".into()))?;
            roots.add(cert).map_err(|_| Error::Decode("CA certificate rejected".into()))?;
        }
    }
    if tls.pinned_cert_sha256.is_empty() {
        if roots.is_empty() {
            return Err(Error::Decode("https needs a CA file or a certificate pin".into()));
        }
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    }
    let verifier = PinnedVerifier { pins: tls.pinned_cert_sha256.clone(), provider };
    Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth())
}

#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let digest = crate::crypto::sha256(end_entity.as_ref());
        if self.pins.contains(&digest) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
