"""The admin CLI against the data directory of a running server: status, licenses, seats (list, revoke),
usage, and the database (online backup, check) — tables for people, --json for scripts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from floatsrv.db.migrate import latest_version
from tests.conftest import example_dict
from tests.procs import ServerProcess


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli(*args)


def cli_json(server: ServerProcess, *args: str) -> Any:
    result = cli(server, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextmanager
def running_server(workdir: Path, mutate: Callable[[dict[str, Any]], None] | None = None) -> Iterator[ServerProcess]:
    """The demo config (edited by `mutate`), seats held by ann and bob, 7 units of render consumed by ann."""
    config = example_dict()
    if mutate is not None:
        mutate(config)
    proc = ServerProcess(workdir, config)
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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path) as proc:
        yield proc


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
    assert table[0].split() == ["ID", "PRODUCT", "SEATS", "CONSUMPTION", "FEATURES", "ENABLED", "EXPIRES", "TERMS"]
    assert table[1].split()[:3] == ["1001", "demo", "2/3"] and table[1].split()[-2].startswith("demo")


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


class Writers:
    """Threads sending writes over HTTP until stopped: consumptions of 1 unit on `render`, each under its own
    user name (stored with its usage event), plus one thread registering and releasing a third seat."""

    def __init__(self, server: ServerProcess, token: str, threads: int = 4) -> None:
        self.server = server
        self.token = token
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}  # user -> monotonic time the request was sent
        self.acked: dict[str, float] = {}  # user -> monotonic time its 200 arrived
        self.failures: list[Any] = []
        self.seat_changes = 0
        self.threads = [threading.Thread(target=self.consume, args=(n,)) for n in range(threads)]
        self.threads.append(threading.Thread(target=self.churn_seat))

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def consume(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            user = f"w{n}-{i}"
            body = {"product": "demo", "feature": "render", "user": user, "consumptions": 1}
            with self.lock:
                self.sent[user] = time.monotonic()
            status, reply = self.server.request("POST", "/api/v4/add_feature_consumption", body, self.token)
            with self.lock:
                if status == 200:
                    self.acked[user] = time.monotonic()
                else:
                    self.failures.append((user, status, reply))

    def churn_seat(self) -> None:
        while not self.stop.is_set():
            for path in ("/api/v4/register", "/api/v4/unregister"):
                status, reply = self.server.request("POST", path, {"product": "demo", "user": "cid"}, self.token)
                with self.lock:
                    if status == 200:
                        self.seat_changes += 1
                    else:
                        self.failures.append((path, status, reply))

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_for_acks(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked_count() < count:
            assert not self.failures, self.failures[:3]
            assert time.monotonic() < deadline, f"only {self.acked_count()} writes acknowledged"
            time.sleep(0.01)


def render_total(server: ServerProcess, token: str) -> int:
    status, view = server.request("GET", "/v1/licenses/1001", token=token)
    assert status == 200, view
    render = next(f for f in view["data"]["features"] if f["code"] == "render")
    return int(render["consumption"]["total"])


def test_db_backup_under_write_load_and_restore(tmp_path: Path) -> None:
    def unlimited_render(config: dict[str, Any]) -> None:
        render = next(f for f in config["licenses"][0]["features"] if f["code"] == "render")
        render["allow_unlimited_consumptions"] = True  # the load is not capped at max_consumption

    (tmp_path / "live").mkdir()
    with running_server(tmp_path / "live", unlimited_render) as server:
        admin = server.token()
        before = render_total(server, admin)
        assert before == 7
        with Writers(server, server.token("demo", "demo-password")) as writers:
            writers.wait_for_acks(20)
            started = time.monotonic()
            out = tmp_path / "backup.db"
            result = cli(server, "db", "backup", "--out", str(out))
            finished = time.monotonic()
            assert result.returncode == 0, result.stderr
            writers.wait_for_acks(writers.acked_count() + 20)
        assert not writers.failures, writers.failures[:3]
        assert writers.seat_changes > 0
        after = render_total(server, admin)
        # Every acknowledged consumption is in the live database, and nothing else.
        assert after == before + len(writers.acked) == before + len(writers.sent)
    acked_before = {user for user, at in writers.acked.items() if at < started}
    sent_after = {user for user, at in writers.sent.items() if at > finished}
    during = [at for at in writers.acked.values() if started <= at <= finished]
    assert during, "no write was acknowledged while the backup ran: it was not taken under load"

    assert out.stat().st_mode & 0o777 == 0o600
    with tarfile.open(out) as archive:  # the database with the keys a restored server needs
        assert sorted(archive.getnames()) == ["floatsrv.db", "manifest.json", "server-ed25519.pem", "token-signing.key"]
        archive.extract("floatsrv.db", tmp_path / "snapshot", filter="data")
    snapshot = tmp_path / "snapshot" / "floatsrv.db"
    with sqlite3.connect(snapshot) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        users = {user for (user,) in conn.execute("SELECT user FROM usage_events WHERE feature = 'render'")}
        [(total_milli,)] = conn.execute("SELECT SUM(total_milli) FROM consumption_counters WHERE feature = 'render'")
        seats = {user for (user,) in conn.execute("SELECT user FROM seats WHERE ended_at IS NULL")}
    writes = users - {"ann"}
    # One snapshot: everything acknowledged before the backup started, nothing sent after it ended, and the
    # counter equal to its events.
    assert acked_before <= writes and not writes & sent_after
    assert writes <= set(writers.sent)
    assert total_milli == (before + len(writes)) * 1000
    assert seats in ({"ann", "bob"}, {"ann", "bob", "cid"})

    # Restore into a fresh data directory: `db check` passes and a server started on it has the copy's state,
    # and takes the tokens the original server issued.
    (tmp_path / "restored").mkdir()
    restored = ServerProcess(tmp_path / "restored", yaml.safe_load(server.config_path.read_text()))
    done = cli(restored, "db", "restore", str(out))
    assert done.returncode == 0 and "restored floatsrv.db, token-signing.key" in done.stdout, done.stderr
    check = cli(restored, "db", "check")
    assert check.returncode == 0 and check.stdout.strip().endswith(f"ok (schema {latest_version()})"), (
        check.stdout + check.stderr
    )
    restored.start()
    try:
        token = admin  # issued by the original server
        restored_total = render_total(restored, token)
        assert restored_total == before + len(writes)
        assert before + len(acked_before) <= restored_total < after
        status, view = restored.request("GET", "/v1/licenses/1001", token=token)
        assert view["data"]["seats_in_use"] == len(seats)
    finally:
        assert restored.stop() == 0


def test_db_check(server: ServerProcess, tmp_path: Path) -> None:
    result = cli(server, "db", "check")
    assert result.returncode == 0 and result.stdout.strip().endswith(f"ok (schema {latest_version()})"), result.stderr
    assert cli_json(server, "db", "check")["problems"] == []
    # A damaged copy: a counter that no longer matches its events, and pages overwritten with garbage.
    (tmp_path / "damaged").mkdir()
    damaged = ServerProcess(tmp_path / "damaged")
    damaged.data_dir.mkdir()
    assert cli(server, "db", "backup", "--out", str(tmp_path / "backup.tar")).returncode == 0
    with tarfile.open(tmp_path / "backup.tar") as archive:
        archive.extract("floatsrv.db", damaged.data_dir, filter="data")
    with sqlite3.connect(damaged.data_dir / "floatsrv.db") as conn:
        conn.execute("UPDATE consumption_counters SET total_milli = total_milli + 1000")
    result = cli(damaged, "db", "check")
    assert result.returncode == 1 and "its events sum to 7000" in result.stderr
    raw = bytearray((damaged.data_dir / "floatsrv.db").read_bytes())
    raw[4096 * 2 : 4096 * 2 + 512] = b"\xa5" * 512
    (damaged.data_dir / "floatsrv.db").write_bytes(bytes(raw))
    result = cli(damaged, "db", "check")
    assert result.returncode == 1 and result.stderr.strip(), result.stdout
