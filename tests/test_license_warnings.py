"""What an admin must know about the terms in force is said at start-up, on reload and in /readyz, and never
makes the server unready (issue 18, items 8 and 9): an expired license, seats held above a lowered limit,
unsigned licenses. Only the database, its schema and the config give 503."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Api, example_dict
from tests.licensing import demo_licenses, sign_licenses
from tests.polling import wait_for
from tests.procs import ServerProcess


def with_expired_license(data: dict[str, Any]) -> None:
    data["licenses"].append(
        {"id": 2002, "product": "old", "floating_users": 1, "validity_period": "2025-06-30T00:00:00Z"}
    )


async def test_warnings_keep_readyz_ready(api_factory: Any) -> None:
    api: Api = await api_factory(with_expired_license, signed=False)  # inline: unsigned terms, a warning too
    status, body = await api.get("/readyz")
    assert (status, body["status"]) == (200, "ready"), body
    checks = body["checks"]
    assert (checks["licenses"]["status"], checks["licenses"]["expired"]) == ("warning", [2002])
    assert "license_expired" in checks["licenses"]["message"]
    assert checks["entitlements"]["status"] == "warning"
    assert {name for name, check in checks.items() if check["status"] not in ("ok", "warning")} == set()
    view = (await api.get("/v1/licenses/2002"))[1]["data"]
    assert (view["enabled"], view["expired"]) == (True, True)


def test_expired_licenses_and_lowered_seats_are_said_at_start_reload_and_in_readyz(tmp_path: Path) -> None:
    config = example_dict()
    with_expired_license(config)
    server = ServerProcess(tmp_path, config)
    server.start()
    try:
        assert server.proc is not None
        wait_for(lambda: any(e["event"] == "licenses_expired" for e in server.log_lines()))
        [expired] = [e for e in server.log_lines() if e["event"] == "licenses_expired"]
        assert expired["licenses"] == [2002]
        token = server.token("demo", "demo-password")
        for user in ("ann", "bob", "cid"):
            assert server.request("POST", "/api/v4/register", {"product": "demo", "user": user}, token)[0] == 200

        lowered = yaml.safe_load(server.config_path.read_text())
        lowered["licenses"] = demo_licenses()
        lowered["licenses"][0]["floating_users"] = 1  # the vendor's new file: one seat, three held
        with_expired_license(lowered)
        sign_licenses(lowered, tmp_path)
        server.config_path.write_text(yaml.safe_dump(lowered))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["event"] == "seats_over_limit" for e in server.log_lines()))
        events = server.log_lines()
        [reloaded] = [e for e in events if e["event"] == "config_reloaded"]
        assert 1001 in reloaded["licenses_changed"], reloaded  # (2002 too: it now comes from the new file)
        [over] = [e for e in events if e["event"] == "seats_over_limit"]
        assert (over["license_id"], over["feature"], over["held"], over["limit"]) == (1001, None, 3, 1)

        status, body = server.request("GET", "/readyz")
        assert status == 200 and body["status"] == "ready", body
        assert body["checks"]["licenses"]["seats_over_limit"] == [
            {"license_id": 1001, "feature": None, "held": 3, "limit": 1}
        ]
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "dan"}, token)
        assert (status, body["code"]) == (400, "floating_not_available"), body
    finally:
        assert server.stop() == 0
