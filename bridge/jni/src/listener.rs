//! The app's `SyncListener`, reached through the package-private Java `ListenerBridge`
//! (which catches whatever the app's listener throws). Events go to Java as their kind, the
//! capture id and state when they concern one capture, and the event's JSON (the
//! `apoyo_sync::Event` shape: ids, states, reasons, times — never personal data). Called on the
//! thread that runs the operation (the sync thread for sync events), attached to the JVM if
//! it is not a Java thread.

use apoyo_sync::{Event, Listener, Progress};
use jni::objects::{JObject, JValue};
use jni::refs::Global;
use jni::{Env, JavaVM, jni_sig, jni_str};

use crate::convert::{jstring, long};

/// A Java `ListenerBridge` held by the engine until it is replaced or the engine closes.
pub struct JavaListener {
    vm: JavaVM,
    bridge: Global<JObject<'static>>,
}

impl JavaListener {
    pub fn new(env: &Env, bridge: &JObject) -> jni::errors::Result<Self> {
        Ok(JavaListener {
            vm: env.get_java_vm()?,
            bridge: env.new_global_ref(bridge)?,
        })
    }

    /// Runs a callback; an exception left pending by it (ListenerBridge catches the app's, so
    /// only a JVM error could be) is cleared so the engine's thread goes on.
    fn with_env(&self, f: impl FnOnce(&mut Env) -> jni::errors::Result<()>) {
        let _ = self
            .vm
            .attach_current_thread(|env| -> jni::errors::Result<()> {
                let out = f(env);
                if env.exception_check() {
                    env.exception_clear();
                }
                out
            });
    }
}

/// The parts of an event Java gets as strings: kind, capture id, state.
fn parts(json: &serde_json::Value) -> [Option<String>; 3] {
    let get = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    [
        get(json.get("event")),
        get(json.get("id")),
        get(json.get("state")),
    ]
}

impl Listener for JavaListener {
    fn on_event(&self, event: &Event) {
        let Ok(value) = serde_json::to_value(event) else {
            return;
        };
        let [kind, id, state] = parts(&value);
        let json = value.to_string();
        self.with_env(|env| {
            let k = jstring(env, kind.as_deref())?;
            let i = jstring(env, id.as_deref())?;
            let s = jstring(env, state.as_deref())?;
            let j = env.new_string(&json)?;
            env.call_method(
                &self.bridge,
                jni_str!("event"),
                jni_sig!(
                    "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V"
                ),
                &[
                    JValue::Object(&k),
                    JValue::Object(&i),
                    JValue::Object(&s),
                    JValue::Object(&j),
                ],
            )?;
            Ok(())
        });
    }

    fn on_progress(&self, p: &Progress) {
        self.with_env(|env| {
            env.call_method(
                &self.bridge,
                jni_str!("progress"),
                jni_sig!("(JJJ)V"),
                &[
                    JValue::Long(long(p.done)),
                    JValue::Long(long(p.pending)),
                    JValue::Long(long(p.bytes_sent)),
                ],
            )?;
            Ok(())
        });
    }
}
