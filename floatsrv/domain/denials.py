"""The denial log: every refused seat or consumption, with who asked, why, and how full it was.

A refusal rolls its own write unit back, so the denial is written by a unit of its own, and the refusal is
answered once it is committed (group commit carries it with the next batch). Losing a denial to a storage fault must
not turn a refusal into a 503, so that fault is logged and the refusal answered as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from floatsrv.db import denials as db
from floatsrv.db.denials import DenialFilter as DenialFilter  # re-exported for the API layer
from floatsrv.db.denials import DenialRow as DenialRow  # re-exported for the API layer
from floatsrv.domain.context import Domain
from floatsrv.errors import ConsumptionBelowZero, LimitReached, SeatsExhausted, StorageUnavailable
from floatsrv.log import get_logger
from floatsrv.quantity import MILLI
from floatsrv.times import to_us

log = get_logger("floatsrv.denials")

T = TypeVar("T")

_MOST_PER_PAGE = 1000


class Asker(Protocol):
    """Who asked for what was refused: a seat, consumption or usage request (read only once refused)."""

    @property
    def user(self) -> str | None: ...
    @property
    def principal(self) -> str | None: ...  # the login
    @property
    def address(self) -> str | None: ...


def _clip(text: str | None, most: int) -> str | None:
    return None if text is None else text[:most]


def _row(exc: LimitReached, at: int, license_id: int, feature: str, asker: Asker, host: str | None) -> db.DenialRow:
    detail = exc.detail
    if isinstance(exc, SeatsExhausted):
        kind, reason = "seat", str(detail.get("reason") or exc.code)
        in_use, limit = _times_milli(detail.get("in_use")), _times_milli(detail.get("limit"))
    else:
        kind, reason = "consumption", exc.code
        in_use, limit = detail.get("in_use_milli"), detail.get("limit_milli")
        if in_use is None:  # LicenseSpring license consumption: whole units
            in_use, limit = _times_milli(detail.get("total")), _times_milli(detail.get("capacity"))
    return db.DenialRow(
        0,
        at,
        license_id,
        feature,
        kind,
        _clip(asker.user, 256),
        _clip(host, 256),
        _clip(asker.address, 64),
        _clip(asker.principal, 256),
        reason[:64],
        in_use if isinstance(in_use, int) and in_use >= 0 else None,
        limit if isinstance(limit, int) and limit >= 0 else None,
    )


def _times_milli(value: object) -> int | None:
    return value * MILLI if isinstance(value, int) and not isinstance(value, bool) else None


async def recorded(
    domain: Domain, work: Awaitable[T], license_id: int, feature: str, asker: Asker, host: str | None = None
) -> T:
    """Await `work` (a seat or consumption use case); a limit it reaches is written to the denial log, with
    who asked (`asker`, the request, and the client's `host`)."""
    try:
        return await work
    except LimitReached as exc:
        if not isinstance(exc, ConsumptionBelowZero):  # a refund below zero is a client error, not a denial
            await record(domain, exc, license_id, feature, asker, host)
        raise


async def record(
    domain: Domain, exc: LimitReached, license_id: int, feature: str, asker: Asker, host: str | None
) -> None:
    row = _row(exc, to_us(domain.clock.now()), license_id, feature, asker, host)

    def unit(conn: sqlite3.Connection) -> None:
        db.record(conn, row)

    try:
        await domain.store.write(unit)
    except StorageUnavailable as fault:
        log.error("denial_not_recorded", reason=row.reason, license_id=license_id, error=fault.code)


async def page(
    domain: Domain, where: DenialFilter, cursor: int | None, limit: int
) -> tuple[list[DenialRow], int | None]:
    """A page of the denial log, newest first, and the cursor of the next page (None: this is the last)."""
    size = max(1, min(limit, _MOST_PER_PAGE))
    rows = await domain.store.read(lambda conn: db.page(conn, where, cursor, size + 1))
    return rows[:size], (rows[size - 1].id if len(rows) > size else None)
