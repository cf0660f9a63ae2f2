"""Live state of a license as clients see it: seats in use, consumption totals and allowances for the
current periods, credit balances, with active add-ons applied.

`read_state` runs inside a write unit (so a response reflects exactly what was just committed) or on the
reader (for listings).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from floatsrv.db import addons as db_addons
from floatsrv.db import consumption as db_consumption
from floatsrv.db import credits as db_credits
from floatsrv.db import licenses as db_licenses
from floatsrv.db import seats as db_seats
from floatsrv.db.addons import AddonRow
from floatsrv.db.consumption import CounterKey
from floatsrv.domain.metering import Allowance, Balances, allowance_of
from floatsrv.errors import LicenseExpired, LicenseNotActive, LicenseNotEnabled
from floatsrv.models import ConsumptionLimits, FeatureSpec, License, LicenseSpec
from floatsrv.periods import PeriodKind, period_bounds
from floatsrv.quantity import MILLI
from floatsrv.times import to_us


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class FeatureState:
    spec: FeatureSpec
    feature_id: int | None
    seats_in_use: int
    total_milli: int
    period: Period | None
    allowance: Allowance
    balances: Balances
    credits_period: Period | None


@dataclass(frozen=True, slots=True)
class LicenseState:
    license: License
    now: datetime
    seats_in_use: int
    total_milli: int
    period: Period | None
    features: tuple[FeatureState, ...]

    def feature(self, code: str) -> FeatureState:
        return next(state for state in self.features if state.spec.code == code)


def check_usable(spec: LicenseSpec, now: datetime) -> None:
    """Raise LicenseNotEnabled / LicenseNotActive / LicenseExpired when the license cannot be used now."""
    if not spec.enabled:
        raise LicenseNotEnabled(license_id=spec.id)
    if not spec.active:
        raise LicenseNotActive(license_id=spec.id)
    if spec.validity_period is not None and spec.validity_period <= now:
        raise LicenseExpired(license_id=spec.id)


def bounds(spec: LicenseSpec, kind: PeriodKind, at: datetime) -> Period:
    start, end = period_bounds(kind, spec.period_anchor, at)
    return Period(start, end)


def current_period(spec: LicenseSpec, limits: ConsumptionLimits, at: datetime) -> Period | None:
    if not limits.reset_consumption or limits.consumption_period is None:
        return None
    return bounds(spec, limits.consumption_period, at)


def counter_key(spec: LicenseSpec, feature: FeatureSpec | None, at: datetime) -> tuple[CounterKey, Period | None]:
    period = current_period(spec, feature or spec, at)
    start = to_us(period.start) if period else 0
    return CounterKey(spec.id, feature.code if feature else db_seats.LICENSE_SEAT, start), period


def feature_state(
    conn: sqlite3.Connection,
    spec: LicenseSpec,
    feature: FeatureSpec,
    at: datetime,
    now: datetime,
    addons: list[AddonRow],
    feature_id: int | None,
    seats_in_use: int | None = None,
) -> FeatureState:
    """One feature's allowance and balances for the period containing `at` (usage may be late)."""
    seat_limit = None
    if feature.is_floating:
        seat_limit = db_licenses.feature_seat_limit(conn, spec.id, feature.code)
        if seats_in_use is None:
            seats_in_use = db_seats.count_live(conn, spec.id, feature.code, to_us(now))
    allowance = allowance_of(spec, feature, addons, seat_limit)
    total, period, credits_period = 0, None, None
    balances = Balances(0)
    if feature.is_consumption:
        key, period = counter_key(spec, feature, at)
        total = db_consumption.total(conn, key)
        balances = Balances(total)
        if feature.model == "credits":
            credits_period = bounds(spec, spec.credits_period, at)
            balances = Balances(
                total,
                db_credits.plan_used(conn, spec.id, to_us(credits_period.start)),
                db_credits.purchased(conn, spec.id),
            )
    elif feature.model == "seats":
        balances = Balances((seats_in_use or 0) * MILLI)
    return FeatureState(feature, feature_id, seats_in_use or 0, total, period, allowance, balances, credits_period)


def read_state(conn: sqlite3.Connection, license: License, now: datetime, feature_ids: dict[str, int]) -> LicenseState:
    spec = license.spec
    t = to_us(now)
    in_use = db_seats.live_feature_counts(conn, spec.id, t) if any(f.is_floating for f in spec.features) else {}
    addons = [addon for _, addon in db_addons.active_on(conn, spec.id)]
    features = tuple(
        feature_state(conn, spec, feature, now, now, addons, feature_ids.get(feature.code), in_use.get(feature.code, 0))
        for feature in spec.features
    )
    total, period = 0, None
    if spec.is_consumption:
        key, period = counter_key(spec, None, now)
        total = db_consumption.total(conn, key)
    seats_in_use = db_seats.count_live(conn, spec.id, db_seats.LICENSE_SEAT, t)
    return LicenseState(license, now, seats_in_use, total, period, features)
