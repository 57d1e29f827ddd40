//! Entry points that create, close and describe engines, plus the error-message accessor and
//! the buffer free. Every one returns an `ApoyoCode` (0 = OK) through `boundary::call`.

use std::path::Path;

use apoyo_sync::{
    Collector, EndpointPublicKey, Engine, EngineOptions, IneRoot, Provisioning, TlsConfig,
};

use crate::boundary::{
    self, ApoyoEngine, Failure, Outcome, bytes, call, issue, need, put, retire, text,
};
use crate::keyguard::{ApoyoKeyGuard, HostGuard};
use crate::types::{ApoyoBuffer, ApoyoOptions, ApoyoProvisioning, ApoyoSlice};

/// The library version (a static NUL-terminated string; do not free).
#[unsafe(no_mangle)]
pub extern "C" fn apoyo_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Copies the message of this thread's last failed call into `out` (empty if the last call
/// succeeded). Free it with `apoyo_buffer_free`. Messages never hold personal data.
///
/// # Safety
/// `out` must be NULL or valid for a write of an `ApoyoBuffer`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_last_error_message(out: *mut ApoyoBuffer) -> i32 {
    // Read before `call` clears it.
    let message = boundary::last_error().unwrap_or_default();
    let rc = call(|| {
        // SAFETY: caller's contract.
        unsafe {
            put(
                out,
                ApoyoBuffer::from_vec(message.clone().into_bytes()),
                "out",
            )
        }
    });
    if rc != 0 {
        return rc;
    }
    // Keep the message readable by a second call.
    boundary::restore_last_error(message);
    rc
}

/// Frees a buffer the library handed over. Freeing an empty buffer is harmless; the buffer
/// must not be used (or freed) again.
///
/// # Safety
/// `buf` must come from this library, unchanged, and not have been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_buffer_free(buf: ApoyoBuffer) {
    if buf.ptr.is_null() || buf.len == 0 {
        return;
    }
    // SAFETY: `ptr`/`len` are those of a `Box<[u8]>` leaked by `ApoyoBuffer::from_vec`.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buf.ptr, buf.len)) });
}

/// # Safety
/// The slices inside `p` follow the `ApoyoSlice` contract.
unsafe fn provisioning(p: *const ApoyoProvisioning) -> Outcome<Provisioning> {
    // SAFETY: caller's contract: NULL or a valid struct.
    let p = unsafe { p.as_ref() }.ok_or_else(|| Failure::null("provisioning"))?;
    // SAFETY: caller's contract for each slice.
    let key = unsafe { bytes(p.endpoint_public_key, "endpoint_public_key") }?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| Failure::argument("endpoint_public_key must be 32 bytes"))?;
    // SAFETY: as above.
    let ca = unsafe { bytes(p.ca_pem, "ca_pem") }?;
    // SAFETY: as above.
    let pins = unsafe { bytes(p.pins, "pins") }?;
    // SAFETY: as above.
    let root = unsafe { text(p.ine_root, "ine_root") }?;
    if !pins.len().is_multiple_of(32) {
        return Err(Failure::argument(
            "pins must be 32-byte digests back to back",
        ));
    }
    Ok(Provisioning {
        endpoint_public_key: EndpointPublicKey(key),
        tls: TlsConfig {
            ca_pem: (!ca.is_empty()).then(|| ca.to_vec()),
            pinned_spki_sha256: pins
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok())
                .collect(),
        },
        ine_root: Some(ine_root(root, "ine_root")?),
    })
}

/// The INE root a bridge was given (`field` names the argument): required, in its provisioned
/// text form `apoyo-ine-root-v1 <64 hex>` (docs/protocol.md 5.7). The tag catches a seal key,
/// a private key or another key's line passed in its place. Missing or malformed is
/// `INVALID_ARGUMENT`; the message never echoes the text.
pub fn ine_root(text: &str, field: &str) -> Outcome<IneRoot> {
    if text.trim().is_empty() {
        return Err(Failure::argument(format!(
            "{field} is required: the INE root line INE provisions (apoyo-ine-root-v1 <64 hex>)"
        )));
    }
    IneRoot::from_text(text).map_err(|e| Failure::argument(format!("{field}: {e}")))
}

/// # Safety
/// `o` is NULL or a valid struct whose slices follow the `ApoyoSlice` contract.
unsafe fn options(o: *const ApoyoOptions) -> Outcome<EngineOptions> {
    let mut opts = EngineOptions::default();
    // SAFETY: caller's contract.
    if let Some(o) = unsafe { o.as_ref() } {
        if o.disk_reserve_bytes != u64::MAX {
            opts.disk_reserve_bytes = o.disk_reserve_bytes;
        }
        // SAFETY: caller's contract.
        let aux = unsafe { text(o.auxiliar_id, "auxiliar_id") }?;
        if !aux.is_empty() {
            opts.collector = Some(Collector::Auxiliar(aux.to_string()));
        }
    }
    Ok(opts)
}

type Opener = fn(&Path, &HostGuard, Provisioning, EngineOptions) -> apoyo_sync::Result<Engine>;

/// # Safety
/// As `apoyo_engine_open`.
unsafe fn start(
    open: Opener,
    dir: ApoyoSlice,
    guard: *const ApoyoKeyGuard,
    prov: *const ApoyoProvisioning,
    opts: *const ApoyoOptions,
    out: *mut *mut ApoyoEngine,
) -> Outcome {
    need(out, "out")?;
    // SAFETY: caller's contract.
    let dir = unsafe { text(dir, "dir") }?;
    if dir.is_empty() {
        return Err(Failure::argument("dir is empty"));
    }
    // SAFETY: caller's contract: NULL or a valid struct.
    let guard = unsafe { guard.as_ref() }.ok_or_else(|| Failure::null("key guard"))?;
    let guard = HostGuard::new(*guard).ok_or_else(|| Failure::null("a key guard callback"))?;
    // SAFETY: caller's contract.
    let prov = unsafe { provisioning(prov) }?;
    // SAFETY: caller's contract.
    let opts = unsafe { options(opts) }?;
    let engine = open(Path::new(dir), &guard, prov, opts)?;
    // SAFETY: checked non-NULL above; caller's contract.
    unsafe { put(out, issue(engine), "out") }
}

/// Creates a new store in the folder `dir` (UTF-8 path), its master key wrapped by the host's
/// key guard, and opens it; writes the engine handle to `out`.
///
/// # Safety
/// Slices follow the `ApoyoSlice` contract; `guard` and `prov` point to valid structs; `opts`
/// is NULL or valid; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_init(
    dir: ApoyoSlice,
    guard: *const ApoyoKeyGuard,
    prov: *const ApoyoProvisioning,
    opts: *const ApoyoOptions,
    out: *mut *mut ApoyoEngine,
) -> i32 {
    // SAFETY: forwarded contract.
    call(|| unsafe {
        start(
            |d, g, p, o| Engine::init(d, g, p, o),
            dir,
            guard,
            prov,
            opts,
            out,
        )
    })
}

/// Opens the store in `dir`; writes the engine handle to `out`. A store that cannot be opened
/// is left untouched and reported (`CORRUPT_STORE`, `STORE_VERSION`, `WRONG_DEVICE`, …).
///
/// # Safety
/// As `apoyo_engine_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_open(
    dir: ApoyoSlice,
    guard: *const ApoyoKeyGuard,
    prov: *const ApoyoProvisioning,
    opts: *const ApoyoOptions,
    out: *mut *mut ApoyoEngine,
) -> i32 {
    // SAFETY: forwarded contract.
    call(|| unsafe {
        start(
            |d, g, p, o| Engine::open(d, g, p, o),
            dir,
            guard,
            prov,
            opts,
            out,
        )
    })
}

/// Closes an engine: cancels a running sync, waits for it to stop, releases the store and the
/// listener. The handle is dead afterwards; closing it again is harmless (returns OK).
///
/// # Safety
/// `engine` is any value: NULL and unknown handles are refused, not dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_close(engine: *mut ApoyoEngine) -> i32 {
    call(|| {
        if let Some(e) = retire(engine)? {
            e.set_listener(None);
            e.close();
        }
        Ok(())
    })
}

/// Moves an unusable store aside (every byte kept) so a new one can be created; writes the
/// new folder's path to `out_path` (free it).
///
/// # Safety
/// `dir` follows the `ApoyoSlice` contract; `out_path` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_set_aside(dir: ApoyoSlice, out_path: *mut ApoyoBuffer) -> i32 {
    call(|| {
        need(out_path, "out_path")?;
        // SAFETY: caller's contract.
        let dir = unsafe { text(dir, "dir") }?;
        let moved = Engine::set_aside(Path::new(dir))?;
        let path = moved.to_string_lossy().into_owned().into_bytes();
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out_path, ApoyoBuffer::from_vec(path), "out_path") }
    })
}
