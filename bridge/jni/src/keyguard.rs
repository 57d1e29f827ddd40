//! The app's `mx.ine.apoyo.sync.KeyGuard` (Java) as the core's `KeyGuard`: `wrap` and `unwrap`
//! are called back through the JVM during `SyncEngine.create` / `open`, on the calling thread.
//! Whatever the Java guard throws is caught here: `javax.crypto.AEADBadTagException` (the
//! wrapped key was not made by this device's key) is `WRONG_DEVICE`, anything else
//! `KEY_UNAVAILABLE`; the exception's own message is not repeated (it may hold anything).

use apoyo_sync::{Error, KeyGuard, SecretKey};
use jni::objects::{JByteArray, JObject, JValue};
use jni::refs::Global;
use jni::strings::JNIStr;
use jni::{Env, JavaVM, jni_sig, jni_str};
use zeroize::Zeroize;

/// The most bytes a wrapped master key may take (as the C bridge).
pub const MAX_WRAPPED: usize = apoyo_sync_ffi::keyguard::APOYO_GUARD_MAX_WRAPPED;

/// How a call into the Java guard went.
enum Called {
    Bytes(Vec<u8>),
    Null,
    Threw { wrong_device: bool },
}

/// A Java `KeyGuard` held for one init/open call.
pub struct JavaGuard {
    vm: JavaVM,
    guard: Global<JObject<'static>>,
}

impl JavaGuard {
    pub fn new(env: &Env, guard: &JObject) -> jni::errors::Result<Self> {
        Ok(JavaGuard {
            vm: env.get_java_vm()?,
            guard: env.new_global_ref(guard)?,
        })
    }

    /// Calls `byte[] method(byte[] label, byte[] input)`; the Java copy of `input` (a key) is
    /// overwritten with zeros once the call returns, however it returns.
    fn call(&self, method: &JNIStr, label: &[u8], input: &[u8]) -> Result<Called, Error> {
        let out = self
            .vm
            .attach_current_thread(|env| -> jni::errors::Result<Called> {
                let l = env.byte_array_from_slice(label)?;
                let k = env.byte_array_from_slice(input)?;
                let r = env.call_method(
                    &self.guard,
                    method,
                    jni_sig!("([B[B)[B"),
                    &[JValue::Object(&l), JValue::Object(&k)],
                );
                let thrown = caught(env)?;
                k.set_region(env, 0, &vec![0i8; input.len()])?;
                if let Some(wrong_device) = thrown {
                    return Ok(Called::Threw { wrong_device });
                }
                let r = r?.l()?;
                if r.is_null() {
                    return Ok(Called::Null);
                }
                let r = env.cast_local::<JByteArray>(r)?;
                Ok(Called::Bytes(env.convert_byte_array(&r)?))
            });
        out.map_err(|_| Error::KeyUnavailable("the app's key guard could not be called".into()))
    }
}

/// Takes a pending Java exception off the thread: `Some(wrong_device)` when there was one.
fn caught(env: &mut Env) -> jni::errors::Result<Option<bool>> {
    let Some(ex) = env.exception_occurred() else {
        return Ok(None);
    };
    env.exception_clear();
    let wrong = env.is_instance_of(&ex, jni_str!("javax/crypto/AEADBadTagException"))?;
    Ok(Some(wrong))
}

fn refused(called: Called, what: &str) -> Error {
    match called {
        Called::Threw { wrong_device: true } => Error::WrongDevice,
        Called::Threw { .. } => Error::KeyUnavailable(format!(
            "the app's key guard threw while trying to {what} the key"
        )),
        Called::Null => {
            Error::KeyUnavailable(format!("the app's key guard returned null for {what}"))
        }
        Called::Bytes(_) => Error::KeyUnavailable(format!(
            "the app's key guard returned a {what} result of an impossible length"
        )),
    }
}

impl KeyGuard for JavaGuard {
    fn wrap(&self, label: &[u8], key: &SecretKey) -> apoyo_sync::Result<Vec<u8>> {
        match self.call(jni_str!("wrap"), label, key.as_bytes())? {
            Called::Bytes(b) if !b.is_empty() && b.len() <= MAX_WRAPPED => Ok(b),
            other => Err(refused(other, "wrap")),
        }
    }

    fn unwrap(&self, label: &[u8], wrapped: &[u8]) -> apoyo_sync::Result<SecretKey> {
        match self.call(jni_str!("unwrap"), label, wrapped)? {
            Called::Bytes(mut b) => {
                let key: Option<[u8; 32]> = b.as_slice().try_into().ok();
                b.zeroize();
                key.map(SecretKey::from_bytes)
                    .ok_or_else(|| refused(Called::Bytes(Vec::new()), "unwrap"))
            }
            other => Err(refused(other, "unwrap")),
        }
    }

    fn describe(&self) -> String {
        "the app's platform key guard (Java)".into()
    }
}
