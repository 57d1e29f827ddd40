//! The one wrapper every native goes through ([`run`]): panics are caught, and every failure
//! becomes a typed Java exception built by `mx.ine.apoyo.sync.SyncException.create(code,
//! message)` (the Java side picks the subclass from the code). Also the engine handles: Java
//! holds apoyo-ffi registry keys as `long`s, so the C and Java bridges share one registry and
//! one meaning of "closed" and "never issued".

use std::sync::Arc;

use apoyo_sync::Engine;
use apoyo_sync_ffi::ApoyoEngine;
use apoyo_sync_ffi::boundary::{self as ffi, Failure};
use apoyo_sync_ffi::types::ApoyoCode;
use jni::errors::ErrorPolicy;
use jni::objects::{JThrowable, JValue};
use jni::sys::jlong;
use jni::{Env, EnvUnowned, jni_sig, jni_str};

/// What a native fails with: a bridge code and a message without personal data.
#[derive(Debug)]
pub struct Fail(pub Failure);

pub type JResult<T> = Result<T, Fail>;

impl Fail {
    pub fn new(code: ApoyoCode, message: impl Into<String>) -> Self {
        Fail(Failure::new(code, message))
    }
}

impl From<Failure> for Fail {
    fn from(f: Failure) -> Self {
        Fail(f)
    }
}

impl From<apoyo_sync::Error> for Fail {
    fn from(e: apoyo_sync::Error) -> Self {
        Fail(Failure::from(e))
    }
}

impl From<jni::errors::Error> for Fail {
    fn from(_: jni::errors::Error) -> Self {
        // The JNI error's text may quote a Java exception's message: not repeated here.
        Fail::new(ApoyoCode::Internal, "a JNI call failed inside the bridge")
    }
}

/// The message of a caught panic: fixed, since a panic's own text may hold anything.
pub const PANIC_MESSAGE: &str = "internal error: the library panicked (a bug; please report it)";

/// Throws `SyncException.create(code, message)`, replacing a pending exception left by a
/// failed JNI call (the typed one says more to the app).
pub fn throw(env: &mut Env, code: ApoyoCode, message: &str) -> jni::errors::Result<()> {
    if env.exception_check() {
        env.exception_clear();
    }
    let text = env.new_string(message)?;
    let ex = env
        .call_static_method(
            jni_str!("mx/ine/apoyo/sync/SyncException"),
            jni_str!("create"),
            jni_sig!("(ILjava/lang/String;)Lmx/ine/apoyo/sync/SyncException;"),
            &[JValue::Int(code as i32), JValue::Object(&text)],
        )?
        .l()?;
    let ex = env.cast_local::<JThrowable>(ex)?;
    // `throw` reports the now-pending exception as an error: that is the point.
    let _ = env.throw(ex);
    Ok(())
}

/// The error policy of every native: a typed exception, and the type's default as the value.
#[derive(Debug, Default)]
pub struct ThrowTyped;

impl<T: Default> ErrorPolicy<T, Fail> for ThrowTyped {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut Self::Captures<'unowned_env_local, 'native_method>,
        err: Fail,
    ) -> jni::errors::Result<T> {
        throw(env, err.0.code, &err.0.message)?;
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut Self::Captures<'unowned_env_local, 'native_method>,
        payload: Box<dyn std::any::Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        // Dropping a payload can itself panic; never let that unwind into the JVM.
        if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)))
        {
            std::mem::forget(again);
        }
        throw(env, ApoyoCode::Panic, PANIC_MESSAGE)?;
        Ok(T::default())
    }
}

/// Runs one native: `f` gets the JNI environment; a failure or a panic becomes a typed Java
/// exception and the native returns `T::default()` (which Java never sees).
pub fn run<'local, T: Default + 'local>(
    env: &mut EnvUnowned<'local>,
    f: impl FnOnce(&mut Env<'local>) -> JResult<T>,
) -> T {
    env.with_env(f).resolve::<ThrowTyped>()
}

/// Runs one native on the engine behind `handle` (the shape every operation shares): `f` gets
/// the JNI environment and the engine; a bad handle, a failure or a panic becomes a typed Java
/// exception as in [`run`].
pub fn on_engine<'local, T: Default + 'local>(
    env: &mut EnvUnowned<'local>,
    handle: jlong,
    f: impl FnOnce(&mut Env<'local>, &Engine) -> JResult<T>,
) -> T {
    run(env, |env| {
        let e = engine(handle)?;
        f(env, &e)
    })
}

/// The engine behind a Java handle. `0` is "no engine" (`NULL_POINTER`), a closed one
/// `ENGINE_CLOSED`, one never issued `INVALID_HANDLE`.
pub fn engine(handle: jlong) -> JResult<Arc<Engine>> {
    Ok(ffi::engine(as_ptr(handle))?)
}

/// Registers a new engine and returns its handle for Java.
pub fn issue(engine: Engine) -> jlong {
    ffi::issue(engine) as usize as jlong
}

/// Closes the engine behind a handle; closing twice is harmless.
pub fn close(handle: jlong) -> JResult<()> {
    if let Some(e) = ffi::retire(as_ptr(handle))? {
        e.set_listener(None);
        e.close();
    }
    Ok(())
}

fn as_ptr(handle: jlong) -> *const ApoyoEngine {
    // A registry key, never dereferenced (apoyo_sync_ffi::boundary).
    handle as usize as *const ApoyoEngine
}
