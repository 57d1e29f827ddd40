//! Registration ("Registro ciudadano") and activation.

use std::time::Duration;

use super::client::{Client, Failure};
use super::transport::Transport;
use crate::crypto::{self, PartSealer};
use crate::error::{Error, Result};
use crate::model::{CaptureId, PartKind};
use crate::protocol::{
    self, ActivateRequest, ActivateResponse, Provider, RegisterRequest, RegisterResponse,
};
use crate::store::Store;

/// How long registration and activation wait for the endpoint.
pub const DEVICE_CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn refused(f: Failure, what: &str) -> Error {
    match f {
        Failure::Refused { reason, .. } if what == "activation" => {
            Error::Activation(reason.code().to_string())
        }
        Failure::Refused { reason, .. } => Error::Rejected {
            reason: reason.code().to_string(),
        },
        Failure::Transient { what: w, .. } => Error::Transient(format!("{what}: {w}")),
    }
}

/// Registers the device: its public key, the card front (sealed for the endpoint like a
/// capture part), the email and the provider that validated it. The endpoint emails a code.
pub async fn register(
    store: &mut Store,
    transport: &dyn Transport,
    endpoint_url: &str,
    email: &str,
    provider: Provider,
    front: &[u8],
) -> Result<RegisterResponse> {
    crate::validate::check_image(PartKind::Front, front)?;
    if email.len() > 254 || email.matches('@').count() != 1 {
        return Err(Error::invalid(
            crate::error::Field::Collector,
            "email is not an address",
        ));
    }
    let registration_id = CaptureId::new_v7(store.clock().now());
    let dk = crypto::random_key()?;
    let mut sealed_front = Vec::with_capacity(crypto::ciphertext_len(front.len() as u64) as usize);
    PartSealer::new(&dk, registration_id.as_bytes(), PartKind::Front)?
        .seal_to(front, &mut sealed_front)?;
    let front_sealed_key = crypto::wrap::seal_to_endpoint(
        &store.endpoint_public(),
        store.identity(),
        registration_id.as_bytes(),
        &dk,
    )?;
    let msg = RegisterRequest {
        v: protocol::VERSION,
        device_public: store.device_public(),
        email: email.to_string(),
        provider,
        registration_id,
        front_sealed_key,
        front: sealed_front,
    };
    store.set_endpoint_url(endpoint_url)?;
    let client = Client::new(transport, store.clock().clone());
    let resp = client
        .register(&msg, DEVICE_CALL_TIMEOUT)
        .await?
        .map_err(|f| refused(f, "registration"))?;
    store.set_registration(&resp.registration_id)?;
    Ok(resp)
}

/// Activates the device with the emailed code, proving it holds the key the code was issued
/// to, and registering its commit-signing key (and auxiliar id) under that proof (v1.1).
/// Stores the token, the endpoint key certificates that chain to the INE root, and the
/// process catalog.
pub async fn activate(
    store: &mut Store,
    transport: &dyn Transport,
    code: &str,
) -> Result<ActivateResponse> {
    if store.registration_id()?.is_none() {
        return Err(Error::NotRegistered);
    }
    let code = code.trim().to_ascii_uppercase();
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Activation("the code has the wrong form".into()));
    }
    let mut nonce = [0u8; 16];
    crypto::fill_random(&mut nonce)?;
    let shared = store.identity().diffie_hellman(&store.endpoint_public().0);
    let device_public = store.device_public();
    let signing_public = store.signing_public()?;
    let auxiliar_id = match store.collector() {
        crate::model::Collector::Auxiliar(id) => Some(id.clone()),
        crate::model::Collector::MiApoyo(_) => None,
    };
    let proof = protocol::activation_proof_v11(
        &shared,
        &code,
        &nonce,
        &device_public,
        &signing_public,
        auxiliar_id.as_deref(),
    )?;
    let msg = ActivateRequest {
        v: protocol::VERSION,
        device_public,
        code,
        nonce: nonce.to_vec(),
        proof,
        signing_public: Some(signing_public),
        auxiliar_id,
    };
    let client = Client::new(transport, store.clock().clone());
    let resp = client
        .activate(&msg, DEVICE_CALL_TIMEOUT)
        .await?
        .map_err(|f| refused(f, "activation"))?;
    store.set_activation(
        &resp.token,
        resp.expires_at,
        &resp.receipt_key,
        &resp.receipt_key_id,
    )?;
    store.put_processes(&resp.processes)?;
    // Only certificates that chain to the provisioned INE root are kept (a v1 endpoint sends
    // none: its receipts will never be grounds for deletion).
    let kept = store.put_key_certs(&resp.key_certs)?;
    if kept < resp.key_certs.len() {
        tracing::warn!(
            dropped = resp.key_certs.len() - kept,
            "key certificates not chained to the INE root were dropped"
        );
    }
    Ok(resp)
}
