-- PostgreSQL twin of endpoint/schema/0001_init.sql (same tables, keys and checks; BYTEA for BLOB,
-- BIGINT for INTEGER). Migration 1 of the reference endpoint's database.
--
-- No column holds a plaintext image byte, a card field (clave de elector, CURP, OCR, CIC,
-- sección) or a location: those exist only inside the encrypted parts, whose ciphertext sits in
-- the blob folder (uploads/ while being uploaded, supports/<capture id>/ once committed).
-- The duplicate key is an HMAC under a key derived from the endpoint's secret, so this file alone
-- does not let anyone test whether a given clave de elector supported a process.
--
-- Times compared in queries are BIGINT unix seconds (`*_at`); times kept for the record are
-- RFC 3339 UTC text (`*_time`).

-- A device key that registered at least once.
CREATE TABLE devices (
    device_public  BYTEA    PRIMARY KEY CHECK (length(device_public) = 32),  -- X25519
    device_id      TEXT    NOT NULL UNIQUE,     -- hex(SHA-256(device_public)[..16])
    registered_at  BIGINT NOT NULL
);

-- "Registro ciudadano": the card front is kept only as the device sent it (ciphertext + sealed key).
CREATE TABLE registrations (
    registration_id   TEXT    PRIMARY KEY,      -- UUID chosen by the device
    device_public     BYTEA    NOT NULL REFERENCES devices (device_public),
    provider          TEXT    NOT NULL CHECK (provider IN ('google', 'facebook')),
    front_sealed_key  BYTEA    NOT NULL,         -- HPKE-sealed data key of the front
    front             BYTEA    NOT NULL,         -- the card front's ciphertext (never plaintext)
    registered_at     BIGINT NOT NULL
);

-- Activation codes: valid 24 h, bound to the device key they were issued to.
CREATE TABLE activation_codes (
    code             TEXT    PRIMARY KEY,
    device_public    BYTEA    NOT NULL REFERENCES devices (device_public),
    registration_id  TEXT    NOT NULL REFERENCES registrations (registration_id),
    issued_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);

-- The development mailbox: the latest code "emailed" to each address. This stands in for the
-- mail server; it is served only when the endpoint runs with `dev`.
CREATE TABLE dev_mailbox (
    email       TEXT    PRIMARY KEY,
    code        TEXT    NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Failed activation attempts per device key (rate limit: 5 per 15 minutes).
CREATE TABLE activation_failures (
    device_public  BYTEA    NOT NULL,
    at             BIGINT NOT NULL
);
CREATE INDEX activation_failures_by_device ON activation_failures (device_public, at);

-- Bearer tokens, stored only as SHA-256 of the token.
CREATE TABLE tokens (
    token_sha256   BYTEA    PRIMARY KEY,
    device_public  BYTEA    NOT NULL REFERENCES devices (device_public),
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

-- tus uploads in progress (bytes in uploads/<id>). A row is removed when its bytes move into a
-- support, on DELETE, or some time after it expired.
CREATE TABLE uploads (
    id             TEXT    PRIMARY KEY,         -- 32 hex characters
    device_id      TEXT    NOT NULL,
    capture_id     TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('front', 'back', 'selfie', 'signature', 'manifest')),
    length         BIGINT NOT NULL CHECK (length > 0),
    upload_offset  BIGINT NOT NULL DEFAULT 0 CHECK (upload_offset BETWEEN 0 AND length),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX uploads_by_device ON uploads (device_id);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

-- Every commit the endpoint decided (counted, duplicate, or rejected for a reason that depends
-- only on its content), with the exact answer so that replays get the same bytes.
CREATE TABLE supports (
    capture_id        TEXT    PRIMARY KEY,
    device_id         TEXT    NOT NULL,
    process_id        TEXT    NOT NULL,
    result            TEXT    NOT NULL CHECK (result IN ('counted', 'duplicate', 'rejected')),
    reason            TEXT,                     -- reason code when rejected
    first_capture_id  TEXT,                     -- the counted support, when duplicate
    dup_key           BYTEA,                     -- HMAC(endpoint dup key, process || 0 || clave)
    collector_kind    TEXT    NOT NULL CHECK (collector_kind IN ('mi_apoyo', 'auxiliar')),
    collector_id      TEXT    NOT NULL,         -- opaque device or auxiliar registration id
    captured_time     TEXT    NOT NULL,         -- capture time as the device committed it
    counted_time      TEXT    NOT NULL,         -- when the endpoint decided
    digest            BYTEA    NOT NULL,         -- SHA-256 of the canonical commit content
    status            BIGINT NOT NULL,         -- the HTTP status answered
    body              BYTEA    NOT NULL,         -- the exact body answered (receipt or error)
    CHECK ((result = 'rejected') = (reason IS NOT NULL)),
    CHECK ((result = 'duplicate') = (first_capture_id IS NOT NULL)),
    CHECK ((result = 'rejected') OR (dup_key IS NOT NULL))
);
-- LGIPE art. 385: one counted support per (process, citizen), enforced by the database too.
CREATE UNIQUE INDEX supports_counted_once ON supports (dup_key) WHERE result = 'counted';
CREATE INDEX supports_by_dup_key ON supports (dup_key);

-- The parts of a decided support (ciphertext in supports/<capture id>/<kind>.part).
CREATE TABLE support_parts (
    capture_id  TEXT    NOT NULL REFERENCES supports (capture_id),
    kind        TEXT    NOT NULL CHECK (kind IN ('front', 'back', 'selfie', 'signature', 'manifest')),
    length      BIGINT NOT NULL,
    sha256      BYTEA    NOT NULL,
    PRIMARY KEY (capture_id, kind)
);
