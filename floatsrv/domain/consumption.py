"""LicenseSpring consumption (/api/v4): add (or with permission, subtract) units to a license or feature.

License level follows LicenseSpring's rule: unlimited wins; overage allowed with max_overages 0 is
unlimited overage; otherwise the period total may reach max + overages. Unlimited or not, it never passes
`models.MAX_COUNT` (a reply must be able to carry it). Feature level goes through the native metering rules
(`domain.usage`), so add-ons and credits apply to both APIs alike. A request over the limit is rejected
whole and changes nothing. Counters live per period, so a periodic reset happens
exactly at the boundary: the first write of a new period simply lands in a fresh counter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from floatsrv.clock import Clock
from floatsrv.db import consumption as db_consumption
from floatsrv.db.store import AfterBatch
from floatsrv.domain import usage
from floatsrv.domain.context import Domain
from floatsrv.domain.denials import recorded
from floatsrv.domain.license import License
from floatsrv.domain.seats import Target
from floatsrv.domain.state import LicenseState, check_usable, counter_key, state_after_batch
from floatsrv.domain.usage import metered_feature
from floatsrv.errors import (
    ConsumptionBelowZero,
    FeatureNotConsumption,
    LicenseConsumptionExhausted,
    LicenseNotConsumption,
    NegativeConsumptionsNotAllowed,
)
from floatsrv.models import MAX_COUNT, ConsumptionLimits, FeatureSpec
from floatsrv.quantity import MILLI
from floatsrv.times import to_us


class ConsumeRequest(NamedTuple):
    target: Target
    quantity: int  # whole units, as LicenseSpring v1 clients send them
    feature: str | None = None  # None: the license-level counter
    user: str | None = None
    principal: str | None = None
    address: str | None = None  # the caller's (for the denial log)
    # A client may ask for *less* overage than the license grants (LicenseSpring SDK's req_overages);
    # it can never widen the license's own limits.
    allow_overages: bool | None = None
    max_overages: int | None = None
    source: str = "api_v4"


class ConsumeResult(NamedTuple):
    state: LicenseState
    feature: FeatureSpec | None
    limits: ConsumptionLimits
    total_milli: int


def _narrowed(limits: ConsumptionLimits, allow: bool | None, max_overages: int | None) -> ConsumptionLimits:
    if allow is None and max_overages is None:
        return limits
    allow_overages = limits.allow_overages and allow is not False
    granted = limits.max_overages
    if max_overages is not None and max_overages > 0:
        granted = max_overages if granted == 0 else min(granted, max_overages)
    elif max_overages == 0:
        allow_overages = False
    return limits.model_copy(update={"allow_overages": allow_overages, "max_overages": granted})


def _feature(
    conn: sqlite3.Connection,
    license: License,
    request: ConsumeRequest,
    now: datetime,
    feature_ids: Mapping[str, int],
    clock: Clock,
) -> AfterBatch[ConsumeResult]:
    """LicenseSpring feature consumption: the native metering rules, refused whole (no partial writes)."""
    assert request.feature is not None
    feature = metered_feature(license, request.feature, now)
    if not feature.is_consumption:
        raise FeatureNotConsumption(f"feature {feature.code!r} is not a consumption feature", feature=feature.code)
    usage.count(  # the answer shows the counter as the whole batch leaves it, not this unit's outcome
        conn,
        license,
        feature,
        usage.UsageRequest(
            request.target,
            feature.code,
            request.quantity * MILLI,
            user=request.user,
            principal=request.principal,
            source=request.source,
        ),
        now,
        feature_ids.get(feature.code),
    )
    return state_after_batch(
        license,
        clock,
        feature_ids,
        lambda state: ConsumeResult(state, feature, feature, state.feature(feature.code).total_milli),
    )


async def add_consumption(domain: Domain, request: ConsumeRequest) -> ConsumeResult:
    """Add `quantity` units. Raises the LicenseSpring-coded errors; on any error nothing changes."""
    license = domain.catalog.resolve(request.target.product, request.target.license_id)
    spec = license.spec
    feature_ids = domain.feature_ids(license)

    def unit(conn: sqlite3.Connection) -> AfterBatch[ConsumeResult]:
        now = domain.clock.now()
        check_usable(spec, domain.licensing.time.later(now))
        if request.feature is not None:
            return _feature(conn, license, request, now, feature_ids, domain.clock)
        if not spec.is_consumption:
            raise LicenseNotConsumption(f"license {spec.id} is a {spec.license_type} license", license_id=spec.id)
        limits = _narrowed(spec, request.allow_overages, request.max_overages)
        if request.quantity < 0 and not limits.allow_negative_consumptions:
            raise NegativeConsumptionsNotAllowed("this license does not allow negative consumptions")
        key, period = counter_key(license, None, now)
        current = db_consumption.total(conn, key)
        wanted = current + request.quantity * MILLI
        capacity = limits.capacity(spec.max_consumptions)
        if capacity is None:  # unlimited: up to the most a count may hold
            capacity = MAX_COUNT
        if request.quantity > 0 and wanted > capacity * MILLI:
            raise LicenseConsumptionExhausted(
                f"adding {request.quantity} would make {wanted // MILLI} of at most {capacity} this period",
                total=current // MILLI,
                requested=request.quantity,
                capacity=capacity,
            )
        if wanted < 0:
            raise ConsumptionBelowZero(f"the total is {current // MILLI}; it cannot go below zero")
        if request.quantity != 0:
            db_consumption.add(
                conn,
                key,
                period_end=to_us(period.end) if period else None,
                quantity_milli=request.quantity * MILLI,
                user=request.user,
                principal=request.principal,
                source=request.source,
                now=to_us(now),
                counter_exists=current != 0,  # a total was read from the counter's row
            )
        return state_after_batch(
            license, domain.clock, feature_ids, lambda state: ConsumeResult(state, None, limits, state.total_milli)
        )

    return await recorded(domain, domain.store.write_then_read(unit), spec.id, request.feature or "", request)
