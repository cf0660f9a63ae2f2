"""Credits: a license's plan credits (reset every credits period, add-ons included) and purchased credits
(granted by an admin, never expire, spent after plan credits). Every change is a ledger row."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from floatsrv.db import addons as db_addons
from floatsrv.db import credits as db
from floatsrv.db.credits import LedgerRow as LedgerRow  # re-exported for the API layer
from floatsrv.domain.accounts import Actor
from floatsrv.domain.context import Domain
from floatsrv.domain.license import License
from floatsrv.domain.state import Period, bounds
from floatsrv.errors import CreditGrantApplied, InvalidQuantity, LicenseNotFound, NotGrantedByVendor
from floatsrv.quantity import MILLI, milli_to_str
from floatsrv.times import to_us


@dataclass(frozen=True, slots=True)
class CreditBalance:
    license_id: int
    period: Period
    plan_milli: int
    plan_used_milli: int
    purchased_milli: int

    @property
    def plan_left_milli(self) -> int:
        return max(0, self.plan_milli - self.plan_used_milli)


def _license(domain: Domain, license_id: int) -> License:
    license = domain.catalog.get(license_id)
    if license is None:
        raise LicenseNotFound(f"no license {license_id}", param="license_id")
    return license


def _balance(conn: sqlite3.Connection, license: License, domain: Domain) -> CreditBalance:
    spec = license.spec
    period = bounds(license, spec.credits_period, domain.clock.now())
    extra = sum(a.included_units for a in db_addons.active_addons(conn, spec.id) if a.consumption_model == "credits")
    return CreditBalance(
        spec.id,
        period,
        int(spec.plan_credits * MILLI) + extra * MILLI,
        db.plan_used(conn, spec.id, to_us(period.start)),
        db.purchased(conn, spec.id),
    )


async def balance(domain: Domain, license_id: int) -> CreditBalance:
    license = _license(domain, license_id)
    return await domain.store.read(lambda conn: _balance(conn, license, domain))


async def grant(
    domain: Domain,
    actor: Actor,
    license_id: int,
    amount_milli: int | None,
    note: str | None,
    grant_id: str | None = None,
) -> CreditBalance:
    """Add purchased credits (they never expire): an amount the admin names (not in a vendor build), or a
    credit grant of a vendor-signed license file (`grant_id`; each applies once)."""
    license = _license(domain, license_id)
    if grant_id is not None:
        found = next((g for g in license.spec.credit_grants if g.id == grant_id), None)
        if found is None:
            raise NotGrantedByVendor(f"license {license_id} has no credit grant {grant_id!r}", param="grant_id")
        amount_milli, note = int(found.amount * MILLI), note or found.note
    elif domain.licensing.trust.vendor_build:
        raise NotGrantedByVendor(
            "in this vendor build credits come from the vendor's signed license files: apply a grant_id", param="amount"
        )
    if amount_milli is None or amount_milli <= 0:
        raise InvalidQuantity("amount must be more than zero", param="amount")
    amount = amount_milli

    def unit(conn: sqlite3.Connection) -> CreditBalance:
        now = to_us(domain.clock.now())
        if grant_id is not None and db.grant_applied(conn, license_id, grant_id):
            raise CreditGrantApplied(f"credit grant {grant_id!r} was applied to license {license_id} before")
        db.append(
            conn,
            license_id=license_id,
            at=now,
            kind="purchase",
            pool="purchased",
            amount_milli=amount,
            actor=actor.name,
            note=note,
            grant_id=grant_id,
        )
        detail: dict[str, object] = {"amount": milli_to_str(amount)}
        if grant_id is not None:
            detail["grant_id"] = grant_id
        actor.audit(conn, now, "credits_granted", target=str(license_id), detail=detail)
        return _balance(conn, license, domain)

    return await domain.store.write(unit)


async def ledger(domain: Domain, license_id: int, before_id: int | None, limit: int) -> list[LedgerRow]:
    _license(domain, license_id)
    return await domain.store.read(lambda conn: db.ledger(conn, license_id, before_id=before_id, limit=limit))
