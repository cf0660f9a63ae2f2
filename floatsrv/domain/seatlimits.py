"""Seat limits of floating features, as the schema enforces them: configured seats plus active seat add-ons.

The slot trigger on `seats` reads `license_features.floating_users`, so that column must always hold the
effective limit; it is rewritten whenever the config or a seat add-on changes.
"""

from __future__ import annotations

import sqlite3

from floatsrv.db import addons as db_addons
from floatsrv.db import licenses as db_licenses
from floatsrv.db.addons import AddonRow
from floatsrv.models import LicenseSpec


def _seat_limit(spec: LicenseSpec, code: str, active: tuple[AddonRow, ...]) -> int | None:
    feature = spec.feature(code)
    if feature is None or feature.floating_users is None:
        return None
    return feature.floating_users + sum(
        a.included_units for a in active if a.feature == code and a.consumption_model == "seats"
    )


def sync_seat_limits(conn: sqlite3.Connection, spec: LicenseSpec) -> None:
    """Store each floating feature's effective seat limit for the slot trigger."""
    active = db_addons.active_addons(conn, spec.id)
    for feature in spec.features:
        limit = _seat_limit(spec, feature.code, active)
        if limit is not None:
            db_licenses.set_feature_seat_limit(conn, spec.id, feature.code, limit)
