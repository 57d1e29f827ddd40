//! The one wrapper every entry point goes through ([`call`]): it catches panics, turns every
//! outcome into an `ApoyoCode`, and keeps the last error's message (no personal data) for
//! `apoyo_last_error_message`. Also the checked conversions of what C hands us: handles
//! (looked up in a registry, never dereferenced), slices, strings, out-pointers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use apoyo_sync::{Engine, Error};

use crate::types::{ApoyoCode, ApoyoSlice};

/// An opaque engine handle. C sees `ApoyoEngine *`; its value is a registry key, never a
/// pointer to memory, so a stale or forged handle is detected instead of dereferenced.
pub struct ApoyoEngine {
    _private: [u8; 0],
}

/// A failure at the boundary: a code and a message that holds no personal data.
#[derive(Debug)]
pub struct Failure {
    pub code: ApoyoCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ApoyoCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn null(what: &str) -> Self {
        Failure::new(ApoyoCode::NullPointer, format!("{what} is NULL"))
    }
    pub fn argument(message: impl Into<String>) -> Self {
        Failure::new(ApoyoCode::InvalidArgument, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        // Core error messages name fields and states, never values (see apoyo_sync::error).
        Failure::new(ApoyoCode::of(e.code()), e.to_string())
    }
}

pub type Outcome<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The message of the last failed call on this thread, if any.
pub fn last_error() -> Option<String> {
    // `try_with`: a call made while the thread's locals are being destroyed (a host object
    // closed from a thread-exit destructor) must not panic outside `catch_unwind`.
    LAST_ERROR.try_with(|m| m.borrow().clone()).ok().flatten()
}

/// Puts a message back after `apoyo_last_error_message` read it (so it can be read again).
pub fn restore_last_error(message: String) {
    if !message.is_empty() {
        set_last_error(Some(message));
    }
}

fn set_last_error(message: Option<String>) {
    // See `last_error`: after the thread-local is gone the message is dropped, not a panic.
    let _ = LAST_ERROR.try_with(|m| *m.borrow_mut() = message);
}

/// Runs one entry point: every outcome, a panic included, becomes a code.
pub fn call(f: impl FnOnce() -> Outcome) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error(None);
            ApoyoCode::Ok as i32
        }
        Ok(Err(failure)) => {
            set_last_error(Some(failure.message));
            failure.code as i32
        }
        Err(_) => {
            set_last_error(Some(
                "internal error: the library panicked (a bug; please report it)".into(),
            ));
            ApoyoCode::Panic as i32
        }
    }
}

/// The live engines by handle value. Values are never reused, so a closed handle is told
/// apart from one never issued.
struct Registry {
    next: usize,
    live: BTreeMap<usize, Arc<Engine>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 1,
    live: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers an engine and returns its handle.
pub fn issue(engine: Engine) -> *mut ApoyoEngine {
    let mut r = registry();
    // Handles are spaced by 16 so that a NULL-adjacent or misaligned value is never one.
    let id = r.next * 16;
    r.next += 1;
    r.live.insert(id, Arc::new(engine));
    id as *mut ApoyoEngine
}

/// Looks a handle up. A closed one gives `EngineClosed`; one never issued `InvalidHandle`.
pub fn engine(handle: *const ApoyoEngine) -> Outcome<Arc<Engine>> {
    if handle.is_null() {
        return Err(Failure::null("engine"));
    }
    let id = handle as usize;
    let r = registry();
    match r.live.get(&id) {
        Some(e) => Ok(e.clone()),
        None if id.is_multiple_of(16) && id / 16 >= 1 && id / 16 < r.next => {
            Err(Failure::from(Error::EngineClosed))
        }
        None => Err(Failure::new(
            ApoyoCode::InvalidHandle,
            "not an engine handle issued by this library",
        )),
    }
}

/// Removes a handle; `Ok(None)` when it was already closed (closing twice is harmless).
pub fn retire(handle: *const ApoyoEngine) -> Outcome<Option<Arc<Engine>>> {
    match engine(handle) {
        Ok(_) => Ok(registry().live.remove(&(handle as usize))),
        Err(f) if f.code == ApoyoCode::EngineClosed => Ok(None),
        Err(f) => Err(f),
    }
}

/// Borrows a slice's bytes for the call.
///
/// # Safety
/// `s.ptr` must point to `s.len` readable bytes that stay valid and unchanged for `'a`, or
/// `s.len` must be 0.
pub unsafe fn bytes<'a>(s: ApoyoSlice, what: &str) -> Outcome<&'a [u8]> {
    if s.len == 0 {
        return Ok(&[]);
    }
    if s.ptr.is_null() {
        return Err(Failure::null(what));
    }
    if s.len > isize::MAX as usize {
        return Err(Failure::argument(format!("{what}: length out of range")));
    }
    // SAFETY: the caller lends `len` readable bytes at `ptr` for this call (checked non-NULL).
    Ok(unsafe { std::slice::from_raw_parts(s.ptr, s.len) })
}

/// Borrows a slice as UTF-8 text.
///
/// # Safety
/// As [`bytes`].
pub unsafe fn text<'a>(s: ApoyoSlice, what: &str) -> Outcome<&'a str> {
    // SAFETY: forwarded contract.
    let b = unsafe { bytes(s, what) }?;
    std::str::from_utf8(b).map_err(|_| Failure::argument(format!("{what} is not UTF-8")))
}

/// Writes `value` through an out-pointer.
///
/// # Safety
/// `out` must be NULL or valid for a write of `T`.
pub unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Outcome {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and, by the caller's contract, writable.
    unsafe { out.write(value) };
    Ok(())
}

/// Checks an out-pointer before any work is done, so a NULL one fails without side effects.
pub fn need<T>(out: *mut T, what: &str) -> Outcome {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    static CODE_AT_EXIT: AtomicI32 = AtomicI32::new(-1);

    /// Calls through the boundary from its destructor, as a host object closed by a
    /// thread-exit destructor (Swift's `Thread` releasing its closure) does.
    struct CallsOnDrop;
    impl Drop for CallsOnDrop {
        fn drop(&mut self) {
            let rc = call(|| Err(Failure::argument("late")));
            CODE_AT_EXIT.store(rc, Ordering::SeqCst);
        }
    }

    thread_local! {
        static LATE: CallsOnDrop = const { CallsOnDrop };
    }

    #[test]
    fn a_call_during_thread_local_destruction_does_not_abort() {
        std::thread::spawn(|| {
            // LATE is registered first, LAST_ERROR second: destructors run last-in first-out,
            // so LAST_ERROR is gone when LATE's destructor calls the boundary.
            LATE.with(|_| ());
            assert_eq!(
                call(|| Err(Failure::argument("x"))),
                ApoyoCode::InvalidArgument as i32
            );
        })
        .join()
        .expect("the thread ends without a panic");
        assert_eq!(
            CODE_AT_EXIT.load(Ordering::SeqCst),
            ApoyoCode::InvalidArgument as i32
        );
    }
}
