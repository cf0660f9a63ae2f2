-- floatsrv schema v9: activation requests, refresh deadlines and fingerprints of license files.

-- Every activation request this server made (`floatsrv license request`, online activation). A license file
-- that answers one (payload request_id) is accepted once: the request is then spent, for good.
CREATE TABLE activation_requests (
    request_id           TEXT    PRIMARY KEY CHECK (length(request_id) BETWEEN 16 AND 100),
    created_at           INTEGER NOT NULL,
    created_by           TEXT    NOT NULL,
    server_key           TEXT    NOT NULL CHECK (length(server_key) = 44),
    fingerprint          TEXT    NOT NULL,
    previous_fingerprint TEXT,   -- a rebind: the fingerprint the files in force were bound to
    spent_at             INTEGER,
    spent_by             TEXT    REFERENCES license_files (file_id),
    CHECK ((spent_at IS NULL) = (spent_by IS NULL))
) WITHOUT ROWID;

CREATE TRIGGER activation_requests_spent_stay_spent BEFORE UPDATE ON activation_requests
WHEN OLD.spent_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a spent activation request cannot be used again');
END;

-- What the payload says beyond the columns of v7, for listing and warnings (the stored text still decides).
ALTER TABLE license_files ADD COLUMN refresh_by INTEGER;
ALTER TABLE license_files ADD COLUMN fingerprint TEXT;
ALTER TABLE license_files ADD COLUMN request_id TEXT;

-- Each counter as it stood when the server last started: after a restore, what the vendor holds beyond it was
-- lost with the rollback, and what was counted since is new (docs/sync.md, Rollback).
CREATE TABLE counter_baselines (
    license_id   INTEGER NOT NULL,
    feature      TEXT    NOT NULL,
    period_start INTEGER NOT NULL,
    revision     INTEGER NOT NULL CHECK (revision >= 0),
    total_milli  INTEGER NOT NULL,
    PRIMARY KEY (license_id, feature, period_start)
) WITHOUT ROWID;

-- The database's lineage epoch when a batch was made: `floatsrv db restore` starts a new one, so delta ids of
-- usage counted after a restore never repeat ids of usage the restore lost (rebilly-usages; docs/sync.md).
ALTER TABLE sync_batches ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0);
