-- Migration 3 (protocol v1.1, ADR 0015): the INE trust anchor, the device's commit-signing
-- key, the endpoint's certified keys, the seal key each capture was sealed to, the device
-- clock's offset from the endpoint, and each receipt's key certificate. Adds only.

ALTER TABLE device ADD COLUMN ine_root BLOB;          -- the provisioned INE root (Ed25519); NULL until provisioned
ALTER TABLE device ADD COLUMN wrapped_signing BLOB;   -- Ed25519 commit-signing secret, wrapped under the master key
ALTER TABLE device ADD COLUMN signing_public BLOB;

-- The endpoint's working keys, each certified by the INE root (only verified certificates
-- are stored). The newest seal key is the one new captures are sealed to.
CREATE TABLE endpoint_keys (
    key_id      TEXT    PRIMARY KEY,
    purpose     TEXT    NOT NULL CHECK (purpose IN ('receipt', 'seal')),
    key         BLOB    NOT NULL CHECK (length(key) = 32),
    cert        BLOB    NOT NULL,     -- the signed-key-cert, as received
    not_before  TEXT    NOT NULL,
    not_after   TEXT    NOT NULL
) STRICT;

ALTER TABLE capture_keys ADD COLUMN seal_key_id TEXT;  -- NULL: the provisioned seal key
ALTER TABLE endpoint ADD COLUMN clock_offset_ms INTEGER; -- endpoint Date - device clock, at the last contact
ALTER TABLE receipts ADD COLUMN key_cert BLOB;          -- v1.1: the signed-key-cert of the signing key
