-- floatsrv schema v5: raw usage events older than the retention period are compacted away; their quantity
-- moves into the counter's compacted_milli, so that total_milli = compacted_milli + the events still kept.

ALTER TABLE consumption_counters ADD COLUMN compacted_milli INTEGER NOT NULL DEFAULT 0;

CREATE INDEX usage_events_by_time ON usage_events (received_at);

-- No query looks events up by counter (counters carry the totals), and counters are never deleted, so this
-- index only cost a B-tree write per usage event.
DROP INDEX usage_events_by_counter;

CREATE TRIGGER usage_events_compacted AFTER DELETE ON usage_events
BEGIN
    UPDATE consumption_counters SET compacted_milli = compacted_milli + OLD.quantity_milli
     WHERE license_id = OLD.license_id AND feature = OLD.feature AND period_start = OLD.period_start;
END;
