-- Migration 2: what syncing needs (registration, activation, resumable uploads, receipts).
-- Adds only: no row of a queued capture is rewritten or dropped.

ALTER TABLE parts ADD COLUMN upload_url TEXT;                          -- tus upload URL once created
ALTER TABLE parts ADD COLUMN upload_expires TEXT;                      -- tus Upload-Expires, as sent (HTTP date)
ALTER TABLE parts ADD COLUMN uploaded_bytes INTEGER NOT NULL DEFAULT 0; -- last offset the server acknowledged

CREATE TABLE endpoint (
    singleton           INTEGER PRIMARY KEY CHECK (singleton = 1),
    url                 TEXT    NOT NULL,
    registration_id     TEXT,
    registered_at       TEXT,
    token_wrapped       BLOB,    -- activation token, wrapped under the device master key
    token_expires_at    TEXT,
    receipt_public      BLOB,    -- the endpoint's Ed25519 receipt key, learned at activation
    receipt_key_id      TEXT,
    updated_at          TEXT    NOT NULL
) STRICT;

-- Signed receipts, kept after the capture is purged (the proof it was counted).
CREATE TABLE receipts (
    capture_id        TEXT    PRIMARY KEY REFERENCES captures (id),
    result            TEXT    NOT NULL CHECK (result IN ('counted', 'duplicate')),
    counted_at        TEXT    NOT NULL,
    first_capture_id  TEXT,              -- for 'duplicate': the support that was counted
    receipt           BLOB    NOT NULL,  -- the signed CBOR bytes, as received
    signature         BLOB    NOT NULL,
    verified          INTEGER NOT NULL,  -- 1 if the signature verified against receipt_public
    received_at       TEXT    NOT NULL
) STRICT;
