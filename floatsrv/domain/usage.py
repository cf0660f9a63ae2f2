"""Native usage metering: the pre-check and idempotent usage events, on the same counters as /api/v4.

An event is one write unit: its id is claimed, its quantity counted (clamped with accept_partial), its
credits spent and its outcome stored, all in one transaction, so a retry can never count twice and a
failed write leaves no claim behind. Usage is bucketed by when it happened (`occurred_at`), within the
configured skew and lateness windows.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from floatsrv.db import addons as db_addons
from floatsrv.db import consumption as db_consumption
from floatsrv.db import credits as db_credits
from floatsrv.db.addons import AddonRow
from floatsrv.db.consumption import CounterKey
from floatsrv.domain.context import Domain
from floatsrv.domain.denials import recorded
from floatsrv.domain.license import License
from floatsrv.domain.metering import Balances, Decision, decide, split_credits
from floatsrv.domain.outcomes import OUTCOME_FORMAT, decode_outcome, encode_outcome
from floatsrv.domain.outcomes import Outcome as Outcome  # re-exported for the API layer
from floatsrv.domain.seats import Target
from floatsrv.domain.state import FeatureState, Period, bounds, check_usable, current_period, feature_state
from floatsrv.errors import (
    ConsumptionBelowZero,
    EventTooOld,
    FeatureExpired,
    FeatureNotFound,
    FeatureNotMetered,
    IdempotencyConflict,
    InsufficientCredits,
    NegativeConsumptionsNotAllowed,
    NotEntitled,
    TimestampInFuture,
    UsageLimitExceeded,
)
from floatsrv.models import FeatureSpec
from floatsrv.times import from_us, iso, to_us


class UsageRequest(NamedTuple):
    target: Target
    feature: str
    quantity_milli: int
    event_id: str | None = None
    occurred_at: datetime | None = None
    accept_partial: bool = False
    user: str | None = None
    principal: str | None = None
    source: str = "api_v1"
    address: str | None = None  # the caller's (for the denial log)


@dataclass(frozen=True, slots=True)
class CheckResult:
    license: License
    state: FeatureState
    quantity_milli: int
    decision: Decision
    unusable: str | None  # a license-state code when the license itself cannot be used now


def metered_feature(license: License, code: str, at: datetime) -> FeatureSpec:
    feature = license.spec.feature(code)
    if feature is None:
        raise FeatureNotFound(f"license {license.id} has no feature {code!r}", feature=code, param="feature")
    if feature.expiry_date is not None and feature.expiry_date <= at:
        raise FeatureExpired(f"feature {code!r} expired at {iso(feature.expiry_date)}", feature=code)
    return feature


def addons_in_force(
    conn: sqlite3.Connection, license: License, feature: FeatureSpec, at: datetime, now: datetime
) -> tuple[AddonRow, ...]:
    """The add-ons a use at `at` is judged by: those in force at the end of its period. For the current period
    (or usage that never resets) that is now; a late event of an earlier period is judged by the add-ons that
    were active when that period ended, not by today's (docs/metering.md, "Late events")."""
    kind = license.spec.credits_period if feature.model == "credits" else None
    if kind is not None:
        period: Period | None = bounds(license, kind, at)
    else:
        period = current_period(license, feature, at)
    if period is None or now < period.end:
        return db_addons.active_addons(conn, license.id)
    return db_addons.active_at(conn, license.id, to_us(period.end) - 1)


def _limit_error(decision: Decision, request: UsageRequest, state: FeatureState) -> Exception:
    detail = {
        "requested": request.quantity_milli,
        "grantable": decision.grantable_milli,
        "reason": decision.reason,
        "in_use_milli": state.balances.current_milli,  # for the denial log
        "limit_milli": state.allowance.cap_milli,
    }
    if decision.reason == "not_entitled":
        return NotEntitled(f"feature {request.feature!r} is not enabled on this license", **detail)
    if decision.reason == "insufficient_credits":
        return InsufficientCredits(f"not enough credits for {request.feature!r}", **detail)
    return UsageLimitExceeded(f"{request.feature!r} has no room for this quantity ({decision.reason})", **detail)


class Counted(NamedTuple):
    """What `count` did. A tuple, not a frozen dataclass: /api/v4 consumption makes one per request."""

    state: FeatureState
    accepted_milli: int
    total_milli: int
    credits_spent_milli: int
    plan_credits_left_milli: int | None
    purchased_credits_left_milli: int | None
    from_plan_milli: int
    from_purchased_milli: int
    received_at: int
    occurred_at: datetime
    event_row: int | None


def count(
    conn: sqlite3.Connection,
    license: License,
    feature: FeatureSpec,
    request: UsageRequest,
    now: datetime,
    feature_id: int | None,
) -> Counted:
    """Count usage of a feature inside the caller's transaction. Raises a LimitReached/NotEntitled error."""
    spec = license.spec
    at = request.occurred_at or now
    if feature.model == "seats":
        raise FeatureNotMetered(
            f"feature {feature.code!r} is metered in seats: use featureRegister", feature=feature.code
        )
    if request.quantity_milli < 0 and not feature.allow_negative_consumptions:
        raise NegativeConsumptionsNotAllowed(
            f"feature {feature.code!r} does not allow negative quantities", param="quantity"
        )
    addons = addons_in_force(conn, license, feature, at, now)
    state = feature_state(conn, license, feature, at, now, addons, feature_id)
    decision = decide(state.allowance, state.balances, max(request.quantity_milli, 0))
    accepted = request.quantity_milli
    if request.quantity_milli > 0 and not decision.allowed:
        if not request.accept_partial or decision.grantable_milli <= 0:
            raise _limit_error(decision, request, state)
        accepted = decision.grantable_milli
    if request.quantity_milli < 0 and state.total_milli + accepted < 0:
        raise ConsumptionBelowZero(f"the period total is {state.total_milli / 1000}; it cannot go below zero")
    t = to_us(now)
    key = state.counter or CounterKey(spec.id, feature.code, 0)  # no counter read: a feature without periods
    event_row = None
    if accepted != 0:
        exists = state.total_milli != 0  # a total was read from the counter's row
        event_row = db_consumption.add(
            conn,
            key,
            period_end=to_us(state.period.end) if state.period and not exists else None,
            quantity_milli=accepted,
            user=request.user,
            principal=request.principal,
            source=request.source,
            now=t,
            occurred_at=t if at is now else to_us(at),
            event_id=request.event_id,
            counter_exists=exists,
        )
    spent = from_plan = from_purchased = 0
    plan_left = purchased_left = None
    if state.allowance.model == "credits":
        assert state.credits_period is not None
        spent = decide(state.allowance, state.balances, accepted).credits_milli
        from_plan, from_purchased = split_credits(spent, state.allowance, state.balances)
        for pool, amount in (("plan", from_plan), ("purchased", from_purchased)):
            if amount:
                db_credits.append(
                    conn,
                    license_id=spec.id,
                    at=t,
                    kind="spend",
                    pool=pool,
                    amount_milli=-amount,
                    period_start=to_us(state.credits_period.start) if pool == "plan" else None,
                    feature=feature.code,
                    usage_event_id=event_row,
                    actor=request.principal,
                )
        plan_left = max(0, state.allowance.plan_credits_milli - state.balances.plan_used_milli - from_plan)
        purchased_left = state.balances.purchased_milli - from_purchased
    total = state.total_milli + accepted
    return Counted(
        state, accepted, total, spent, plan_left, purchased_left, from_plan, from_purchased, t, at, event_row
    )


def _outcome(
    conn: sqlite3.Connection, license: License, feature: FeatureSpec, request: UsageRequest, counted: Counted
) -> Outcome:
    """The outcome of a counted event (stored with its id, when it has one, for replays)."""
    state, total = counted.state, counted.total_milli
    after_balances = Balances(
        total,
        state.balances.plan_used_milli + counted.from_plan_milli,
        state.balances.purchased_milli - counted.from_purchased_milli,
    )
    after = decide(state.allowance, after_balances, 0)
    outcome = Outcome(
        license_id=license.spec.id,
        feature=feature.code,
        model=feature.model,
        event_id=request.event_id,
        status="accepted" if counted.accepted_milli == request.quantity_milli else "partial",
        requested_milli=request.quantity_milli,
        accepted_milli=counted.accepted_milli,
        occurred_at=to_us(counted.occurred_at),
        received_at=counted.received_at,
        period_start=to_us(state.period.start) if state.period else None,
        period_end=to_us(state.period.end) if state.period else None,
        current_milli=total,
        remaining_milli=after.remaining_milli,
        included_milli=state.allowance.included_milli,
        overage_milli=max(0, total - state.allowance.included_milli) if feature.model == "metered" else 0,
        credits_spent_milli=counted.credits_spent_milli,
        plan_credits_left_milli=counted.plan_credits_left_milli,
        purchased_credits_left_milli=counted.purchased_credits_left_milli,
    )
    if request.event_id is not None:
        assert counted.event_row is not None
        db_consumption.remember_event(
            conn,
            license_id=license.spec.id,
            event_id=request.event_id,
            request_hash=request_hash(request),
            outcome=encode_outcome(outcome),
            outcome_format=OUTCOME_FORMAT,
            usage_event_id=counted.event_row,
            now=counted.received_at,
        )
    return outcome


def request_hash(request: UsageRequest) -> bytes:
    """What makes two deliveries "the same event": everything the client chose, not when it arrived."""
    body = {
        "feature": request.feature,
        "quantity": request.quantity_milli,
        "occurred_at": to_us(request.occurred_at) if request.occurred_at else None,
        "accept_partial": request.accept_partial,
        "user": request.user,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()


async def record(domain: Domain, request: UsageRequest) -> Outcome:
    """Record one usage event (replays of an accepted event id return its original outcome)."""
    license = domain.catalog.resolve(request.target.product, request.target.license_id)
    feature_ids = domain.feature_ids(license)
    windows = domain.usage

    def unit(conn: sqlite3.Connection) -> Outcome:
        now = domain.clock.now()
        if request.event_id is not None:
            seen = db_consumption.seen_event(conn, license.id, request.event_id)
            if seen is not None:
                stored_hash, stored, version = seen
                if stored_hash != request_hash(request):
                    raise IdempotencyConflict(
                        f"event_id {request.event_id!r} was already used with a different body", param="event_id"
                    )
                return decode_outcome(stored, version, replay=True)
        at = request.occurred_at or now
        if at > now + windows.max_future_skew:
            raise TimestampInFuture(
                f"occurred_at {iso(at)} is in the future (server time {iso(now)})", param="occurred_at"
            )
        if at < now - windows.max_lateness:
            raise EventTooOld(
                f"occurred_at {iso(at)} is older than the {windows.max_lateness.days}-day window", param="occurred_at"
            )
        check_usable(license.spec, domain.licensing.time.later(now))
        feature = metered_feature(license, request.feature, at)
        counted = count(conn, license, feature, request, now, feature_ids.get(feature.code))
        return _outcome(conn, license, feature, request, counted)

    return await recorded(domain, domain.store.write(unit), license.id, request.feature, request)


async def check(domain: Domain, target: Target, code: str, quantity_milli: int) -> CheckResult:
    """Would this quantity be accepted now? Changes nothing."""
    license = domain.catalog.resolve(target.product, target.license_id)
    feature_ids = domain.feature_ids(license)

    def unit(conn: sqlite3.Connection) -> CheckResult:
        now = domain.clock.now()
        feature = metered_feature(license, code, now)
        addons = db_addons.active_addons(conn, license.id)
        state = feature_state(conn, license, feature, now, now, addons, feature_ids.get(code))
        unusable = None
        try:
            check_usable(license.spec, domain.licensing.time.later(now))
        except Exception as exc:  # noqa: BLE001 -- a license-state error becomes the check's reason
            unusable = getattr(exc, "code", "license_unusable")
        decision = decide(state.allowance, state.balances, quantity_milli)
        if unusable is not None:
            decision = Decision(
                False, unusable, 0, decision.remaining_milli, decision.credits_milli, decision.estimated_amount
            )
        return CheckResult(license, state, quantity_milli, decision, unusable)

    return await domain.store.read(unit)


def outcome_period(outcome: Outcome) -> tuple[datetime, datetime] | None:
    if outcome.period_start is None or outcome.period_end is None:
        return None
    return from_us(outcome.period_start), from_us(outcome.period_end)


async def compact_events(domain: Domain, retention_days: int, chunk: int = 2000) -> int:
    """Compact raw usage events older than the retention period into their counters, a chunk per
    transaction (each chunk runs on the event loop, so it stays short). Counters, their sync and event-id
    deduplication are untouched: only the per-event audit trail goes. Returns how many went."""
    if retention_days <= 0:
        return 0
    before = to_us(domain.clock.now()) - retention_days * 86_400_000_000
    removed = 0
    while True:
        count = await domain.store.write(lambda conn: db_consumption.compact(conn, before, chunk))
        removed += count
        if count < chunk:
            return removed
