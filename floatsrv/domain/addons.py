"""Add-ons (Commet-style): a catalog of extras, each for one feature, activated on licenses.

While active, an add-on raises its feature's allowance at once: metered features get `included_units`
more per period (and `overage_rate` as their overage price), credits features add `included_units` plan
credits per credits period to the license pool (and `credit_cost` as their price in credits), seat
features get `included_units` more seats, and a disabled boolean feature is enabled. Activation charges
`base_price` prorated over what is left of the feature's current period; deactivation is immediate and
refunds nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from floatsrv.db import addons as db
from floatsrv.db.addons import ActivationRow as ActivationRow  # re-exported for the API layer
from floatsrv.db.addons import AddonRow as AddonRow
from floatsrv.domain.accounts import Actor
from floatsrv.domain.context import Domain
from floatsrv.domain.license import License
from floatsrv.domain.seatlimits import sync_seat_limits
from floatsrv.domain.state import Period, bounds, current_period
from floatsrv.errors import (
    AddonAlreadyActive,
    AddonExists,
    AddonFromLicenseFile,
    AddonInUse,
    AddonModelMismatch,
    AddonNotActive,
    AddonNotFound,
    FeatureNotFound,
    LicenseNotFound,
    NotGrantedByVendor,
)
from floatsrv.models import ConsumptionModel, FeatureSpec
from floatsrv.money import round_money
from floatsrv.quantity import decimal_str
from floatsrv.times import to_us


@dataclass(frozen=True, slots=True)
class AddonInput:
    name: str
    feature: str
    consumption_model: ConsumptionModel
    base_price: Decimal = Decimal(0)
    description: str = ""
    included_units: int = 0
    overage_rate: Decimal | None = None
    credit_cost: Decimal | None = None


def _row(addon_id: str, data: AddonInput, created_at: int, now: int) -> AddonRow:
    return AddonRow(
        id=addon_id,
        name=data.name,
        description=data.description,
        base_price=decimal_str(data.base_price),
        feature=data.feature,
        consumption_model=data.consumption_model,
        included_units=data.included_units,
        overage_rate=None if data.overage_rate is None else decimal_str(data.overage_rate),
        credit_cost=None if data.credit_cost is None else decimal_str(data.credit_cost),
        created_at=created_at,
        updated_at=now,
        deleted_at=None,
    )


def _admin_catalog_allowed(domain: Domain) -> None:
    """In a vendor build the catalog holds only what vendor-signed license files grant."""
    if domain.licensing.trust.vendor_build:
        raise NotGrantedByVendor(
            "in this vendor build add-ons come from the vendor's signed license files (import one that grants it)"
        )


def _not_granted(row: AddonRow) -> None:
    if row.granted:
        raise AddonFromLicenseFile(
            f"add-on {row.id!r} is granted by a vendor's license file; it changes with a new file"
        )


async def create(domain: Domain, actor: Actor, data: AddonInput) -> AddonRow:
    _admin_catalog_allowed(domain)
    addon_id = f"addon_{secrets.token_hex(8)}"

    def unit(conn: sqlite3.Connection) -> AddonRow:
        now = to_us(domain.clock.now())
        if db.live_for_feature(conn, data.feature) is not None:
            raise AddonExists(f"an add-on for feature {data.feature!r} exists (one per feature)", param="feature")
        row = _row(addon_id, data, now, now)
        db.insert(conn, row)
        actor.audit(
            conn,
            now,
            "addon_created",
            target=addon_id,
            detail={"feature": data.feature, "model": data.consumption_model},
        )
        return row

    return await domain.store.write(unit)


def _get(conn: sqlite3.Connection, addon_id: str) -> AddonRow:
    row = db.get(conn, addon_id)
    if row is None:
        raise AddonNotFound(f"no add-on {addon_id!r}", param="id")
    return row


async def get(domain: Domain, addon_id: str) -> AddonRow:
    return await domain.store.read(lambda conn: _get(conn, addon_id))


async def list_all(domain: Domain) -> list[AddonRow]:
    return await domain.store.read(db.live)


async def replace(domain: Domain, actor: Actor, addon_id: str, data: AddonInput) -> AddonRow:
    """Replace an add-on's definition. Its feature and model may change only while it is active nowhere."""
    _admin_catalog_allowed(domain)

    def unit(conn: sqlite3.Connection) -> AddonRow:
        now = to_us(domain.clock.now())
        old = _get(conn, addon_id)
        _not_granted(old)
        moving = (old.feature, old.consumption_model) != (data.feature, data.consumption_model)
        if moving and db.activations_of(conn, addon_id):
            raise AddonInUse("deactivate the add-on everywhere before changing its feature or model")
        other = db.live_for_feature(conn, data.feature)
        if other is not None and other.id != addon_id:
            raise AddonExists(f"an add-on for feature {data.feature!r} exists (one per feature)", param="feature")
        row = _row(addon_id, data, old.created_at, now)
        db.replace(conn, row)
        _resize_seats(conn, domain, addon_id)
        actor.audit(conn, now, "addon_updated", target=addon_id)
        return _get(conn, addon_id)

    return await domain.store.write(unit)


async def delete(domain: Domain, actor: Actor, addon_id: str) -> None:
    _admin_catalog_allowed(domain)

    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(domain.clock.now())
        _not_granted(_get(conn, addon_id))
        if db.activations_of(conn, addon_id):
            raise AddonInUse()
        db.soft_delete(conn, addon_id, now)
        actor.audit(conn, now, "addon_deleted", target=addon_id)

    await domain.store.write(unit)


def proration_period(license: License, feature: FeatureSpec, now: datetime) -> Period:
    """The period an activation is charged for: the feature's own, else the license's billing period."""
    spec = license.spec
    if feature.model == "credits":
        return bounds(license, spec.credits_period, now)
    return current_period(license, feature, now) or bounds(license, spec.billing_period, now)


def prorate(base_price: Decimal, period: Period, now: datetime, currency: str) -> Decimal:
    """base_price x (time left / period length), to the currency's minor unit (half up). Exact for a known
    clock."""
    left = Decimal(to_us(period.end) - to_us(now))
    length = Decimal(to_us(period.end) - to_us(period.start))
    return round_money(base_price * left / length, currency)


def _license(domain: Domain, license_id: int) -> License:
    license = domain.catalog.get(license_id)
    if license is None:
        raise LicenseNotFound(f"no license {license_id}", param="license_id")
    return license


def _resize_seats(conn: sqlite3.Connection, domain: Domain, addon_id: str) -> None:
    for license_id in db.licenses_with(conn, addon_id):
        license = domain.catalog.get(license_id)
        if license is not None:
            sync_seat_limits(conn, license.spec)


async def activate(domain: Domain, actor: Actor, license_id: int, addon_id: str) -> tuple[ActivationRow, AddonRow]:
    license = _license(domain, license_id)
    spec = license.spec

    def unit(conn: sqlite3.Connection) -> tuple[ActivationRow, AddonRow]:
        now = domain.clock.now()
        t = to_us(now)
        addon = _get(conn, addon_id)
        if addon.granted and all(grant.id != addon_id for grant in spec.addons):
            raise NotGrantedByVendor(f"no license file grants add-on {addon_id!r} on license {license_id}")
        if not addon.granted and domain.licensing.trust.vendor_build:
            raise NotGrantedByVendor(f"add-on {addon_id!r} is not granted by a vendor-signed license file")
        feature = spec.feature(addon.feature)
        if feature is None:
            raise FeatureNotFound(f"license {license_id} has no feature {addon.feature!r}", param="addon_id")
        if feature.model != addon.consumption_model:
            raise AddonModelMismatch(
                f"add-on {addon_id!r} is {addon.consumption_model}; feature {feature.code!r} is {feature.model}"
            )
        if any(a.id == addon_id for _, a in db.active_on(conn, license_id)):
            raise AddonAlreadyActive(f"add-on {addon_id!r} is already active on license {license_id}")
        period = proration_period(license, feature, now)
        charge = prorate(Decimal(addon.base_price), period, now, spec.currency)
        row = db.activate(
            conn,
            license_id=license_id,
            addon_id=addon_id,
            now=t,
            period_start=to_us(period.start),
            period_end=to_us(period.end),
            prorated_charge=str(charge),  # quantized to the minor unit: "15.50"
            actor=actor.name,
        )
        sync_seat_limits(conn, spec)
        actor.audit(
            conn,
            t,
            "addon_activated",
            target=addon_id,
            detail={"license_id": license_id, "prorated_charge": str(charge)},
        )
        return row, addon

    return await domain.store.write(unit)


async def deactivate(domain: Domain, actor: Actor, license_id: int, addon_id: str) -> ActivationRow:
    license = _license(domain, license_id)

    def unit(conn: sqlite3.Connection) -> ActivationRow:
        t = to_us(domain.clock.now())
        row = db.deactivate(conn, license_id, addon_id, t)
        if row is None:
            raise AddonNotActive(f"add-on {addon_id!r} is not active on license {license_id}", param="addon_id")
        sync_seat_limits(conn, license.spec)
        actor.audit(conn, t, "addon_deactivated", target=addon_id, detail={"license_id": license_id})
        return row

    return await domain.store.write(unit)


async def active(domain: Domain, license_id: int) -> list[tuple[ActivationRow, AddonRow]]:
    _license(domain, license_id)
    return await domain.store.read(lambda conn: db.active_on(conn, license_id))
