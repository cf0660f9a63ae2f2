-- floatsrv schema v4: upstream sync. Every counter change marks the counter in the outbox (a trigger, so in
-- the same transaction); the sync worker sends each counter's cumulative total with its revision.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Counters whose total changed: the latest revision of each, to be delivered to every sync channel.
CREATE TABLE sync_outbox (
    license_id   INTEGER NOT NULL,
    feature      TEXT    NOT NULL,
    period_start INTEGER NOT NULL,
    revision     INTEGER NOT NULL,
    changed_at   INTEGER NOT NULL,
    PRIMARY KEY (license_id, feature, period_start),
    FOREIGN KEY (license_id, feature, period_start)
        REFERENCES consumption_counters (license_id, feature, period_start)
) WITHOUT ROWID;

CREATE TRIGGER consumption_counters_outbox AFTER UPDATE OF revision ON consumption_counters
BEGIN
    INSERT INTO sync_outbox (license_id, feature, period_start, revision, changed_at)
    VALUES (NEW.license_id, NEW.feature, NEW.period_start, NEW.revision, NEW.updated_at)
    ON CONFLICT (license_id, feature, period_start) DO UPDATE SET
        revision = excluded.revision, changed_at = excluded.changed_at;
END;

-- Usage that existed before this migration is owed upstream too.
INSERT INTO sync_outbox (license_id, feature, period_start, revision, changed_at)
SELECT license_id, feature, period_start, revision, updated_at FROM consumption_counters WHERE revision > 0;

-- What each channel (an upstream by name, or 'airgap') has confirmed, per counter.
CREATE TABLE sync_delivered (
    channel      TEXT    NOT NULL,
    license_id   INTEGER NOT NULL,
    feature      TEXT    NOT NULL,
    period_start INTEGER NOT NULL,
    revision     INTEGER NOT NULL CHECK (revision > 0),
    total_milli  INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (channel, license_id, feature, period_start)
) WITHOUT ROWID;

-- A batch is fixed when it is made and re-sent unchanged until it is confirmed (or parked), so the same
-- batch id always carries the same records and the same deltas. For upstreams that take cumulative totals,
-- an unconfirmed batch may instead be superseded by a fresh one (newer revisions make the old one moot).
CREATE TABLE sync_batches (
    id              TEXT    PRIMARY KEY,
    channel         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'parked', 'exported', 'superseded')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    last_error      TEXT,
    finished_at     INTEGER
) WITHOUT ROWID;
CREATE INDEX sync_batches_open ON sync_batches (channel, status, created_at)
    WHERE status IN ('pending', 'parked', 'exported');

CREATE TABLE sync_batch_records (
    batch_id         TEXT    NOT NULL REFERENCES sync_batches (id),
    license_id       INTEGER NOT NULL,
    product          TEXT    NOT NULL,
    feature          TEXT    NOT NULL,
    period_start     INTEGER NOT NULL,
    period_end       INTEGER,
    revision         INTEGER NOT NULL CHECK (revision > 0),
    total_milli      INTEGER NOT NULL,
    -- What was confirmed before this batch: the base of the delta for delta-based upstreams.
    base_revision    INTEGER NOT NULL,
    base_total_milli INTEGER NOT NULL,
    changed_at       INTEGER NOT NULL,
    delivered        INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
    PRIMARY KEY (batch_id, license_id, feature, period_start),
    CHECK (revision > base_revision)
) WITHOUT ROWID;
CREATE INDEX sync_batch_records_by_key ON sync_batch_records (license_id, feature, period_start);

-- Per channel: who is sending right now (a lease, so a server and the CLI never send at once) and how it went.
CREATE TABLE sync_state (
    channel              TEXT    PRIMARY KEY,
    lease_owner          TEXT,
    lease_until          INTEGER,
    last_success_at      INTEGER,
    last_error_at        INTEGER,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    requests             INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
