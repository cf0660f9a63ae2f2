"""Live state of a license as clients see it: seats in use and consumption totals for the current period.

`read_state` runs inside a write unit (so a response reflects exactly what was just committed) or on the
reader (for listings).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from floatsrv.db import consumption as db_consumption
from floatsrv.db import seats as db_seats
from floatsrv.db.consumption import CounterKey
from floatsrv.errors import LicenseExpired, LicenseNotActive, LicenseNotEnabled
from floatsrv.models import ConsumptionLimits, FeatureSpec, License, LicenseSpec
from floatsrv.periods import period_bounds
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


def current_period(spec: LicenseSpec, limits: ConsumptionLimits, now: datetime) -> Period | None:
    if not limits.reset_consumption or limits.consumption_period is None:
        return None
    start, end = period_bounds(limits.consumption_period, spec.period_anchor, now)
    return Period(start, end)


def counter_key(spec: LicenseSpec, feature: FeatureSpec | None, now: datetime) -> tuple[CounterKey, Period | None]:
    period = current_period(spec, feature or spec, now)
    start = to_us(period.start) if period else 0
    return CounterKey(spec.id, feature.code if feature else db_seats.LICENSE_SEAT, start), period


def read_state(conn: sqlite3.Connection, license: License, now: datetime, feature_ids: dict[str, int]) -> LicenseState:
    spec = license.spec
    t = to_us(now)
    in_use = db_seats.live_feature_counts(conn, spec.id, t) if any(f.is_floating for f in spec.features) else {}
    features = []
    for feature in spec.features:
        total, period = 0, None
        if feature.is_consumption:
            key, period = counter_key(spec, feature, now)
            total = db_consumption.total(conn, key)
        features.append(
            FeatureState(feature, feature_ids.get(feature.code), in_use.get(feature.code, 0), total, period)
        )
    total, period = 0, None
    if spec.is_consumption:
        key, period = counter_key(spec, None, now)
        total = db_consumption.total(conn, key)
    seats_in_use = db_seats.count_live(conn, spec.id, db_seats.LICENSE_SEAT, t)
    return LicenseState(license, now, seats_in_use, total, period, tuple(features))
