-- floatsrv schema v10: what the usage policy and the reports need: the caller's address on seats, the denial
-- log, and daily consumption totals that outlive raw usage events.

-- The address the request came from (through server.trusted_proxies): `address:` policy rules match it.
ALTER TABLE seats ADD COLUMN address TEXT CHECK (address IS NULL OR length(address) <= 64);

-- The concurrency report reads one license's (or feature's) seat intervals in time order.
CREATE INDEX seats_by_scope_time ON seats (license_id, feature, registered_at);
-- Seat history past reports.retention_days is deleted oldest first.
CREATE INDEX seats_ended ON seats (ended_at) WHERE ended_at IS NOT NULL;

-- Every refused seat or consumption: who asked, why it was refused, and how full it was at that moment.
-- Quantities are thousandths (a seat is 1000), as consumption totals are.
CREATE TABLE denials (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    license_id   INTEGER NOT NULL,
    feature      TEXT    NOT NULL DEFAULT '',
    kind         TEXT    NOT NULL CHECK (kind IN ('seat', 'consumption')),
    user         TEXT    CHECK (user IS NULL OR length(user) <= 256),
    host         TEXT    CHECK (host IS NULL OR length(host) <= 256),
    address      TEXT    CHECK (address IS NULL OR length(address) <= 64),
    login        TEXT    CHECK (login IS NULL OR length(login) <= 256),
    reason       TEXT    NOT NULL CHECK (length(reason) BETWEEN 1 AND 64),
    in_use_milli INTEGER CHECK (in_use_milli IS NULL OR in_use_milli >= 0),
    limit_milli  INTEGER CHECK (limit_milli IS NULL OR limit_milli >= 0)
);
CREATE INDEX denials_by_time ON denials (at);
CREATE INDEX denials_by_scope ON denials (license_id, feature, at);

-- Consumption per UTC day (of when it happened) per license and feature, kept after raw events are
-- compacted. `day` is the day's first microsecond. The trigger keeps it equal to the sum of events recorded.
CREATE TABLE consumption_daily (
    license_id     INTEGER NOT NULL,
    feature        TEXT    NOT NULL DEFAULT '',
    day            INTEGER NOT NULL CHECK (day % 86400000000 = 0),
    quantity_milli INTEGER NOT NULL,
    events         INTEGER NOT NULL CHECK (events >= 0),
    PRIMARY KEY (license_id, feature, day)
) WITHOUT ROWID;

INSERT INTO consumption_daily (license_id, feature, day, quantity_milli, events)
SELECT license_id, feature, COALESCE(occurred_at, received_at) / 86400000000 * 86400000000, SUM(quantity_milli), COUNT(*)
  FROM usage_events
 GROUP BY 1, 2, 3;

CREATE TRIGGER usage_events_daily AFTER INSERT ON usage_events
BEGIN
    INSERT INTO consumption_daily (license_id, feature, day, quantity_milli, events)
    VALUES (NEW.license_id, NEW.feature, COALESCE(NEW.occurred_at, NEW.received_at) / 86400000000 * 86400000000,
            NEW.quantity_milli, 1)
    ON CONFLICT (license_id, feature, day) DO UPDATE
       SET quantity_milli = quantity_milli + excluded.quantity_milli, events = events + 1;
END;
