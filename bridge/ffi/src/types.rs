//! The C-visible value types: result codes, borrowed input slices, owned output buffers, and
//! the plain structs the entry points fill. Ownership is in the names: an `ApoyoSlice` is
//! borrowed for the duration of one call; an `ApoyoBuffer` is owned by the caller until it
//! passes it to `apoyo_buffer_free`.

use apoyo_sync::{ErrorCode, Hold, NetworkKind, Provider, StopReason};

/// Every result code an entry point returns. `APOYO_CODE_OK` is success; 1–99 are the core's
/// `ErrorCode` numbers (never renumbered, only appended); 100 and up are the bridge's own.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApoyoCode {
    Ok = 0,
    Invalid = 1,
    ModelNotAccepted = 2,
    CredentialExpired = 3,
    OutOfScope = 4,
    UnknownProcess = 5,
    ProcessClosed = 6,
    InvalidProcess = 7,
    Duplicate = 8,
    StorageFull = 9,
    UnknownCapture = 10,
    CaptureGone = 11,
    KeyUnavailable = 20,
    WrongDevice = 21,
    Integrity = 22,
    CiphertextVersion = 23,
    NoStore = 30,
    StoreExists = 31,
    StoreBusy = 32,
    CorruptStore = 33,
    StoreVersion = 34,
    KeyringInsideStore = 35,
    Decode = 40,
    TooLarge = 41,
    NotRegistered = 42,
    NotActivated = 43,
    Activation = 44,
    Transient = 45,
    Rejected = 46,
    BadReceipt = 47,
    EngineClosed = 48,
    SyncRunning = 49,
    Sqlite = 90,
    Io = 91,
    Crypto = 92,
    Internal = 99,
    /// A required pointer argument was NULL.
    NullPointer = 100,
    /// The engine handle was never issued by this library (or is corrupt).
    InvalidHandle = 101,
    /// The library panicked (a bug); nothing was changed beyond what was already durable.
    Panic = 102,
    /// An argument is malformed: not UTF-8, an unknown enum value, a wrong length.
    InvalidArgument = 103,
}

/// The C enum above declares the core's codes because cbindgen can only write out a literal
/// Rust enum; everything else derives from the core's [`ErrorCode`]: the bridge code of a core
/// error is found by name ([`ApoyoCode::of`], an exhaustive match, so a code appended to the
/// core breaks this build until the header declares it) and the numbers are checked equal at
/// compile time (below), so the two tables cannot drift.
impl ApoyoCode {
    /// The bridge's own codes: success, and 100 and up.
    const BRIDGE_OWN: [ApoyoCode; 5] = [
        ApoyoCode::Ok,
        ApoyoCode::NullPointer,
        ApoyoCode::InvalidHandle,
        ApoyoCode::Panic,
        ApoyoCode::InvalidArgument,
    ];

    /// The bridge code of a core error code (same name, same number).
    pub const fn of(code: ErrorCode) -> ApoyoCode {
        use ErrorCode as E;
        match code {
            E::Invalid => ApoyoCode::Invalid,
            E::ModelNotAccepted => ApoyoCode::ModelNotAccepted,
            E::CredentialExpired => ApoyoCode::CredentialExpired,
            E::OutOfScope => ApoyoCode::OutOfScope,
            E::UnknownProcess => ApoyoCode::UnknownProcess,
            E::ProcessClosed => ApoyoCode::ProcessClosed,
            E::InvalidProcess => ApoyoCode::InvalidProcess,
            E::Duplicate => ApoyoCode::Duplicate,
            E::StorageFull => ApoyoCode::StorageFull,
            E::UnknownCapture => ApoyoCode::UnknownCapture,
            E::CaptureGone => ApoyoCode::CaptureGone,
            E::KeyUnavailable => ApoyoCode::KeyUnavailable,
            E::WrongDevice => ApoyoCode::WrongDevice,
            E::Integrity => ApoyoCode::Integrity,
            E::CiphertextVersion => ApoyoCode::CiphertextVersion,
            E::NoStore => ApoyoCode::NoStore,
            E::StoreExists => ApoyoCode::StoreExists,
            E::StoreBusy => ApoyoCode::StoreBusy,
            E::CorruptStore => ApoyoCode::CorruptStore,
            E::StoreVersion => ApoyoCode::StoreVersion,
            E::KeyringInsideStore => ApoyoCode::KeyringInsideStore,
            E::Decode => ApoyoCode::Decode,
            E::TooLarge => ApoyoCode::TooLarge,
            E::NotRegistered => ApoyoCode::NotRegistered,
            E::NotActivated => ApoyoCode::NotActivated,
            E::Activation => ApoyoCode::Activation,
            E::Transient => ApoyoCode::Transient,
            E::Rejected => ApoyoCode::Rejected,
            E::BadReceipt => ApoyoCode::BadReceipt,
            E::Sqlite => ApoyoCode::Sqlite,
            E::Io => ApoyoCode::Io,
            E::Crypto => ApoyoCode::Crypto,
            E::Internal => ApoyoCode::Internal,
            E::EngineClosed => ApoyoCode::EngineClosed,
            E::SyncRunning => ApoyoCode::SyncRunning,
        }
    }

    /// The code with number `n`: one of the bridge's own, or a core code's.
    pub fn from_i32(n: i32) -> Option<ApoyoCode> {
        ApoyoCode::all().find(|c| *c as i32 == n)
    }

    /// Every code: the bridge's own and every core code (for the binding checks).
    pub fn all() -> impl Iterator<Item = ApoyoCode> {
        ApoyoCode::BRIDGE_OWN
            .into_iter()
            .chain(ErrorCode::ALL.into_iter().map(ApoyoCode::of))
    }
}

/// Every core code keeps its number across the boundary, and no bridge code takes a number in
/// the core's range: checked when the bridge compiles.
const _: () = {
    let mut i = 0;
    while i < ErrorCode::ALL.len() {
        let c = ErrorCode::ALL[i];
        assert!(ApoyoCode::of(c) as i32 == c as i32);
        i += 1;
    }
    let mut j = 0;
    while j < ApoyoCode::BRIDGE_OWN.len() {
        let n = ApoyoCode::BRIDGE_OWN[j] as i32;
        assert!(n == 0 || n >= 100);
        j += 1;
    }
};

/// Bytes the caller lends for the duration of one call (`ptr` may be NULL when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ApoyoSlice {
    pub ptr: *const u8,
    pub len: usize,
}

/// Bytes the library hands over: the caller owns them and frees them with `apoyo_buffer_free`
/// (exactly once; freeing an empty buffer is harmless). Text is UTF-8 without a NUL.
#[repr(C)]
#[derive(Debug)]
pub struct ApoyoBuffer {
    pub ptr: *mut u8,
    pub len: usize,
}

impl ApoyoBuffer {
    pub fn empty() -> Self {
        ApoyoBuffer {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        let boxed = v.into_boxed_slice();
        let len = boxed.len();
        if len == 0 {
            return ApoyoBuffer::empty();
        }
        ApoyoBuffer {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }
}

/// The link the phone is on (`apoyo_engine_set_network`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApoyoNetwork {
    None = 0,
    Wifi = 1,
    Cellular = 2,
    Metered = 3,
}

/// The registration provider (`apoyo_engine_register`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApoyoProvider {
    Google = 0,
    Facebook = 1,
}

/// Why a sync run stopped (`ApoyoSyncReport.stopped`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApoyoStop {
    Drained = 0,
    Budget = 1,
    NeedsActivation = 2,
    Cancelled = 3,
    NoNetwork = 4,
    WifiOnly = 5,
    CellularCapReached = 6,
}

/// The conversions both bridges share between these numbers and the core's types (the JNI
/// bridge's Java enums carry the same numbers).
impl ApoyoProvider {
    /// The provider with this number, if any.
    pub fn provider(n: i32) -> Option<Provider> {
        match n {
            n if n == ApoyoProvider::Google as i32 => Some(Provider::Google),
            n if n == ApoyoProvider::Facebook as i32 => Some(Provider::Facebook),
            _ => None,
        }
    }
}

impl ApoyoNetwork {
    /// The network kind with this number, if any (the same numbers as [`NetworkKind`]).
    pub fn kind(n: i32) -> Option<NetworkKind> {
        [
            NetworkKind::None,
            NetworkKind::Wifi,
            NetworkKind::Cellular,
            NetworkKind::Metered,
        ]
        .into_iter()
        .find(|k| *k as i32 == n)
    }
}

impl ApoyoStop {
    /// Why a run stopped, as the bridges report it (a yield to another call never ends a
    /// run; were it to, it reads as a cancel).
    pub fn of(s: StopReason) -> ApoyoStop {
        match s {
            StopReason::Drained => ApoyoStop::Drained,
            StopReason::Budget => ApoyoStop::Budget,
            StopReason::NeedsActivation => ApoyoStop::NeedsActivation,
            StopReason::Held(Hold::Cancelled | Hold::Yield) => ApoyoStop::Cancelled,
            StopReason::Held(Hold::NoNetwork) => ApoyoStop::NoNetwork,
            StopReason::Held(Hold::WifiOnly) => ApoyoStop::WifiOnly,
            StopReason::Held(Hold::CellularCapReached) => ApoyoStop::CellularCapReached,
        }
    }
}

/// What INE ships in the app. Fields may be appended in later versions (the header and the
/// static library always ship together).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ApoyoProvisioning {
    /// INE's X25519 public key: 32 bytes.
    pub endpoint_public_key: ApoyoSlice,
    /// The endpoint's CA certificate (PEM); empty for none.
    pub ca_pem: ApoyoSlice,
    /// Pinned SHA-256 digests of the endpoint's SubjectPublicKeyInfo, 32 bytes each, back to
    /// back; empty for none.
    pub pins: ApoyoSlice,
    /// Required (protocol v1.1): the INE root that certifies the endpoint's keys, as INE
    /// provisions it: the UTF-8 line `apoyo-ine-root-v1 <64 hex>` (the content of the
    /// endpoint's `ine-root.pub`). A capture is deleted only on a receipt that chains to it.
    /// Empty, malformed, another key's line or a private key: `APOYO_CODE_INVALID_ARGUMENT`.
    pub ine_root: ApoyoSlice,
}

/// Engine settings; pass NULL for the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ApoyoOptions {
    /// Free bytes that must remain after a capture; `UINT64_MAX` for the default (64 MiB).
    pub disk_reserve_bytes: u64,
    /// At init: the auxiliar's registration id, or empty for the citizen's own phone.
    pub auxiliar_id: ApoyoSlice,
}

/// The network policy (`apoyo_engine_set_network_policy`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ApoyoNetworkPolicy {
    pub wifi_only: bool,
    /// Most bytes on cellular or metered links from now on; `UINT64_MAX` for no limit.
    pub cellular_allowance_bytes: u64,
}

/// What a status screen shows (`apoyo_engine_status`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ApoyoStatus {
    pub captured: u64,
    pub uploading: u64,
    pub committed: u64,
    pub quarantined: u64,
    pub purged: u64,
    pub pending_bytes: u64,
    pub syncing: bool,
    pub registered: bool,
    /// Unix seconds the activation is valid until; 0 when not activated.
    pub activated_until: i64,
    /// An `ApoyoNetwork` value.
    pub network: i32,
    pub metered_bytes: u64,
    pub total_bytes: u64,
}

/// What a sync run did (`apoyo_engine_sync`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ApoyoSyncReport {
    pub committed: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub pending: u64,
    pub bytes_sent: u64,
    pub retries: u64,
    /// An `ApoyoStop` value.
    pub stopped: i32,
}

/// A progress snapshot, passed to `ApoyoListener.on_progress`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ApoyoProgress {
    pub done: u64,
    pub pending: u64,
    pub bytes_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every core code has the bridge code of the same number; the bridge's own codes lie
    /// outside the core's range; no number is used twice.
    #[test]
    fn bridge_codes_cover_every_core_code_with_its_number() {
        for c in ErrorCode::ALL {
            assert_eq!(ApoyoCode::of(c) as i32, c as i32, "{c:?}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in ApoyoCode::all() {
            assert!(seen.insert(c as i32), "{c:?} twice");
            let n = c as i32;
            assert!(
                n == 0 || n >= 100 || ErrorCode::from_i32(n).is_some(),
                "{c:?}"
            );
        }
        assert_eq!(ApoyoCode::all().count(), ErrorCode::ALL.len() + 5);
        assert_eq!(ApoyoCode::from_i32(48), Some(ApoyoCode::EngineClosed));
        assert_eq!(ApoyoCode::from_i32(103), Some(ApoyoCode::InvalidArgument));
        assert_eq!(ApoyoCode::from_i32(12), None);
    }
}
