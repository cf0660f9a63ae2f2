"""Hostile input on the native API, and clients that are slow, stall, or just sit on connections.

(The /api/v4 bodies are covered in test_malformed.py.) Slow and idle clients are tested against a real
server process with short timeouts, over raw sockets on loopback.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, example_dict
from tests.procs import ServerProcess

EVENTS = "/v1/usage/events"


async def usage_state(api: Api) -> tuple[Any, ...]:
    license = await api.license()
    render = next(f for f in license["features"] if f["code"] == "render")
    return license["consumption"]["total"], render["consumption"]["total"]


def event(**fields: Any) -> dict[str, Any]:
    return {"event_id": "evt-1", "product": "demo", "feature": "render", "quantity": "1", **fields}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (event(quantity="-1"), "negative_consumptions_not_allowed"),
        (event(quantity="NaN"), "invalid_quantity"),
        (event(quantity="Infinity"), "invalid_quantity"),
        (event(quantity="1e400"), "invalid_quantity"),
        (event(quantity=10**30), "invalid_quantity"),
        (event(quantity="0.0005"), "invalid_quantity"),
        (event(quantity=""), "invalid_quantity"),
        (event(quantity=[1]), "invalid_quantity"),
        (event(occurred_at="9999-12-31T23:59:59Z"), "timestamp_in_future"),
        (event(occurred_at="0001-01-02T00:00:00Z"), "event_too_old"),
        (event(occurred_at="1970-01-01T00:00:00Z"), "event_too_old"),
        (event(occurred_at="yesterday"), "validation_error"),
        (event(occurred_at=1700000000), "validation_error"),
        (event(event_id="e" * 10_000), "validation_error"),
        (event(event_id=""), "validation_error"),
        (event(product="'; DROP TABLE usage_events; --"), "unknown_product"),
        (event(feature="render\u0000"), "validation_error"),
        (event(user="x" * 10_000), "validation_error"),
        (event(accept_partial="sometimes"), "validation_error"),
    ],
)
async def test_native_usage_event_refusals_change_nothing(api: Api, body: dict[str, Any], code: str) -> None:
    before = await usage_state(api)
    status, reply = await api.post(EVENTS, body)
    assert 400 <= status < 500, reply
    assert reply["success"] is False and reply["error"]["code"] == code, reply
    assert await usage_state(api) == before
    # The event id was not burnt: the same id with a valid body is accepted (once).
    status, reply = await api.post(EVENTS, event())
    assert status == 200, reply


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id": "a", "event_id": "b", "product": "demo", "feature": "render", "quantity": "1"}',
        b'{"event_id": "a", "product": "demo", "feature": "render", "quantity": NaN}',
        b'{"event_id": "a", "product": "demo", "feature": "render", "quantity": 1e999999}',
        b'{"event_id": "\\ud800", "product": "demo", "feature": "render", "quantity": "1"}',
        b'{"event_id": "a", "product": "demo", "feature": "render", "quantity": "1", "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
    ],
)
async def test_native_malformed_json_changes_nothing(api: Api, raw: bytes) -> None:
    before = await usage_state(api)
    status, reply = await api.post(EVENTS, None, raw=raw)
    assert status == 400 and reply["error"]["code"] in ("invalid_json", "invalid_quantity"), reply
    assert await usage_state(api) == before


async def test_sql_looking_strings_are_just_strings(api: Api) -> None:
    sneaky = "x');DELETE/**/FROM/**/usage_events;--"  # event ids are printable ASCII without spaces
    status, reply = await api.post(EVENTS, event(event_id=sneaky, user="Robert'); DROP TABLE seats;--"))
    assert status == 200, reply
    assert reply["data"]["event_id"] == sneaky
    status, reply = await api.post(EVENTS, event(event_id=sneaky, user="Robert'); DROP TABLE seats;--"))
    assert status == 200 and reply["data"]["replay"] is True, reply
    assert await usage_state(api) == ("0", "1")
    assert (await api.register("Robert'); DROP TABLE seats;--"))[0] == 200
    assert [seat["user"] for seat in await api.seats()] == ["Robert'); DROP TABLE seats;--"]


# --- slow and idle clients, against a real process -------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Any:
    config = example_dict()
    config["server"]["idle_timeout_seconds"] = 1
    config["server"]["request_timeout_seconds"] = 1
    proc = ServerProcess(tmp_path, config)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(rest[:length])


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_stalled_body_gets_408(server: ServerProcess) -> None:
    token = server.token("demo", "demo-password")
    sock = connect(server.port)
    head = (
        "POST /api/v4/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"product": "demo"')  # ... and the rest never comes
    started = time.monotonic()
    sock.settimeout(10)
    status, body = read_response(sock)
    assert (status, body["code"]) == (408, "request_timeout"), body
    assert time.monotonic() - started < 5
    sock.close()
    assert server.request("GET", "/api/v4/license", token=token)[0] == 200


def test_unfinished_headers_and_idle_connections_are_closed(server: ServerProcess) -> None:
    slow = connect(server.port)
    slow.sendall(b"POST /api/v4/register HTTP/1.1\r\nHost: x\r\nContent-Ty")  # slowloris: never finishes
    idle = connect(server.port)  # never sends anything
    kept = connect(server.port)  # one request, then keep-alive idle
    kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    kept.settimeout(10)
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    for sock in (slow, idle, kept):
        assert closed_by_server(sock, within=5), "the server kept a stalled or idle connection open"
        sock.close()


def _still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False


async def test_thousands_of_idle_connections_do_not_block_service(server: ServerProcess) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = 2000
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        pytest.skip(f"this machine allows only {hard} open files per process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 200), hard))
    token = server.token("demo", "demo-password")
    loop = asyncio.get_running_loop()
    idle = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            idle.append(sock)
        # Meanwhile, real clients are served promptly.
        for i in range(20):
            started = time.monotonic()
            status, body = await asyncio.to_thread(
                server.request, "POST", "/api/v4/register", {"product": "demo", "user": f"u{i % 3}"}, token
            )
            assert status == 200, body
            assert time.monotonic() - started < 1.0
        # And the idle ones are cut after the idle timeout (1 s here; polled, as a loaded machine is slower).
        open_ = list(idle)
        deadline = time.monotonic() + 15
        while open_ and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            open_ = [sock for sock in open_ if _still_open(sock)]
        assert not open_, f"{len(open_)} of {count} idle connections are still open"
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
