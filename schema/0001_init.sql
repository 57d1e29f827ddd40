-- Migration 1: the device, the process catalog and the capture queue.
-- Part bytes live in files under parts/ (one file per capture), never in these tables:
-- a state update then rewrites a small row, not a 2 MB blob.
-- No column holds a plaintext image byte, card field (clave de elector, CURP, OCR, CIC,
-- sección) or location: those exist only inside the encrypted manifest part.

CREATE TABLE device (
    singleton        INTEGER PRIMARY KEY CHECK (singleton = 1),
    store_id         BLOB    NOT NULL,   -- 16 random bytes; binds the key wraps to this store
    device_id        TEXT    NOT NULL,   -- hex(SHA-256(identity_public)[..16])
    created_at       TEXT    NOT NULL,
    wrapped_master   BLOB    NOT NULL,   -- device master key, wrapped by the platform KeyGuard
    wrapped_identity BLOB    NOT NULL,   -- X25519 identity secret, wrapped under the master key
    identity_public  BLOB    NOT NULL,
    endpoint_public  BLOB    NOT NULL,   -- INE's X25519 key; data keys are sealed to it
    collector_kind   TEXT    NOT NULL CHECK (collector_kind IN ('mi_apoyo', 'auxiliar')),
    collector_id     TEXT    NOT NULL    -- opaque id (device id or auxiliar registration id)
) STRICT;

CREATE TABLE processes (
    id          TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,           -- the process JSON
    updated_at  TEXT NOT NULL
) STRICT;

-- The queue: one row per capture, a state machine (see src/queue.rs).
CREATE TABLE captures (
    id               TEXT    PRIMARY KEY,           -- UUIDv7
    process_id       TEXT    NOT NULL,
    collector_kind   TEXT    NOT NULL,
    collector_id     TEXT    NOT NULL,
    captured_at      TEXT    NOT NULL,              -- RFC 3339 UTC
    dup_key          BLOB    NOT NULL,              -- HMAC(device dup key, process || clave)
    state            TEXT    NOT NULL DEFAULT 'captured'
                     CHECK (state IN ('captured', 'uploading', 'committed', 'purged', 'quarantined')),
    reason           TEXT,                          -- quarantine reason code
    attempts         INTEGER NOT NULL DEFAULT 0,    -- failed sync attempts so far
    next_attempt_at  INTEGER,                       -- unix ms; NULL = as soon as possible
    last_error       TEXT,                          -- last transient failure (no personal data)
    total_bytes      INTEGER NOT NULL,              -- ciphertext bytes held for this capture
    updated_at       TEXT    NOT NULL
) STRICT;
CREATE INDEX captures_by_state ON captures (state, next_attempt_at);
-- Not UNIQUE: a citizen whose capture was quarantined (say, an expired card) may be captured
-- again; the local check ignores quarantined rows, the endpoint still counts a citizen once.
CREATE INDEX captures_by_dup_key ON captures (dup_key);

CREATE TABLE parts (
    capture_id   TEXT    NOT NULL REFERENCES captures (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('front', 'back', 'selfie', 'signature', 'manifest')),
    file_offset  INTEGER NOT NULL,     -- where the part's ciphertext starts in parts/<id>.parts
    ct_len       INTEGER NOT NULL,     -- ciphertext length
    sha256       BLOB,                 -- SHA-256 of the ciphertext (what the endpoint checks); computed
                                       -- on first use, off the capture path (the AEAD tags guard integrity)
    PRIMARY KEY (capture_id, kind)
) STRICT;

-- The two wraps of each capture's data key. Deleting this row crypto-shreds the capture.
CREATE TABLE capture_keys (
    capture_id     TEXT PRIMARY KEY REFERENCES captures (id),
    device_wrap    BLOB NOT NULL,      -- under the device master key (device-bound copy)
    endpoint_seal  BLOB NOT NULL       -- HPKE-sealed to INE's key (auth mode)
) STRICT;
