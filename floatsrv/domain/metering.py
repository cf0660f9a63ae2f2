"""The metering rules, as pure functions: what a feature allows (its allowance, add-ons included) and
whether a quantity fits (a decision). The pre-check and the write both call `decide`, so whatever a check
allows, a write of the same quantity right after accepts; and a partial write accepts exactly `grantable`.

All quantities are integer thousandths ("milli"), credits too. Credit costs round up to 0.001 credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from floatsrv.db.addons import AddonRow
from floatsrv.models import ConsumptionModel, FeatureSpec, LicenseSpec
from floatsrv.quantity import MILLI, to_decimal

Reason = str  # included_limit_reached | overage_limit_reached | insufficient_credits | seat_limit_reached | ...


@dataclass(frozen=True, slots=True)
class Allowance:
    """What a feature allows per period, with active add-ons applied."""

    model: ConsumptionModel
    enabled: bool
    unlimited: bool
    soft: bool
    included_milli: int  # metered: included units; seats: the seat limit
    cap_milli: int | None  # metered: the most the period total may reach (None: no cap)
    overage_enabled: bool
    overage_unit_price: Decimal | None
    credits_per_unit_milli: int | None
    allow_negative: bool
    currency: str
    plan_credits_milli: int  # the license's plan credits per credits period (add-ons included)


class Balances(NamedTuple):
    current_milli: int  # units used this period (seats: seats held, in milli)
    plan_used_milli: int = 0
    purchased_milli: int = 0


class Decision(NamedTuple):
    allowed: bool
    reason: Reason | None
    grantable_milli: int  # the most a write with accept_partial would accept now
    remaining_milli: int | None  # None: unlimited
    credits_milli: int  # credits the whole request would cost
    estimated_amount: Decimal | None  # overage money the whole request would add


def credits_cost(quantity_milli: int, per_unit_milli: int) -> int:
    """Credits (milli) for a quantity: exact thousandths, rounded up."""
    return -(-quantity_milli * per_unit_milli // MILLI)


def split_credits(cost_milli: int, allowance: Allowance, balances: Balances) -> tuple[int, int]:
    """(from plan credits, from purchased credits): plan credits are spent first."""
    plan_left = max(0, allowance.plan_credits_milli - balances.plan_used_milli)
    from_plan = min(cost_milli, plan_left)
    return from_plan, cost_milli - from_plan


def allowance_of(
    license: LicenseSpec, feature: FeatureSpec, addons: tuple[AddonRow, ...], seat_limit: int | None = None
) -> Allowance:
    """The feature's allowance with the license's active add-ons applied (one add-on per feature)."""
    addon = next((a for a in addons if a.feature == feature.code), None)
    extra = addon.included_units if addon else 0
    plan_credits = license.plan_credits + sum(
        (Decimal(a.included_units) for a in addons if a.consumption_model == "credits"), Decimal(0)
    )
    model = feature.model
    included = feature.max_consumption + (extra if model == "metered" else 0)
    unlimited = feature.allow_unlimited_consumptions or (feature.allow_overages and feature.max_overages == 0)
    if model == "metered" and not unlimited and not feature.soft_limit:
        cap: int | None = (included + (feature.max_overages if feature.allow_overages else 0)) * MILLI
    else:
        cap = None
    price = feature.overage_unit_price
    if addon is not None and addon.overage_rate is not None:
        price = Decimal(addon.overage_rate)
    per_unit = feature.credits_per_unit
    if addon is not None and addon.credit_cost is not None and model == "credits":
        per_unit = Decimal(addon.credit_cost)
    return Allowance(
        model=model,
        enabled=feature.enabled or addon is not None,
        unlimited=(model == "metered" and unlimited) or (model == "credits" and per_unit == 0),
        soft=model == "metered" and feature.soft_limit,
        included_milli=(seat_limit or 0) * MILLI if model == "seats" else included * MILLI,
        cap_milli=cap,
        overage_enabled=model == "metered" and (feature.allow_overages or feature.soft_limit),
        overage_unit_price=price if model == "metered" else None,
        credits_per_unit_milli=int(per_unit * MILLI) if model == "credits" and per_unit is not None else None,
        allow_negative=feature.allow_negative_consumptions,
        currency=license.currency,
        plan_credits_milli=int(plan_credits * MILLI),
    )


def _overage(total_milli: int, included_milli: int) -> int:
    return max(0, total_milli - included_milli)


def decide(allowance: Allowance, balances: Balances, quantity_milli: int) -> Decision:
    """Would `quantity_milli` more fit now? The same answer for the check and for the write."""
    if not allowance.enabled:
        return Decision(False, "not_entitled", 0, 0, 0, None)
    current = balances.current_milli
    if allowance.model == "boolean":
        return Decision(True, None, quantity_milli, None, 0, None)
    if allowance.model == "seats":
        remaining = max(0, allowance.included_milli - current)
        granted = min(quantity_milli, remaining) // MILLI * MILLI
        fits = quantity_milli <= remaining
        return Decision(fits, None if fits else "seat_limit_reached", granted, remaining, 0, None)
    if allowance.model == "credits":
        per_unit = allowance.credits_per_unit_milli or 0
        cost = credits_cost(quantity_milli, per_unit)
        if per_unit == 0:
            return Decision(True, None, quantity_milli, None, 0, None)
        available = max(0, allowance.plan_credits_milli - balances.plan_used_milli) + balances.purchased_milli
        affordable = available * MILLI // per_unit
        fits = cost <= available
        return Decision(
            fits, None if fits else "insufficient_credits", min(quantity_milli, affordable), affordable, cost, None
        )
    # metered
    price = allowance.overage_unit_price
    added_overage = _overage(current + quantity_milli, allowance.included_milli) - _overage(
        current, allowance.included_milli
    )
    amount = price * to_decimal(added_overage) if price is not None else None
    if allowance.cap_milli is None:
        return Decision(True, None, quantity_milli, None, 0, amount)
    remaining = max(0, allowance.cap_milli - current)
    fits = quantity_milli <= remaining
    reason = None
    if not fits:
        reason = (
            "included_limit_reached" if allowance.cap_milli == allowance.included_milli else "overage_limit_reached"
        )
    return Decision(fits, reason, min(quantity_milli, remaining), remaining, 0, amount)
