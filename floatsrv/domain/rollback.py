"""Rollback detection: a restored backup or VM snapshot takes the database back, and with it the counters and
what the vendor acknowledged; the truth comes back from the vendor (docs/sync.md, Rollback).

The vendor states what it holds per counter (an upstream's `holdings`, a receipt's). A counter it holds at a
revision this database cannot have had is rolled back: the usage the vendor counted beyond the counter's state
at start-up (`counter_baselines`) is put back, and the revision moves above the vendor's, so the vendor's total
never goes down and usage recorded since the restore is added on top, never swallowed as an old revision.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from floatsrv.clock import Clock
from floatsrv.db import audit, server_state
from floatsrv.db import consumption as db_consumption
from floatsrv.db import sync as db
from floatsrv.db.consumption import CounterKey
from floatsrv.db.store import Store
from floatsrv.domain.sync import RESTORED, ROLLBACK, restore_checked
from floatsrv.errors import InvalidRequest
from floatsrv.quantity import milli_to_str, to_milli
from floatsrv.times import iso_us, parse_instant, to_us


@dataclass(frozen=True, slots=True)
class Holding:
    """What the vendor holds of one counter (an upstream's `holdings`, a receipt's): its highest revision."""

    license_id: int
    feature: str
    period_start: int
    period_end: int | None
    revision: int
    total_milli: int

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.license_id, self.feature, self.period_start)


def parse_holdings(items: object) -> list[Holding]:
    """Holdings in the wire format (docs/sync.md): each like a batch record (license_id, feature, period_start,
    period_end, revision, quantity). Raises InvalidRequest on anything else."""
    if not isinstance(items, list):
        raise InvalidRequest("holdings must be a list")
    out = []
    for item in items:
        try:
            start, end = item.get("period_start"), item.get("period_end")
            out.append(
                Holding(
                    license_id=int(item["license_id"]),
                    feature=str(item.get("feature") or ""),
                    period_start=to_us(parse_instant(start)) if start else 0,
                    period_end=to_us(parse_instant(end)) if end else None,
                    revision=int(item["revision"]),
                    total_milli=to_milli(item["quantity"]),
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError, InvalidRequest) as exc:
            raise InvalidRequest(f"a holding is not valid: {exc}") from None
    return out


# When is a counter the vendor holds evidence that this database was rolled back?
#   baseline: before anything is sent after a start, it holds a revision beyond the counter at that start
#             (every revision a database sends is committed in it first, so a live database always has it);
#   report:   in a receipt, it holds a revision beyond the one the acknowledged report carried.
Rule = Literal["baseline", "report"]


async def reconcile(
    store: Store,
    clock: Clock,
    channel: str,
    holdings: list[Holding],
    rule: Rule,
    exported: dict[tuple[int, str, int], int] | None = None,
) -> list[dict[str, Any]]:
    """Compare the vendor's holdings with this database; repair every counter rolled back (usage the vendor
    counted and this database lost is put back, its revision moves above the vendor's) and return them."""

    def unit(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        now = to_us(clock.now())
        repaired: list[dict[str, Any]] = []
        for held in holdings:
            base_revision, base_total = db.baseline(conn, *held.key)
            current = db.counter(conn, *held.key)
            if rule == "baseline":
                behind = held.revision > base_revision
            else:
                behind = held.revision > (exported or {}).get(held.key, current[0] if current else 0)
            if not behind:
                continue
            lost = held.total_milli - base_total
            period_end = current[2] if current else held.period_end
            db_consumption.restore_lost(
                conn, CounterKey(*held.key), period_end=period_end, lost_milli=lost, revision_above=held.revision,
                now=now,
            )  # fmt: skip
            after = db.counter(conn, *held.key)
            assert after is not None
            db.set_baseline(conn, *held.key, after[0], base_total + max(lost, 0))
            repaired.append(
                {
                    "license_id": held.license_id,
                    "feature": held.feature or None,
                    "period_start": iso_us(held.period_start) if held.period_start else None,
                    "vendor_revision": held.revision,
                    "vendor_total": milli_to_str(held.total_milli),
                    "restored": milli_to_str(max(lost, 0)),
                    "total_now": milli_to_str(after[1]),
                }
            )
        if rule == "baseline":  # the vendor stated everything it holds: a restore is settled
            restore_checked(conn)
        if repaired:
            server_state.put(conn, ROLLBACK, now)
            audit.record(
                conn,
                at=now,
                action="usage_rollback_detected",
                actor="system",
                target=channel,
                detail={"counters": repaired[:50], "count": len(repaired)},
            )
        return repaired

    return await store.write(unit)


BASELINE_OF_RESTORE = "baseline_of_restore"  # server_state: the RESTORED time whose first start took the baseline


async def take_baseline(store: Store) -> bool:
    """At start-up: every counter as it stands, for telling a rollback's lost usage from what is new since.
    True when this start is the database's (one SQLite server, or the first node of a PostgreSQL site): only
    then is it compared with the vendor's holdings. A node joining running nodes starts no new baseline (the
    others' deliveries since would look like a rollback's lost usage).

    After `floatsrv db restore`, the baseline of the first start (the restored state) is kept through later
    starts until a vendor has stated its holdings: usage counted between them is new, not what the vendor had."""

    def unit(conn: sqlite3.Connection) -> bool:
        if not store.alone(conn):
            return False
        restored = server_state.get(conn, RESTORED) or 0
        if restored and server_state.get(conn, BASELINE_OF_RESTORE) == restored:
            return True  # a restore not yet checked with the vendor: keep its baseline
        db.take_baseline(conn)
        if restored:
            server_state.put(conn, BASELINE_OF_RESTORE, restored)
        return True

    return await store.write(unit)
