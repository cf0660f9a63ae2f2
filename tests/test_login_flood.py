"""Login throttling that holds under parallel load (issue: LAN hardening, items 1-3).

- A burst of any size from one address gets at most the configured number of checked guesses; the rest
  get 429 (or 503 while checks are saturated) with Retry-After, without a check.
- Failures from other addresses never stop a correct login from an address without failures.
- Password checks run on their own executor, bounded in concurrency and rate: excess logins are refused
  without hashing, the database's executor never runs a check, and a clean address is served first.
Clients come from distinct loopback addresses (127.0.0.2, ...), as different machines on a LAN would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aiohttp

from floatsrv.appkeys import DOMAIN, LOGIN
from tests.conftest import Api, basic


def limits(**values: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["auth"]["login_throttle"].update(values)

    return mutate


async def login_from(api: Api, address: str, username: str, password: str) -> tuple[int, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = str(api.client.make_url("/auth"))
        async with session.get(url, headers={"Authorization": basic(username, password)}) as resp:
            await resp.read()
            return resp.status, dict(resp.headers)


async def test_a_parallel_burst_from_one_address_gets_only_the_allowed_checks(api_factory: Any) -> None:
    api: Api = await api_factory(limits(max_failures_per_address=5, max_checks_per_second=1000), login=False)
    gate = api.app[LOGIN].gate
    before = gate.stats.checks
    guesses = [api.client.get("/auth", headers={"Authorization": basic("admin", f"guess-{i}")}) for i in range(500)]
    answers = []
    for response in await asyncio.gather(*(g.__aenter__() for g in guesses)):
        answers.append((response.status, response.headers.get("Retry-After")))
        response.release()
    checked = gate.stats.checks - before
    assert checked <= 5, checked
    assert sum(1 for status, _ in answers if status == 401) == checked
    refused = [(status, retry) for status, retry in answers if status != 401]
    assert len(refused) >= 495 and all(status in (429, 503) and retry for status, retry in refused), refused[:5]
    assert sum(1 for status, _ in refused if status == 429) >= 400  # past the limit: 429, counted before hashing


async def test_the_right_password_in_a_parallel_burst_does_not_get_in(api_factory: Any) -> None:
    api: Api = await api_factory(limits(max_failures_per_address=5, max_checks_per_second=1000), login=False)
    guesses = [basic("admin", f"guess-{i}") for i in range(59)] + [basic("admin", "admin-password")]
    statuses = []
    for header in guesses:  # sent together: every request is in flight before any check ends
        statuses.append(asyncio.ensure_future(api.client.get("/auth", headers={"Authorization": header})))
    responses = await asyncio.gather(*statuses)
    for response in responses:
        response.release()
    assert responses[-1].status in (429, 503)  # the 60th guess is never checked
    assert sum(1 for r in responses if r.status == 401) <= 5


async def test_failures_from_other_addresses_never_lock_the_owner_out(api_factory: Any) -> None:
    api: Api = await api_factory(limits(max_failures_per_user=10, max_checks_per_second=1000), login=False)
    for n in range(2, 21):  # 19 addresses, 19 wrong passwords for admin: far past the per-user limit
        assert (await login_from(api, f"127.0.0.{n}", "admin", "wrong-guess"))[0] == 401
    status, _ = await login_from(api, "127.0.0.2", "admin", "admin-password")
    assert status == 429  # an address with failures meets the per-user limit ...
    status, _ = await login_from(api, "127.0.0.1", "admin", "admin-password")
    assert status == 200  # ... the owner's clean address does not


async def test_the_owner_gets_in_while_hashing_is_saturated_by_a_flood(api_factory: Any) -> None:
    api: Api = await api_factory(
        limits(max_checks_per_second=4, max_failures_per_address=10**6, queue_seconds=5), login=False
    )
    attackers = [f"127.0.0.{n}" for n in range(2, 21)]
    for address in attackers:  # every attacking address has failures on record
        await login_from(api, address, "admin", "wrong")
    stop = asyncio.Event()

    async def flood(address: str) -> None:
        while not stop.is_set():
            await login_from(api, address, "admin", "wrong")

    flooders = [asyncio.create_task(flood(address)) for address in attackers for _ in range(3)]
    try:
        await asyncio.sleep(0.5)  # the gate is saturated now
        started = time.monotonic()
        status, _ = await login_from(api, "127.0.0.1", "admin", "admin-password")
        waited = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*flooders)
    assert status == 200 and waited < 5, (status, waited)
    gate = api.app[LOGIN].gate
    assert gate.stats.refused > 0  # the flood was refused without checks


async def test_checks_never_run_on_the_database_executor_and_excess_is_refused(api_factory: Any) -> None:
    api: Api = await api_factory(limits(max_checks_per_second=5, queue_seconds=0.5), login=False)
    gate, store = api.app[LOGIN].gate, api.app[DOMAIN].store
    assert gate.executor is not store._executor  # two executors, two sets of threads
    assert gate.executor._thread_name_prefix == "floatsrv-hash"
    assert store._executor._thread_name_prefix == "floatsrv-db"
    start, before = time.monotonic(), gate.stats.checks
    answers = await asyncio.gather(
        *(login_from(api, f"127.0.0.{2 + n % 40}", f"nobody-{n}", "wrong") for n in range(120))
    )
    elapsed = time.monotonic() - start
    checks = gate.stats.checks - before
    assert checks <= 5 * elapsed + 5 + 1, (checks, elapsed)  # rate-bounded (burst of 5, plus rounding)
    busy = [headers for status, headers in answers if status == 503]
    assert busy and all("Retry-After" in headers for headers in busy)
    assert sum(1 for status, _ in answers if status == 401) == checks  # every other answer came without hashing
    hashers = {t.name for t in threading.enumerate() if t.name.startswith("floatsrv-hash")}
    writers = {t.name for t in threading.enumerate() if t.name.startswith("floatsrv-db")}
    assert hashers and writers and not hashers & writers
    assert await api.login()  # and logins work again afterwards


async def test_unknown_usernames_are_kept_only_as_keyed_labels(api: Api) -> None:
    """A password typed into the username field must not end up readable in the log or the audit trail."""
    from structlog.testing import capture_logs

    typed = "Hunter2-MyRealPassword"
    with capture_logs() as logs:
        for _ in range(2):
            async with api.client.get("/auth", headers={"Authorization": basic(typed, "x")}) as resp:
                assert resp.status == 401
    admin = await api.login("admin", "admin-password")
    status, body = await api.get("/v1/audit", token=admin, params={"action": "login_failed"})
    rows = body["data"]["data"]
    labels = {row["actor"] for row in rows}
    assert len(rows) == 2 and len(labels) == 1  # repeated attempts correlate ...
    [label] = labels
    assert label.startswith("unknown:") and len(label) == len("unknown:") + 16  # ... but cannot be read
    assert typed not in str(body) and all(typed not in str(event) for event in logs)
    assert {e["username"] for e in logs if e["event"] == "login_failed"} == {label}
    async with api.client.get("/auth", headers={"Authorization": basic("demo", "wrong")}) as resp:
        assert resp.status == 401
    status, body = await api.get("/v1/audit", token=admin, params={"action": "login_failed", "actor": "demo"})
    assert len(body["data"]["data"]) == 1  # a real user's failures keep the real name
