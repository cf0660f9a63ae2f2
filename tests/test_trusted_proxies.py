"""Behind a reverse proxy every caller has the proxy's address: `server.trusted_proxies` names the proxies
whose X-Forwarded-For is believed. Throttling and the audit log then see the client; a client reaching the
port directly cannot claim another address; with no trusted proxies the header is ignored."""

from __future__ import annotations

import ipaddress
from typing import Any

from floatsrv.api.forwarded import client_address
from tests.conftest import Api, basic

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def test_the_client_is_the_right_most_untrusted_hop() -> None:
    assert client_address("127.0.0.1", ["10.1.2.3"], LOOPBACK) == "10.1.2.3"
    # The left part is what the client claimed: never believed past an untrusted hop.
    assert client_address("127.0.0.1", ["6.6.6.6, 10.1.2.3"], LOOPBACK) == "10.1.2.3"
    assert client_address("127.0.0.1", ["6.6.6.6", "10.1.2.3, 127.0.0.2"], LOOPBACK) == "10.1.2.3"
    assert client_address("192.0.2.9", ["10.1.2.3"], LOOPBACK) == "192.0.2.9"  # not from a trusted proxy
    assert client_address("127.0.0.1", ["not-an-address"], LOOPBACK) == "127.0.0.1"
    assert client_address("127.0.0.1", ["2001:db8::7"], LOOPBACK) == "2001:db8::7"
    assert client_address("127.0.0.1", ["10.1.2.3"], []) == "127.0.0.1"  # none trusted: ignored


async def fail_login(api: Api, forwarded: str) -> int:
    headers = {"Authorization": basic("admin", "wrong"), "X-Forwarded-For": forwarded}
    async with api.client.get("/auth", headers=headers) as resp:
        return resp.status


async def test_throttling_and_audit_see_the_client_behind_a_trusted_proxy(api_factory: Any) -> None:
    def behind_proxy(data: dict[str, Any]) -> None:
        data["server"]["trusted_proxies"] = ["127.0.0.1/32"]
        data["auth"]["login_throttle"]["max_failures_per_address"] = 2

    api: Api = await api_factory(behind_proxy, login=False)
    assert [await fail_login(api, "10.0.0.5") for _ in range(3)] == [401, 401, 429]
    assert await fail_login(api, "10.0.0.6") == 401  # another client behind the same proxy is not held back
    admin = await api.login("admin", "admin-password")
    status, body = await api.get("/v1/audit", token=admin, params={"action": "login_failed"})
    assert {row["peer"] for row in body["data"]["data"]} == {"10.0.0.5", "10.0.0.6"}


async def test_without_trusted_proxies_the_header_is_ignored(api_factory: Any) -> None:
    api: Api = await api_factory(lambda d: d["auth"]["login_throttle"].update(max_failures_per_address=2), login=False)
    statuses = [await fail_login(api, f"10.0.0.{n}") for n in range(3)]  # a new claimed address each time
    assert statuses == [401, 401, 429]  # all from 127.0.0.1, whatever the header says
