//! Checked conversions between Java values and Rust ones: a `null` where a value is required is
//! `NULL_POINTER` naming the argument; results go back as `long[]`, `String` and `String[]`
//! (the Java classes give them names and types).

use apoyo_sync_ffi::boundary::Failure;
use jni::Env;
use jni::objects::{JByteArray, JLongArray, JObject, JObjectArray, JString};

use crate::boundary::JResult;

/// A required Java string.
pub fn text(env: &Env, s: &JString, what: &str) -> JResult<String> {
    if s.is_null() {
        return Err(Failure::null(what).into());
    }
    Ok(s.try_to_string(env)?)
}

/// An optional Java string (`null` is `None`).
pub fn opt_text(env: &Env, s: &JString) -> JResult<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    Ok(Some(s.try_to_string(env)?))
}

/// A required Java byte array, copied.
pub fn bytes(env: &Env, a: &JByteArray, what: &str) -> JResult<Vec<u8>> {
    if a.is_null() {
        return Err(Failure::null(what).into());
    }
    Ok(env.convert_byte_array(a)?)
}

/// An optional Java byte array (`null` is empty).
pub fn opt_bytes(env: &Env, a: &JByteArray) -> JResult<Vec<u8>> {
    if a.is_null() {
        return Ok(Vec::new());
    }
    Ok(env.convert_byte_array(a)?)
}

/// A new Java `long[]`.
pub fn longs<'l>(env: &mut Env<'l>, values: &[i64]) -> JResult<JLongArray<'l>> {
    let a = env.new_long_array(values.len())?;
    a.set_region(env, 0, values)?;
    Ok(a)
}

/// A new Java string (`None` is `null`).
pub fn jstring<'l>(env: &mut Env<'l>, s: Option<&str>) -> jni::errors::Result<JObject<'l>> {
    Ok(match s {
        Some(s) => env.new_string(s)?.into(),
        None => JObject::null(),
    })
}

/// A new Java `String[]` (`None` entries are `null`).
pub fn strings<'l>(env: &mut Env<'l>, values: &[Option<String>]) -> JResult<JObjectArray<'l>> {
    let a = env.new_object_array(
        values.len() as i32,
        jni::jni_str!("java/lang/String"),
        JObject::null(),
    )?;
    for (i, v) in values.iter().enumerate() {
        let s = jstring(env, v.as_deref())?;
        a.set_element(env, i, &s)?;
        env.delete_local_ref(s);
    }
    Ok(a)
}

/// A count or byte total as a Java `long` (saturating: Java has no unsigned 64-bit type).
pub fn long(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
