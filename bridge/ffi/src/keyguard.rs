//! The host's key guard: two callbacks the app implements over the iOS Keychain / Secure
//! Enclave (or the Android Keystore) to wrap and unwrap the device master key. They are
//! called only during `apoyo_engine_init` / `apoyo_engine_open`, on the calling thread.

use std::ffi::c_void;

use apoyo_sync::{Error, KeyGuard, SecretKey};
use zeroize::Zeroize;

use crate::types::ApoyoSlice;

/// The callback succeeded.
pub const APOYO_GUARD_OK: i32 = 0;
/// The platform key is not available (locked device, deleted key).
pub const APOYO_GUARD_UNAVAILABLE: i32 = 1;
/// The wrapped key was not made by this device's key (a copied store).
pub const APOYO_GUARD_WRONG_DEVICE: i32 = 2;
/// The most bytes a wrapped master key may take.
pub const APOYO_GUARD_MAX_WRAPPED: usize = 1024;

/// Wrap/unwrap callbacks. `label` binds the wrap to the store; `key` is the 32-byte master key.
/// `wrap` writes at most `out_cap` bytes to `out` and their count to `out_len`; `unwrap` writes
/// exactly 32 bytes to `out_key`. Each returns an `APOYO_GUARD_*` value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ApoyoKeyGuard {
    pub ctx: *mut c_void,
    pub wrap: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            label: ApoyoSlice,
            key: ApoyoSlice,
            out: *mut u8,
            out_cap: usize,
            out_len: *mut usize,
        ) -> i32,
    >,
    pub unwrap: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            label: ApoyoSlice,
            wrapped: ApoyoSlice,
            out_key: *mut u8,
        ) -> i32,
    >,
}

/// The host guard as the core sees it. Lives only for one init/open call.
pub struct HostGuard(ApoyoKeyGuard);

// SAFETY: the guard is used only on the thread of the init/open call that received it; the
// bound is required by the `KeyGuard` trait, not exercised across threads.
unsafe impl Send for HostGuard {}
// SAFETY: as above.
unsafe impl Sync for HostGuard {}

impl HostGuard {
    pub fn new(g: ApoyoKeyGuard) -> Option<Self> {
        (g.wrap.is_some() && g.unwrap.is_some()).then_some(HostGuard(g))
    }
}

fn slice(b: &[u8]) -> ApoyoSlice {
    ApoyoSlice {
        ptr: b.as_ptr(),
        len: b.len(),
    }
}

fn refused(rc: i32, what: &str) -> Error {
    match rc {
        APOYO_GUARD_WRONG_DEVICE => Error::WrongDevice,
        _ => Error::KeyUnavailable(format!("the app's key guard could not {what} the key")),
    }
}

impl KeyGuard for HostGuard {
    fn wrap(&self, label: &[u8], key: &SecretKey) -> apoyo_sync::Result<Vec<u8>> {
        let f = self.0.wrap.ok_or(Error::KeyUnavailable("no wrap".into()))?;
        let mut out = vec![0u8; APOYO_GUARD_MAX_WRAPPED];
        let mut len = 0usize;
        // SAFETY: every pointer passed is valid for the call; the host writes at most
        // `out.len()` bytes to `out` and one usize to `len`.
        let rc = unsafe {
            f(
                self.0.ctx,
                slice(label),
                slice(key.as_bytes()),
                out.as_mut_ptr(),
                out.len(),
                &mut len,
            )
        };
        if rc != APOYO_GUARD_OK {
            return Err(refused(rc, "wrap"));
        }
        if len == 0 || len > out.len() {
            return Err(Error::KeyUnavailable(
                "the app's key guard returned a wrapped key of an impossible length".into(),
            ));
        }
        out.truncate(len);
        Ok(out)
    }

    fn unwrap(&self, label: &[u8], wrapped: &[u8]) -> apoyo_sync::Result<SecretKey> {
        let f = self
            .0
            .unwrap
            .ok_or(Error::KeyUnavailable("no unwrap".into()))?;
        let mut key = [0u8; 32];
        // SAFETY: the slices are valid for the call; the host writes 32 bytes to `key`.
        let rc = unsafe { f(self.0.ctx, slice(label), slice(wrapped), key.as_mut_ptr()) };
        let out = if rc == APOYO_GUARD_OK {
            Ok(SecretKey::from_bytes(key))
        } else {
            Err(refused(rc, "unwrap"))
        };
        key.zeroize();
        out
    }

    fn describe(&self) -> String {
        "the app's platform key guard".into()
    }
}
