"""Logs of a real server process: JSON lines when not on a terminal, one line per request with its request
id, route, status, duration and user, and never a secret — passwords, tokens, API keys and the metrics
token all pass through the server below, and none of them may appear in its log."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import example_dict
from tests.polling import wait_for
from tests.procs import ServerProcess

METRICS_TOKEN = "metrics-secret-token-5f1e"


def test_request_lines_and_no_secrets(tmp_path: Path) -> None:
    config = example_dict()
    config["metrics"] = {"token": METRICS_TOKEN}
    config["auth"]["users"].append({"username": "cfg", "password": "config-secret-pw-77", "role": "user"})
    server = ServerProcess(tmp_path, config)
    server.start()
    secrets: list[str] = ["config-secret-pw-77", "admin-password", "demo-password", METRICS_TOKEN]
    try:
        admin = server.token()
        user = server.token("cfg", "config-secret-pw-77")
        secrets += [admin, user]
        wrong = base64.b64encode(b"demo:wrong-secret-pw-99").decode()
        assert server.request("GET", "/auth", headers={"Authorization": f"Basic {wrong}"})[0] == 401
        secrets.append("wrong-secret-pw-99")

        status, body = server.request("POST", "/v1/users", {"username": "kim", "password": "kims-secret-pw-1"}, admin)
        assert status == 200, body
        secrets.append("kims-secret-pw-1")
        status, body = server.request("POST", "/v1/users/kim/password", {}, admin)
        temporary = body["data"]["temporary_password"]
        secrets.append(temporary)
        kim = server.token("kim", temporary)
        secrets.append(kim)
        change = {"current_password": temporary, "new_password": "kims-new-secret-2"}
        assert server.request("POST", "/v1/me/password", change, kim)[0] == 200
        secrets.append("kims-new-secret-2")

        status, body = server.request("POST", "/v1/api-keys", {"name": "ci", "role": "user"}, admin)
        key = body["data"]["key"]
        secrets.append(key)
        register = {"product": "demo", "user": "ws-1"}
        assert server.request("POST", "/api/v4/register", register, key)[0] == 200
        assert server.request("GET", "/metrics", token=METRICS_TOKEN)[0] == 200
        assert server.request("GET", "/v1/licenses", token="forged." + admin[-20:])[0] == 401
        secrets.append(admin[-20:])
    finally:
        assert server.stop() == 0

    text = server.log_path.read_text()
    for secret in secrets:
        assert secret not in text, f"a secret reached the log: {secret[:6]}..."
    lines: list[dict[str, Any]] = []
    for raw in text.splitlines():
        lines.append(json.loads(raw))  # JSON lines, every one (stdout is not a terminal here)
    requests = [line for line in lines if line["event"] == "request_completed"]
    assert requests, lines
    for line in requests:
        assert {"request_id", "route", "status", "duration_ms", "user", "method", "timestamp", "level"} <= set(line)
    registered = next(line for line in requests if line["route"] == "/api/v4/register")
    assert (registered["status"], registered["user"]) == (200, "apikey:ci")
    failed = [line for line in requests if line["status"] == 401]
    assert {line["error_code"] for line in failed} == {"unauthorized", "invalid_token"}
    assert len({line["request_id"] for line in requests}) == len(requests)


def test_log_level_from_config_and_sighup(tmp_path: Path) -> None:
    """`log.level: warning` drops the info lines (one per request among them) from the start; SIGHUP to
    `info` brings them back, and SIGHUP to `warning` silences them again, without a restart. Requests carry
    an X-Request-Id naming the phase they were sent in."""
    config = example_dict()
    config["log"]["level"] = "warning"
    server = ServerProcess(tmp_path, config)
    server.start()
    wrong = {"Authorization": "Basic " + base64.b64encode(b"demo:wrong-password").decode()}

    def serve(phase: str) -> None:
        token = server.token("demo", "demo-password")
        register = {"product": "demo", "user": f"ws-{phase}"}
        status, body = server.request(
            "POST", "/api/v4/register", register, token, {"X-Request-Id": f"{phase}-register"}
        )
        assert status == 200, body
        assert server.request("GET", "/auth", headers={**wrong, "X-Request-Id": f"{phase}-login"})[0] == 401

    def reload(level: str, metrics_token: str) -> None:
        assert server.proc is not None
        config["log"]["level"] = level
        config["metrics"] = {"token": metrics_token}
        server.config_path.write_text(yaml.safe_dump(config))
        server.proc.send_signal(signal.SIGHUP)
        # The new metrics token works once the reload has been applied (the log may say nothing).
        wait_for(lambda: server.request("GET", "/metrics", token=metrics_token)[0] == 200)

    try:
        serve("quiet1")
        reload("info", "metrics-token-for-info-phase")
        serve("loud")
        reload("warning", "metrics-token-for-warning-phase")
        # The lines written before the switch reach the log while the server runs, not only when it exits.
        wait_for(lambda: any(line["event"] == "config_reload_requested" for line in server.log_lines()))
        serve("quiet2")
    finally:
        assert server.stop() == 0

    lines = server.log_lines()
    by_request: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_request.setdefault(line.get("request_id", ""), []).append(line)
    for phase in ("quiet1", "quiet2"):
        # Warnings still come through; nothing below warning does.
        assert [(line["event"], line["level"]) for line in by_request[f"{phase}-login"]] == [
            ("login_failed", "warning")
        ]
        assert f"{phase}-register" not in by_request
    assert [line["event"] for line in by_request["loud-register"]] == ["request_completed"]
    assert {line["event"] for line in by_request["loud-login"]} == {"login_failed", "request_completed"}
    events = [line["event"] for line in lines]
    # Started and stopped at warning: the info lines of start-up and shutdown are not written either.
    assert "server_started" not in events and "server_stopped" not in events
    assert events.count("config_reloaded") == 1  # the reload to info says so; the one to warning cannot
    assert {line["level"] for line in lines if line["event"] == "request_completed"} == {"info"}
