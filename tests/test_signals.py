"""Signals a service manager sends (`systemctl reload` / `stop`), to a real server process.

SIGHUP re-reads the config: licenses and users change without dropping a registration; settings that need
a restart are named in the log; an invalid file changes nothing. SIGTERM drains: a request in flight when
the signal arrives is answered and committed, pending usage goes upstream in the final sync, exit code 0.
(aiohttp stops reading from connections when shutdown starts, so a request whose body is still arriving
at that moment is cancelled after the drain timeout: nothing of it is committed and it gets no answer.)
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import example_dict
from tests.licensing import demo_licenses, sign_licenses
from tests.polling import wait_for
from tests.procs import ServerProcess
from tests.upstreams import UPSTREAM_TOKEN


def test_sighup_reloads_without_dropping_registrations(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        assert server.proc is not None
        token = server.token("demo", "demo-password")
        for user in ("ann", "bob"):
            assert server.request("POST", "/api/v4/register", {"product": "demo", "user": user}, token)[0] == 200
        status, before = server.request("GET", "/v1/seats", token=server.token())
        held = {seat["user"]: seat["id"] for seat in before["data"]["data"]}

        config = yaml.safe_load(server.config_path.read_text())
        # The vendor's new file: more seats on 1001, and a new license (it replaces the last of its series).
        config["licenses"] = demo_licenses()
        config["licenses"][0]["floating_users"] = 5
        config["licenses"].append({"id": 2002, "product": "other", "floating_users": 1})
        sign_licenses(config, tmp_path)
        config["auth"]["users"].append({"username": "carol", "password": "carols-password", "role": "user"})
        config["metrics"] = {"token": "scrape-token-0123456789"}
        config["server"]["max_body_bytes"] = 131072  # needs a restart
        server.config_path.write_text(yaml.safe_dump(config))
        server.proc.send_signal(signal.SIGHUP)
        # Both lines of the reload (the log sink writes in chunks, so they may land a moment apart).
        wait_for(lambda: {"config_reloaded", "restart_required"} <= {e["event"] for e in server.log_lines()})

        status, body = server.request("POST", "/api/v4/register", {"product": "other", "user": "dan"}, token)
        assert status == 200, body
        admin = server.token()
        status, after = server.request("GET", "/v1/seats?license_id=1001", token=admin)
        assert {seat["user"]: seat["id"] for seat in after["data"]["data"]} == held  # nobody was dropped
        status, view = server.request("GET", "/v1/licenses/1001", token=admin)
        assert (view["data"]["floating_users"], view["data"]["seats_in_use"]) == (5, 2)
        assert server.token("carol", "carols-password")
        assert server.request("GET", "/metrics", token="scrape-token-0123456789")[0] == 200
        events = server.log_lines()
        [reloaded] = [e for e in events if e["event"] == "config_reloaded"]
        assert reloaded["licenses_added"] == [2002] and reloaded["applied"] == ["metrics.token"]
        [restart] = [e for e in events if e["event"] == "restart_required"]
        assert restart["keys"] == ["server.max_body_bytes"]

        # A broken config changes nothing, and says why.
        config["licenses"] = [{"id": 3003, "product": "third", "floating_users": -5}]
        server.config_path.write_text(yaml.safe_dump(config))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["event"] == "config_reload_failed" for e in server.log_lines()))
        [failed] = [e for e in server.log_lines() if e["event"] == "config_reload_failed"]
        assert any("licenses[0].floating_users" in line for line in failed["problems"]), failed
        status, view = server.request("GET", "/v1/licenses/1001", token=admin)
        assert view["data"]["floating_users"] == 5
    finally:
        assert server.stop() == 0


async def test_sigterm_drains_in_flight_requests_and_syncs(tmp_path: Path, floatsrv_upstream: Any) -> None:
    fake, url = floatsrv_upstream
    config = example_dict()
    config["storage"]["busy_timeout_ms"] = 30_000
    config["sync"].update(
        interval_seconds=3600,  # nothing goes up during the test but the final sync
        upstreams=[{"name": "billing", "format": "floatsrv", "url": url, "token": UPSTREAM_TOKEN}],
    )
    server = ServerProcess(tmp_path, config)
    await asyncio.to_thread(server.start)
    assert server.proc is not None
    token = await asyncio.to_thread(server.token, "demo", "demo-password")
    consume = {"product": "demo", "user": "ann", "feature": "render", "consumptions": 3}
    status, body = await asyncio.to_thread(server.request, "POST", "/api/v4/add_feature_consumption", consume, token)
    assert status == 200, body

    # A request in flight when SIGTERM arrives: received, and waiting for its commit because another
    # process (an admin command, say) holds the database's write lock for a moment.
    other = sqlite3.connect(server.data_dir / "floatsrv.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    in_flight = asyncio.ensure_future(
        asyncio.to_thread(
            server.request, "POST", "/api/v4/add_feature_consumption", {**consume, "consumptions": 4}, token
        )
    )
    await asyncio.sleep(0.5)
    assert not in_flight.done()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    with pytest.raises(OSError):  # soon no new connections are accepted while draining
        while time.monotonic() < deadline:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            await asyncio.sleep(0.05)
    assert not in_flight.done()
    other.execute("ROLLBACK")
    other.close()
    status, body = await in_flight
    assert status == 200, body  # answered, so committed

    code = await asyncio.to_thread(server.proc.wait, 30)
    assert code == 0
    # The final sync delivered everything, the drained request included.
    assert sum(fake.totals().values()) == 7 and {feature for _, feature, _ in fake.totals()} == {"render"}
    events = [e["event"] for e in server.log_lines()]
    assert events.index("server_stopped") > events.index("database_closed")
