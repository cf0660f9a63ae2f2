"""Upgrades: a database written by an older floatsrv (every older schema version) is migrated forward at
start-up by a real server process, and everything in it stays: held seats, consumption, what is owed
upstream."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from floatsrv.db.migrate import APPLICATION_ID, latest_version, migrate
from tests.procs import ServerProcess


def us(instant: datetime) -> int:
    return int(instant.timestamp() * 1_000_000)


def old_database(path: Path, version: int) -> None:
    """A database at schema `version`, holding what a server of that version would have written."""
    path.parent.mkdir(parents=True)
    now = datetime.now(UTC)
    month = us(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        assert migrate(conn, us(now), upto=version) == list(range(1, version + 1))
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO licenses (id, product, added_seq, added_at, floating_users, definition, updated_at)"
            " VALUES (1001, 'demo', 1, ?, 3, '{}', ?)",
            (us(now), us(now)),
        )
        conn.execute(
            "INSERT INTO seats (license_id, feature, user, slot, registered_at, heartbeat_at, expires_at)"
            " VALUES (1001, '', 'veteran', 1, ?, ?, ?)",
            (us(now), us(now), us(now) + 3_600_000_000),
        )
        conn.execute(
            "INSERT INTO consumption_counters (license_id, feature, period_start, updated_at) VALUES (1001, '', ?, ?)",
            (month, us(now)),
        )
        conn.execute(
            "INSERT INTO usage_events (license_id, feature, period_start, quantity_milli, source, received_at)"
            " VALUES (1001, '', ?, 42000, 'api_v4', ?)",
            (month, us(now)),
        )
        conn.execute("COMMIT")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()


@pytest.mark.parametrize("version", range(1, latest_version()))
def test_older_database_is_migrated_forward_and_keeps_everything(tmp_path: Path, version: int) -> None:
    server = ServerProcess(tmp_path)
    old_database(server.data_dir / "floatsrv.db", version)
    server.start()
    try:
        token = server.token()
        status, ready = server.request("GET", "/readyz")
        assert status == 200, ready
        assert ready["checks"]["migrations"] == {
            "status": "ok",
            "version": latest_version(),
            "expected": latest_version(),
        }
        status, seats = server.request("GET", "/v1/seats", token=token)
        assert [seat["user"] for seat in seats["data"]["data"]] == ["veteran"]
        status, view = server.request("GET", "/v1/licenses/1001", token=token)
        assert view["data"]["consumption"]["total"] == "42" and view["data"]["seats_in_use"] == 1
        status, sync = server.request("GET", "/v1/sync", token=token)
        assert sync["data"]["airgap"]["pending_records"] == 1  # usage from before the upgrade is still owed
    finally:
        assert server.stop() == 0
    events = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    [migrated] = [event for event in events if event["event"] == "database_migrated"]
    assert migrated["versions"] == list(range(version + 1, latest_version() + 1))
