"""Seat semantics through real HTTP: heartbeat, limits, expiry and borrow with a moving clock, end reasons."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.conftest import BOTH_BACKENDS, Api

pytestmark = BOTH_BACKENDS


async def test_register_returns_what_the_sdk_parses(api: Api) -> None:
    status, body = await api.register("alice", os_hostname="ws-1", sdk_ver="PythonSDK 4.0.0")
    assert status == 200, body
    assert body["floating_slots_in_use"] == 1
    license = json.loads(body["license_json"])
    assert license["id"] == 1001
    assert license["is_floating"] is True
    assert license["floating_timeout"] == 30
    assert license["validity_period"] is None
    assert license["product_details"]["short_code"] == "demo"
    assert license["license_type"] == "consumption"
    assert (license["max_consumptions"], license["total_consumptions"]) == (1000, 0)
    assert (license["allow_overages"], license["max_overages"]) == (True, 100)
    features = {f["code"]: f for f in license["product_features"]}
    assert features["export"]["is_floating"] is True and features["export"]["floating_timeout"] == 30
    assert features["render"]["feature_type"] == "consumption" and features["render"]["max_consumption"] == 100
    # Never Go's zero time: an unborrowed seat says null.
    assert body["borrowed_until"] is None and license["borrowed_until"] is None
    assert "0001-01-01" not in json.dumps(body)


async def test_heartbeat_renews_the_same_seat(api: Api) -> None:
    await api.register("alice")
    api.clock.advance(timedelta(minutes=20))
    status, body = await api.register("alice", license_id=1001)
    assert status == 200 and body["floating_slots_in_use"] == 1
    seats = await api.seats()
    assert len(seats) == 1
    assert seats[0]["expires_at"] == "2026-01-15T12:50:00.000Z"  # 12:20 + 30 minutes
    # Still one seat after the original 30 minutes have passed.
    api.clock.advance(timedelta(minutes=15))
    assert (await api.license())["seats_in_use"] == 1


async def test_fourth_user_is_refused_and_nothing_changes(api: Api) -> None:
    for user in ("a", "b", "c"):
        assert (await api.register(user))[0] == 200
    status, body = await api.register("d")
    assert (status, body["code"]) == (400, "floating_not_available")
    assert set(body) == {"status", "code", "message"}
    assert sorted(s["user"] for s in await api.seats()) == ["a", "b", "c"]


async def test_expired_seat_stops_counting_before_any_sweep(api: Api) -> None:
    for user in ("a", "b", "c"):
        await api.register(user)
    api.clock.advance(timedelta(minutes=30, seconds=1))
    assert (await api.license())["seats_in_use"] == 0
    status, body = await api.register("d")
    assert status == 200 and body["floating_slots_in_use"] == 1
    ended = {s["user"]: s for s in await api.seats(state="ended")}
    assert {u: s["end_reason"] for u, s in ended.items()} == {"a": "expired", "b": "expired", "c": "expired"}
    assert ended["a"]["ended_at"] == "2026-01-15T12:30:00.000Z"  # its true expiry, not the sweep time


async def test_expired_user_reregistering_gets_a_fresh_seat(api: Api) -> None:
    await api.register("a")
    api.clock.advance(timedelta(minutes=31))
    await api.register("a")
    history = await api.seats(state="all", user="a")
    assert [(s["state"], s["end_reason"]) for s in history] == [("held", None), ("ended", "expired")]


async def test_unregister_frees_the_seat_and_records_why(api: Api) -> None:
    await api.register("a")
    await api.post("/api/v4/featureRegister", {"product": "demo", "user": "a", "feature": "export"})
    status, text = await api.post("/api/v4/unregister", {"product": "demo", "user": "a"})
    assert (status, text) == (200, "user_unregistered")
    assert (await api.license())["seats_in_use"] == 0
    ended = await api.seats(state="ended")
    assert {(s["feature"], s["end_reason"]) for s in ended} == {(None, "released"), ("export", "released")}
    # Unregistering again is harmless.
    assert (await api.post("/api/v4/unregister", {"product": "demo", "user": "a"}))[0] == 200


async def test_unregister_all_ends_every_seat(api: Api) -> None:
    for user in ("a", "b"):
        await api.register(user)
    await api.post("/api/v4/featureRegister", {"product": "demo", "user": "a", "feature": "export"})
    status, text = await api.get("/api/v4/unregister/all")
    assert (status, text) == (200, "")
    assert await api.seats() == []
    assert {s["end_reason"] for s in await api.seats(state="ended")} == {"unregister_all"}


async def test_borrow_pins_the_seat_past_the_timeout_then_ends(api: Api) -> None:
    until = (api.clock.now() + timedelta(hours=48)).isoformat().replace("+00:00", "Z")
    status, body = await api.post("/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": until})
    assert status == 200, body
    assert body["borrowed_until"] == "2026-01-17T12:00:00.000Z" and body["is_borrowed"] is True
    api.clock.advance(timedelta(hours=47))  # far beyond the 30-minute timeout
    assert (await api.license())["seats_in_use"] == 1
    status, body = await api.register("a")
    assert json.loads(body["license_json"])["is_borrowed"] is True and body["borrowed_until"] is not None
    api.clock.advance(timedelta(hours=1, seconds=1))
    assert (await api.license())["seats_in_use"] == 0
    [ended] = await api.seats(state="ended")
    assert (ended["end_reason"], ended["ended_at"]) == ("borrow_ended", "2026-01-17T12:00:00.000Z")


async def test_borrow_without_date_takes_the_longest_allowed(api: Api) -> None:
    status, body = await api.post(
        "/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": "0001-01-01T00:00:00Z"}
    )
    assert status == 200 and body["borrowed_until"] == "2026-01-18T12:00:00.000Z"  # now + 72 h


async def test_borrow_limits(api: Api, api_factory: Any) -> None:
    def too_far() -> str:
        return (api.clock.now() + timedelta(hours=73)).isoformat()

    for until in ("2020-01-01T00:00:00Z", too_far()):
        status, body = await api.post("/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": until})
        assert (status, body["code"]) == (400, "borrow_until_not_valid")
    assert await api.seats() == []  # a refused borrow takes no seat

    def no_borrow(data: dict[str, Any]) -> None:
        data["licenses"][0]["can_borrow"] = False

    other = await api_factory(no_borrow, subdir="noborrow")
    status, body = await other.post("/api/v4/borrow", {"product": "demo", "user": "a"})
    assert (status, body["code"]) == (400, "borrow_until_not_valid")


async def test_borrow_on_a_full_license_is_refused(api: Api) -> None:
    for user in ("a", "b", "c"):
        await api.register(user)
    status, body = await api.post("/api/v4/borrow", {"product": "demo", "user": "d"})
    assert (status, body["code"]) == (400, "floating_not_available")


async def test_feature_seats(api: Api) -> None:
    body = {"product": "demo", "feature": "export"}
    status, reply = await api.post("/api/v4/featureRegister", {**body, "user": "a"})
    assert (status, reply["code"]) == (400, "device_not_found")  # must hold the license seat first
    for user in ("a", "b", "c"):
        await api.register(user)
    status, reply = await api.post("/api/v4/featureRegister", {**body, "user": "a"})
    assert status == 200, reply
    assert (reply["code"], reply["is_floating"], reply["floating_in_use_devices"]) == ("export", True, 1)
    assert (await api.post("/api/v4/featureRegister", {**body, "user": "a"}))[1]["floating_in_use_devices"] == 1
    assert (await api.post("/api/v4/featureRegister", {**body, "user": "b"}))[0] == 200
    status, reply = await api.post("/api/v4/featureRegister", {**body, "user": "c"})
    assert (status, reply["code"]) == (400, "floating_not_available")
    status, text = await api.post("/api/v4/featureRelease", {**body, "user": "a"})
    assert (status, text) == (200, "feature_released")
    status, reply = await api.post("/api/v4/featureRelease", {**body, "user": "a"})
    assert (status, reply["code"]) == (400, "floating_feature_device_not_in_use")
    assert (await api.post("/api/v4/featureRegister", {**body, "user": "c"}))[0] == 200
    status, text = await api.get("/api/v4/featureRelease/all")
    assert (status, text) == (200, "")
    assert [s["feature"] for s in await api.seats()] == [None, None, None]


async def test_feature_errors(api: Api) -> None:
    await api.register("a")
    cases = [
        ({"feature": "nope"}, "unsupported_product_feature"),
        ({"feature": "render"}, "feature_not_floating"),
    ]
    for extra, code in cases:
        status, body = await api.post("/api/v4/featureRegister", {"product": "demo", "user": "a", **extra})
        assert (status, body["code"]) == (400, code)


async def test_feature_seat_expires_with_its_own_timeout_and_with_the_license_seat(api: Api) -> None:
    await api.register("a")
    await api.post("/api/v4/featureRegister", {"product": "demo", "user": "a", "feature": "export"})
    api.clock.advance(timedelta(minutes=20))
    await api.register("a")  # license heartbeat only
    api.clock.advance(timedelta(minutes=11))  # feature seat (30 min) has now expired
    assert (await api.license())["features"][0]["seats_in_use"] == 0
    assert (await api.license())["seats_in_use"] == 1
    await api.post("/api/v4/featureRegister", {"product": "demo", "user": "a", "feature": "export"})
    api.clock.advance(timedelta(minutes=20))  # the license seat (renewed at 12:20) expires at 12:50
    assert (await api.license())["features"][0]["seats_in_use"] == 1
    api.clock.advance(timedelta(minutes=10))
    await api.register("b")  # triggers the lazy end of a's expired license seat, which ends its feature seat
    ended = [s for s in await api.seats(state="ended") if s["feature"] == "export"]
    assert [s["end_reason"] for s in ended] == ["expired", "expired"]


async def test_sweeper_records_ends(api: Api) -> None:
    from floatsrv.workers.sweeper import sweep_once

    await api.register("a")
    api.clock.advance(timedelta(hours=1))
    assert await sweep_once(api.app) == 1
    assert await sweep_once(api.app) == 0
    [seat] = await api.seats(state="ended")
    assert seat["end_reason"] == "expired"


async def test_license_id_addressing(api_factory: Any) -> None:
    def two_licenses(data: dict[str, Any]) -> None:
        first = data["licenses"][0]
        data["licenses"].append({**first, "id": 2002, "floating_users": 1, "license_key": None})

    api = await api_factory(two_licenses)
    status, body = await api.register("a")  # no license_id: the most recently added license
    assert json.loads(body["license_json"])["id"] == 2002
    status, body = await api.register("b")
    assert (status, body["code"]) == (400, "floating_not_available")
    status, body = await api.register("b", license_id=1001)
    assert status == 200 and json.loads(body["license_json"])["id"] == 1001
    status, body = await api.register("b", license_id=999)
    assert (status, body["code"]) == (400, "license_not_found")
    status, body = await api.post("/api/v4/register", {"product": "other", "user": "b"})
    assert (status, body["code"]) == (400, "unknown_product")


async def test_license_states(api_factory: Any) -> None:
    def states(data: dict[str, Any]) -> None:
        base = data["licenses"][0]
        data["licenses"] = [
            {**base, "id": 1, "product": "off", "enabled": False},
            {**base, "id": 2, "product": "idle", "active": False},
            {**base, "id": 3, "product": "old", "validity_period": "2025-12-31T00:00:00Z"},
        ]

    api = await api_factory(states)
    for product, code in (("off", "license_not_enabled"), ("idle", "license_not_active"), ("old", "license_expired")):
        status, body = await api.post("/api/v4/register", {"product": product, "user": "a"})
        assert (status, body["code"]) == (400, code)


async def test_list_licenses(api: Api) -> None:
    await api.register("a")
    status, body = await api.get("/api/v4/license")
    assert status == 200 and [lic["id"] for lic in body] == [1001]
    assert body[0]["floating_in_use_devices"] == 1
    status, body = await api.get("/api/v4/license", params={"product": "demo"})
    assert status == 200 and len(body) == 1
    status, body = await api.get("/api/v4/license", params={"product": "nope"})
    assert (status, body["code"]) == (400, "unknown_product")


async def test_removing_a_license_from_config_ends_its_seats(tmp_path: Path) -> None:
    from tests.conftest import make_config, start_api

    config = make_config(tmp_path)
    api, client = await start_api(config)
    await api.login()
    await api.register("a")
    await client.close()

    def gone(data: dict[str, Any]) -> None:
        data["licenses"][0]["id"] = 1002

    api, client = await start_api(make_config(tmp_path, gone), api.clock)
    try:
        await api.login()
        status, body = await api.register("a", license_id=1001)
        assert (status, body["code"]) == (400, "license_not_found")
        [seat] = await api.seats(state="ended")
        assert (seat["license_id"], seat["end_reason"]) == (1001, "license_removed")
    finally:
        await client.close()


# The FS endpoints of spec §1.4-1.6; every other /api/v4 route is a §1.7 License-API twin.
FS_ROUTES = {
    ("GET", "/api/v4/health"),
    ("GET", "/api/v4/openapi.json"),
    ("POST", "/api/v4/register"),
    ("POST", "/api/v4/unregister"),
    ("GET", "/api/v4/unregister/all"),
    ("POST", "/api/v4/borrow"),
    ("POST", "/api/v4/add_consumption"),
    ("POST", "/api/v4/add_feature_consumption"),
    ("POST", "/api/v4/featureRegister"),
    ("POST", "/api/v4/featureRelease"),
    ("GET", "/api/v4/featureRelease/all"),
    ("GET", "/api/v4/license"),
    ("POST", "/api/v4/license/upload"),
    ("POST", "/api/v4/license/generate"),
}
RELEASE_TWINS = ("/api/v4/feature_release", "/api/v4/floating/feature_release")
# The License API's floating/ paths, which the Go, C++ and Swift SDKs call (docs/compatibility.md).
FLOATING_TWINS = {
    ("POST", "/api/v4/floating/register"),
    ("POST", "/api/v4/floating/unregister"),
    ("POST", "/api/v4/floating/unregister/all"),
    ("POST", "/api/v4/floating/borrow"),
    ("POST", "/api/v4/floating/add_consumption"),
    ("POST", "/api/v4/floating/add_feature_consumption"),
    ("GET", "/api/v4/floating/license"),
    ("GET", "/api/v4/floating/health"),
}


def test_every_alias_route_is_covered_below() -> None:
    from floatsrv.api.routes import ROUTES

    aliases = {(r.method, r.path) for r in ROUTES if r.path.startswith("/api/v4/")} - FS_ROUTES
    assert aliases == {
        ("GET", "/api/v4/check_license_feature"),
        *(("POST", path) for path in RELEASE_TWINS),
        ("GET", "/api/v4/feature_release/all"),
        *FLOATING_TWINS,
    }


async def feature_seats(api: Api, state: str = "held") -> dict[str, dict[str, Any]]:
    return {s["user"]: s for s in await api.seats(state=state) if s["feature"] == "export"}


async def test_check_license_feature_takes_a_feature_seat_like_feature_register(api: Api) -> None:
    for user in ("a", "b", "c"):
        await api.register(user)
    query = {"product": "demo", "feature": "export", "hardware_id": "a", "license_key": "ignored"}
    status, body = await api.get("/api/v4/check_license_feature", params=query)
    assert status == 200, body
    assert (body["code"], body["is_floating"], body["floating_in_use_devices"]) == ("export", True, 1)
    assert list(await feature_seats(api)) == ["a"]
    # The same answer as featureRegister gives for the same seat at the same moment (a heartbeat: no new seat).
    status, twin = await api.post("/api/v4/featureRegister", {"product": "demo", "feature": "export", "user": "a"})
    assert (status, twin) == (200, body)
    # `user` works as well as `hardware_id`, numbers arrive as query strings, and limits hold.
    status, body = await api.get(
        "/api/v4/check_license_feature",
        params={"product": "demo", "feature": "export", "user": "b", "license_id": "1001"},
    )
    assert status == 200 and body["floating_in_use_devices"] == 2
    status, body = await api.get(
        "/api/v4/check_license_feature", params={"product": "demo", "feature": "export", "hardware_id": "c"}
    )
    assert (status, body["code"]) == (400, "floating_not_available")
    assert sorted(await feature_seats(api)) == ["a", "b"]
    # The error answers are featureRegister's.
    status, body = await api.get(
        "/api/v4/check_license_feature", params={"product": "demo", "feature": "export", "hardware_id": "nobody"}
    )
    assert (status, body["code"]) == (400, "device_not_found")
    status, body = await api.get("/api/v4/check_license_feature", params={"product": "demo", "hardware_id": "a"})
    assert (status, body["code"]) == (400, "missing_parameters") and set(body) == {"status", "code", "message"}


async def test_feature_release_twins_answer_like_feature_release(api: Api) -> None:
    for user in ("a", "b"):
        await api.register(user)
    body = {"product": "demo", "feature": "export"}
    expected = []
    for path in ("/api/v4/featureRelease", *RELEASE_TWINS):
        for user_key in ("user", "hardware_id"):
            assert (await api.post("/api/v4/featureRegister", {**body, "user": "a"}))[0] == 200
            assert list(await feature_seats(api)) == ["a"]
            released = await api.post(path, {**body, user_key: "a"})
            not_held = await api.post(path, {**body, user_key: "a"})
            assert await feature_seats(api) == {}, (path, user_key)
            expected.append((path, released, not_held[0], not_held[1]["code"]))
    assert expected == [
        (path, (200, "feature_released"), 400, "floating_feature_device_not_in_use")
        for path in ("/api/v4/featureRelease", *RELEASE_TWINS)
        for _ in range(2)
    ]
    ended = [s for s in await api.seats(state="ended") if s["feature"] == "export"]
    assert [s["end_reason"] for s in ended] == ["released"] * 6
    assert sorted(s["user"] for s in await api.seats()) == ["a", "b"]  # license seats are untouched


async def test_feature_release_all_twin_releases_every_feature_seat(api: Api) -> None:
    for user in ("a", "b", "c"):
        await api.register(user)
    for user in ("a", "b"):
        await api.post("/api/v4/featureRegister", {"product": "demo", "feature": "export", "user": user})
    status, text = await api.get("/api/v4/feature_release/all")
    assert (status, text) == (200, "")
    assert await feature_seats(api) == {}
    assert {u: s["end_reason"] for u, s in (await feature_seats(api, "ended")).items()} == {
        "a": "unregister_all",
        "b": "unregister_all",
    }
    assert sorted(s["user"] for s in await api.seats()) == ["a", "b", "c"]
    # Scoped like featureRelease/all: only the named user's feature seats.
    for user in ("a", "c"):
        await api.post("/api/v4/featureRegister", {"product": "demo", "feature": "export", "user": user})
    status, text = await api.get("/api/v4/feature_release/all", params={"product": "demo", "user": "a"})
    assert (status, text) == (200, "")
    assert list(await feature_seats(api)) == ["c"]
    status, body = await api.get("/api/v4/feature_release/all", params={"product": "demo", "license_id": "x"})
    assert (status, body["code"]) == (400, "validation_error")


async def test_go_zero_time_is_never_returned(api: Api) -> None:
    """Go's zero time means "not borrowed" on input; no response of any /api/v4 route may carry it."""
    zero = "0001-01-01T00:00:00Z"
    later = (api.clock.now() + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    export = {"product": "demo", "feature": "export"}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v4/register", {"product": "demo", "user": "a", "borrowed_until": zero}),
        ("POST", "/api/v4/borrow", {"product": "demo", "user": "b", "borrowed_until": zero}),
        ("POST", "/api/v4/borrow", {"product": "demo", "user": "c", "borrowed_until": later}),
        ("POST", "/api/v4/featureRegister", {**export, "user": "a"}),
        ("POST", "/api/v4/featureRegister", {**export, "user": "b", "borrow_until": zero}),
        ("GET", "/api/v4/check_license_feature", {**export, "hardware_id": "a"}),
        ("POST", "/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": 5}),
        ("POST", "/api/v4/add_feature_consumption", {"product": "demo", "feature": "render", "consumptions": 2}),
        ("GET", "/api/v4/license", {}),
        ("GET", "/api/v4/license", {"product": "demo"}),
        ("GET", "/api/v4/health", {}),
        ("POST", "/api/v4/featureRelease", {**export, "user": "a"}),
        ("POST", "/api/v4/featureRegister", {**export, "user": "c", "borrow_until": later}),
        ("GET", "/api/v4/license", {}),
        ("POST", "/api/v4/feature_release", {**export, "user": "b"}),
        ("POST", "/api/v4/featureRegister", {**export, "user": "a"}),
        ("POST", "/api/v4/floating/feature_release", {**export, "hardware_id": "a"}),
        ("GET", "/api/v4/featureRelease/all", {}),
        ("GET", "/api/v4/feature_release/all", {}),
        ("POST", "/api/v4/unregister", {"product": "demo", "user": "a"}),
        ("GET", "/api/v4/unregister/all", {}),
        ("GET", "/api/v4/license", {}),
        # The floating/ paths of the Go, C++ and Swift SDKs (Go's keys: `User`, `Product`).
        ("POST", "/api/v4/floating/register", {"Product": "demo", "User": "g"}),
        ("POST", "/api/v4/floating/borrow", {"product": "demo", "user": "h", "borrowed_until": later}),
        ("POST", "/api/v4/floating/add_consumption", {"product": "demo", "consumptions": 1}),
        ("POST", "/api/v4/floating/add_feature_consumption", {**export, "feature": "render", "consumptions": 1}),
        ("GET", "/api/v4/floating/license", {"Product": "demo"}),
        ("GET", "/api/v4/floating/health", {}),
        ("POST", "/api/v4/floating/unregister", {"Product": "demo", "User": "g"}),
        ("POST", "/api/v4/floating/unregister/all", {}),
    ]
    seen: set[tuple[str, str]] = set()
    for method, path, data in calls:
        if method == "GET":
            request = api.client.get(path, params=data, headers=api.headers())
        else:
            request = api.client.post(path, json=data, headers=api.headers())
        async with request as resp:
            text = await resp.text()
        assert resp.status == 200, (path, text)
        assert "0001-01-01" not in text, (path, text)
        seen.add((method, path))
        if path == "/api/v4/borrow" and data["user"] == "b":
            # Zero on input means "the longest allowed", which is a real date.
            assert json.loads(text)["borrowed_until"] == "2026-01-18T12:00:00.000Z"
    from floatsrv.api.routes import ROUTES

    every = {(r.method, r.path) for r in ROUTES if r.path.startswith("/api/v4/")}
    # A document, an admin's file upload (it answers with file and license ids) and an activation request (a
    # signed file, not JSON): none carries LicenseSpring times.
    assert every - seen == {
        ("GET", "/api/v4/openapi.json"), ("POST", "/api/v4/license/upload"), ("POST", "/api/v4/license/generate")
    }  # fmt: skip
