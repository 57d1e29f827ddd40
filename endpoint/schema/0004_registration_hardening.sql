-- Migration 4 of the reference endpoint's database: registration hardening (issue 17).
-- - a registration records when it was activated; one never activated is deleted (with its card
--   front) by the sweep once its TTL passed and none of its codes is valid any more. Registrations
--   of a device that already holds a token count as activated;
-- - activation codes are kept only as HMAC-SHA-256 under a key derived from the endpoint's secret
--   (never in this file). Codes an older schema kept in clear cannot be converted, so they are
--   deleted: a device holding one registers again (its registration id is kept) for a new code.
--   The development mailbox, which only served those codes, is emptied too;
-- - registration budgets per source address and for the whole endpoint, as event logs beside
--   `registration_attempts` (subjects are HMACs: no IP address is kept).

ALTER TABLE registrations ADD COLUMN activated_at INTEGER;
UPDATE registrations SET activated_at = registered_at
    WHERE device_public IN (SELECT device_public FROM tokens);
CREATE INDEX registrations_unactivated ON registrations (registered_at) WHERE activated_at IS NULL;

DROP TABLE activation_codes;
CREATE TABLE activation_codes (
    code_hmac        BLOB    PRIMARY KEY CHECK (length(code_hmac) = 32),
    device_public    BLOB    NOT NULL REFERENCES devices (device_public),
    registration_id  TEXT    NOT NULL REFERENCES registrations (registration_id),
    issued_at        INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX activation_codes_by_registration ON activation_codes (registration_id);
DELETE FROM dev_mailbox;

-- Registrations that mailed a code, per source (HMAC of the client's IPv4 address or IPv6 /64).
CREATE TABLE registration_sources (
    subject  BLOB    NOT NULL CHECK (length(subject) = 32),
    at       INTEGER NOT NULL
) STRICT;
CREATE INDEX registration_sources_by_subject ON registration_sources (subject, at);

-- Registrations that mailed a code, all sources together (one fixed subject).
CREATE TABLE registrations_global (
    subject  BLOB    NOT NULL CHECK (length(subject) = 32),
    at       INTEGER NOT NULL
) STRICT;
CREATE INDEX registrations_global_by_subject ON registrations_global (subject, at);
