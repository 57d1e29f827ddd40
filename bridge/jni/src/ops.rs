//! Natives for what an app does with an open engine (Java class `mx.ine.apoyo.sync.Native`):
//! register, activate, processes, capture, status, lists, retry, sync, cancel, the network
//! policy and the listener. Numbers come back as `long[]` in the order the Java classes
//! (`SyncStatus`, `SyncReport`) read them; lists of processes and captures as JSON (the core's
//! `Serialize` shapes); receipts as `String[]`, five per receipt.

use std::sync::Arc;
use std::time::Duration;

use apoyo_sync::{Images, NetworkPolicy, SyncReport};
use apoyo_sync_ffi::boundary::Failure;
use apoyo_sync_ffi::types::{ApoyoNetwork, ApoyoProvider, ApoyoStop};
use jni::objects::{JByteArray, JClass, JLongArray, JObject, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned};

use crate::boundary::{JResult, on_engine};
use crate::convert::{bytes, long, longs, strings, text};
use crate::listener::JavaListener;

fn json_string<'l, T: serde::Serialize>(env: &mut Env<'l>, v: &T) -> JResult<JString<'l>> {
    let s = serde_json::to_string(v)
        .map_err(|_| apoyo_sync::Error::Internal("JSON encoding".into()))?;
    Ok(env.new_string(s)?)
}

/// `long register(long h, String url, String email, int provider, byte[] front)`: the
/// activation code's expiry (Unix seconds). Provider 0 = Google, 1 = Facebook.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_register<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    url: JString<'l>,
    email: JString<'l>,
    provider: jint,
    front: JByteArray<'l>,
) -> jlong {
    on_engine(&mut env, handle, |env, e| {
        let provider = ApoyoProvider::provider(provider)
            .ok_or_else(|| Failure::argument("provider must be GOOGLE or FACEBOOK"))?;
        let (url, email) = (text(env, &url, "url")?, text(env, &email, "email")?);
        let front = bytes(env, &front, "front")?;
        Ok(e.register(&url, &email, provider, &front)?
            .code_expires_at
            .unix_timestamp())
    })
}

/// `long activate(long h, String code)`: the activation's expiry (Unix seconds).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_activate<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    code: JString<'l>,
) -> jlong {
    on_engine(&mut env, handle, |env, e| {
        let code = text(env, &code, "code")?;
        Ok(e.activate(&code)?.expires_at.unix_timestamp())
    })
}

/// `int addProcesses(long h, String json)`: how many definitions were added or replaced.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_addProcesses<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    json: JString<'l>,
) -> jint {
    on_engine(&mut env, handle, |env, e| {
        let json = text(env, &json, "json")?;
        Ok(jint::try_from(e.add_processes_json(json.as_bytes())?).unwrap_or(jint::MAX))
    })
}

/// `String processes(long h)`: the known processes, as a JSON list.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_processes<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JString<'l> {
    on_engine(&mut env, handle, |env, e| json_string(env, &e.processes()?))
}

/// `String capture(long h, String description, byte[] front, byte[] back, byte[] selfie,
/// byte[] signature)`: the durable capture's id. The description is the JSON object of
/// `apoyo_ffi::capture` (the `Capture` builder writes it).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_capture<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    description: JString<'l>,
    front: JByteArray<'l>,
    back: JByteArray<'l>,
    selfie: JByteArray<'l>,
    signature: JByteArray<'l>,
) -> JString<'l> {
    on_engine(&mut env, handle, |env, e| {
        let d = text(env, &description, "description")?;
        let images = Images {
            front: bytes(env, &front, "front")?,
            back: bytes(env, &back, "back")?,
            selfie: bytes(env, &selfie, "selfie")?,
            signature: bytes(env, &signature, "signature")?,
        };
        let id = e.capture(apoyo_sync_ffi::capture::new_capture(d.as_bytes(), images)?)?;
        Ok(env.new_string(id.to_string())?)
    })
}

/// `long[] status(long h)`: captured, uploading, committed, quarantined, purged, pending
/// bytes, syncing (0/1), registered (0/1), activated until (Unix s, 0 = not activated),
/// network (`NetworkType` value), metered bytes, total bytes, Wi-Fi only (0/1), cellular
/// allowance (-1 = none).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_status<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JLongArray<'l> {
    on_engine(&mut env, handle, |env, e| {
        let s = e.status()?;
        let q = s.queue;
        let values = [
            long(q.captured),
            long(q.uploading),
            long(q.committed),
            long(q.quarantined),
            long(q.purged),
            long(q.pending_bytes),
            i64::from(s.syncing),
            i64::from(s.registered),
            s.activated_until.map_or(0, |t| t.unix_timestamp()),
            s.network as i64,
            long(s.usage.metered_bytes),
            long(s.usage.total_bytes),
            i64::from(s.policy.wifi_only),
            s.policy.cellular_allowance_bytes.map_or(-1, long),
        ];
        longs(env, &values)
    })
}

/// `String captures(long h)`: the captures still on the device, as a JSON list (ids, states,
/// reasons, sizes; no personal data).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_captures<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JString<'l> {
    on_engine(&mut env, handle, |env, e| json_string(env, &e.captures()?))
}

/// The five strings of one receipt: capture id, result, counted at, first capture id (or
/// null), verified ("true"/"false").
fn receipt_fields(r: &apoyo_sync::ReceiptInfo) -> JResult<[Option<String>; 5]> {
    let v =
        serde_json::to_value(r).map_err(|_| apoyo_sync::Error::Internal("JSON encoding".into()))?;
    let text = |k: &str| match v.get(k) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok([
        text("capture_id"),
        text("result"),
        text("counted_at"),
        text("first_capture_id"),
        Some(r.verified.to_string()),
    ])
}

/// `String[] receipts(long h)`: the endpoint's receipts, re-verified, five strings each.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_receipts<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JObjectArray<'l> {
    on_engine(&mut env, handle, |env, e| {
        let mut flat = Vec::new();
        for r in e.receipts()? {
            flat.extend(receipt_fields(&r)?);
        }
        strings(env, &flat)
    })
}

/// `String deviceId(long h)`: this device's id (hex).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_deviceId<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JString<'l> {
    on_engine(&mut env, handle, |env, e| {
        Ok(env.new_string(e.device_id()?)?)
    })
}

/// `void retry(long h, String captureId)`: queues a quarantined capture again.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_retry<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    id: JString<'l>,
) {
    on_engine(&mut env, handle, |env, e| {
        let id = text(env, &id, "captureId")?
            .parse()
            .map_err(|_| Failure::argument("captureId is not a capture id"))?;
        Ok(e.retry(&id)?)
    })
}

fn report_values(r: &SyncReport) -> [i64; 7] {
    [
        long(r.committed),
        long(r.duplicates),
        long(r.quarantined),
        long(r.pending),
        long(r.bytes_sent),
        long(r.retries),
        ApoyoStop::of(r.stopped) as i64,
    ]
}

/// `long[] sync(long h, long budgetMs)`: committed, duplicates, quarantined, pending, bytes
/// sent, retries, stop reason (`SyncReport.Stop` value). Blocks; `cancel` from another thread
/// stops it at the next exchange. A budget of 0 or less is the default (9 minutes).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_sync<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    budget_ms: jlong,
) -> JLongArray<'l> {
    on_engine(&mut env, handle, |env, e| {
        let budget = (budget_ms > 0).then(|| Duration::from_millis(budget_ms as u64));
        let r = e.sync(budget)?;
        longs(env, &report_values(&r))
    })
}

/// `void cancel(long h)`: asks a running sync to stop at its next exchange boundary.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_cancel<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) {
    on_engine(&mut env, handle, |_, e| {
        e.cancel();
        Ok(())
    })
}

/// `void setNetwork(long h, int network)`: 0 none, 1 Wi-Fi, 2 cellular, 3 metered.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_setNetwork<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    network: jint,
) {
    on_engine(&mut env, handle, |_, e| {
        let kind = ApoyoNetwork::kind(network)
            .ok_or_else(|| Failure::argument("network must be a NetworkType value"))?;
        e.set_network(kind);
        Ok(())
    })
}

/// `void setNetworkPolicy(long h, boolean wifiOnly, long cellularAllowanceBytes)`: a negative
/// allowance is "no limit"; setting a policy starts a new allowance.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_setNetworkPolicy<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    wifi_only: jboolean,
    allowance: jlong,
) {
    on_engine(&mut env, handle, |_, e| {
        e.set_network_policy(NetworkPolicy {
            wifi_only,
            cellular_allowance_bytes: u64::try_from(allowance).ok(),
        });
        Ok(())
    })
}

/// `void setListener(long h, ListenerBridge bridge)`: null unsubscribes.
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_Native_setListener<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    bridge: JObject<'l>,
) {
    on_engine(&mut env, handle, |env, e| {
        let listener: Option<Arc<dyn apoyo_sync::Listener>> = if bridge.is_null() {
            None
        } else {
            Some(Arc::new(JavaListener::new(env, &bridge)?))
        };
        e.set_listener(listener);
        Ok(())
    })
}
