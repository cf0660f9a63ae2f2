"""Failed logins are throttled per address and per user (429 + Retry-After), on the server's clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import Api, basic


async def login(api: Api, username: str, password: str) -> tuple[int, dict[str, str], Any]:
    async with api.client.get("/auth", headers={"Authorization": basic(username, password)}) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def limits(per_address: int, per_user: int) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["auth"]["login_throttle"] = {
            "max_failures_per_address": per_address,
            "address_window_seconds": 60,
            "max_failures_per_user": per_user,
            "user_window_seconds": 300,
        }

    return mutate


async def test_too_many_failures_from_an_address_are_refused_for_a_while(api_factory: Any) -> None:
    api: Api = await api_factory(limits(3, 100), login=False)
    for _ in range(3):
        assert (await login(api, "demo", "wrong"))[0] == 401
    status, headers, body = await login(api, "demo", "demo-password")  # even the right password waits
    assert (status, body["code"]) == (429, "too_many_requests")
    assert 55 <= int(headers["Retry-After"]) <= 60
    status, _, _ = await login(api, "admin", "admin-password")  # per address: every user is held back
    assert status == 429
    api.clock.advance(timedelta(seconds=61))
    assert (await login(api, "demo", "demo-password"))[0] == 200


async def test_too_many_failures_for_one_user(api_factory: Any) -> None:
    api: Api = await api_factory(limits(100, 2), login=False)
    assert (await login(api, "admin", "guess-1"))[0] == 401
    api.clock.advance(timedelta(seconds=100))
    assert (await login(api, "admin", "guess-2"))[0] == 401
    status, headers, body = await login(api, "admin", "admin-password")
    assert (status, body["code"]) == (429, "too_many_requests")
    assert int(headers["Retry-After"]) == 200  # the first failure leaves the 300 s window in 200 s
    assert (await login(api, "demo", "demo-password"))[0] == 200  # other users are not affected
    api.clock.advance(timedelta(seconds=201))
    assert (await login(api, "admin", "admin-password"))[0] == 200


async def test_a_success_clears_the_users_failures(api_factory: Any) -> None:
    api: Api = await api_factory(limits(100, 2), login=False)
    assert (await login(api, "demo", "nope"))[0] == 401
    assert (await login(api, "demo", "demo-password"))[0] == 200
    assert (await login(api, "demo", "nope"))[0] == 401
    assert (await login(api, "demo", "demo-password"))[0] == 200
