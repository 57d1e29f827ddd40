//! Natives that create, close and set aside engines (Java class `mx.ine.apoyo.sync.Native`).
//! `SyncEngine.create` / `open` call `open` with the provisioning INE ships (endpoint key, INE
//! root, CA, pins) and the options; the handle they get back is an apoyo-ffi registry key.

use std::path::Path;

use apoyo_sync::{Collector, EndpointPublicKey, Engine, EngineOptions, Provisioning, TlsConfig};
use apoyo_sync_ffi::boundary::Failure;
use apoyo_sync_ffi::lifecycle::ine_root;
use jni::EnvUnowned;
use jni::objects::{JByteArray, JClass, JObject, JString};
use jni::sys::{jboolean, jlong};

use crate::boundary::{self, JResult, run};
use crate::convert::{bytes, opt_bytes, opt_text, text};
use crate::keyguard::JavaGuard;

fn provisioning(
    key: Vec<u8>,
    root: Option<String>,
    ca: Vec<u8>,
    pins: Vec<u8>,
) -> JResult<Provisioning> {
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| Failure::argument("endpointPublicKey must be 32 bytes"))?;
    if !pins.len().is_multiple_of(32) {
        return Err(Failure::argument("pins must be 32-byte digests back to back").into());
    }
    Ok(Provisioning {
        endpoint_public_key: EndpointPublicKey(key),
        tls: TlsConfig {
            ca_pem: (!ca.is_empty()).then_some(ca),
            pinned_spki_sha256: pins
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok())
                .collect(),
        },
        // Required (protocol v1.1): null or empty is INVALID_ARGUMENT, as in the C ABI.
        ine_root: Some(ine_root(root.as_deref().unwrap_or(""), "ineRoot")?),
    })
}

fn options(disk_reserve: jlong, auxiliar: Option<String>) -> EngineOptions {
    let mut opts = EngineOptions::default();
    if disk_reserve >= 0 {
        opts.disk_reserve_bytes = disk_reserve as u64;
    }
    opts.collector = auxiliar.filter(|a| !a.is_empty()).map(Collector::Auxiliar);
    opts
}

/// `static native long open(boolean create, String dir, KeyGuard guard, byte[] endpointKey,
/// String ineRoot, byte[] caPem, byte[] pins, long diskReserveBytes, String auxiliarId)`:
/// creates (`create`) or opens the store in `dir`; a negative reserve is the default, a null
/// auxiliar the citizen's own phone.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_open<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    create: jboolean,
    dir: JString<'l>,
    guard: JObject<'l>,
    endpoint_key: JByteArray<'l>,
    ine_root_text: JString<'l>,
    ca_pem: JByteArray<'l>,
    pins: JByteArray<'l>,
    disk_reserve: jlong,
    auxiliar: JString<'l>,
) -> jlong {
    run(&mut env, |env| {
        let dir = text(env, &dir, "dir")?;
        if dir.is_empty() {
            return Err(Failure::argument("dir is empty").into());
        }
        if guard.is_null() {
            return Err(Failure::null("key guard").into());
        }
        let guard = JavaGuard::new(env, &guard)?;
        let prov = provisioning(
            bytes(env, &endpoint_key, "endpointPublicKey")?,
            opt_text(env, &ine_root_text)?,
            opt_bytes(env, &ca_pem)?,
            opt_bytes(env, &pins)?,
        )?;
        let opts = options(disk_reserve, opt_text(env, &auxiliar)?);
        let engine = if create {
            Engine::init(Path::new(&dir), &guard, prov, opts)?
        } else {
            Engine::open(Path::new(&dir), &guard, prov, opts)?
        };
        Ok(boundary::issue(engine))
    })
}

/// `static native void close(long handle)`: closing twice is harmless.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_close<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) {
    run(&mut env, |_| boundary::close(handle))
}

/// `static native String setAside(String dir)`: moves an unusable store aside (every byte
/// kept); returns where it went.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_setAside<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    dir: JString<'l>,
) -> JString<'l> {
    run(&mut env, |env| {
        let dir = text(env, &dir, "dir")?;
        let moved = Engine::set_aside(Path::new(&dir))?;
        Ok(env.new_string(moved.to_string_lossy())?)
    })
}

/// `static native String version()`: the library version.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_version<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
) -> JString<'l> {
    run(&mut env, |env| {
        Ok(env.new_string(env!("CARGO_PKG_VERSION"))?)
    })
}
