-- floatsrv schema v1: licenses, seats (license and feature registrations), consumption.
-- Instants are INTEGER microseconds since the Unix epoch, UTC.

-- The licenses this server serves. The definition (limits, features) is the validated JSON spec;
-- the columns are the parts SQL itself needs.
CREATE TABLE licenses (
    id             INTEGER PRIMARY KEY CHECK (id > 0),
    product        TEXT    NOT NULL CHECK (length(product) BETWEEN 1 AND 100),
    -- Order in which licenses were first added: without license_id, clients get the newest of a product.
    added_seq      INTEGER NOT NULL UNIQUE,
    added_at       INTEGER NOT NULL,
    removed_at     INTEGER,
    floating_users INTEGER NOT NULL CHECK (floating_users > 0),
    definition     TEXT    NOT NULL CHECK (json_valid(definition)),
    updated_at     INTEGER NOT NULL
);
CREATE INDEX licenses_by_product ON licenses (product, added_seq);

CREATE TABLE license_features (
    license_id     INTEGER NOT NULL REFERENCES licenses (id),
    code           TEXT    NOT NULL CHECK (length(code) BETWEEN 1 AND 100),
    -- Stable numeric id shown to clients as the feature's id.
    feature_id     INTEGER NOT NULL UNIQUE CHECK (feature_id > 0),
    floating_users INTEGER CHECK (floating_users IS NULL OR floating_users > 0),
    removed_at     INTEGER,
    PRIMARY KEY (license_id, code)
) WITHOUT ROWID;

-- Every registration ever made. A seat is held while ended_at IS NULL and expires_at is in the future;
-- an expired seat is ended (with its reason) lazily by the next claim or by the sweeper.
-- feature = '' is the license seat itself; otherwise a seat of that floating feature.
CREATE TABLE seats (
    id             INTEGER PRIMARY KEY,
    license_id     INTEGER NOT NULL REFERENCES licenses (id),
    feature        TEXT    NOT NULL DEFAULT '',
    user           TEXT    NOT NULL CHECK (length(user) BETWEEN 1 AND 256),
    -- Slot numbers 1..limit: the partial UNIQUE index below plus the trigger make it impossible,
    -- whatever the code does, for more seats than the limit to be held at once.
    slot           INTEGER NOT NULL CHECK (slot >= 1),
    principal      TEXT,
    registered_at  INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    borrowed_until INTEGER,
    ended_at       INTEGER,
    end_reason     TEXT CHECK (end_reason IN (
                       'released', 'expired', 'borrow_ended', 'unregister_all',
                       'admin_removed', 'license_removed')),
    os_hostname    TEXT,
    ip_local       TEXT,
    user_info      TEXT,
    sdk_ver        TEXT,
    app_ver        TEXT,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (expires_at >= heartbeat_at),
    CHECK (heartbeat_at >= registered_at)
);
CREATE UNIQUE INDEX seats_held_by_user ON seats (license_id, feature, user) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX seats_held_slot ON seats (license_id, feature, slot) WHERE ended_at IS NULL;
CREATE INDEX seats_held_expiry ON seats (expires_at) WHERE ended_at IS NULL;
CREATE INDEX seats_history ON seats (license_id, user, id);

CREATE TRIGGER seats_slot_within_limit BEFORE INSERT ON seats
WHEN NEW.slot > COALESCE(
    CASE WHEN NEW.feature = ''
         THEN (SELECT floating_users FROM licenses WHERE id = NEW.license_id)
         ELSE (SELECT floating_users FROM license_features
               WHERE license_id = NEW.license_id AND code = NEW.feature)
    END, 0)
BEGIN
    SELECT RAISE(ABORT, 'seat slot beyond the seat limit');
END;

-- History is append-only: an ended seat is never revived or re-ended.
CREATE TRIGGER seats_history_immutable BEFORE UPDATE ON seats
WHEN OLD.ended_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'ended seats cannot change');
END;

-- One counter per (license, feature, period). feature = '' is the license-level counter; period_start = 0
-- for counters that never reset. Totals are integer thousandths of a unit.
CREATE TABLE consumption_counters (
    license_id   INTEGER NOT NULL REFERENCES licenses (id),
    feature      TEXT    NOT NULL DEFAULT '',
    period_start INTEGER NOT NULL,
    period_end   INTEGER,
    total_milli  INTEGER NOT NULL DEFAULT 0 CHECK (total_milli >= 0),
    -- Increases on every change; upstream sync sends (total, revision) so re-sends never double count.
    revision     INTEGER NOT NULL DEFAULT 0 CHECK (revision >= 0),
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (license_id, feature, period_start),
    CHECK (period_end IS NULL OR period_end > period_start)
) WITHOUT ROWID;

-- Every accepted consumption. The trigger below keeps each counter equal to the sum of its events.
CREATE TABLE usage_events (
    id             INTEGER PRIMARY KEY,
    license_id     INTEGER NOT NULL,
    feature        TEXT    NOT NULL DEFAULT '',
    period_start   INTEGER NOT NULL,
    quantity_milli INTEGER NOT NULL CHECK (quantity_milli <> 0),
    user           TEXT,
    principal      TEXT,
    source         TEXT    NOT NULL,
    received_at    INTEGER NOT NULL,
    FOREIGN KEY (license_id, feature, period_start)
        REFERENCES consumption_counters (license_id, feature, period_start)
);
CREATE INDEX usage_events_by_counter ON usage_events (license_id, feature, period_start);

CREATE TRIGGER usage_events_count AFTER INSERT ON usage_events
BEGIN
    UPDATE consumption_counters
       SET total_milli = total_milli + NEW.quantity_milli,
           revision = revision + 1,
           updated_at = NEW.received_at
     WHERE license_id = NEW.license_id AND feature = NEW.feature AND period_start = NEW.period_start;
END;
