-- floatsrv schema v3: idempotent usage events, credits (ledger and balances), add-ons.

-- Native usage events carry the time of use (bucketed into its period) and the client's event id.
ALTER TABLE usage_events ADD COLUMN occurred_at INTEGER;
ALTER TABLE usage_events ADD COLUMN event_id TEXT;

-- Every accepted event id, forever, with the outcome it got: a replay returns that outcome, and the
-- same id with a different body is refused. Written in the same transaction as the counter change.
CREATE TABLE usage_event_ids (
    license_id     INTEGER NOT NULL REFERENCES licenses (id),
    event_id       TEXT    NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    request_hash   BLOB    NOT NULL CHECK (length(request_hash) = 32),
    outcome        TEXT    NOT NULL CHECK (json_valid(outcome)),
    -- The accepted event's row (raw events may be compacted away later; this record stays).
    usage_event_id INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    PRIMARY KEY (license_id, event_id)
) WITHOUT ROWID;

-- Credits. The ledger is the truth; the two tables after it are its running sums, kept by triggers.
CREATE TABLE credit_ledger (
    id             INTEGER PRIMARY KEY,
    license_id     INTEGER NOT NULL REFERENCES licenses (id),
    at             INTEGER NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('purchase', 'spend')),
    pool           TEXT    NOT NULL CHECK (pool IN ('plan', 'purchased')),
    amount_milli   INTEGER NOT NULL,
    period_start   INTEGER,
    feature        TEXT,
    usage_event_id INTEGER,
    actor          TEXT,
    note           TEXT CHECK (note IS NULL OR length(note) <= 500),
    CHECK ((kind = 'purchase' AND pool = 'purchased' AND amount_milli > 0) OR (kind = 'spend' AND amount_milli < 0)),
    CHECK (pool <> 'plan' OR period_start IS NOT NULL)
);
CREATE INDEX credit_ledger_by_license ON credit_ledger (license_id, id);

CREATE TABLE credit_balances (
    license_id      INTEGER PRIMARY KEY REFERENCES licenses (id),
    purchased_milli INTEGER NOT NULL DEFAULT 0 CHECK (purchased_milli >= 0)
);

CREATE TABLE credit_plan_usage (
    license_id   INTEGER NOT NULL REFERENCES licenses (id),
    period_start INTEGER NOT NULL,
    used_milli   INTEGER NOT NULL DEFAULT 0 CHECK (used_milli >= 0),
    PRIMARY KEY (license_id, period_start)
) WITHOUT ROWID;

CREATE TRIGGER credit_ledger_purchased AFTER INSERT ON credit_ledger WHEN NEW.pool = 'purchased'
BEGIN
    INSERT INTO credit_balances (license_id, purchased_milli) VALUES (NEW.license_id, 0) ON CONFLICT DO NOTHING;
    UPDATE credit_balances SET purchased_milli = purchased_milli + NEW.amount_milli
     WHERE license_id = NEW.license_id;
END;

CREATE TRIGGER credit_ledger_plan AFTER INSERT ON credit_ledger WHEN NEW.pool = 'plan'
BEGIN
    INSERT INTO credit_plan_usage (license_id, period_start, used_milli) VALUES (NEW.license_id, NEW.period_start, 0)
        ON CONFLICT DO NOTHING;
    UPDATE credit_plan_usage SET used_milli = used_milli - NEW.amount_milli
     WHERE license_id = NEW.license_id AND period_start = NEW.period_start;
END;

CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only'); END;
CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only'); END;

-- Add-ons (a catalog made by admins) and their activations on licenses.
CREATE TABLE addons (
    id                TEXT    PRIMARY KEY CHECK (length(id) BETWEEN 4 AND 64),
    name              TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description       TEXT    NOT NULL DEFAULT '' CHECK (length(description) <= 255),
    base_price        TEXT    NOT NULL,
    feature           TEXT    NOT NULL CHECK (length(feature) BETWEEN 1 AND 100),
    consumption_model TEXT    NOT NULL CHECK (consumption_model IN ('boolean', 'seats', 'metered', 'credits')),
    included_units    INTEGER NOT NULL DEFAULT 0 CHECK (included_units >= 0),
    overage_rate      TEXT,
    credit_cost       TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    deleted_at        INTEGER
) WITHOUT ROWID;
-- One live add-on per feature code.
CREATE UNIQUE INDEX addons_one_per_feature ON addons (feature) WHERE deleted_at IS NULL;

CREATE TABLE license_addons (
    id              INTEGER PRIMARY KEY,
    license_id      INTEGER NOT NULL REFERENCES licenses (id),
    addon_id        TEXT    NOT NULL REFERENCES addons (id),
    activated_at    INTEGER NOT NULL,
    deactivated_at  INTEGER,
    period_start    INTEGER NOT NULL,
    period_end      INTEGER NOT NULL,
    prorated_charge TEXT    NOT NULL,
    actor           TEXT,
    CHECK (period_end > period_start),
    CHECK (deactivated_at IS NULL OR deactivated_at >= activated_at)
);
CREATE UNIQUE INDEX license_addons_active ON license_addons (license_id, addon_id) WHERE deactivated_at IS NULL;
