"""The database goes away under a running node (what a PostgreSQL failover looks like from a node: every
connection ends, new ones are refused for a while) and comes back: clients get the documented
`503 storage_unavailable` in each API's envelope, promptly, never a 5xx of another kind or a hang; the node
reconnects by itself and what was committed before is still there (docs/high-availability.md). And a
database that stops answering without hanging up (a partition) never stalls the node's event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from floatsrv.db.pgconn import PgConnection  # not on the test's loop: it drives its own (to_thread)
from tests.pgserver import PgServer
from tests.tcpproxy import TcpProxy
from tests.test_ha import login, post, start_nodes


def admit(server: PgServer, database: str, allowed: bool, *, cut: bool | None = None) -> None:
    """Let connections to `database` in again, or refuse new ones; and end the ones it has (by default when
    refusing: `cut=True` while allowing is a database restart that is over before the next request)."""
    conn = PgConnection(server.dsn)
    try:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed if cut is None else cut:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()",
                (database,),
            )
    finally:
        conn.close()


async def seats(session: aiohttp.ClientSession, url: str, admin: str) -> list[dict[str, Any]]:
    async with session.get(url + "/v1/seats?license_id=1001", headers={"Authorization": f"Bearer {admin}"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        held: list[dict[str, Any]] = body["data"]["data"]
        return held


async def test_a_database_restart_or_outage_answers_503_at_most_and_the_node_comes_back_by_itself(
    tmp_path: Path, pg_server: PgServer, pg_dsn: str
) -> None:
    database = urlsplit(pg_dsn).path.lstrip("/")
    [node] = start_nodes(tmp_path, pg_dsn, count=1)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            token = await login(session, node)
            alice = {"product": "demo", "user": "alice"}
            assert (await post(session, node.url + "/api/v4/register", alice, token))[0] == 200
            carol = {"product": "demo", "user": "carol"}
            assert (await post(session, node.url + "/api/v4/register", carol, token))[0] == 200
            admin = await login(session, node, "admin")
            assert len(await seats(session, node.url, admin)) == 2

            # A restart of the database between two requests: the node's connections are dead, and the next
            # write and reads succeed all the same (nothing had been sent on those connections).
            await asyncio.to_thread(admit, pg_server, database, True, cut=True)
            assert (await post(session, node.url + "/api/v4/unregister", carol, token))[0] == 200
            for _ in range(3):  # more reads than the node has reader connections
                assert [seat["user"] for seat in await seats(session, node.url, admin)] == ["alice"]

            await asyncio.to_thread(admit, pg_server, database, False)
            bob = {"product": "demo", "user": "bob"}
            event: dict[str, Any] = {"event_id": "outage-1", "product": "demo", "feature": "render", "quantity": "2"}
            started = asyncio.get_running_loop().time()
            status, body = await post(session, node.url + "/api/v4/register", bob, token)
            assert status == 503 and body["code"] == "storage_unavailable", (status, body)
            status, body = await post(session, node.url + "/v1/usage/events", event, token)
            assert status == 503 and body["success"] is False, (status, body)
            assert body["error"]["code"] == "storage_unavailable", body
            assert asyncio.get_running_loop().time() - started < 15  # refused promptly, not after a hang

            await asyncio.to_thread(admit, pg_server, database, True)
            # The same node, not restarted, reconnects by itself: the very first write and reads succeed (the
            # connections it kept from before the outage are dead; nothing had been sent on them).
            status, body = await post(session, node.url + "/api/v4/register", bob, token)
            assert status == 200, body
            status, body = await post(session, node.url + "/v1/usage/events", event, token)
            assert status == 200, body
            held = await seats(session, node.url, admin)
            assert sorted(seat["user"] for seat in held) == ["alice", "bob"], held  # alice's survived
    finally:
        await asyncio.to_thread(admit, pg_server, database, True)
        node.stop()


async def test_a_database_that_stops_answering_never_stalls_the_event_loop(tmp_path: Path, pg_dsn: str) -> None:
    """Credentials are followed off the event loop: an authenticated request made while the database is
    silent waits on its own (in a reader thread), and the node goes on answering what needs no database."""
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy([parts.port or 5432])
    await proxy.start()
    behind = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    # (Off the loop: the proxy runs on it, and the node connects through the proxy.)
    [node] = await asyncio.to_thread(start_nodes, tmp_path, behind, None, 1)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            token = await login(session, node)
            proxy.freeze()
            await asyncio.sleep(1.5)  # past the once-a-second re-read of the credential state
            waiting = asyncio.create_task(
                session.get(node.url + "/api/v4/license?product=demo", headers={"Authorization": f"Bearer {token}"})
            )
            await asyncio.sleep(0.5)
            async with session.get(node.url + "/healthz", timeout=aiohttp.ClientTimeout(total=3)) as resp:
                assert resp.status == 200  # the loop is free: only the request that reads the database waits
            assert not waiting.done()
            proxy.thaw()
            async with await waiting as resp:
                assert resp.status == 200, await resp.text()
    finally:
        proxy.thaw()
        await asyncio.to_thread(node.stop)
        await proxy.close()
