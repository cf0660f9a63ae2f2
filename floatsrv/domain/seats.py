"""Seat use cases: register (and heartbeat), borrow, unregister, floating-feature seats, expiry sweeps.

Each use case is one write unit: it decides and writes inside the writer's transaction, so two requests
can never both take the last seat. A registration is keyed on (license, feature, user): registering again
is the heartbeat that renews it, never a second seat.

A live seat belongs to the login that took it (`principal`; for an API key, the key). Requests carry an
`owner`: the login whose seats they may renew, borrow, release or end; None for an admin, or with
authentication off, when any seat may be touched. Another login's seat answers SeatOwnedByAnotherLogin.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import NamedTuple

from floatsrv.db import audit
from floatsrv.db import licenses as db_licenses
from floatsrv.db import seats as db_seats
from floatsrv.db.seats import LICENSE_SEAT
from floatsrv.db.seats import SeatRow as SeatRow  # re-exported for the API layer
from floatsrv.db.store import AfterBatch
from floatsrv.domain.context import Domain
from floatsrv.domain.denials import recorded
from floatsrv.domain.license import License
from floatsrv.domain.policy import ALL_SEATS_IN_USE, Refusal, SeatRule, Who
from floatsrv.domain.state import LicenseState, check_usable, state_after_batch
from floatsrv.errors import (
    BorrowUntilNotValid,
    FeatureExpired,
    FeatureNotFloating,
    FeatureNotFound,
    FeatureSeatNotFound,
    LicenseNotFound,
    RegistrationNotFound,
    SeatNotFound,
    SeatOwnedByAnotherLogin,
    SeatsExhausted,
)
from floatsrv.models import ClientInfo, FeatureSpec, LicenseSpec
from floatsrv.times import iso, to_us

MINUTE_US = 60_000_000


class Target(NamedTuple):
    """Which license a request addresses: a product and/or a license id (at least one)."""

    product: str | None
    license_id: int | None = None


class SeatRequest(NamedTuple):
    target: Target
    user: str
    principal: str | None = None  # who is asking (kept on a new seat)
    client: ClientInfo = ClientInfo()
    owner: str | None = None  # only this login's seats may be touched (None: any; admins, auth off)
    address: str | None = None  # the caller's address (`address:` policy rules; kept on a new seat)


def _check_owner(seat: SeatRow | None, owner: str | None, now: int) -> None:
    if seat is None or owner is None or seat.principal is None or seat.principal == owner:
        return
    if seat.ended_at is None and seat.expires_at > now:
        raise SeatOwnedByAnotherLogin(
            f"user {seat.user!r} holds this seat through another login; only that login or an admin may change it",
            user=seat.user,
        )


class SeatResult(NamedTuple):
    state: LicenseState
    seat: SeatRow
    created: bool


def _claim(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    feature: str,
    limit: int,
    timeout_us: int,
    request: SeatRequest,
    now: int,
    rule: SeatRule | None,
    borrow_until: int | None = None,
) -> tuple[SeatRow, bool]:
    """Renew the user's held seat, or take a free one the policy `rule` lets them have. Raises SeatsExhausted
    when none is (its `reason` says why: a full license, or what the policy refused)."""
    renewed = db_seats.renew_held(
        conn,
        license_id=license_id,
        feature=feature,
        user=request.user,
        now=now,
        timeout_us=timeout_us,
        borrow_until=borrow_until,
        client=request.client,
        owner=request.owner,
    )
    if renewed is not None:  # the heartbeat: one statement
        return renewed, False
    # Expired seats (the user's own included) are ended here, with their real reason, before counting.
    db_seats.end_expired(conn, now, license_id, feature)
    in_use = db_seats.count_live(conn, license_id, feature, now)
    if rule is not None:
        refused = _judge(conn, rule, request, license_id, feature, limit, in_use, now)
        if refused is not None:
            raise SeatsExhausted(
                refused.message,
                license_id=license_id,
                feature=feature or None,
                limit=limit,
                in_use=in_use,
                reason=refused.reason,
            )
    if in_use >= limit:
        raise SeatsExhausted(
            f"all {limit} floating seats are in use"
            if not feature
            else f"all {limit} seats of feature {feature!r} are in use",
            license_id=license_id,
            feature=feature or None,
            limit=limit,
            in_use=in_use,
            reason=ALL_SEATS_IN_USE,
        )
    seat = db_seats.insert(
        conn,
        license_id=license_id,
        feature=feature,
        user=request.user,
        slot=db_seats.free_slot(conn, license_id, feature),
        principal=request.principal,
        now=now,
        expires_at=max(now + timeout_us, borrow_until or 0),
        borrowed_until=borrow_until,
        client=request.client,
        address=request.address,
    )
    return seat, True


def _judge(
    conn: sqlite3.Connection,
    rule: SeatRule,
    request: SeatRequest,
    license_id: int,
    feature: str,
    limit: int,
    in_use: int,
    now: int,
) -> Refusal | None:
    who = Who.of(request.user, request.client.os_hostname, request.principal, request.address)
    holders = [Who.of(*row) for row in db_seats.holders(conn, license_id, feature, now)] if rule.counts_holders else []
    return rule.refusal(who, holders, limit, in_use)


def _borrow_end(spec: LicenseSpec, requested: datetime | None, now: datetime, rule: SeatRule | None = None) -> int:
    """The borrow end to grant (None asks for the longest allowed, by the license and the policy `rule`).
    Raises BorrowUntilNotValid."""
    if not spec.can_borrow:
        raise BorrowUntilNotValid("this license does not allow borrowing", license_id=spec.id)
    hours = spec.max_borrow_time
    if rule is not None and rule.max_borrow_hours is not None:
        hours = min(hours, rule.max_borrow_hours)
    longest = now + timedelta(hours=hours)
    until = requested or longest
    if until <= now:
        raise BorrowUntilNotValid(f"borrowed_until {iso(until)} is not in the future")
    if until > longest:
        raise BorrowUntilNotValid(
            f"borrowed_until {iso(until)} is beyond the longest borrow ({hours} hours, until {iso(longest)})",
            max_borrow_time=hours,
        )
    return to_us(until)


async def register(
    domain: Domain, request: SeatRequest, borrow: bool = False, borrowed_until: datetime | None = None
) -> SeatResult:
    """Take or renew the user's license seat (and with `borrow`, pin it until `borrowed_until`)."""
    license = domain.catalog.resolve(request.target.product, request.target.license_id)
    spec = license.spec
    feature_ids = domain.feature_ids(license)

    rule = domain.policy.rule(spec.id, LICENSE_SEAT)

    def unit(conn: sqlite3.Connection) -> AfterBatch[SeatResult]:
        now = domain.clock.now()
        check_usable(spec, domain.licensing.time.later(now))
        until = _borrow_end(spec, borrowed_until, now) if borrow else None
        seat, created = _claim(
            conn,
            license_id=spec.id,
            feature=LICENSE_SEAT,
            limit=spec.floating_users,
            timeout_us=spec.floating_timeout * MINUTE_US,  # the policy's shorter one, if any (Policy.served)
            request=request,
            now=to_us(now),
            rule=rule,
            borrow_until=until,
        )
        return state_after_batch(license, domain.clock, feature_ids, lambda state: SeatResult(state, seat, created))

    host = request.client.os_hostname
    return await recorded(domain, domain.store.write_then_read(unit), spec.id, LICENSE_SEAT, request, host)


async def unregister(domain: Domain, target: Target, user: str, owner: str | None = None) -> int:
    """Release the user's license seat and their feature seats; returns how many seats ended (0 is fine)."""
    license = domain.catalog.resolve(target.product, target.license_id)

    def unit(conn: sqlite3.Connection) -> int:
        now = to_us(domain.clock.now())
        _check_owner(db_seats.held(conn, license.id, LICENSE_SEAT, user), owner, now)
        db_seats.end_expired(conn, now, license.id)
        return db_seats.end_user(conn, license.id, user, now, "released", feature=None)

    return await domain.store.write(unit)


def _licenses_in_scope(domain: Domain, product: str | None, license_id: int | None) -> list[License]:
    if product is not None:
        if license_id is not None:
            return [domain.catalog.resolve(product, license_id)]
        return domain.catalog.licenses(product)
    if license_id is not None:
        found = domain.catalog.get(license_id)
        if found is None:
            raise LicenseNotFound(f"no license {license_id}", license_id=license_id)
        return [found]
    return domain.catalog.licenses()


async def unregister_all(
    domain: Domain,
    product: str | None,
    license_id: int | None,
    features_only: bool = False,
    feature: str | None = None,
    user: str | None = None,
    owner: str | None = None,
) -> int:
    """End held seats in bulk (everything, one product's or one license's; optionally only feature seats).
    With `owner`, only the seats that login took."""
    ids = [lic.id for lic in _licenses_in_scope(domain, product, license_id)]

    def unit(conn: sqlite3.Connection) -> int:
        now = to_us(domain.clock.now())
        for each in ids:
            db_seats.end_expired(conn, now, each)
        return db_seats.end_all(
            conn, ids, now, "unregister_all", features_only=features_only, feature=feature, user=user, principal=owner
        )

    return await domain.store.write(unit)


def _floating_feature(spec: LicenseSpec, code: str, now: datetime) -> FeatureSpec:
    feature = spec.feature(code)
    if feature is None:
        raise FeatureNotFound(f"license {spec.id} has no feature {code!r}", feature=code)
    if feature.expiry_date is not None and feature.expiry_date <= now:
        raise FeatureExpired(f"feature {code!r} expired at {iso(feature.expiry_date)}", feature=code)
    if not feature.is_floating:
        raise FeatureNotFloating(f"feature {code!r} is not a floating feature", feature=code)
    return feature


async def register_feature(
    domain: Domain, request: SeatRequest, code: str, borrow_until: datetime | None = None
) -> SeatResult:
    """Take or renew a seat of a floating feature. The user must hold the license seat."""
    license = domain.catalog.resolve(request.target.product, request.target.license_id)
    spec = license.spec
    feature_ids = domain.feature_ids(license)

    rule = domain.policy.rule(spec.id, code)

    def unit(conn: sqlite3.Connection) -> AfterBatch[SeatResult]:
        now = domain.clock.now()
        t = to_us(now)
        check_usable(spec, domain.licensing.time.later(now))
        feature = _floating_feature(spec, code, now)
        license_seat = db_seats.held(conn, spec.id, LICENSE_SEAT, request.user)
        _check_owner(license_seat, request.owner, t)
        if license_seat is None or license_seat.expires_at <= t:
            raise RegistrationNotFound(
                f"user {request.user!r} must register on license {spec.id} before taking feature {code!r}",
                user=request.user,
            )
        until = _borrow_end(spec, borrow_until, now, rule) if borrow_until is not None else None
        seat, created = _claim(
            conn,
            license_id=spec.id,
            feature=code,
            # The effective limit (configured seats plus active seat add-ons), as the schema enforces it.
            limit=db_licenses.feature_seat_limit(conn, spec.id, code),
            timeout_us=spec.feature_timeout(feature) * MINUTE_US,
            request=request,
            now=t,
            rule=rule,
            borrow_until=until,
        )
        return state_after_batch(license, domain.clock, feature_ids, lambda state: SeatResult(state, seat, created))

    host = request.client.os_hostname
    return await recorded(domain, domain.store.write_then_read(unit), spec.id, code, request, host)


async def release_feature(domain: Domain, target: Target, user: str, code: str, owner: str | None = None) -> None:
    """Release the user's seat of a feature. Raises FeatureSeatNotFound when they hold none."""
    license = domain.catalog.resolve(target.product, target.license_id)

    def unit(conn: sqlite3.Connection) -> None:
        now = domain.clock.now()
        if license.spec.feature(code) is None:
            raise FeatureNotFound(f"license {license.id} has no feature {code!r}", feature=code)
        t = to_us(now)
        _check_owner(db_seats.held(conn, license.id, code, user), owner, t)
        db_seats.end_expired(conn, t, license.id, code)
        if db_seats.end_user(conn, license.id, user, t, "released", feature=code) == 0:
            raise FeatureSeatNotFound(f"user {user!r} holds no seat of feature {code!r}", feature=code)

    await domain.store.write(unit)


async def sweep_expired(domain: Domain) -> int:
    """Mark every expired seat ended (reason expired / borrow_ended). Returns how many ended."""

    def unit(conn: sqlite3.Connection) -> int:
        return db_seats.end_expired(conn, to_us(domain.clock.now()))

    return await domain.store.write(unit)


async def revoke_seat(domain: Domain, seat_id: int, actor: str, peer: str | None) -> SeatRow:
    """An admin ends a held seat (reason admin_removed; a license seat takes its feature seats along)."""

    def unit(conn: sqlite3.Connection) -> SeatRow:
        now = to_us(domain.clock.now())
        seat = db_seats.by_id(conn, seat_id)
        if seat is None or seat.ended_at is not None or seat.expires_at <= now:
            raise SeatNotFound(f"no held seat {seat_id}", param="id")
        feature = seat.feature if seat.feature else None
        ended = db_seats.end_user(conn, seat.license_id, seat.user, now, "admin_removed", feature=feature)
        audit.record(
            conn,
            at=now,
            action="seat_revoked",
            actor=actor,
            target=str(seat_id),
            peer=peer,
            detail={"license_id": seat.license_id, "feature": feature, "user": seat.user, "seats_ended": ended},
        )
        return seat

    return await domain.store.write(unit)
