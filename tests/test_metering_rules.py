"""The metering rules of domain/metering.py as tables, without HTTP or a database: what a feature allows (its
allowance, add-ons applied) and what a quantity gets (the decision the check and the write share)."""

# One table row per line reads best; the rows are longer than the line limit.
# ruff: noqa: E501

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from floatsrv.db.addons import AddonRow
from floatsrv.domain.metering import Allowance, Balances, allowance_of, credits_cost, decide, split_credits
from floatsrv.models import FeatureSpec, LicenseSpec

M = 1000  # milli


def feature(**fields: Any) -> FeatureSpec:
    return FeatureSpec.model_validate({"code": "f", **fields})


def license_with(f: FeatureSpec, **fields: Any) -> LicenseSpec:
    return LicenseSpec.model_validate({"id": 1, "product": "p", "floating_users": 1, "features": [f], **fields})


def addon(model: str, units: int, **fields: Any) -> AddonRow:
    return AddonRow("a1", "a", "", "0", "f", model, units, fields.get("rate"), fields.get("cost"), 0, 0, None)


def allowance(
    f: FeatureSpec, addons: tuple[AddonRow, ...] = (), seat_limit: int | None = None, **lic: Any
) -> Allowance:
    return allowance_of(license_with(f, **lic), f, addons, seat_limit)


METERED = {"feature_type": "consumption", "max_consumption": 10}

ALLOWANCES: list[tuple[str, FeatureSpec, tuple[AddonRow, ...], dict[str, Any], dict[str, Any]]] = [
    ("hard limit", feature(**METERED), (), {}, {"included_milli": 10 * M, "cap_milli": 10 * M, "unlimited": False}),
    ("overage up to 5", feature(**METERED, allow_overages=True, max_overages=5), (), {},
     {"cap_milli": 15 * M, "overage_enabled": True}),
    ("unlimited overage", feature(**METERED, allow_overages=True, max_overages=0), (), {},
     {"cap_milli": None, "unlimited": True}),
    ("soft limit", feature(**METERED, soft_limit=True), (), {}, {"cap_milli": None, "soft": True, "overage_enabled": True}),
    ("add-on adds units", feature(**METERED), (addon("metered", 20),), {}, {"included_milli": 30 * M, "cap_milli": 30 * M}),
    ("add-on's rate wins", feature(**METERED, overage_unit_price="0.5", allow_overages=True, max_overages=1),
     (addon("metered", 0, rate="0.2"),), {}, {"overage_unit_price": Decimal("0.2")}),
    ("seats from the seat limit", feature(floating_users=2), (), {"seat_limit": 3}, {"model": "seats", "included_milli": 3 * M}),
    ("disabled boolean", feature(enabled=False), (), {}, {"model": "boolean", "enabled": False}),
    ("an add-on enables it", feature(consumption_model="boolean", enabled=False), (addon("boolean", 0),), {}, {"enabled": True}),
    ("credits per unit", feature(consumption_model="credits", credits_per_unit="2.5"), (), {"plan_credits": 20},
     {"credits_per_unit_milli": 2500, "plan_credits_milli": 20 * M}),
    ("credits add-on adds plan credits", feature(consumption_model="credits", credits_per_unit="1"),
     (addon("credits", 5, cost="0.5"),), {"plan_credits": 20}, {"plan_credits_milli": 25 * M, "credits_per_unit_milli": 500}),
    ("free credits feature is unlimited", feature(consumption_model="credits", credits_per_unit="0"), (), {},
     {"unlimited": True}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "spec", "addons", "extra", "expected"), ALLOWANCES, ids=[row[0] for row in ALLOWANCES]
)
def test_allowance(
    name: str, spec: FeatureSpec, addons: tuple[AddonRow, ...], extra: dict[str, Any], expected: dict[str, Any]
) -> None:
    seat_limit = extra.pop("seat_limit", None)
    got = allowance(spec, addons, seat_limit, **extra)
    assert {key: getattr(got, key) for key in expected} == expected


DECISIONS: list[tuple[str, Allowance, Balances, int, tuple[bool, str | None, int, int | None]]] = [
    # (name, allowance, balances, quantity) -> (allowed, reason, grantable, remaining)
    ("fits", allowance(feature(**METERED)), Balances(4 * M), 6 * M, (True, None, 6 * M, 6 * M)),
    ("one too many", allowance(feature(**METERED)), Balances(4 * M), 7 * M, (False, "included_limit_reached", 6 * M, 6 * M)),
    ("into overage", allowance(feature(**METERED, allow_overages=True, max_overages=5)), Balances(12 * M), 3 * M,
     (True, None, 3 * M, 3 * M)),
    ("past the overage", allowance(feature(**METERED, allow_overages=True, max_overages=5)), Balances(12 * M), 4 * M,
     (False, "overage_limit_reached", 3 * M, 3 * M)),
    ("soft limit accepts", allowance(feature(**METERED, soft_limit=True)), Balances(50 * M), 1 * M, (True, None, M, None)),
    ("not entitled", allowance(feature(enabled=False)), Balances(0), M, (False, "not_entitled", 0, 0)),
    ("boolean counts", allowance(feature()), Balances(0), 2 * M, (True, None, 2 * M, None)),
    ("last seat", allowance(feature(floating_users=2), seat_limit=2), Balances(M), M, (True, None, M, M)),
    ("no seat", allowance(feature(floating_users=2), seat_limit=2), Balances(2 * M), M, (False, "seat_limit_reached", 0, 0)),
    ("credits affordable", allowance(feature(consumption_model="credits", credits_per_unit="2.5"), plan_credits=10),
     Balances(0, 0, 0), 4 * M, (True, None, 4 * M, 4 * M)),
    ("credits short", allowance(feature(consumption_model="credits", credits_per_unit="2.5"), plan_credits=10),
     Balances(0, 5 * M, 0), 3 * M, (False, "insufficient_credits", 2 * M, 2 * M)),
    ("purchased credits count", allowance(feature(consumption_model="credits", credits_per_unit="2.5"), plan_credits=10),
     Balances(0, 10 * M, 5 * M), 2 * M, (True, None, 2 * M, 2 * M)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "rules", "balances", "quantity", "expected"), DECISIONS, ids=[d[0] for d in DECISIONS]
)
def test_decision(
    name: str, rules: Allowance, balances: Balances, quantity: int, expected: tuple[bool, str | None, int, int | None]
) -> None:
    decision = decide(rules, balances, quantity)
    assert (decision.allowed, decision.reason, decision.grantable_milli, decision.remaining_milli) == expected


def test_overage_money_counts_only_the_units_past_the_included_ones() -> None:
    rules = allowance(feature(**METERED, allow_overages=True, max_overages=0, overage_unit_price="0.5"))
    assert decide(rules, Balances(8 * M), 5 * M).estimated_amount == Decimal("1.5")  # 3 of 5 are overage
    assert decide(rules, Balances(2 * M), 5 * M).estimated_amount == Decimal("0")


@pytest.mark.parametrize(
    ("quantity", "per_unit", "cost"), [(1000, 2500, 2500), (1, 2500, 3), (1, 1, 1), (333, 3000, 999), (0, 5000, 0)]
)
def test_credit_costs_round_up_to_the_thousandth(quantity: int, per_unit: int, cost: int) -> None:
    assert credits_cost(quantity, per_unit) == cost


def test_plan_credits_are_spent_first() -> None:
    rules = allowance(feature(consumption_model="credits", credits_per_unit="1"), plan_credits=10)
    assert split_credits(4 * M, rules, Balances(0, 8 * M, 100 * M)) == (2 * M, 2 * M)
    assert split_credits(4 * M, rules, Balances(0, 0, 0)) == (4 * M, 0)
