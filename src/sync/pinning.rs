//! Public-key pinning inside the rustls verifier. A Rust client doing its own HTTP bypasses
//! Android's Network Security Config and iOS's pinning, so the engine pins by itself:
//! - with a CA configured, the chain and host name are verified against that CA only;
//! - with pins configured, the end-entity certificate's public key (SHA-256 of its DER
//!   SubjectPublicKeyInfo, as in RFC 7469) must be one of the pins, and the certificate must be
//!   valid for the host name. A key pin survives certificate renewal with the same key; keep
//!   at least one backup pin (a key held offline) for rotation.
//!
//! With both, both must hold. The settings are a [`TlsConfig`], owned here so the transport
//! depends on pinning and never the other way round.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// TLS settings for [`super::HttpTransport`].
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// Trust only this CA (PEM) for the endpoint, instead of none.
    pub ca_pem: Option<Vec<u8>>,
    /// SHA-256 digests of accepted endpoint public keys (DER SubjectPublicKeyInfo, RFC 7469).
    /// When non-empty, the endpoint's key must be one of these (keep at least one backup pin).
    pub pinned_spki_sha256: Vec<[u8; 32]>,
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (what a pin names).
#[cfg(any(test, feature = "testkit"))]
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32]> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|_| Error::Decode("not an X.509 certificate".into()))?;
    Ok(crate::crypto::sha256(
        cert.subject_public_key_info().as_ref(),
    ))
}

/// Builds the rustls client configuration for `tls`.
pub fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::Internal("TLS protocol versions".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = &tls.ca_pem {
        use rustls::pki_types::pem::PemObject as _;
        for cert in CertificateDer::pem_slice_iter(&pem[..]) {
            let cert = cert.map_err(|_| Error::Decode("CA file is not PEM".into()))?;
            roots
                .add(cert)
                .map_err(|_| Error::Decode("CA certificate rejected".into()))?;
        }
        if roots.is_empty() {
            return Err(Error::Decode("CA file holds no certificate".into()));
        }
    }
    let chain = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|_| Error::Decode("CA certificate rejected".into()))?,
        )
    };
    if tls.pinned_spki_sha256.is_empty() && chain.is_none() {
        return Err(Error::Decode(
            "https needs a CA file or a public-key pin".into(),
        ));
    }
    let verifier = PinningVerifier {
        chain,
        pins: tls.pinned_spki_sha256.clone(),
        provider,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct PinningVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

fn bad_cert() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        if !self.pins.is_empty() {
            let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| bad_cert())?;
            let name = server_name.to_owned();
            cert.verify_is_valid_for_subject_name(&name).map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
            let digest = crate::crypto::sha256(cert.subject_public_key_info().as_ref());
            if !self.pins.contains(&digest) {
                return Err(bad_cert());
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
