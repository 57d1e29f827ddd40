//! Who may credit a support (protocol v1.1, §6.5): a Mi Apoyo capture's collector is the
//! committing device itself; an auxiliar id has the bounded form `^[A-Z0-9-]{3,32}$` and is
//! bound, at activation, to the first device key that activated with it. Anything else is
//! `422 collector_invalid`, so no device can credit supports to someone else or to a made-up id.

use apoyo_sync::Collector;
use apoyo_sync::wire::Reason;
use apoyo_sync::wire::is_auxiliar_id;

use crate::auth::Device;
use crate::error::ApiError;
use crate::store::Db;

fn invalid(detail: &str) -> ApiError {
    ApiError::new(Reason::CollectorInvalid, detail)
}

/// Checks a commit's collector against the committing device.
pub(crate) fn check(conn: &dyn Db, device: &Device, c: &Collector) -> Result<(), ApiError> {
    match c {
        Collector::MiApoyo(id) if *id == device.id => Ok(()),
        Collector::MiApoyo(_) => Err(invalid(
            "a Mi Apoyo capture's collector must be the committing device",
        )),
        Collector::Auxiliar(id) if !is_auxiliar_id(id) => Err(invalid(
            "an auxiliar id is 3-32 characters of A-Z, 0-9 and '-'",
        )),
        Collector::Auxiliar(id) => match bound_device(conn, id)? {
            Some(owner) if owner == device.public => Ok(()),
            _ => Err(invalid(
                "this auxiliar id is not bound to this device key (activate with it)",
            )),
        },
    }
}

fn bound_device(conn: &dyn Db, auxiliar_id: &str) -> Result<Option<[u8; 32]>, ApiError> {
    let row: Option<Vec<u8>> = conn.auxiliar_owner(auxiliar_id)?;
    Ok(row.and_then(|p| p.try_into().ok()))
}

/// At activation: binds `auxiliar_id` to `device_public`, or refuses when another device key
/// holds it (or its form is wrong). Bound by whichever activation inserts first, on any
/// replica: one that finds the id taken reads the owner again.
pub(crate) fn bind(
    conn: &dyn Db,
    auxiliar_id: &str,
    device_public: &[u8; 32],
    now: i64,
) -> Result<(), ApiError> {
    if !is_auxiliar_id(auxiliar_id) {
        return Err(invalid(
            "an auxiliar id is 3-32 characters of A-Z, 0-9 and '-'",
        ));
    }
    match bound_device(conn, auxiliar_id)? {
        Some(owner) if owner == *device_public => Ok(()),
        Some(_) => Err(invalid("this auxiliar id is bound to another device key")),
        None if conn.bind_auxiliar(auxiliar_id, &device_public[..], now)? => Ok(()),
        None => match bound_device(conn, auxiliar_id)? {
            Some(owner) if owner == *device_public => Ok(()),
            _ => Err(invalid("this auxiliar id is bound to another device key")),
        },
    }
}
