//! Named limits, each with the reason for its value ("put a limit on everything").

/// Plaintext bytes per AEAD chunk. 64 KiB keeps the per-chunk tag overhead at 0.02 % and the
/// memory of sealing, opening and uploading bounded by one chunk, whatever the image size.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Largest card side (front or back). The app's camera captures compress to 200-800 kB; 2 MiB
/// leaves room for a sharper phone while refusing a raw 12 MP frame (≈36 MB) sent by mistake.
pub const MAX_CARD_IMAGE_BYTES: usize = 2 * 1024 * 1024;

/// Largest selfie ("fotografía viva"): same reasoning as the card, a little more room because
/// INE's reviewers reject blurred faces (the largest single invalidity cause, DOMAIN.md).
pub const MAX_SELFIE_BYTES: usize = 3 * 1024 * 1024;

/// Largest signature image: a drawn stroke on a small canvas is 5-60 kB; 512 KiB is generous.
pub const MAX_SIGNATURE_BYTES: usize = 512 * 1024;

/// Largest encoded manifest (card fields, location, metadata). Real ones are under 1 KiB.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;

/// Largest process definition (JSON). Real ones are well under 8 KiB; a list of secciones for a
/// district-scoped process can hold a few thousand entries.
pub const MAX_PROCESS_JSON_BYTES: usize = 1024 * 1024;

/// Free bytes the device keeps in reserve by default after a capture is written: the phone
/// itself needs room to run, and SQLite needs room to checkpoint its WAL.
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// Maximum nesting depth accepted by the CBOR decoders (hostile inputs recurse).
pub const MAX_CBOR_DEPTH: usize = 16;
