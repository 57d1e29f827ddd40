//! Entry points for what an app does with an open engine: register, activate, processes,
//! capture, status, lists, retry, sync, network policy, listener, cancel. Lists come back as
//! JSON in an owned buffer (the shapes of `apoyo_sync`'s `Serialize` types).

use std::time::Duration;

use apoyo_sync::{Images, NetworkPolicy, SyncReport};

use crate::boundary::{ApoyoEngine, Failure, Outcome, bytes, call, engine, need, put, text};
use crate::listener::{ApoyoListener, HostListener};
use crate::types::{
    ApoyoBuffer, ApoyoNetwork, ApoyoNetworkPolicy, ApoyoProvider, ApoyoSlice, ApoyoStatus,
    ApoyoStop, ApoyoSyncReport,
};

fn json<T: serde::Serialize>(v: &T) -> Outcome<ApoyoBuffer> {
    serde_json::to_vec(v)
        .map(ApoyoBuffer::from_vec)
        .map_err(|_| Failure::from(apoyo_sync::Error::Internal("JSON encoding".into())))
}

/// Writes a JSON list produced by `f` to `out`.
///
/// # Safety
/// `out` is valid for a write of an `ApoyoBuffer`.
unsafe fn list<T: serde::Serialize>(
    handle: *const ApoyoEngine,
    out: *mut ApoyoBuffer,
    f: impl FnOnce(&apoyo_sync::Engine) -> apoyo_sync::Result<T>,
) -> i32 {
    call(|| {
        need(out, "out")?;
        let e = engine(handle)?;
        let buf = json(&f(&e)?)?;
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out, buf, "out") }
    })
}

/// Registers the device with the endpoint at `url` (0 = Google, 1 = Facebook validated the
/// email); the endpoint emails an activation code. Writes the code's expiry (Unix seconds)
/// to `out_code_expires_at`.
///
/// # Safety
/// Slices follow the `ApoyoSlice` contract; `out_code_expires_at` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_register(
    handle: *const ApoyoEngine,
    url: ApoyoSlice,
    email: ApoyoSlice,
    provider: i32,
    front: ApoyoSlice,
    out_code_expires_at: *mut i64,
) -> i32 {
    call(|| {
        need(out_code_expires_at, "out_code_expires_at")?;
        let e = engine(handle)?;
        let provider = ApoyoProvider::provider(provider)
            .ok_or_else(|| Failure::argument("provider must be 0 (Google) or 1 (Facebook)"))?;
        // SAFETY: caller's contract for each slice.
        let (url, email, front) = unsafe {
            (
                text(url, "url")?,
                text(email, "email")?,
                bytes(front, "front")?,
            )
        };
        let r = e.register(url, email, provider, front)?;
        // SAFETY: checked non-NULL; caller's contract.
        unsafe {
            put(
                out_code_expires_at,
                r.code_expires_at.unix_timestamp(),
                "out",
            )
        }
    })
}

/// Activates the device with the emailed code; writes the activation's expiry (Unix seconds).
///
/// # Safety
/// `code` follows the `ApoyoSlice` contract; `out_expires_at` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_activate(
    handle: *const ApoyoEngine,
    code: ApoyoSlice,
    out_expires_at: *mut i64,
) -> i32 {
    call(|| {
        need(out_expires_at, "out_expires_at")?;
        let e = engine(handle)?;
        // SAFETY: caller's contract.
        let code = unsafe { text(code, "code") }?;
        let a = e.activate(code)?;
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out_expires_at, a.expires_at.unix_timestamp(), "out") }
    })
}

/// Adds or replaces process definitions from a JSON list; writes how many to `out_count`.
///
/// # Safety
/// `json` follows the `ApoyoSlice` contract; `out_count` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_add_processes(
    handle: *const ApoyoEngine,
    json: ApoyoSlice,
    out_count: *mut u32,
) -> i32 {
    call(|| {
        need(out_count, "out_count")?;
        let e = engine(handle)?;
        // SAFETY: caller's contract.
        let n = e.add_processes_json(unsafe { bytes(json, "json") }?)?;
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out_count, u32::try_from(n).unwrap_or(u32::MAX), "out_count") }
    })
}

/// The known processes, as a JSON list.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_processes(
    handle: *const ApoyoEngine,
    out: *mut ApoyoBuffer,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { list(handle, out, |e| e.processes()) }
}

/// Validates, encrypts and durably stores a capture (fields as JSON, see the docs of
/// `apoyo_ffi::capture`; images JPEG/PNG). Returns once it is durable; writes its id (text).
///
/// # Safety
/// Slices follow the `ApoyoSlice` contract; `out_id` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_capture(
    handle: *const ApoyoEngine,
    description: ApoyoSlice,
    front: ApoyoSlice,
    back: ApoyoSlice,
    selfie: ApoyoSlice,
    signature: ApoyoSlice,
    out_id: *mut ApoyoBuffer,
) -> i32 {
    call(|| {
        need(out_id, "out_id")?;
        let e = engine(handle)?;
        // SAFETY: caller's contract for each slice.
        let (d, images) = unsafe {
            (
                bytes(description, "description")?,
                Images {
                    front: bytes(front, "front")?.to_vec(),
                    back: bytes(back, "back")?.to_vec(),
                    selfie: bytes(selfie, "selfie")?.to_vec(),
                    signature: bytes(signature, "signature")?.to_vec(),
                },
            )
        };
        let id = e.capture(crate::capture::new_capture(d, images)?)?;
        let buf = ApoyoBuffer::from_vec(id.to_string().into_bytes());
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out_id, buf, "out_id") }
    })
}

/// The status a screen shows. Never waits for a running sync.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_status(
    handle: *const ApoyoEngine,
    out: *mut ApoyoStatus,
) -> i32 {
    call(|| {
        need(out, "out")?;
        let s = engine(handle)?.status()?;
        let c = ApoyoStatus {
            captured: s.queue.captured,
            uploading: s.queue.uploading,
            committed: s.queue.committed,
            quarantined: s.queue.quarantined,
            purged: s.queue.purged,
            pending_bytes: s.queue.pending_bytes,
            syncing: s.syncing,
            registered: s.registered,
            activated_until: s.activated_until.map_or(0, |t| t.unix_timestamp()),
            network: s.network as i32,
            metered_bytes: s.usage.metered_bytes,
            total_bytes: s.usage.total_bytes,
        };
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out, c, "out") }
    })
}

/// The captures still on the device, as a JSON list (ids, states, reasons; no personal data).
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_captures(
    handle: *const ApoyoEngine,
    out: *mut ApoyoBuffer,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { list(handle, out, |e| e.captures()) }
}

/// The endpoint's receipts, re-verified, as a JSON list.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_receipts(
    handle: *const ApoyoEngine,
    out: *mut ApoyoBuffer,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { list(handle, out, |e| e.receipts()) }
}

/// This device's id (hex text).
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_device_id(
    handle: *const ApoyoEngine,
    out: *mut ApoyoBuffer,
) -> i32 {
    call(|| {
        need(out, "out")?;
        let id = engine(handle)?.device_id()?;
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out, ApoyoBuffer::from_vec(id.into_bytes()), "out") }
    })
}

/// Queues a quarantined capture again (`id` as text).
///
/// # Safety
/// `id` follows the `ApoyoSlice` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_retry(handle: *const ApoyoEngine, id: ApoyoSlice) -> i32 {
    call(|| {
        let e = engine(handle)?;
        // SAFETY: caller's contract.
        let id = unsafe { text(id, "id") }?;
        let id = id
            .parse()
            .map_err(|_| Failure::argument("id is not a capture id"))?;
        Ok(e.retry(&id)?)
    })
}

fn report(r: &SyncReport) -> ApoyoSyncReport {
    ApoyoSyncReport {
        committed: r.committed,
        duplicates: r.duplicates,
        quarantined: r.quarantined,
        pending: r.pending,
        bytes_sent: r.bytes_sent,
        retries: r.retries,
        stopped: ApoyoStop::of(r.stopped) as i32,
    }
}

/// Sends what is due within `budget_ms` milliseconds (0: the default, 9 minutes). Blocks the
/// calling thread; `apoyo_engine_cancel` from another thread stops it at the next exchange.
/// Transport failures are not errors: they are rescheduled and counted in `retries`.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_sync(
    handle: *const ApoyoEngine,
    budget_ms: u64,
    out: *mut ApoyoSyncReport,
) -> i32 {
    call(|| {
        need(out, "out")?;
        let e = engine(handle)?;
        let budget = (budget_ms > 0).then(|| Duration::from_millis(budget_ms));
        let r = e.sync(budget)?;
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { put(out, report(&r), "out") }
    })
}

/// Asks a running sync to stop at its next exchange boundary. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn apoyo_engine_cancel(handle: *const ApoyoEngine) -> i32 {
    call(|| {
        engine(handle)?.cancel();
        Ok(())
    })
}

/// Says which link the phone is on now (an `ApoyoNetwork` value). Callable from any thread,
/// also during a sync.
#[unsafe(no_mangle)]
pub extern "C" fn apoyo_engine_set_network(handle: *const ApoyoEngine, network: i32) -> i32 {
    call(|| {
        let kind = ApoyoNetwork::kind(network)
            .ok_or_else(|| Failure::argument("network must be an ApoyoNetwork value"))?;
        engine(handle)?.set_network(kind);
        Ok(())
    })
}

/// Sets the network policy and starts a new cellular allowance. Callable from any thread.
///
/// # Safety
/// `policy` is NULL or points to a valid struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_set_network_policy(
    handle: *const ApoyoEngine,
    policy: *const ApoyoNetworkPolicy,
) -> i32 {
    call(|| {
        // SAFETY: caller's contract.
        let p = unsafe { policy.as_ref() }.ok_or_else(|| Failure::null("policy"))?;
        let e = engine(handle)?;
        e.set_network_policy(NetworkPolicy {
            wifi_only: p.wifi_only,
            cellular_allowance_bytes: (p.cellular_allowance_bytes != u64::MAX)
                .then_some(p.cellular_allowance_bytes),
        });
        Ok(())
    })
}

/// Registers the app's event and progress callbacks (NULL removes them). The previous
/// listener's `destroy` is called.
///
/// # Safety
/// `listener` is NULL or points to a valid struct whose callbacks and `ctx` may be used from
/// any thread until `destroy` is called.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn apoyo_engine_set_listener(
    handle: *const ApoyoEngine,
    listener: *const ApoyoListener,
) -> i32 {
    call(|| {
        let e = engine(handle)?;
        // SAFETY: caller's contract.
        let l = unsafe { listener.as_ref() }.copied();
        e.set_listener(l.map(|l| {
            let l: std::sync::Arc<dyn apoyo_sync::Listener> =
                std::sync::Arc::new(HostListener::new(l));
            l
        }));
        Ok(())
    })
}
