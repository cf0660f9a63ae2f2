-- floatsrv schema v6: small facts about the server itself that must survive restarts.
-- clock_high_water: the latest server time written (µs); a later start never hands out an earlier time.
-- ready_probe: rewritten by /readyz to prove the database takes writes.
CREATE TABLE server_state (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
