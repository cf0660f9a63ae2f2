-- floatsrv schema v7: vendor-signed license files, and what they grant.

-- Every license file this server accepted, as imported (re-verified at every start: the text, not the
-- columns, is what counts; the columns are for listing and for the rules below).
CREATE TABLE license_files (
    file_id      TEXT    PRIMARY KEY CHECK (length(file_id) BETWEEN 1 AND 100),
    digest       TEXT    NOT NULL CHECK (length(digest) = 64),
    kid          TEXT    NOT NULL CHECK (length(kid) = 16),
    series       TEXT    NOT NULL CHECK (length(series) BETWEEN 1 AND 100),
    sequence     INTEGER NOT NULL CHECK (sequence >= 1),
    entitlements TEXT    NOT NULL CHECK (entitlements IN ('signed', 'demo')),
    bound_to     TEXT,   -- the server key it is bound to; NULL: unbound
    issued_at    INTEGER NOT NULL,
    not_before   INTEGER NOT NULL,
    expires_at   INTEGER,
    license_ids  TEXT    NOT NULL CHECK (json_valid(license_ids)),
    text         TEXT    NOT NULL,
    imported_at  INTEGER NOT NULL,
    imported_by  TEXT    NOT NULL,
    ended_at     INTEGER,
    end_reason   TEXT    CHECK (end_reason IN ('removed', 'superseded')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (expires_at IS NULL OR expires_at > not_before)
) WITHOUT ROWID;
-- Within a series one file is in force at a time.
CREATE UNIQUE INDEX license_files_in_force ON license_files (series) WHERE ended_at IS NULL;

-- The highest sequence ever accepted per series: a file at or below it is refused, also after the newer
-- file was removed.
CREATE TABLE license_series (
    series        TEXT    PRIMARY KEY,
    high_sequence INTEGER NOT NULL CHECK (high_sequence >= 1)
) WITHOUT ROWID;

CREATE TRIGGER license_files_sequence_rises BEFORE INSERT ON license_files
WHEN NEW.sequence <= COALESCE((SELECT high_sequence FROM license_series WHERE series = NEW.series), 0)
BEGIN
    SELECT RAISE(ABORT, 'license file sequence is not above its series high-water mark');
END;

CREATE TRIGGER license_files_high_water AFTER INSERT ON license_files
BEGIN
    INSERT INTO license_series (series, high_sequence) VALUES (NEW.series, NEW.sequence)
        ON CONFLICT (series) DO UPDATE SET high_sequence = MAX(high_sequence, excluded.high_sequence);
END;

-- History: an ended file never comes back, and no file is ever deleted.
CREATE TRIGGER license_files_ended_stay_ended BEFORE UPDATE ON license_files
WHEN OLD.ended_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'ended license files cannot change');
END;
CREATE TRIGGER license_files_no_delete BEFORE DELETE ON license_files
BEGIN
    SELECT RAISE(ABORT, 'license files are kept as history');
END;

-- Where each served license comes from: a file (signed or demo-signed), or the YAML config (unsigned).
ALTER TABLE licenses ADD COLUMN file_id TEXT REFERENCES license_files (file_id);
ALTER TABLE licenses ADD COLUMN entitlements TEXT NOT NULL DEFAULT 'unsigned'
    CHECK (entitlements IN ('signed', 'demo', 'unsigned'));

-- Add-ons a vendor grants in its files (granted = 1) sit in the catalog beside admin-made ones; the
-- one-per-feature rule is for admin-made add-ons only.
ALTER TABLE addons ADD COLUMN granted INTEGER NOT NULL DEFAULT 0 CHECK (granted IN (0, 1));
DROP INDEX addons_one_per_feature;
CREATE UNIQUE INDEX addons_one_per_feature ON addons (feature) WHERE deleted_at IS NULL AND granted = 0;

-- A credit grant from a vendor's file is applied at most once per license.
ALTER TABLE credit_ledger ADD COLUMN grant_id TEXT CHECK (grant_id IS NULL OR length(grant_id) BETWEEN 4 AND 64);
CREATE UNIQUE INDEX credit_ledger_grants ON credit_ledger (license_id, grant_id) WHERE grant_id IS NOT NULL;

-- Usage sent upstream says where each license's terms came from (a vendor sees unsigned or demo licenses).
ALTER TABLE sync_batch_records ADD COLUMN entitlements TEXT
    CHECK (entitlements IS NULL OR entitlements IN ('signed', 'demo', 'unsigned'));
