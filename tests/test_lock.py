"""Another process holding the database's write lock past `storage.busy_timeout_ms`: the server's writes get
503 `storage_unavailable` with nothing written, reads keep working, and the first write after the lock is
released succeeds with no restart.

The "other process" is an outside sqlite3 connection (as the admin CLI or a hand-run `sqlite3` shell would
be) holding `BEGIN IMMEDIATE` on the server's real database file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from tests.conftest import Api
from tests.scrape import scrape, value

BUSY_TIMEOUT_MS = 300


def short_busy_timeout(data: dict[str, Any]) -> None:
    data["storage"]["busy_timeout_ms"] = BUSY_TIMEOUT_MS


def hold_connection(api: Api) -> sqlite3.Connection:
    """An outside connection to the server's database. Its `BEGIN IMMEDIATE` must run off the event loop: it
    may wait for a server commit in flight, and that commit needs the loop (the server runs in this process)."""
    return sqlite3.connect(api.config.db_path, isolation_level=None, timeout=10, check_same_thread=False)


async def test_a_lock_held_past_busy_timeout_gets_503_and_then_recovers(api_factory: Any, capsys: Any) -> None:
    api: Api = await api_factory(short_busy_timeout)
    outside = hold_connection(api)
    try:
        await asyncio.to_thread(outside.execute, "BEGIN IMMEDIATE")  # the write lock, held until released

        resp = await api.client.post(
            "/api/v4/register", json={"product": "demo", "user": "blocked"}, headers=api.headers()
        )
        async with resp:
            status, body, retry_after = resp.status, await resp.json(), resp.headers.get("Retry-After")
        assert (status, body["code"]) == (503, "storage_unavailable"), body
        assert retry_after == "5"

        # Timed on a later request: the first may share its failed batch with a background write (the start-up
        # sweep) that began waiting earlier. Each waits for the configured time (not 0, not the 5 s default).
        started = time.monotonic()
        status, body = await api.post(
            "/api/v4/add_consumption", {"product": "demo", "user": "blocked", "consumptions": 7}
        )
        waited = time.monotonic() - started
        assert (status, body["code"]) == (503, "storage_unavailable"), body
        assert BUSY_TIMEOUT_MS / 1000 * 0.9 <= waited < 3, waited
        status, body = await api.post(
            "/v1/usage/events", {"event_id": "blocked-1", "product": "demo", "feature": "render", "quantity": 1}
        )
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body  # the native envelope

        # Reads keep working while the lock is held, and show nothing of the refused writes.
        assert await api.seats(state="all") == []
        view = await api.license()
        assert view["consumption"]["total"] == "0"
        assert [f["consumption"]["total"] for f in view["features"] if f["code"] == "render"] == ["0"]
        # Operators see it: not ready, the fault named, and in the metrics.
        status, ready = await api.get("/readyz")
        assert status == 503 and ready["checks"]["database"]["reason"] == "SQLITE_BUSY", ready
        samples = await scrape(api)
        assert value(samples, "floatsrv_db_storage_fault") == 1
        assert value(samples, "floatsrv_db_failed_batches_total") >= 3  # at least one per refused request above
    finally:
        if outside.in_transaction:
            outside.execute("ROLLBACK")
        outside.close()

    # The lock is gone: the very next writes succeed, no restart, and the refused ones never appear.
    status, body = await api.register("after")
    assert status == 200, body
    status, body = await api.post("/api/v4/add_consumption", {"product": "demo", "user": "after", "consumptions": 2})
    assert status == 200 and body["total_consumptions"] == 2, body
    status, body = await api.post(
        "/v1/usage/events", {"event_id": "blocked-1", "product": "demo", "feature": "render", "quantity": 1}
    )
    assert status == 200 and body["data"]["replay"] is False, body  # the refused event was never stored
    assert body["data"]["consumption"]["current"] == "1"
    assert [seat["user"] for seat in await api.seats(state="all")] == ["after"]
    assert (await api.license())["consumption"]["total"] == "2"
    assert (await api.get("/readyz"))[0] == 200
    assert value(await scrape(api), "floatsrv_db_storage_fault") == 0
    log = capsys.readouterr().out
    # One line when the fault starts, one when it ends (not one per refused request).
    assert log.count("storage_failed") == 1 and log.count("storage_recovered") == 1, log
    assert "reason=SQLITE_BUSY" in log and log.index("storage_recovered") > log.index("storage_failed")


async def test_a_lock_released_within_busy_timeout_is_waited_for(api_factory: Any) -> None:
    """The other side of the timeout: a short-lived lock (the admin CLI's one transaction) costs a wait,
    not an error."""
    api: Api = await api_factory(lambda data: data["storage"].update(busy_timeout_ms=5000))
    outside = hold_connection(api)
    try:
        await asyncio.to_thread(outside.execute, "BEGIN IMMEDIATE")
        request = asyncio.create_task(api.register("patient"))
        await asyncio.sleep(0.3)
        assert not request.done()  # waiting for the lock, not failed
    finally:
        if outside.in_transaction:
            outside.execute("ROLLBACK")
        outside.close()
    status, body = await request
    assert status == 200, body
    assert [seat["user"] for seat in await api.seats()] == ["patient"]
