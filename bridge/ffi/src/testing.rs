//! Test-only entry points (feature `testing`): the C, Java and Swift tests drive the failure
//! paths through them — a panic inside the boundary, and an error of any code.

use apoyo_sync::ErrorCode;

use crate::boundary::{Failure, call};
use crate::types::ApoyoCode;

/// Panics inside the boundary: returns `APOYO_CODE_PANIC` with a message.
#[unsafe(no_mangle)]
pub extern "C" fn apoyo_testing_panic() -> i32 {
    call(|| panic!("apoyo_testing_panic: a forced panic"))
}

/// Fails with `code` (any `ApoyoCode` value) and a fixed message; an unknown value gives
/// `APOYO_CODE_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn apoyo_testing_fail(code: i32) -> i32 {
    call(|| {
        if code == ApoyoCode::Ok as i32 {
            return Ok(());
        }
        if let Some(c) = ErrorCode::from_i32(code) {
            return Err(Failure::new(
                ApoyoCode::of(c),
                format!("testing: {}", c.name()),
            ));
        }
        match ApoyoCode::from_i32(code) {
            Some(c) => Err(Failure::new(c, "testing: a bridge code")),
            None => Err(Failure::argument("testing: not an ApoyoCode value")),
        }
    })
}
