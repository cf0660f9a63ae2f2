"""Live state of a license as clients see it: seats in use, consumption totals and allowances for the
current periods, credit balances, with active add-ons applied.

`read_state` runs inside a write unit (so a response reflects exactly what was just committed) or on the
reader (for listings).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeVar

from floatsrv.clock import Clock
from floatsrv.db import addons as db_addons
from floatsrv.db import consumption as db_consumption
from floatsrv.db import credits as db_credits
from floatsrv.db import licenses as db_licenses
from floatsrv.db import seats as db_seats
from floatsrv.db.addons import AddonRow
from floatsrv.db.consumption import CounterKey
from floatsrv.db.store import AfterBatch
from floatsrv.domain.license import License
from floatsrv.domain.metering import Allowance, Balances, allowance_of
from floatsrv.errors import LicenseExpired, LicenseNotActive, LicenseNotEnabled
from floatsrv.models import ConsumptionLimits, FeatureSpec, LicenseSpec
from floatsrv.periods import Period as Period  # re-exported: the domain's callers name it from here
from floatsrv.periods import PeriodKind
from floatsrv.quantity import MILLI
from floatsrv.times import to_us

T = TypeVar("T")


class FeatureState(NamedTuple):
    spec: FeatureSpec
    feature_id: int | None
    seats_in_use: int
    total_milli: int
    period: Period | None
    allowance: Allowance
    balances: Balances
    credits_period: Period | None
    counter: CounterKey | None = None  # the period counter a usage write adds to (None: not read here)


@dataclass(frozen=True, slots=True)
class LicenseState:
    license: License
    now: datetime
    seats_in_use: int
    total_milli: int
    period: Period | None
    features: tuple[FeatureState, ...]

    def feature(self, code: str) -> FeatureState:
        for state in self.features:  # a loop, not next(generator): every consumption answer asks
            if state.spec.code == code:
                return state
        raise KeyError(code)


def check_usable(spec: LicenseSpec, now: datetime) -> None:
    """Raise LicenseNotEnabled / LicenseNotActive / LicenseExpired when the license cannot be used now."""
    if not spec.enabled:
        raise LicenseNotEnabled(license_id=spec.id)
    if not spec.active:
        raise LicenseNotActive(license_id=spec.id)
    if spec.validity_period is not None and spec.validity_period <= now:
        raise LicenseExpired(license_id=spec.id)


def bounds(license: License, kind: PeriodKind, at: datetime) -> Period:
    return license.memo.period(kind, license.spec.period_anchor, at)


def current_period(license: License, limits: ConsumptionLimits, at: datetime) -> Period | None:
    """The consumption period `limits` reset in that contains `at`; None for totals that never reset."""
    if not limits.reset_consumption or limits.consumption_period is None:
        return None
    return bounds(license, limits.consumption_period, at)


def counter_key(license: License, feature: FeatureSpec | None, at: datetime) -> tuple[CounterKey, Period | None]:
    """The counter a consumption at `at` adds to (the license's own with feature None), and its period."""
    period = current_period(license, feature or license.spec, at)
    code = feature.code if feature else db_seats.LICENSE_SEAT

    def make() -> tuple[CounterKey, Period | None]:
        return CounterKey(license.spec.id, code, to_us(period.start) if period else 0), period

    return license.memo.counters.get((code, period), make)


def allowance(
    license: License, feature: FeatureSpec, addons: tuple[AddonRow, ...], seat_limit: int | None
) -> Allowance:
    """The feature's allowance, computed once per (license, feature, add-ons, seat limit) and then reused."""
    key = (feature.code, tuple((a.id, a.updated_at) for a in addons) if addons else (), seat_limit)
    return license.memo.allowances.get(key, lambda: allowance_of(license.spec, feature, addons, seat_limit))


def _credit_balances(conn: sqlite3.Connection, license: License, at: datetime, used: int) -> tuple[Balances, Period]:
    spec = license.spec
    credits_period = bounds(license, spec.credits_period, at)
    plan_used = db_credits.plan_used(conn, spec.id, to_us(credits_period.start))
    return Balances(used, plan_used, db_credits.purchased(conn, spec.id)), credits_period


def feature_state(
    conn: sqlite3.Connection,
    license: License,
    feature: FeatureSpec,
    at: datetime,
    now: datetime,
    addons: tuple[AddonRow, ...],
    feature_id: int | None,
) -> FeatureState:
    """One feature's allowance and balances for the period containing `at` (usage may be late)."""
    spec = license.spec
    seats_in_use, seat_limit = 0, None
    if feature.is_floating:
        seat_limit = db_licenses.feature_seat_limit(conn, spec.id, feature.code)
        seats_in_use = db_seats.count_live(conn, spec.id, feature.code, to_us(now))
    total, period, key = 0, None, None
    if feature.counts_usage:
        key, period = counter_key(license, feature, at)
        total = db_consumption.total(conn, key)
    return _assemble(conn, license, feature, at, addons, feature_id, seats_in_use, seat_limit, total, period, key)


def _assemble(
    conn: sqlite3.Connection,
    license: License,
    feature: FeatureSpec,
    at: datetime,
    addons: tuple[AddonRow, ...],
    feature_id: int | None,
    seats_in_use: int,
    seat_limit: int | None,
    total: int,
    period: Period | None,
    counter: CounterKey | None = None,
) -> FeatureState:
    balances, credits_period = Balances(total), None
    if feature.model == "credits":
        balances, credits_period = _credit_balances(conn, license, at, total)
    elif feature.model == "seats":
        balances = Balances(seats_in_use * MILLI)
    return FeatureState(
        feature,
        feature_id,
        seats_in_use,
        total,
        period,
        allowance(license, feature, addons, seat_limit),
        balances,
        credits_period,
        counter,
    )


def state_after_batch(
    license: License, clock: Clock, feature_ids: Mapping[str, int], finish: Callable[[LicenseState], T]
) -> AfterBatch[T]:
    """A unit result completed with the license's state as the whole batch leaves it (read once per batch)."""
    return AfterBatch(
        ("license_state", license.id, license.added_seq),
        lambda conn: read_state(conn, license, clock.now(), feature_ids),
        finish,
    )


def read_state(
    conn: sqlite3.Connection, license: License, now: datetime, feature_ids: Mapping[str, int]
) -> LicenseState:
    """Everything a client sees of a license right now, in a handful of queries."""
    spec = license.spec
    in_use = db_seats.live_counts(conn, spec.id, to_us(now))
    floating = any(f.is_floating for f in spec.features)
    limits = db_licenses.feature_seat_limits(conn, spec.id) if floating else {}
    addons = db_addons.active_addons(conn, spec.id) if spec.features else ()
    keys: dict[str, tuple[CounterKey, Period | None]] = {}
    if spec.is_consumption:
        keys[db_seats.LICENSE_SEAT] = counter_key(license, None, now)
    for feature in spec.features:
        if feature.counts_usage:
            keys[feature.code] = counter_key(license, feature, now)
    totals = db_consumption.totals(conn, spec.id, [(k.feature, k.period_start) for k, _ in keys.values()])

    def total_of(code: str) -> tuple[int, Period | None]:
        if code not in keys:
            return 0, None
        key, period = keys[code]
        return totals.get((key.feature, key.period_start), 0), period

    features = tuple(
        _assemble(
            conn,
            license,
            feature,
            now,
            addons,
            feature_ids.get(feature.code),
            in_use.get(feature.code, 0),
            limits.get(feature.code),
            *total_of(feature.code),
        )
        for feature in spec.features
    )
    total, period = total_of(db_seats.LICENSE_SEAT)
    return LicenseState(license, now, in_use.get(db_seats.LICENSE_SEAT, 0), total, period, features)
