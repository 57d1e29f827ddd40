-- Migration 2 of the reference endpoint's database: what the abuse limits remember.

-- Registrations that mailed a code, per subject (rate limit: 5 per subject per hour). A subject
-- is HMAC-SHA-256 under a key derived from the endpoint's secret of "email" || the lower-cased
-- address, or of "device" || the device key: this table holds no email address, and this file
-- alone does not tell whether a given address registered.
CREATE TABLE registration_attempts (
    subject  BLOB    NOT NULL CHECK (length(subject) = 32),
    at       INTEGER NOT NULL
) STRICT;
CREATE INDEX registration_attempts_by_subject ON registration_attempts (subject, at);

-- Activation nonces that produced a token, kept until their code expires: the same signed
-- activation request sent again (a replay) is refused instead of minting another token.
CREATE TABLE activation_nonces (
    device_public  BLOB    NOT NULL,
    nonce          BLOB    NOT NULL CHECK (length(nonce) = 16),
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (device_public, nonce)
) STRICT;
