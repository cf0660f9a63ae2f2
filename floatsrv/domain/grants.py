"""Add-ons the vendor grants in license files, kept in the add-on catalog as the files say.

A granted add-on sits in the catalog with `granted = 1` under the vendor's id. The admin activates it on a
license that grants it (`domain.addons.activate` checks that); its definition changes only with a new file.
When no license in force grants it any more, its activations end and it leaves the catalog; when a license
stops granting it, its activation on that license ends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from floatsrv.db import addons as db
from floatsrv.db.addons import AddonRow
from floatsrv.domain.seatlimits import sync_seat_limits
from floatsrv.errors import LicenseFileLicenseConflict
from floatsrv.models import AddonGrant, LicenseSpec
from floatsrv.quantity import decimal_str


def grant_row(grant: AddonGrant, created_at: int, now: int) -> AddonRow:
    return AddonRow(
        id=grant.id,
        name=grant.name,
        description=grant.description,
        base_price=decimal_str(grant.base_price),
        feature=grant.feature,
        consumption_model=grant.consumption_model,
        included_units=grant.included_units,
        overage_rate=None if grant.overage_rate is None else decimal_str(grant.overage_rate),
        credit_cost=None if grant.credit_cost is None else decimal_str(grant.credit_cost),
        created_at=created_at,
        updated_at=now,
        deleted_at=None,
        granted=1,
    )


def _definition(row: AddonRow) -> tuple[object, ...]:
    return (row.name, row.description, row.base_price, row.feature, row.consumption_model, row.included_units,
            row.overage_rate, row.credit_cost)  # fmt: skip


def sync_grants(conn: sqlite3.Connection, specs: Iterable[LicenseSpec], now: int) -> None:
    """Make the catalog's granted add-ons, and their activations, match what `specs` grant."""
    by_license = {spec.id: spec for spec in specs}
    wanted: dict[str, AddonRow] = {}
    for spec in by_license.values():
        for grant in spec.addons:
            row = grant_row(grant, now, now)
            other = wanted.setdefault(grant.id, row)
            if _definition(other) != _definition(row):
                raise LicenseFileLicenseConflict(f"add-on {grant.id!r} is granted with two different definitions")
    touched: set[int] = set()
    for addon_id, row in wanted.items():
        existing = db.any_by_id(conn, addon_id)
        if existing is None:
            db.insert(conn, row)
        elif not existing.granted:
            raise LicenseFileLicenseConflict(f"add-on id {addon_id!r} is taken by an add-on an admin made")
        elif existing.deleted_at is not None:
            db.revive(conn, row)
        elif _definition(existing) != _definition(row):
            db.replace(conn, row)
            touched.update(db.licenses_with(conn, addon_id))
    for existing in db.granted(conn):
        for license_id in db.licenses_with(conn, existing.id):
            granting = by_license.get(license_id)
            if granting is None or all(grant.id != existing.id for grant in granting.addons):
                db.deactivate(conn, license_id, existing.id, now)
                touched.add(license_id)
        if existing.id not in wanted:
            db.soft_delete(conn, existing.id, now)
    for license_id in touched:
        if license_id in by_license:
            sync_seat_limits(conn, by_license[license_id])
