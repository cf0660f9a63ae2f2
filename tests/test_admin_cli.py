"""The admin CLI against the data directory of a running server: status, licenses, seats (list, revoke),
usage, and the database (online backup, check) — tables for people, --json for scripts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.procs import ServerProcess


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "floatsrv",
            *args,
            "--config",
            str(server.config_path),
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_json(server: ServerProcess, *args: str) -> Any:
    result = cli(server, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    proc = ServerProcess(tmp_path)
    config = yaml.safe_load(proc.config_path.read_text())
    config["server"]["port"] = proc.port  # so that `status` finds the running server through the config
    proc.config_path.write_text(yaml.safe_dump(config))
    proc.start()
    try:
        token = proc.token("demo", "demo-password")
        for user in ("ann", "bob"):
            assert proc.request("POST", "/api/v4/register", {"product": "demo", "user": user}, token)[0] == 200
        consume = {"product": "demo", "user": "ann", "feature": "render", "consumptions": 7}
        assert proc.request("POST", "/api/v4/add_feature_consumption", consume, token)[0] == 200
        yield proc
    finally:
        proc.stop()


def test_status(server: ServerProcess) -> None:
    report = cli_json(server, "status")
    assert report["server"]["state"] == "ready"
    assert (report["licenses"], report["seats_in_use"], report["seats_limit"]) == (1, 2, 3)
    [airgap] = report["sync"]
    assert airgap["channel"] == "airgap" and airgap["pending_records"] == 1
    table = cli(server, "status")
    assert table.returncode == 0 and "server:    ready" in table.stdout and "seats in use 2 of 3" in table.stdout


def test_licenses_list(server: ServerProcess) -> None:
    [view] = cli_json(server, "licenses", "list")
    assert (view["id"], view["product"], view["seats_in_use"]) == (1001, "demo", 2)
    render = next(f for f in view["features"] if f["code"] == "render")
    assert render["consumption"]["total"] == "7"
    table = cli(server, "licenses", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "PRODUCT", "SEATS", "CONSUMPTION", "FEATURES", "ENABLED"]
    assert table[1].split()[:3] == ["1001", "demo", "2/3"]


def test_seats_list_and_revoke(server: ServerProcess) -> None:
    held = cli_json(server, "seats", "list", "--license", "1001")
    assert sorted(seat["user"] for seat in held) == ["ann", "bob"]
    ann = next(seat for seat in held if seat["user"] == "ann")
    revoked = cli(server, "seats", "revoke", str(ann["id"]))
    assert revoked.returncode == 0, revoked.stderr
    assert f"seat {ann['id']} revoked: user 'ann'" in revoked.stdout
    # The running server sees it at once: one seat held, ann's ended by an admin.
    token = server.token()
    status, body = server.request("GET", "/v1/seats?state=all&user=ann", token=token)
    assert [(s["state"], s["end_reason"]) for s in body["data"]["data"]] == [("ended", "admin_removed")]
    assert [s["user"] for s in cli_json(server, "seats", "list")] == ["bob"]
    assert {s["user"] for s in cli_json(server, "seats", "list", "--all")} == {"ann", "bob"}
    status, audit = server.request("GET", "/v1/audit?action=seat_revoked", token=token)
    assert audit["data"]["data"][0]["actor"].startswith("cli:")
    missing = cli(server, "seats", "revoke", "99999")
    assert missing.returncode == 1 and "seat_not_found" in missing.stderr
    table = cli(server, "seats", "list").stdout.splitlines()
    assert table[0].split()[:5] == ["ID", "LICENSE", "FEATURE", "USER", "STATE"]


def test_usage_show(server: ServerProcess) -> None:
    [counter] = cli_json(server, "usage", "show", "--license", "1001")
    assert (counter["feature"], counter["total"], counter["revision"], counter["delivered"]) == ("render", "7", 1, {})
    table = cli(server, "usage", "show").stdout.splitlines()
    assert table[0].split() == ["LICENSE_ID", "FEATURE", "PERIOD_START", "TOTAL", "REVISION", "DELIVERED"]


def test_db_backup_while_serving_and_restore(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "backup.db"
    result = cli(server, "db", "backup", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{out}-wal").exists()  # a standalone file
    with sqlite3.connect(out) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*) FROM seats WHERE ended_at IS NULL").fetchone() == (2,)
    # Restore into a fresh data directory: a server started on it has everything.
    (tmp_path / "restored").mkdir()
    restored = ServerProcess(tmp_path / "restored")
    restored.data_dir.mkdir()
    out.rename(restored.data_dir / "floatsrv.db")
    restored.start()
    try:
        token = restored.token()
        status, view = restored.request("GET", "/v1/licenses/1001", token=token)
        assert view["data"]["seats_in_use"] == 2
    finally:
        restored.stop()


def test_db_check(server: ServerProcess, tmp_path: Path) -> None:
    result = cli(server, "db", "check")
    assert result.returncode == 0 and result.stdout.strip().endswith("ok (schema 6)"), result.stderr
    assert cli_json(server, "db", "check")["problems"] == []
    # A damaged copy: a counter that no longer matches its events, and pages overwritten with garbage.
    (tmp_path / "damaged").mkdir()
    damaged = ServerProcess(tmp_path / "damaged")
    damaged.data_dir.mkdir()
    assert cli(server, "db", "backup", "--out", str(damaged.data_dir / "floatsrv.db")).returncode == 0
    with sqlite3.connect(damaged.data_dir / "floatsrv.db") as conn:
        conn.execute("UPDATE consumption_counters SET total_milli = total_milli + 1000")
    result = cli(damaged, "db", "check")
    assert result.returncode == 1 and "its events sum to 7000" in result.stderr
    raw = bytearray((damaged.data_dir / "floatsrv.db").read_bytes())
    raw[4096 * 2 : 4096 * 2 + 512] = b"\xa5" * 512
    (damaged.data_dir / "floatsrv.db").write_bytes(bytes(raw))
    result = cli(damaged, "db", "check")
    assert result.returncode == 1 and result.stderr.strip(), result.stdout
