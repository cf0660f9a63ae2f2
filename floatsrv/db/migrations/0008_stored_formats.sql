-- floatsrv schema v8: stored formats carry their version.

-- A usage event's stored outcome is replayed for months: its format (domain/outcomes.py) is explicit.
-- Rows written before are format 1 (a dump of the 0.1 Outcome dataclass).
ALTER TABLE usage_event_ids ADD COLUMN outcome_format INTEGER NOT NULL DEFAULT 1 CHECK (outcome_format >= 1);

-- A license's stored definition (the LicenseSpec JSON, domain/catalog.py) names its format too.
ALTER TABLE licenses ADD COLUMN definition_format INTEGER NOT NULL DEFAULT 1 CHECK (definition_format >= 1);
