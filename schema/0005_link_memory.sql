-- Migration 5 (issue 16, ADR 0023): what the last sync run learned about the link and when,
-- so the next run (another process: `apoyo sync`, WorkManager, BGTask) starts from it, and
-- when the process catalog was last refreshed from the endpoint. One row. Adds only.

CREATE TABLE link_memory (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    endpoint_url   TEXT,     -- the endpoint the run below talked to
    patch_size     INTEGER,  -- the PATCH size the run ended at (ADR 0018)
    patch_ceiling  INTEGER,  -- the ceiling its failures set (1 MiB: none)
    pace           REAL,     -- bytes/s of its last acknowledged PATCH; NULL: none
    slow_link      INTEGER,  -- 1: an exchange took longer than 500 ms (a long round trip)
    learned_at_ms  INTEGER,  -- device wall clock (unix ms) when it was learned; NULL: never
    catalog_url    TEXT,     -- the endpoint the catalog was last refreshed from
    catalog_at_ms  INTEGER   -- device wall clock (unix ms) of that refresh; NULL: never
) STRICT;

INSERT INTO link_memory (singleton) VALUES (1);
