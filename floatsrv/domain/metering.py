"""The metering rules, as pure functions: what a feature allows (its allowance, add-ons included) and
whether a quantity fits (a decision). The pre-check and the write both call `decide`, so whatever a check
allows, a write of the same quantity right after accepts; and a partial write accepts exactly `grantable`.

All quantities are integer thousandths ("milli"), credits too. Credit costs round up to 0.001 credit. No period
total passes `models.MAX_COUNT` units (`count_limit_reached`), and no allowance is shown past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from floatsrv.db.addons import AddonRow
from floatsrv.models import MAX_COUNT, ConsumptionLimits, ConsumptionModel, FeatureSpec, LicenseSpec
from floatsrv.money import round_money
from floatsrv.quantity import MILLI, to_decimal

Reason = str  # included_limit_reached | overage_limit_reached | insufficient_credits | seat_limit_reached | ...
# The most a period total may hold: MAX_COUNT whole units, so a reply can carry it (and it fits 64 bits).
MAX_TOTAL_MILLI = MAX_COUNT * MILLI


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
    estimated_amount: Decimal | None  # overage money the request adds if accepted, in the currency's minor unit


@dataclass(frozen=True, slots=True)
class Limits:
    """A feature's limits as every view shows them (/api/v4, /v1, the CLI, metrics), from `limits` alone."""

    included_milli: int  # metered: included units, add-ons too; seats: the seat limit; credits: units paid for
    capacity_milli: int | None  # the most the period total may reach; None: no cap (unlimited, soft limit)
    overage_milli: int | None  # metered: how far past included the total may go (None: no bound); others 0
    unlimited: bool  # no cap at all (unlimited, soft limit, free credits, boolean features)
    soft: bool  # a soft limit: past included is accepted and reported as overage


def limits(allowance: Allowance, balances: Balances) -> Limits:
    """The effective limits of a feature now. Credits features read as the units their credits pay for: those
    used this period plus those the remaining credits can still buy."""
    if allowance.model == "credits":
        room = decide(allowance, balances, 0).remaining_milli
        if room is None:  # free: whatever was used is "paid for"
            return Limits(balances.current_milli, None, 0, True, False)
        paid = balances.current_milli + room
        return Limits(paid, paid, 0, False, False)
    if allowance.model == "seats":
        return Limits(allowance.included_milli, allowance.included_milli, 0, False, False)
    if allowance.model == "boolean":
        return Limits(0, None, 0, True, False)
    cap = allowance.cap_milli
    if cap is not None:
        overage: int | None = cap - allowance.included_milli
    else:
        overage = None if allowance.overage_enabled or allowance.unlimited else 0
    return Limits(allowance.included_milli, cap, overage, cap is None, allowance.soft)


def license_limits(spec: ConsumptionLimits, maximum: int) -> Limits:
    """The limits of a consumption license's own total (no add-on applies to it)."""
    capacity = spec.capacity(maximum)
    overage = (capacity - maximum) if capacity is not None else None
    return Limits(maximum * MILLI, None if capacity is None else capacity * MILLI,
                  None if overage is None else overage * MILLI, capacity is None, False)  # fmt: skip


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
        cap: int | None = min((included + (feature.max_overages if feature.allow_overages else 0)) * MILLI,
                              MAX_TOTAL_MILLI)  # fmt: skip
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
        included_milli=min((seat_limit or 0) if model == "seats" else included, MAX_COUNT) * MILLI,
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
    """Would `quantity_milli` more fit now? The same answer for the check and for the write. Whatever the
    allowance, a period total never passes MAX_TOTAL_MILLI (seats are held, not counted)."""
    decision = _decide(allowance, balances, quantity_milli)
    if allowance.model == "seats":
        return decision
    room = max(0, MAX_TOTAL_MILLI - balances.current_milli)
    if decision.grantable_milli <= room and quantity_milli <= room and (decision.remaining_milli or 0) <= room:
        return decision  # far from the bound (every real total): nothing to cap, no new tuple on the hot path
    remaining = None if decision.remaining_milli is None else min(decision.remaining_milli, room)
    grantable = min(decision.grantable_milli, room)
    if decision.allowed and quantity_milli > room:
        return Decision(False, "count_limit_reached", grantable, remaining, decision.credits_milli, None)
    return decision._replace(grantable_milli=grantable, remaining_milli=remaining)


def _decide(allowance: Allowance, balances: Balances, quantity_milli: int) -> Decision:
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
    amount = round_money(price * to_decimal(added_overage), allowance.currency) if price is not None else None
    if allowance.cap_milli is None:
        return Decision(True, None, quantity_milli, None, 0, amount)
    remaining = max(0, allowance.cap_milli - current)
    fits = quantity_milli <= remaining
    reason = None
    if not fits:
        reason = (
            "included_limit_reached" if allowance.cap_milli == allowance.included_milli else "overage_limit_reached"
        )
    # Money only for what would be accepted: a refused quantity adds nothing to pay.
    return Decision(fits, reason, min(quantity_milli, remaining), remaining, 0, amount if fits else None)
