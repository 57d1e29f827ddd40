-- Migration 4 (issue 16): per-state counters, so `Store::status` (and the clean-close check,
-- src/store/session.rs) cost the same with 100,000 capture rows as with 1,000. The triggers
-- keep them exact inside every transaction that adds, changes or removes a capture. Adds only.

CREATE TABLE queue_counts (
    state  TEXT    PRIMARY KEY
           CHECK (state IN ('captured', 'uploading', 'committed', 'purged', 'quarantined')),
    n      INTEGER NOT NULL,     -- captures in this state
    bytes  INTEGER NOT NULL      -- their total_bytes
) STRICT;

INSERT INTO queue_counts (state, n, bytes)
    SELECT s.state, count(c.id), coalesce(sum(c.total_bytes), 0)
    FROM (SELECT 'captured' AS state UNION ALL SELECT 'uploading' UNION ALL SELECT 'committed'
          UNION ALL SELECT 'purged' UNION ALL SELECT 'quarantined') AS s
    LEFT JOIN captures AS c ON c.state = s.state
    GROUP BY s.state;

CREATE TRIGGER queue_counts_insert AFTER INSERT ON captures
BEGIN
    UPDATE queue_counts SET n = n + 1, bytes = bytes + NEW.total_bytes WHERE state = NEW.state;
END;

CREATE TRIGGER queue_counts_delete AFTER DELETE ON captures
BEGIN
    UPDATE queue_counts SET n = n - 1, bytes = bytes - OLD.total_bytes WHERE state = OLD.state;
END;

CREATE TRIGGER queue_counts_update AFTER UPDATE OF state, total_bytes ON captures
BEGIN
    UPDATE queue_counts SET n = n - 1, bytes = bytes - OLD.total_bytes WHERE state = OLD.state;
    UPDATE queue_counts SET n = n + 1, bytes = bytes + NEW.total_bytes WHERE state = NEW.state;
END;
