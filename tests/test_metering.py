"""Native metering: every model x (under, at, over the limit) x accept_partial, with the pre-check and the
write agreeing; exact decimal quantities; time windows; batches; /v1 and /api/v4 on the same counters."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS, Api
from tests.metering_config import metering_license

pytestmark = BOTH_BACKENDS

_ids = itertools.count()


@pytest.fixture
async def meter(api_factory: Any) -> Api:
    api: Api = await api_factory(metering_license)
    return api


async def check(api: Api, feature: str, quantity: Any = 1) -> dict[str, Any]:
    status, body = await api.post("/v1/usage/check", {"license_id": 1001, "feature": feature, "quantity": quantity})
    assert status == 200, body
    assert body["success"] is True, body  # the native success envelope
    result: dict[str, Any] = body["data"]
    return result


async def event(api: Api, feature: str, quantity: Any, **extra: Any) -> tuple[int, Any]:
    body = {"event_id": f"ev-{next(_ids)}", "product": "demo", "feature": feature, "quantity": quantity, **extra}
    status, reply = await api.post("/v1/usage/events", body)
    if status == 200:
        assert reply["success"] is True, reply
    elif isinstance(reply, dict) and "error" in reply:
        assert reply["success"] is False, reply
    return status, reply


# (feature, quantity, allowed, reason, grantable): fresh license, nothing used yet.
CASES = [
    ("api", "4", True, None, "4"),  # metered, hard stop at 10
    ("api", "10", True, None, "10"),
    ("api", "10.5", False, "included_limit_reached", "10"),
    ("storage", "12", True, None, "12"),  # metered with overage up to 5 more
    ("storage", "15", True, None, "15"),
    ("storage", "15.001", False, "overage_limit_reached", "15"),
    ("logs", "4", True, None, "4"),  # metered, soft limit: everything fits, past 10 is flagged
    ("logs", "10", True, None, "10"),
    ("logs", "25", True, None, "25"),
    ("ai", "4", True, None, "4"),  # credits: 20 plan credits at 2.5 each = 8 units
    ("ai", "8", True, None, "8"),
    ("ai", "9", False, "insufficient_credits", "8"),
    ("clicks", "3", True, None, "3"),  # boolean, enabled
    ("beta", "1", False, "not_entitled", "0"),  # boolean, disabled
]


@pytest.mark.parametrize("accept_partial", [False, True])
@pytest.mark.parametrize(("feature", "quantity", "allowed", "reason", "grantable"), CASES)
async def test_check_then_write_agree(
    meter: Api, feature: str, quantity: str, allowed: bool, reason: str | None, grantable: str, accept_partial: bool
) -> None:
    result = await check(meter, feature, quantity)
    assert (result["allowed"], result["reason"], result["grantable"]) == (allowed, reason, grantable)
    status, body = await event(meter, feature, quantity, accept_partial=accept_partial)
    if allowed:
        assert status == 200, body
        assert (body["data"]["status"], body["data"]["accepted_quantity"]) == ("accepted", quantity)
    elif accept_partial and grantable != "0":
        assert status == 200, body
        data = body["data"]
        assert (data["status"], data["requested_quantity"], data["accepted_quantity"]) == (
            "partial",
            quantity,
            grantable,
        )
        assert data["rejected_quantity"] != "0"
    else:
        expected = {"not_entitled": (422, "not_entitled"), "insufficient_credits": (422, "insufficient_credits")}.get(
            reason or "", (422, "limit_exceeded")
        )
        assert (status, body["error"]["code"]) == expected, body
        assert (await check(meter, feature, "0.001"))["current"] == "0"  # a refusal changes nothing


async def _admin_addon(api: Api, **fields: Any) -> None:
    status, body = await api.post("/v1/addons", {"name": "More", "base_price": "10", **fields})
    assert status == 200, body
    status, body = await api.post("/v1/licenses/1001/addons", {"addon_id": body["data"]["id"]})
    assert status == 200, body


async def _grant_credits(api: Api, amount: str) -> None:
    status, body = await api.post("/v1/licenses/1001/credits", {"amount": amount})
    assert status == 200 and body["data"]["purchased_credits"] == amount, body


# (name, feature, setup steps, grantable left afterwards, the check's reason once over, the refusal's code).
# Setup steps are ("use", quantity), ("credits", purchased amount) or ("addon", add-on fields).
AFTER_USE = [
    ("metered_after_use", "api", [("use", "6.5")], "3.5", "included_limit_reached", "limit_exceeded"),
    ("overage_after_use", "storage", [("use", "11.25")], "3.75", "overage_limit_reached", "limit_exceeded"),
    # 20 plan credits, 7.5 spent; 6.001 purchased: 18.501 credits at 2.5 a unit pay for 7.4 units (7.401 would
    # cost 18.5025, rounded up to 18.503).
    ("purchased_credits", "ai", [("use", "3"), ("credits", "6.001")], "7.4", "insufficient_credits", None),
    (
        "metered_addon",
        "api",
        [("addon", {"feature": "api", "consumption_model": "metered", "included_units": 5}), ("use", "6.5")],
        "8.5",
        "included_limit_reached",
        "limit_exceeded",
    ),
    (
        "credits_addon_and_purchased",
        "ai",
        [
            ("use", "2"),  # 5 of the 20 plan credits, at 2.5 a unit
            ("addon", {"feature": "ai", "consumption_model": "credits", "included_units": 4, "credit_cost": "2"}),
            ("credits", "3.001"),
        ],
        "11",  # the add-on: 4 more plan credits, 2 a unit from now on; 19 plan + 3.001 purchased pay for 11.0005
        "insufficient_credits",
        None,
    ),
]


@pytest.mark.parametrize(
    ("mode", "accept_partial"), [("exact", False), ("exact", True), ("over", True), ("over", False)]
)
@pytest.mark.parametrize(
    ("feature", "setup", "grantable", "reason", "code"), [case[1:] for case in AFTER_USE], ids=[c[0] for c in AFTER_USE]
)
async def test_check_then_write_agree_after_use(
    meter: Api,
    feature: str,
    setup: list[tuple[str, Any]],
    grantable: str,
    reason: str,
    code: str | None,
    mode: str,
    accept_partial: bool,
) -> None:
    """Whatever is left once some of the allowance is used, with purchased credits or an add-on: a write of
    exactly the check's `grantable` is accepted in full, and anything beyond is refused (or clamped) exactly
    as the check said."""
    await meter.login("admin", "admin-password")
    for step, value in setup:
        if step == "use":
            assert (await event(meter, feature, value))[0] == 200
        elif step == "credits":
            await _grant_credits(meter, value)
        else:
            await _admin_addon(meter, **value)
    left = await check(meter, feature, 1000)
    assert (left["allowed"], left["reason"], left["grantable"]) == (False, reason, grantable), left
    exact = await check(meter, feature, grantable)
    assert (exact["allowed"], exact["reason"], exact["grantable"]) == (True, None, grantable), exact
    beyond = str(Decimal(grantable) + 1)
    over = await check(meter, feature, beyond)
    assert (over["allowed"], over["reason"], over["grantable"]) == (False, reason, grantable), over

    if mode == "exact":
        status, body = await event(meter, feature, grantable, accept_partial=accept_partial)
        assert status == 200, body
        assert (body["data"]["status"], body["data"]["accepted_quantity"]) == ("accepted", grantable)
    elif accept_partial:  # one unit more than grantable, clamped to exactly what the check said
        status, body = await event(meter, feature, beyond, accept_partial=True)
        assert status == 200, body
        data = body["data"]
        assert (data["status"], data["requested_quantity"], data["accepted_quantity"], data["rejected_quantity"]) == (
            "partial",
            beyond,
            grantable,
            "1",
        )
    else:  # one unit more than grantable, refused whole; then exactly grantable fits
        status, body = await event(meter, feature, beyond)
        assert (status, body["error"]["code"]) == (422, code or reason), body
        status, body = await event(meter, feature, grantable)
        assert status == 200 and body["data"]["accepted_quantity"] == grantable, body

    # Now nothing is left, and the check says so before the write proves it.
    full = await check(meter, feature, "0.001")
    assert (full["allowed"], full["reason"], full["grantable"]) == (False, reason, "0"), full
    status, body = await event(meter, feature, "0.001", accept_partial=accept_partial)
    assert (status, body["error"]["code"]) == (422, code or reason), body
    assert (await check(meter, feature, "0.001"))["current"] == full["current"]  # the refusal changed nothing


async def test_each_model_at_and_over_its_limit_after_use(meter: Api) -> None:
    assert (await event(meter, "api", 10))[0] == 200
    result = await check(meter, "api", "0.001")
    assert (result["allowed"], result["reason"], result["remaining"], result["current"]) == (
        False,
        "included_limit_reached",
        "0",
        "10",
    )
    assert (await event(meter, "storage", 11))[0] == 200
    result = await check(meter, "storage", 4)
    assert (result["allowed"], result["remaining"], result["estimated_amount"], result["limit_policy"]) == (
        True,
        "4",
        "2.00",
        "overage",
    )  # 4 more overage units at 0.5, in cents
    assert (await event(meter, "logs", 12))[1]["data"]["consumption"]["overage"] == "2"
    result = await check(meter, "logs", 1)
    assert (result["allowed"], result["limit_policy"], result["unlimited"], result["estimated_amount"]) == (
        True,
        "soft",
        True,
        "0.10",
    )
    assert (await event(meter, "ai", 7))[1]["data"]["consumption"]["credits_spent"] == "17.5"
    result = await check(meter, "ai", 1)
    assert (result["allowed"], result["plan_credits"], result["estimated_credits"], result["grantable"]) == (
        True,
        "2.5",
        "2.5",
        "1",
    )


async def test_seats_check_matches_feature_registration(meter: Api) -> None:
    assert (await check(meter, "export", 2))["allowed"] is True
    assert (await check(meter, "export", 3))["reason"] == "seat_limit_reached"
    status, body = await event(meter, "export", 1)
    assert (status, body["error"]["code"]) == (422, "feature_not_metered")
    for user in ("a", "b"):
        await meter.register(user)
        assert (await meter.post("/api/v4/featureRegister", {"product": "demo", "user": user, "feature": "export"}))[
            0
        ] == 200
    result = await check(meter, "export", 1)
    assert (result["allowed"], result["current"], result["remaining"]) == (False, "2", "0")


@pytest.mark.parametrize(
    ("quantity", "accepted"),
    [("0.001", "0.001"), (0.001, "0.001"), ("1.0000", "1"), (1e3, "1000"), ("12.5", "12.5"), (7, "7")],
)
async def test_exact_quantities(meter: Api, quantity: Any, accepted: str) -> None:
    status, body = await event(meter, "logs", quantity)
    assert status == 200, body
    assert body["data"]["accepted_quantity"] == accepted


@pytest.mark.parametrize(
    "quantity", ["0.0005", 0.0005, "1.2345", 0, "0", "NaN", "Infinity", "1e3", "abc", True, None, [], "", 10**13, "-0"]
)
async def test_invalid_quantities(meter: Api, quantity: Any) -> None:
    status, body = await event(meter, "logs", quantity)
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "invalid_quantity", "quantity"), body
    status, body = await meter.post("/v1/usage/check", {"product": "demo", "feature": "logs", "quantity": quantity})
    assert (status, body["error"]["code"]) == (400, "invalid_quantity"), body


async def test_negative_quantities(meter: Api) -> None:
    status, body = await event(meter, "logs", -1)
    assert (status, body["error"]["code"]) == (400, "negative_consumptions_not_allowed")
    assert (await event(meter, "refunds", 3))[0] == 200
    status, body = await event(meter, "refunds", "-1.5")
    assert status == 200 and body["data"]["consumption"]["current"] == "1.5"
    status, body = await event(meter, "refunds", -2)
    assert (status, body["error"]["code"]) == (422, "consumption_below_zero")
    status, body = await meter.post("/v1/usage/check", {"product": "demo", "feature": "refunds", "quantity": -1})
    assert (status, body["error"]["code"]) == (400, "invalid_quantity")  # a check asks about positive usage


async def test_occurred_at_windows_and_bucketing(meter: Api) -> None:
    now = meter.clock.now()  # 2026-01-15T12:00Z
    status, body = await event(meter, "api", 1, occurred_at=(now + timedelta(minutes=6)).isoformat())
    assert (status, body["error"]["code"]) == (400, "timestamp_in_future")
    assert (await event(meter, "api", 1, occurred_at=(now + timedelta(minutes=4)).isoformat()))[0] == 200
    status, body = await event(meter, "api", 1, occurred_at=(now - timedelta(days=35)).isoformat())
    assert (status, body["error"]["code"]) == (400, "event_too_old")
    status, body = await event(meter, "api", 10, occurred_at="2025-12-20T08:00:00Z")  # late, last month
    assert status == 200, body
    assert body["data"]["period"] == {"start": "2025-12-01T00:00:00.000Z", "end": "2026-01-01T00:00:00.000Z"}
    assert body["data"]["occurred_at"] == "2025-12-20T08:00:00.000Z"
    assert (await check(meter, "api"))["current"] == "1"  # this month's counter is untouched
    status, body = await event(meter, "api", 1, occurred_at="2025-12-21T08:00:00Z")
    assert (status, body["error"]["code"]) == (422, "limit_exceeded")  # December is full


async def test_batches_answer_per_event(meter: Api) -> None:
    events = [
        {"event_id": "b-1", "product": "demo", "feature": "api", "quantity": 4},
        {"event_id": "b-2", "product": "demo", "feature": "api", "quantity": "0.0001"},
        {"event_id": "b-3", "product": "demo", "feature": "nope", "quantity": 1},
        {"event_id": "b-4", "product": "demo", "feature": "api", "quantity": 7, "accept_partial": True},
        "not an object",
    ]
    status, body = await meter.post("/v1/usage/events", {"events": events})
    assert status == 200, body
    results = body["data"]["data"]
    # Every item: status accepted | partial | rejected (a string) and the integer HTTP status of the event alone.
    assert [(r["object"], r["status"], r["http_status"], r.get("error", {}).get("code")) for r in results] == [
        ("usage_event", "accepted", 200, None),
        ("error", "rejected", 400, "invalid_quantity"),
        ("error", "rejected", 404, "unsupported_product_feature"),
        ("usage_event", "partial", 200, None),
        ("error", "rejected", 400, "validation_error"),
    ]
    assert results[3]["accepted_quantity"] == "6"
    status, body = await meter.post("/v1/usage/events", {"events": [events[0]] * 101})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    status, body = await meter.post("/v1/usage/events", {"events": []})
    assert (status, body["error"]["code"]) == (400, "validation_error")


async def test_required_fields_and_unknown_keys(meter: Api) -> None:
    cases = [
        ({"product": "demo", "feature": "api", "quantity": 1}, "missing_parameters"),
        ({"event_id": "x", "feature": "api", "quantity": 1}, "missing_parameters"),
        (
            {"event_id": "x", "product": "demo", "feature": "api", "quantity": 1, "acceptPartial": True},
            "validation_error",
        ),
        ({"event_id": "with space", "product": "demo", "feature": "api", "quantity": 1}, "validation_error"),
        ({"event_id": "x", "license_id": 9, "feature": "api", "quantity": 1}, "license_not_found"),
        (
            {"event_id": "x", "product": "demo", "feature": "api", "quantity": 1, "accept_partial": "yes"},
            "validation_error",
        ),
    ]
    for body, code in cases:
        status, reply = await meter.post("/v1/usage/events", body)
        assert reply["error"]["code"] == code, (body, reply)


async def test_both_apis_share_the_counters(meter: Api) -> None:
    status, body = await meter.post(
        "/api/v4/add_feature_consumption", {"product": "demo", "feature": "api", "consumptions": 6, "user": "u"}
    )
    assert status == 200 and body["total_consumptions"] == 6
    assert (await check(meter, "api", 4))["current"] == "6"
    assert (await event(meter, "api", "3.5"))[0] == 200
    status, body = await meter.post(
        "/api/v4/add_feature_consumption", {"product": "demo", "feature": "api", "consumptions": 1, "user": "u"}
    )
    assert (status, body["code"]) == (400, "feature_not_enough_consumptions")  # 9.5 + 1 > 10
    status, body = await meter.register("u")
    import json

    api = next(f for f in json.loads(body["license_json"])["product_features"] if f["code"] == "api")
    assert (api["total_consumptions"], api["max_consumption"]) == (9, 10)  # v4 counts whole units
    status, body = await meter.post(
        "/api/v4/add_feature_consumption", {"product": "demo", "feature": "ai", "consumptions": 9, "user": "u"}
    )
    assert (status, body["code"]) == (400, "feature_not_enough_consumptions")  # credits pay for 8
    status, body = await meter.post(
        "/api/v4/add_feature_consumption", {"product": "demo", "feature": "ai", "consumptions": 2, "user": "u"}
    )
    assert status == 200 and (body["total_consumptions"], body["max_consumption"]) == (2, 8)
