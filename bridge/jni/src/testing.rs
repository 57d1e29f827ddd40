//! Test-only natives (feature `testing`) of the Java class `mx.ine.apoyo.sync.NativeTesting`
//! (in the Java test sources): a panic inside the boundary, and a failure of any code, so the
//! Java tests drive the panic path and the mapping of every code to its exception.

use apoyo_sync::ErrorCode;
use apoyo_sync_ffi::types::ApoyoCode;
use jni::EnvUnowned;
use jni::objects::JClass;
use jni::sys::jint;

use crate::boundary::{Fail, run};

/// `static native void panic()`: panics inside the boundary (`InternalException`, code PANIC).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_NativeTesting_panic<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
) {
    run(&mut env, |_| -> Result<(), Fail> {
        panic!("NativeTesting.panic: a forced panic")
    })
}

/// `static native void fail(int code)`: fails with `code` (0 returns normally; a value that is
/// no code fails with INVALID_ARGUMENT).
#[unsafe(no_mangle)]
pub extern "system" fn Java_mx_ine_apoyo_sync_NativeTesting_fail<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    code: jint,
) {
    run(&mut env, |_| {
        if code == ApoyoCode::Ok as i32 {
            return Ok(());
        }
        if let Some(c) = ErrorCode::from_i32(code) {
            return Err(Fail::new(
                ApoyoCode::of(c),
                format!("testing: {}", c.name()),
            ));
        }
        match ApoyoCode::from_i32(code) {
            Some(c) => Err(Fail::new(c, "testing: a bridge code")),
            None => Err(Fail::new(
                ApoyoCode::InvalidArgument,
                "testing: not an ApoyoCode value",
            )),
        }
    })
}
