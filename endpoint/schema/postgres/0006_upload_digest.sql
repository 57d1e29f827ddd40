-- PostgreSQL twin of endpoint/schema/0006_upload_digest.sql (BYTEA for BLOB). Migration 0006:
-- the running SHA-256 of each upload (ADR 0021), stored with the offset so that a PATCH on any
-- replica continues it, and the upload's digest once complete.
-- - digest_state: the serialized SHA-256 state of the first `upload_offset` bytes; NULL at
--   offset 0, once complete, or when not kept (a row from before this migration);
-- - sha256: SHA-256 of the whole upload, set by the PATCH that completes it; NULL until then.

ALTER TABLE uploads ADD COLUMN digest_state BYTEA;
ALTER TABLE uploads ADD COLUMN sha256 BYTEA CHECK (sha256 IS NULL OR length(sha256) = 32);
