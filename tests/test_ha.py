"""Two floatsrv nodes on one PostgreSQL database: one source of truth, no seat or unit over-granted.

Real processes (`floatsrv serve`) on real ports, a real PostgreSQL (tests.pgserver), requests split across
both nodes at once, as a TCP load balancer would spread them.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from floatsrv.db.pgconn import PgConnection  # not on the test's loop: it drives its own (to_thread)
from tests.conftest import example_dict
from tests.licensing import sign_licenses, signed_file
from tests.metering_config import metering_license
from tests.polling import wait_until
from tests.procs import ServerProcess


def node_config(tmp_path: Path, dsn: str, mutate: Any = None) -> dict[str, Any]:
    """The demo config on PostgreSQL, its license signed once (both nodes serve the very same file)."""
    data = example_dict()
    data["storage"]["backend"] = "postgresql"
    data["storage"]["postgresql"] = {"dsn": dsn}
    data["log"] = {**data.get("log", {}), "format": "json"}
    if mutate is not None:
        mutate(data)
    sign_licenses(data, tmp_path)
    return data


def make_nodes(tmp_path: Path, dsn: str, mutate: Any = None, count: int = 2) -> list[ServerProcess]:
    """Nodes of one site, not started: the same config, each its own directory."""
    data = node_config(tmp_path, dsn, mutate)
    nodes = []
    for number in range(count):
        (tmp_path / f"node{number}").mkdir(exist_ok=True)
        nodes.append(ServerProcess(tmp_path / f"node{number}", data, signed=False))
    return nodes


def start_nodes(tmp_path: Path, dsn: str, mutate: Any = None, count: int = 2) -> list[ServerProcess]:
    nodes = make_nodes(tmp_path, dsn, mutate, count)
    for node in nodes:  # one after the other: the first makes the keys the others adopt
        node.start()
    return nodes


@pytest.fixture
def nodes(tmp_path: Path, pg_dsn: str) -> Iterator[list[ServerProcess]]:
    started = start_nodes(tmp_path, pg_dsn)
    try:
        yield started
    finally:
        for node in started:
            if node.proc is not None:
                node.stop()


def duty_holder(dsn: str, duty: int) -> str | None:
    """The application_name (node) of the session holding a duty's advisory lock (db.pg_store.DUTIES), if any."""
    conn = PgConnection(dsn)
    try:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objid = ? AND l.granted",
            (duty,),
        ).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(session: aiohttp.ClientSession, node: ServerProcess, user: str = "demo") -> str:
    password = f"{user}-password"
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    async with session.get(node.url + "/auth", headers={"Authorization": f"Basic {basic}"}) as resp:
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["token"]
        return token


async def post(session: aiohttp.ClientSession, url: str, body: Any, token: str) -> tuple[int, Any]:
    async with session.post(url, json=body, headers=bearer(token)) as resp:
        if resp.content_type != "application/json":  # v4 unregister answers plain text, as LicenseSpring's
            return resp.status, await resp.text()
        return resp.status, await resp.json()


async def test_a_token_from_one_node_works_on_the_other(nodes: list[ServerProcess]) -> None:
    async with aiohttp.ClientSession() as session:
        token = await login(session, nodes[0])
        for node in nodes:
            status, body = await post(
                session, node.url + "/api/v4/register", {"product": "demo", "user": "alice"}, token
            )
            assert status == 200, body


async def test_300_registrations_split_across_two_nodes_take_exactly_the_seats(nodes: list[ServerProcess]) -> None:
    connector = aiohttp.TCPConnector(limit=400)
    async with aiohttp.ClientSession(connector=connector) as session:
        tokens = [await login(session, node) for node in nodes]
        results = await asyncio.gather(
            *(
                post(
                    session,
                    nodes[i % 2].url + "/api/v4/register",
                    {"product": "demo", "user": f"user-{i}"},
                    tokens[i % 2],
                )
                for i in range(300)
            )
        )
        statuses = Counter(status for status, _ in results)
        assert statuses == {200: 3, 400: 297}, statuses
        assert {body["code"] for status, body in results if status == 400} == {"floating_not_available"}
        admin = await login(session, nodes[1], "admin")
        async with session.get(nodes[1].url + "/v1/seats?license_id=1001", headers=bearer(admin)) as resp:
            seats = (await resp.json())["data"]["data"]
        assert len(seats) == 3


async def test_consumption_split_across_two_nodes_never_exceeds_the_limit(nodes: list[ServerProcess]) -> None:
    # 120 requests of 20 units against 1000 + 100 overage, half on each node: exactly 55 fit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        tokens = [await login(session, node) for node in nodes]
        results = await asyncio.gather(
            *(
                post(
                    session,
                    nodes[i % 2].url + "/api/v4/add_consumption",
                    {"product": "demo", "user": f"u{i}", "consumptions": 20},
                    tokens[i % 2],
                )
                for i in range(120)
            )
        )
        assert Counter(status for status, _ in results) == {200: 55, 400: 65}
        for node, token in zip(nodes, tokens, strict=True):
            async with session.get(node.url + "/v1/licenses/1001", headers=bearer(token)) as resp:
                view = (await resp.json())["data"]
            assert view["consumption"]["total"] == "1100", view["consumption"]


async def test_one_event_id_sent_to_both_nodes_at_once_is_counted_once(tmp_path: Path, pg_dsn: str) -> None:
    started = start_nodes(tmp_path, pg_dsn, metering_license)
    try:
        async with aiohttp.ClientSession() as session:
            tokens = [await login(session, node) for node in started]
            event = {"event_id": "job-42", "product": "demo", "feature": "logs", "quantity": "2.5"}
            results = await asyncio.gather(
                *(post(session, started[i % 2].url + "/v1/usage/events", event, tokens[i % 2]) for i in range(40))
            )
            assert {status for status, _ in results} == {200}, results
            assert Counter(reply["data"]["replay"] for _, reply in results) == {False: 1, True: 39}
            for node, token in zip(started, tokens, strict=True):
                check = {"product": "demo", "feature": "logs", "quantity": 1}
                status, reply = await post(session, node.url + "/v1/usage/check", check, token)
                assert (status, reply["data"]["current"]) == (200, "2.5")
    finally:
        for node in started:
            node.stop()


def exclude_mallory(data: dict[str, Any]) -> None:
    data["policy"] = {"rules": [{"license": 1001, "exclude": ["user:mallory"]}]}


def test_a_node_whose_shared_settings_differ_refuses_to_start(tmp_path: Path, pg_dsn: str) -> None:
    [first] = start_nodes(tmp_path / "a", pg_dsn, count=1)
    try:
        with pytest.raises(RuntimeError, match="policy differ from those of the nodes running"):
            start_nodes(tmp_path / "b", pg_dsn, exclude_mallory, count=1)
    finally:
        first.stop()
    [alone] = start_nodes(tmp_path / "c", pg_dsn, exclude_mallory, count=1)  # alone, it starts the site anew
    alone.stop()


async def test_a_policy_reload_on_one_node_takes_effect_on_the_other(nodes: list[ServerProcess]) -> None:
    async with aiohttp.ClientSession() as session:
        token = await login(session, nodes[1])
        register = {"product": "demo", "user": "mallory"}
        assert (await post(session, nodes[1].url + "/api/v4/register", register, token))[0] == 200
        assert (await post(session, nodes[1].url + "/api/v4/unregister", register, token))[0] == 200
        data = yaml.safe_load(nodes[0].config_path.read_text())
        exclude_mallory(data)
        nodes[0].config_path.write_text(yaml.safe_dump(data))
        nodes[0].proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

        async def refused() -> bool:
            status, body = await post(session, nodes[1].url + "/api/v4/register", register, token)
            if status == 200:  # not yet: give the seat back (a held seat's heartbeats are not judged again)
                await post(session, nodes[1].url + "/api/v4/unregister", register, token)
            return status == 400 and body["message"].startswith("excluded")

        await wait_until(refused, 15)

    async def logged() -> bool:  # the log is written a fraction of a second later
        return any(line["event"] == "site_policy_applied" for line in nodes[1].log_lines())

    await wait_until(logged, 5)


def behind_a_proxy(data: dict[str, Any]) -> None:
    data["server"]["trusted_proxies"] = ["127.0.0.1/32"]  # the balancer: it names the client in X-Forwarded-For
    data["policy"] = {"rules": [{"license": 1001, "exclude": ["address:10.66.0.0/16"]}]}


async def test_behind_a_balancer_both_nodes_throttle_and_judge_the_client_address(tmp_path: Path, pg_dsn: str) -> None:
    started = start_nodes(tmp_path, pg_dsn, behind_a_proxy)
    try:
        async with aiohttp.ClientSession() as session:

            async def attempt(node: ServerProcess, client: str, password: str) -> int:
                basic = base64.b64encode(f"admin:{password}".encode()).decode()
                headers = {"Authorization": f"Basic {basic}", "X-Forwarded-For": client}
                async with session.get(node.url + "/auth", headers=headers) as resp:
                    return resp.status

            # One guesser, its burst spread over both nodes: 5 checks in all (the per-address limit), not 5 each.
            statuses = await asyncio.gather(*(attempt(started[i % 2], "10.66.1.1", "wrong-guess") for i in range(24)))
            # (Admitted ones are checked, 401, or find the password checks busy, 503 login_busy.)
            counted = Counter(statuses)
            assert counted[429] == 19 and counted[401] + counted[503] == 5, statuses
            # The owner, from another address, is not locked out by them, on either node.
            assert {await attempt(node, "10.77.1.1", "admin-password") for node in started} == {200}
            # address: policy rules see the client too, on both nodes.
            token = await login(session, started[0])
            for node in started:
                headers = {**bearer(token), "X-Forwarded-For": "10.66.2.2"}
                register = {"product": "demo", "user": "eve"}
                async with session.post(node.url + "/api/v4/register", json=register, headers=headers) as resp:
                    body = await resp.json()
                assert resp.status == 400 and body["message"].startswith("excluded"), body
    finally:
        for node in started:
            node.stop()


async def test_a_revocation_and_a_license_import_on_one_node_reach_the_other(nodes: list[ServerProcess]) -> None:
    async with aiohttp.ClientSession() as session:
        admin = await login(session, nodes[0], "admin")
        user = await login(session, nodes[1])  # issued by node 1, revoked on node 0
        register = {"product": "demo", "user": "alice"}
        assert (await post(session, nodes[1].url + "/api/v4/register", register, user))[0] == 200
        status, body = await post(session, nodes[0].url + "/v1/users/demo/revoke-tokens", {}, admin)
        assert status == 200, body

        async def revoked() -> bool:
            return (await post(session, nodes[1].url + "/api/v4/register", register, user))[0] == 401

        await wait_until(revoked, 5)
        other = signed_file([{"id": 2002, "product": "other", "floating_users": 2}])
        status, body = await post(session, nodes[0].url + "/v1/license-files", {"license_file": other}, admin)
        assert status == 201, body
        fresh = await login(session, nodes[1])

        async def served() -> bool:
            attempt = {"product": "other", "user": "bob"}
            return (await post(session, nodes[1].url + "/api/v4/register", attempt, fresh))[0] == 200

        await wait_until(served, 5)


SWEEPER_DUTY = 3  # db.pg_store.DUTIES["sweeper"]: expired seats, old tokens, event compaction, history pruning
SWEEP_SECONDS = 1.0


def sweep_often(data: dict[str, Any]) -> None:
    data["seats"]["sweep_interval_seconds"] = SWEEP_SECONDS


async def test_one_node_sweeps_and_the_other_takes_over_within_an_interval_when_it_dies(
    tmp_path: Path, pg_dsn: str
) -> None:
    first, second = make_nodes(tmp_path, pg_dsn, sweep_often)
    try:
        await asyncio.to_thread(first.start)
        await wait_until(lambda: asyncio.to_thread(lambda: duty_holder(pg_dsn, SWEEPER_DUTY) is not None), 10)
        holder = await asyncio.to_thread(duty_holder, pg_dsn, SWEEPER_DUTY)  # the first node's: it was alone
        await asyncio.to_thread(second.start)
        for _ in range(3):  # several of the second node's sweep intervals: it does not take the duty over
            await asyncio.sleep(SWEEP_SECONDS)
            assert await asyncio.to_thread(duty_holder, pg_dsn, SWEEPER_DUTY) == holder
        await asyncio.to_thread(first.kill)  # no shutdown: PostgreSQL ends its session, and the lock with it
        killed = time.monotonic()
        await wait_until(lambda: asyncio.to_thread(lambda: duty_holder(pg_dsn, SWEEPER_DUTY) not in (None, holder)), 10)
        # The survivor took the duty at its next sweep (slack for a loaded machine's scheduling).
        assert time.monotonic() - killed < SWEEP_SECONDS + 2.0
    finally:
        for node in (first, second):
            if node.proc is not None:
                node.stop()
