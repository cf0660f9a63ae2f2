"""`floatsrv sync status|now|retry` as real subprocesses, on the data dir of a running server whose upstream is a
real local HTTP server: status shows what is pending and parked, `now` delivers, a permanent refusal parks
the batch (status, /metrics), and `retry` puts it back in line so the next sync delivers it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import example_dict
from tests.procs import ServerProcess
from tests.upstreams import UPSTREAM_TOKEN, FloatsrvUpstream, serve_in_thread


@pytest.fixture
def upstream() -> Iterator[tuple[FloatsrvUpstream, str]]:
    server = FloatsrvUpstream()
    with serve_in_thread(server) as base:
        yield server, base + "/ingest"


@pytest.fixture
def server(tmp_path: Path, upstream: tuple[FloatsrvUpstream, str]) -> Iterator[ServerProcess]:
    config = example_dict()
    # An hour between the server's own passes (the first, at start-up, has nothing to send): every delivery in
    # this test is the CLI's.
    config["sync"] = {
        "interval_seconds": 3600,
        "shutdown_timeout_seconds": 0,
        "upstreams": [{"name": "vendor", "url": upstream[1], "token": UPSTREAM_TOKEN, "timeout_seconds": 5}],
    }
    proc = ServerProcess(tmp_path, config)
    proc.start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0


def cli(server: ServerProcess, *args: str, exit_code: int = 0) -> subprocess.CompletedProcess[str]:
    result = server.cli("sync", *args)
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    return result


def report(result: subprocess.CompletedProcess[str]) -> str:
    """The summary of `sync now`: its only output on stdout (the worker's log lines go to stderr)."""
    [line] = result.stdout.splitlines()
    return line


def status_json(server: ServerProcess) -> dict[str, Any]:
    rows = json.loads(cli(server, "status", "--json").stdout)
    assert [row["channel"] for row in rows] == ["vendor", "airgap"], rows
    vendor: dict[str, Any] = rows[0]
    return vendor


def status_table(server: ServerProcess) -> dict[str, str]:
    """The human table's vendor row, by column (last_error, the last column, may contain spaces)."""
    lines = cli(server, "status").stdout.splitlines()
    header = lines[0].split()
    assert header == [
        "CHANNEL", "PENDING_RECORDS", "LAG_SECONDS", "PARKED_BATCHES", "LAST_SUCCESS_AT", "CONSECUTIVE_FAILURES",
        "LAST_ERROR",
    ], lines  # fmt: skip
    [row] = [line for line in lines[1:] if line.startswith("vendor ")]
    cells = row.split(None, len(header) - 1)
    return dict(zip([h.lower() for h in header], cells, strict=True))


def use(server: ServerProcess, token: str, event_id: str, render: str, license_units: int) -> None:
    status, body = server.request(
        "POST",
        "/v1/usage/events",
        {"event_id": event_id, "product": "demo", "feature": "render", "quantity": render},
        token,
    )
    assert status == 200, body
    status, body = server.request(
        "POST", "/api/v4/add_consumption", {"product": "demo", "user": "u", "consumptions": license_units}, token
    )
    assert status == 200, body


def received(upstream: FloatsrvUpstream) -> dict[tuple[int, str], Decimal]:
    """Totals per (license, feature), summed over periods (a run may cross a period boundary)."""
    out: dict[tuple[int, str], Decimal] = {}
    for (license_id, feature, _), total in upstream.totals().items():
        out[license_id, feature] = out.get((license_id, feature), Decimal(0)) + total
    return out


def parked_metric(server: ServerProcess, admin: str) -> float:
    status, text = server.request("GET", "/metrics", token=admin)
    assert status == 200, text
    match = re.search(r'^floatsrv_sync_parked_batches\{channel="vendor"\} (\S+)$', text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_status_now_park_and_retry(server: ServerProcess, upstream: tuple[FloatsrvUpstream, str]) -> None:
    vendor_upstream, _ = upstream
    user, admin = server.token("demo", "demo-password"), server.token()

    use(server, user, "e1", "2.5", 3)
    vendor = status_json(server)
    assert (vendor["pending_records"], vendor["parked_batches"], vendor["last_success_at"]) == (2, 0, None), vendor
    table = status_table(server)
    assert (table["pending_records"], table["parked_batches"], table["last_success_at"]) == ("2", "0", "-"), table
    assert vendor_upstream.requests == 0  # the server itself does not send for an hour

    assert report(cli(server, "now")) == "vendor: 2 records in 1 requests"
    assert received(vendor_upstream) == {(1001, "render"): Decimal("2.5"), (1001, ""): Decimal(3)}
    vendor = status_json(server)
    assert (vendor["pending_records"], vendor["parked_batches"], vendor["consecutive_failures"]) == (0, 0, 0), vendor
    assert vendor["last_success_at"] is not None
    assert parked_metric(server, admin) == 0

    # The upstream refuses for good (400): the batch is parked, not retried.
    vendor_upstream.faults.permanent_status = 400
    use(server, user, "e2", "1.25", 2)
    parked = cli(server, "now", exit_code=1)  # a parked batch needs the admin: scripts must notice
    assert report(parked) == (
        "vendor: 0 records in 1 requests, 1 batches parked (refused for good: see `floatsrv sync status`)"
    )
    assert "sync_batch_parked" in parked.stderr
    assert received(vendor_upstream) == {(1001, "render"): Decimal("2.5"), (1001, ""): Decimal(3)}
    vendor = status_json(server)
    assert (vendor["parked_batches"], vendor["pending_records"]) == (1, 2), vendor
    assert "HTTP 400" in vendor["last_error"], vendor
    table = status_table(server)
    assert (table["parked_batches"], table["pending_records"]) == ("1", "2"), table
    assert "HTTP 400" in table["last_error"], table
    assert parked_metric(server, admin) >= 1
    requests = vendor_upstream.requests
    assert report(cli(server, "now")) == "vendor: 0 records in 0 requests"
    assert vendor_upstream.requests == requests  # a parked batch is not sent again by itself

    # Fixed upstream: retry puts the batch back in line, and the next sync delivers it.
    vendor_upstream.faults.permanent_status = None
    assert cli(server, "retry").stdout.strip() == "1 parked batches will be sent again"
    vendor = status_json(server)
    assert (vendor["parked_batches"], vendor["pending_records"]) == (0, 2), vendor
    assert parked_metric(server, admin) == 0
    assert report(cli(server, "now")) == "vendor: 2 records in 1 requests"
    assert received(vendor_upstream) == {(1001, "render"): Decimal("3.75"), (1001, ""): Decimal(5)}
    vendor = status_json(server)
    assert (vendor["pending_records"], vendor["parked_batches"]) == (0, 0), vendor
