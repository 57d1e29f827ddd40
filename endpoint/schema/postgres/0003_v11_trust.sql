-- PostgreSQL twin of endpoint/schema/0003_v11_trust.sql (same tables, keys and checks; BYTEA for BLOB,
-- BIGINT for INTEGER). Migration 3 of the reference endpoint's database: protocol v1.1 (ADR 0015).
-- - each activation registers the device's Ed25519 commit-signing key with its token;
-- - an auxiliar id is bound to the first device key that activated with it;
-- - supports are keyed by (device, capture id), so another device reusing a capture id never
--   blocks the device that owns it; each keeps the signed commit bytes and their signature,
--   and the clock correction applied to it.

ALTER TABLE tokens ADD COLUMN signing_public BYTEA CHECK (signing_public IS NULL OR length(signing_public) = 32);

CREATE TABLE auxiliar_bindings (
    auxiliar_id    TEXT    PRIMARY KEY,         -- ^[A-Z0-9-]{3,32}$, an opaque registration id
    device_public  BYTEA    NOT NULL REFERENCES devices (device_public),
    bound_at       BIGINT NOT NULL
);

CREATE TABLE supports_v3 (
    device_id         TEXT    NOT NULL,
    capture_id        TEXT    NOT NULL,
    process_id        TEXT    NOT NULL,
    result            TEXT    NOT NULL CHECK (result IN ('counted', 'duplicate', 'rejected')),
    reason            TEXT,
    first_capture_id  TEXT,
    dup_key           BYTEA,
    collector_kind    TEXT    NOT NULL CHECK (collector_kind IN ('mi_apoyo', 'auxiliar')),
    collector_id      TEXT    NOT NULL,
    captured_time     TEXT    NOT NULL,         -- capture time as the device committed it
    counted_time      TEXT    NOT NULL,
    digest            BYTEA    NOT NULL,
    status            BIGINT NOT NULL,
    body              BYTEA    NOT NULL,
    blob_dir          TEXT    NOT NULL,         -- folder under supports/ holding its parts
    signed_commit     BYTEA,                     -- v1.1: the commit bytes the device signed
    device_signature  BYTEA,                     -- v1.1: Ed25519 over "apoyo-sync/v1.1/commit" || signed_commit
    sent_time         TEXT,                     -- v1.1: the device clock when it built the commit
    skew_seconds      BIGINT,                  -- v1.1: receive time - sent_time, when over the tolerance
    PRIMARY KEY (device_id, capture_id),
    CHECK ((result = 'rejected') = (reason IS NOT NULL)),
    CHECK ((result = 'duplicate') = (first_capture_id IS NOT NULL)),
    CHECK ((result = 'rejected') OR (dup_key IS NOT NULL))
);
INSERT INTO supports_v3 (device_id, capture_id, process_id, result, reason, first_capture_id, dup_key,
                         collector_kind, collector_id, captured_time, counted_time, digest, status, body, blob_dir)
    SELECT device_id, capture_id, process_id, result, reason, first_capture_id, dup_key,
           collector_kind, collector_id, captured_time, counted_time, digest, status, body, capture_id
    FROM supports;

CREATE TABLE support_parts_v3 (
    device_id   TEXT    NOT NULL,
    capture_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('front', 'back', 'selfie', 'signature', 'manifest')),
    length      BIGINT NOT NULL,
    sha256      BYTEA    NOT NULL,
    PRIMARY KEY (device_id, capture_id, kind),
    FOREIGN KEY (device_id, capture_id) REFERENCES supports_v3 (device_id, capture_id)
);
INSERT INTO support_parts_v3 (device_id, capture_id, kind, length, sha256)
    SELECT s.device_id, p.capture_id, p.kind, p.length, p.sha256
    FROM support_parts p JOIN supports s ON s.capture_id = p.capture_id;

DROP TABLE support_parts;
DROP TABLE supports;
ALTER TABLE supports_v3 RENAME TO supports;
ALTER TABLE support_parts_v3 RENAME TO support_parts;
-- LGIPE art. 385: one counted support per (process, citizen), enforced by the database too.
CREATE UNIQUE INDEX supports_counted_once ON supports (dup_key) WHERE result = 'counted';
CREATE INDEX supports_by_dup_key ON supports (dup_key);
