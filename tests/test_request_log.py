"""Request log lines an admin can act on (issue 18, item 12), from a real server process: a refusal names the
license, feature and client user (never another field of the body, which may hold a password), a request no
route takes names its path, and `log.requests` quietens heartbeats (`changes`) or everything but failures
(`errors`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import example_dict
from tests.procs import ServerProcess


def request_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [line for line in server.log_lines() if line.get("event") == "request_completed"]


def serve(tmp_path: Path, requests: str | None = None) -> ServerProcess:
    config = example_dict()
    if requests is not None:
        config["log"] = {**config.get("log", {}), "requests": requests}
    server = ServerProcess(tmp_path, config)
    server.start()
    return server


def test_refusals_name_what_they_refused_and_unrouted_requests_their_path(tmp_path: Path) -> None:
    server = serve(tmp_path)
    try:
        demo, admin = server.token("demo", "demo-password"), server.token()
        for user in ("ann", "bob", "cid"):
            assert server.request("POST", "/api/v4/register", {"product": "demo", "user": user}, demo)[0] == 200
        refused = server.request("POST", "/api/v4/register", {"product": "demo", "user": "dan"}, demo)
        assert refused[0] == 400, refused
        feature = {"product": "demo", "user": "ann", "feature": "no-such-feature"}
        assert server.request("POST", "/api/v4/featureRegister", feature, demo)[0] >= 400
        assert server.request("GET", "/api/v4/no/such/thing", token=demo)[0] == 404
        assert server.request("DELETE", "/api/v4/register", token=demo)[0] == 405
        # A refused request whose body holds a password: the password stays out of the log.
        bad_user = {"username": "kim", "password": "kims-secret-pw-1", "role": "emperor"}
        assert server.request("POST", "/v1/users", bad_user, admin)[0] == 400
    finally:
        assert server.stop() == 0
    lines = request_lines(server)
    [seats] = [line for line in lines if line.get("error_code") == "floating_not_available"]
    assert (seats["license_id"], seats["product"], seats["client_user"]) == (1001, "demo", "dan"), seats
    [unknown] = [line for line in lines if line["route"] == "/api/v4/featureRegister" and line["status"] >= 400]
    assert (unknown["feature"], unknown["client_user"], unknown["product"]) == ("no-such-feature", "ann", "demo")
    [missing] = [line for line in lines if line["status"] == 404]
    assert missing["path"] == "/api/v4/no/such/thing", missing
    [wrong_method] = [line for line in lines if line["status"] == 405]
    assert (wrong_method["path"], wrong_method["method"]) == ("/api/v4/register", "DELETE"), wrong_method
    assert "kims-secret-pw-1" not in server.log_path.read_text()
    assert "emperor" not in server.log_path.read_text()  # nothing of the body beyond the named fields


@pytest.mark.parametrize("mode", ["changes", "errors"])
def test_request_lines_can_be_quietened(tmp_path: Path, mode: str) -> None:
    server = serve(tmp_path, mode)
    try:
        demo = server.token("demo", "demo-password")
        register = {"product": "demo", "user": "ann"}
        for _ in range(3):  # a new seat, then two heartbeats
            assert server.request("POST", "/api/v4/register", register, demo)[0] == 200
        assert server.request("GET", "/api/v4/license?product=demo", token=demo)[0] == 200
        assert server.request("POST", "/api/v4/register", {"product": "nope", "user": "ann"}, demo)[0] >= 400
    finally:
        assert server.stop() == 0
    logged = [(line["route"], line["status"]) for line in request_lines(server)]
    refused = [entry for entry in logged if entry[1] >= 400]
    assert refused == [("/api/v4/register", refused[0][1])], logged  # refusals are always logged
    registered = [entry for entry in logged if entry == ("/api/v4/register", 200)]
    if mode == "changes":
        assert registered == [("/api/v4/register", 200)], logged  # the new seat only, not the heartbeats
        assert ("/auth", 200) not in logged  # a GET changes nothing
    else:
        assert registered == [] and len(logged) == 1, logged


def test_every_request_is_logged_by_default(tmp_path: Path) -> None:
    server = serve(tmp_path)
    try:
        demo = server.token("demo", "demo-password")
        for _ in range(3):
            assert server.request("POST", "/api/v4/register", {"product": "demo", "user": "ann"}, demo)[0] == 200
    finally:
        assert server.stop() == 0
    logged = [(line["route"], line["status"]) for line in request_lines(server)]
    assert logged.count(("/api/v4/register", 200)) == 3 and ("/auth", 200) in logged, logged
