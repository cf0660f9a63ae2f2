"""Seat semantics through real HTTP: heartbeat, limits, expiry and borrow with a moving clock, end reasons."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.conftest import Api


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


async def test_borrow_limits(api: Api, api_factory) -> None:
    def too_far() -> str:
        return (api.clock.now() + timedelta(hours=73)).isoformat()

    for until in ("2020-01-01T00:00:00Z", too_far()):
        status, body = await api.post("/api/v4/borrow", {"product": "demo", "user": "a", "borrowed_until": until})
        assert (status, body["code"]) == (400, "borrow_until_not_valid")
    assert await api.seats() == []  # a refused borrow takes no seat

    def no_borrow(data: dict) -> None:
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


async def test_license_id_addressing(api_factory) -> None:
    def two_licenses(data: dict) -> None:
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


async def test_license_states(api_factory) -> None:
    def states(data: dict) -> None:
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


async def test_removing_a_license_from_config_ends_its_seats(tmp_path) -> None:
    from tests.conftest import make_config, start_api

    config = make_config(tmp_path)
    api, client = await start_api(config)
    await api.login()
    await api.register("a")
    await client.close()

    def gone(data: dict) -> None:
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
