-- Migration 5 of the reference endpoint's database: the refused-commit budget (issue 17).

-- Commits refused after the endpoint read part bytes for them (`part_mismatch`, or
-- `upload_missing` found while reading), per device: past a configured budget within a window
-- the device's commits get `429 rate_limited` before any part is read. Recorded answers (receipts,
-- stored rejections) and their replays are never logged here, so an honest backlog is never
-- limited. `device` is the device id (its UTF-8 bytes); nothing else about the commit is kept.
CREATE TABLE commit_refusals (
    device  BLOB    NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX commit_refusals_by_device ON commit_refusals (device, at);
CREATE INDEX commit_refusals_by_time ON commit_refusals (at);
