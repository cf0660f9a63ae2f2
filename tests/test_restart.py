"""A restart keeps every registration, borrow, feature seat and counter: state before == state after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.procs import ServerProcess

pytestmark = pytest.mark.slow


def snapshot(server: ServerProcess, token: str) -> tuple[Any, Any, Any]:
    status, seats = server.request("GET", "/v1/seats?state=all", token=token)
    assert status == 200
    status, licenses = server.request("GET", "/v1/licenses", token=token)
    assert status == 200
    status, v4 = server.request("GET", "/api/v4/license", token=token)
    assert status == 200
    return seats["data"]["data"], licenses["data"]["data"], v4


def test_restart_keeps_state(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        token = server.token("demo", "demo-password")
        for user in ("a", "b"):
            assert server.request("POST", "/api/v4/register", {"product": "demo", "user": user}, token)[0] == 200
        until = (datetime.now(UTC) + timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (
            server.request("POST", "/api/v4/borrow", {"product": "demo", "user": "c", "borrowed_until": until}, token)[
                0
            ]
            == 200
        )
        assert (
            server.request(
                "POST", "/api/v4/featureRegister", {"product": "demo", "user": "a", "feature": "export"}, token
            )[0]
            == 200
        )
        assert server.request("POST", "/api/v4/unregister", {"product": "demo", "user": "b"}, token)[0] == 200
        assert (
            server.request(
                "POST", "/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": 42}, token
            )[0]
            == 200
        )
        assert (
            server.request(
                "POST",
                "/api/v4/add_feature_consumption",
                {"product": "demo", "user": "a", "feature": "render", "consumptions": 7},
                token,
            )[0]
            == 200
        )
        before = snapshot(server, token)
        assert server.stop() == 0  # SIGTERM: graceful
    except BaseException:
        if server.proc:
            server.kill()
        raise

    server.start()
    try:
        after = snapshot(server, token)  # the token survives too: the signing key is in the data dir
        assert after == before
        seats = before[0]
        assert [(s["user"], s["feature"], s["state"]) for s in seats] == [
            ("a", "export", "held"),
            ("c", None, "held"),
            ("b", None, "ended"),
            ("a", None, "held"),
        ]
        # A heartbeat after the restart renews the same seat rather than taking another.
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "a"}, token)
        assert status == 200 and body["floating_slots_in_use"] == 2
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "d"}, token)
        assert status == 200 and body["floating_slots_in_use"] == 3
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "e"}, token)
        assert (status, body["code"]) == (400, "floating_not_available")
    finally:
        server.stop()
