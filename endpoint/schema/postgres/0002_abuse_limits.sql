-- PostgreSQL twin of endpoint/schema/0002_abuse_limits.sql (same tables, keys and checks; BYTEA for BLOB,
-- BIGINT for INTEGER). Migration 2 of the reference endpoint's database: what the abuse limits remember.

-- Registrations that mailed a code, per subject (rate limit: 5 per subject per hour). A subject
-- is HMAC-SHA-256 under a key derived from the endpoint's secret of "email" || the lower-cased
-- address, or of "device" || the device key: this table holds no email address, and this file
-- alone does not tell whether a given address registered.
CREATE TABLE registration_attempts (
    subject  BYTEA    NOT NULL CHECK (length(subject) = 32),
    at       BIGINT NOT NULL
);
CREATE INDEX registration_attempts_by_subject ON registration_attempts (subject, at);

-- Activation nonces that produced a token, kept until their code expires: the same signed
-- activation request sent again (a replay) is refused instead of minting another token.
CREATE TABLE activation_nonces (
    device_public  BYTEA    NOT NULL,
    nonce          BYTEA    NOT NULL CHECK (length(nonce) = 16),
    expires_at     BIGINT NOT NULL,
    PRIMARY KEY (device_public, nonce)
);
