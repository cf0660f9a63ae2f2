"""Malformed HTTP framing against a real server process: a control character in a header value, a header
field or request line over the size limit, broken chunk framing. Each gets the JSON error envelope (not
aiohttp's plain-text 400), and no secret from the request reaches the server's log or the answer."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.polling import wait_for
from tests.procs import ServerProcess

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-t0ken-Zq9"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("framing"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def raw_request(server: ServerProcess, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


CASES = {
    "control character in a bearer token": b"GET /api/v4/license HTTP/1.1\r\nHost: x\r\n"
    + b"Authorization: Bearer abc\x01"
    + SECRET.encode()
    + b"\r\n\r\n",
    "NUL in a Basic password": b"GET /auth HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \x00"
    + SECRET.encode()
    + b"\r\n\r\n",
    "header over the limit": b"GET /api/v4/license HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + SECRET.encode() * 1000
    + b"\r\n\r\n",
    "request line over the limit": b"GET /api/v4/license?token="
    + SECRET.encode() * 1000
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF line endings": b"GET /api/v4/license HTTP/1.1\nHost: x\nAuthorization: Bearer "
    + SECRET.encode()
    + b"\n\n",
    "line without a colon": b"GET / HTTP/1.1\r\nHost: x\r\nBearer " + SECRET.encode() + b"\r\n\r\n",
    "bad chunk size": b"POST /api/v4/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    + b"Content-Type: application/json\r\n\r\nzz"
    + SECRET.encode()
    + b"\r\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_framing_gets_json_and_leaks_nothing(server: ServerProcess, name: str) -> None:
    reply = raw_request(server, CASES[name])
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0], reply[:300]
    assert b"application/json" in head, head
    error = json.loads(body)
    assert error["status"] == 400 and error["code"] == "bad_request" and error["message"], error
    assert SECRET.encode() not in reply
    # The server logs one line about it (in chunks: wait for it), with the error's kind and nothing of the bytes.
    wait_for(lambda: any(e.get("event") == "malformed_request" for e in server.log_lines()))
    assert SECRET not in server.log_path.read_text()


def test_the_server_keeps_serving_and_never_logs_the_secret(server: ServerProcess) -> None:
    for data in CASES.values():
        raw_request(server, data)
    assert server.request("GET", "/healthz")[0] == 200
    assert server.token()  # logins still work
    count = len(CASES) * 2
    wait_for(lambda: sum(e.get("event") == "malformed_request" for e in server.log_lines()) >= count)
    assert SECRET not in server.log_path.read_text()
