-- Migration 0006 of the reference endpoint's database: the running SHA-256 of each upload
-- (ADR 0021). Each accepted PATCH stores, in the same row write as the new offset, the
-- serialized SHA-256 state of the upload's first `upload_offset` bytes, so a PATCH on any
-- replica continues it; the last PATCH stores the upload's digest instead, which the commit
-- compares with the declared digest before reading any byte (it still hashes the bytes it
-- decrypts).
-- - digest_state: the serialized state (sha2's `SerializableState`); NULL at offset 0, once
--   complete, or when not kept (a row from before this migration: the commit then re-hashes);
-- - sha256: SHA-256 of the whole upload, set by the PATCH that completes it; NULL until then.

ALTER TABLE uploads ADD COLUMN digest_state BLOB;
ALTER TABLE uploads ADD COLUMN sha256 BLOB CHECK (sha256 IS NULL OR length(sha256) = 32);
