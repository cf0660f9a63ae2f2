"""Read-only views for listings and admins, answered from the reader (committed data only)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from floatsrv.db import readonly as db_readonly
from floatsrv.db import seats as db_seats
from floatsrv.db.readonly import CounterRow, EventRow
from floatsrv.db.seats import SeatRow
from floatsrv.domain.context import Domain
from floatsrv.domain.license import License
from floatsrv.domain.policy import Who
from floatsrv.domain.state import LicenseState, read_state
from floatsrv.errors import SeatNotFound
from floatsrv.times import to_us

SeatState = Literal["held", "borrowed", "ended", "all"]


async def license_states(
    domain: Domain, product: str | None = None, license_id: int | None = None
) -> list[LicenseState]:
    """Live state of every license (or one product's, or one license). Raises UnknownProduct."""
    licenses = domain.catalog.licenses(product)
    if license_id is not None:
        licenses = [lic for lic in licenses if lic.id == license_id]
    return await states_of(domain, licenses)


async def states_of(domain: Domain, licenses: list[License]) -> list[LicenseState]:
    """Live state of these licenses (a page of them, say), read in one transaction."""
    ids = {lic.id: domain.feature_ids(lic) for lic in licenses}

    def unit(conn: sqlite3.Connection) -> list[LicenseState]:
        now = domain.clock.now()
        return [read_state(conn, lic, now, ids[lic.id]) for lic in licenses]

    return await domain.store.read(unit)


async def borrowed_seats(domain: Domain) -> dict[tuple[int, str], int]:
    """Seats held on a borrow now, per (license, feature) ('' = the license seat)."""
    now = to_us(domain.clock.now())
    return await domain.store.read(lambda conn: db_seats.borrowed_counts(conn, now))


@dataclass(frozen=True, slots=True)
class SeatView:
    """A seat as admins see it. A seat that expired but was not swept yet is shown as ended."""

    row: SeatRow
    license: License | None
    held: bool
    ended_at: int | None
    end_reason: str | None


async def seat_views(
    domain: Domain,
    *,
    license_ids: list[int] | None,
    feature: str | None,
    user: str | None,
    state: SeatState,
    limit: int,
    host: str | None = None,
    before: int | None = None,
) -> list[SeatView]:
    """Seats newest first; `before` (a seat id) pages on from the last one shown."""

    def unit(conn: sqlite3.Connection) -> list[SeatView]:
        now = to_us(domain.clock.now())
        rows = db_seats.query(
            conn,
            license_ids=license_ids,
            feature=feature,
            user=user,
            state=state,
            now=now,
            limit=limit,
            host=host,
            before=before,
        )
        return [_view(domain, row, now) for row in rows]

    return await domain.store.read(unit)


async def seat_view(domain: Domain, seat_id: int) -> SeatView:
    def unit(conn: sqlite3.Connection) -> SeatView:
        row = db_seats.by_id(conn, seat_id)
        if row is None:
            raise SeatNotFound(f"no seat {seat_id}")
        return _view(domain, row, to_us(domain.clock.now()))

    return await domain.store.read(unit)


def _view(domain: Domain, row: SeatRow, now: int) -> SeatView:
    license = domain.catalog.get(row.license_id)
    if row.ended_at is not None:
        return SeatView(row, license, False, row.ended_at, row.end_reason)
    if row.expires_at > now:
        return SeatView(row, license, True, None, None)
    borrow_ended = row.borrowed_until is not None and row.borrowed_until >= row.expires_at
    return SeatView(row, license, False, row.expires_at, "borrow_ended" if borrow_ended else "expired")


EVENT_SCAN = 100_000  # rows of usage_events one page of a license's events reads at most


async def usage_events(
    domain: Domain, license_id: int, before: int | None, limit: int
) -> tuple[list[EventRow], int | None]:
    """A page of a license's kept usage events, newest first, and where the next page starts (`db.readonly`)."""
    return await domain.store.read(lambda conn: db_readonly.events(conn, license_id, before, limit, EVENT_SCAN))


async def counters(domain: Domain, license_id: int | None = None, limit: int = 100) -> list[CounterRow]:
    """Consumption counters, newest period first, with what each sync channel has confirmed."""
    return await domain.store.read(lambda conn: db_readonly.counters(conn, license_id, limit))


async def idle_reserved(domain: Domain, seats: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Per (license, feature; '' for the license's seats): the seats the policy reserves that nobody of their
    group holds now, read in one snapshot (only where a rule reserves any)."""
    wanted = [(key, rule) for key in seats if (rule := domain.policy.rule(*key)) is not None and rule.reserve]
    if not wanted:
        return dict.fromkeys(seats, 0)
    now = to_us(domain.clock.now())

    def read(conn: sqlite3.Connection) -> dict[tuple[int, str], int]:
        found = dict.fromkeys(seats, 0)
        for key, rule in wanted:
            found[key] = rule.idle([Who.of(*row) for row in db_seats.holders(conn, *key, now)])
        return found

    return await domain.store.read(read)
