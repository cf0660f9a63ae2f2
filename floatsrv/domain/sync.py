"""Upstream sync, the storage side: fixed batches from the outbox, confirmations, status, air-gap files.

A batch is made (records, and for delta upstreams the deltas) and committed before anything is sent; it is
re-sent unchanged until the upstream confirms it, so a batch id always means the same thing. Confirmation
moves a channel's delivered revision forward only; a permanent refusal parks the batch (visible, retried on
request) instead of retrying forever. Nothing here speaks HTTP: `workers.sync` does, through `upstream`.
"""

from __future__ import annotations

import secrets
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from floatsrv.clock import Clock
from floatsrv.db import audit, server_state
from floatsrv.db import sync as db
from floatsrv.db.store import Store
from floatsrv.db.sync import BatchRecord as BatchRecord  # re-exported for the worker and the API
from floatsrv.db.sync import BatchRow as BatchRow
from floatsrv.domain.accounts import Actor
from floatsrv.domain.timemark import TimeMark
from floatsrv.errors import InvalidRequest, NotFound
from floatsrv.quantity import milli_to_str
from floatsrv.times import iso_us, to_us

AIRGAP = "airgap"
_SERVER_ID = "server_id"
ROLLBACK = "usage_rollback_at"  # server_state: when a rollback of this database was last found (µs)
EPOCH = server_state.LINEAGE_EPOCH
RESTORED = server_state.RESTORED_AT


@dataclass(frozen=True, slots=True)
class Batch:
    row: BatchRow
    records: list[BatchRecord]

    @property
    def id(self) -> str:
        return self.row.id


@dataclass(slots=True)
class PassReport:
    """What one pass of the sender did on one channel."""

    channel: str
    records: int = 0
    requests: int = 0
    skipped: bool = False
    error: str | None = None
    parked: int = 0  # batches the upstream refused for good in this pass
    bounded: bool = False  # the pass sent as many batches as were owed at its start and stopped there


class SyncFailed(Exception):
    """At least one channel hit a retryable failure; the periodic loop backs off."""


class SyncControl(Protocol):
    """What the API and the admin commands may ask of the sync sender (`workers.sync.SyncWorker`)."""

    server_id: str
    passes: int  # passes finished, failed or not: something to wait for (tests, tools)

    async def run(self) -> list[PassReport]:
        """One pass over every upstream now. Raises SyncFailed if any had a retryable failure."""
        ...

    def wake_up(self) -> None:
        """Cut the periodic loop's wait short."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    channel: str
    pending_records: int
    oldest_pending_at: int | None
    parked_batches: int
    open_batch: BatchRow | None
    last_success_at: int | None
    last_error_at: int | None
    last_error: str | None
    consecutive_failures: int
    requests: int


async def integrity(store: Store, tolerance: timedelta, wall: datetime) -> dict[str, bool]:
    """What every batch and usage report tells the vendor about this site's clock and database: the system
    clock set back past the tolerance (`timemark`), and a rollback of the database found (`note_rollback`)."""

    def unit(conn: sqlite3.Connection) -> dict[str, bool]:
        mark = TimeMark(tolerance)  # the persisted mark, judged by the one rule (this process may not own it)
        mark.load(conn)
        tampered = mark.check(wall) is not None
        return {"clock_tampered": tampered, "usage_rollback": server_state.get(conn, ROLLBACK) is not None}

    return await store.read(unit)


async def server_id(store: Store, configured: str | None) -> str:
    """This server's name to upstreams: configured, or generated once and kept."""

    def unit(conn: sqlite3.Connection) -> str:
        if configured:
            return configured
        existing = db.setting(conn, _SERVER_ID)
        if existing is None:
            existing = f"fs-{uuid.uuid4().hex}"
            db.set_setting(conn, _SERVER_ID, existing)
        return existing

    return await store.write(unit)


async def claim(
    store: Store,
    clock: Clock,
    channel: str,
    owner: str,
    lease_seconds: float,
    holder_is_dead: Callable[[str], bool] = lambda _: False,
) -> bool:
    """Take the channel's sending lease. A lease held by a process known to be dead (by `holder_is_dead`, or
    by the store: on PostgreSQL a node whose connections are gone) is taken over at once (a crashed server
    must not hold up sync until its lease runs out)."""

    def unit(conn: sqlite3.Connection) -> bool:
        now = to_us(clock.now())
        until = now + int(lease_seconds * 1_000_000)
        if db.acquire_lease(conn, channel, owner, now, until):
            return True
        holder = db.lease_owner(conn, channel)
        if holder is not None and (holder_is_dead(holder) or store.node_gone(conn, holder.rpartition(":")[0])):
            db.release_lease(conn, channel, holder)
            return db.acquire_lease(conn, channel, owner, now, until)
        return False

    return await store.write(unit)


async def release(store: Store, channel: str, owner: str) -> None:
    await store.write(lambda conn: db.release_lease(conn, channel, owner))


async def batches_owed(store: Store, channel: str, size: int, cumulative: bool) -> int:
    """How many batches the channel is owed now: the bound of one sender's pass. A delta upstream's open batch
    is re-sent as it is, so it counts once more."""

    def unit(conn: sqlite3.Connection) -> int:
        pending, _ = db.pending_count(conn, channel)
        reopened = 1 if not cumulative and db.open_batch(conn, channel) is not None else 0
        return reopened + -(-pending // size)

    return await store.read(unit)


def _new_batch(conn: sqlite3.Connection, channel: str, rows: list[tuple[object, ...]], now: int, status: str) -> Batch:
    batch_id = f"b_{now:x}_{secrets.token_hex(6)}"
    db.insert_batch(conn, batch_id, channel, now, status, server_state.get(conn, EPOCH) or 0)
    for row in rows:
        db.insert_record(conn, batch_id, row)
    batch = db.get_batch(conn, batch_id)
    assert batch is not None
    return Batch(batch, db.batch_records(conn, batch_id))


async def next_batch(store: Store, clock: Clock, channel: str, size: int, cumulative: bool) -> Batch | None:
    """The next batch for the channel, or None when nothing is owed.

    Delta upstreams get their unconfirmed batch again, unchanged. Cumulative upstreams (which keep the
    highest revision) get a fresh batch with the latest totals instead: re-sending old revisions after an
    outage would only cost requests.
    """

    def unit(conn: sqlite3.Connection) -> Batch | None:
        now = to_us(clock.now())
        existing = db.open_batch(conn, channel)
        if existing is not None and not cumulative:
            return Batch(existing, [r for r in db.batch_records(conn, existing.id) if not r.delivered])
        if existing is not None:
            db.supersede_pending(conn, channel, now)
        rows = db.due(conn, channel, size, skip_open=True)
        return _new_batch(conn, channel, rows, now, "pending") if rows else None

    return await store.write(unit)


async def settle(
    store: Store,
    clock: Clock,
    channel: str,
    batch: Batch,
    confirmed: list[BatchRecord],
    *,
    complete: bool,
    park: str | None = None,
    retry: str | None = None,
    requests: int = 1,
) -> None:
    """Write down what the upstream confirmed, and whether the batch is done, parked, or to be retried."""

    def unit(conn: sqlite3.Connection) -> None:
        now = to_us(clock.now())
        for record in confirmed:
            db.mark_record_delivered(conn, batch.id, record)
            db.confirm(conn, channel, record, now)
        if complete:
            db.finish_batch(conn, batch.id, "delivered", now)
        elif park is not None:
            db.finish_batch(conn, batch.id, "parked", now, park)
            audit.record(
                conn,
                at=now,
                action="sync_batch_parked",
                actor="system",
                target=batch.id,
                detail={"channel": channel, "error": park[:300]},
            )
        else:
            db.note_attempt(conn, batch.id, now, retry)
        db.note_result(conn, channel, now, park or retry, requests)

    await store.write(unit)


async def retry_parked(store: Store, clock: Clock, channels: list[str], actor: Actor) -> int:
    """Put the channels' parked batches back in line (one transaction); returns how many were reopened."""

    def unit(conn: sqlite3.Connection) -> int:
        total = 0
        for channel in channels:
            count = db.reopen_parked(conn, channel)
            if count:
                actor.audit(conn, to_us(clock.now()), "sync_parked_retried", target=channel, detail={"batches": count})
            total += count
        return total

    return await store.write(unit)


async def note_run_requested(store: Store, clock: Clock, actor: Actor, channels: list[str]) -> None:
    """Audit an on-demand sync pass (admin sync control) before the worker starts it."""

    def unit(conn: sqlite3.Connection) -> None:
        actor.audit(conn, to_us(clock.now()), "sync_run_requested", detail={"channels": channels})

    await store.write(unit)


async def status(store: Store, channels: list[str]) -> list[ChannelStatus]:
    def unit(conn: sqlite3.Connection) -> list[ChannelStatus]:
        out = []
        for channel in channels:
            pending, oldest = db.pending_count(conn, channel)
            state = db.state(conn, channel)
            out.append(
                ChannelStatus(
                    channel=channel,
                    pending_records=pending,
                    oldest_pending_at=oldest,
                    parked_batches=len(db.batches(conn, channel, ("parked",))),
                    open_batch=db.open_batch(conn, channel),
                    last_success_at=state.last_success_at if state else None,
                    last_error_at=state.last_error_at if state else None,
                    last_error=state.last_error if state else None,
                    consecutive_failures=state.consecutive_failures if state else 0,
                    requests=state.requests if state else 0,
                )
            )
        return out

    return await store.read(unit)


def restored_unchecked(conn: sqlite3.Connection) -> bool:
    """`floatsrv db restore` put this database in place, and no vendor has stated its holdings since."""
    return bool(server_state.get(conn, RESTORED))


def restore_checked(conn: sqlite3.Connection) -> None:
    if server_state.get(conn, RESTORED):
        server_state.put(conn, RESTORED, 0)


async def export_batch(store: Store, clock: Clock, actor: str) -> tuple[Batch | None, bool]:
    """Every counter the vendor has not acknowledged yet, as a new exported batch (None: nothing owed), and
    whether it is instead a holdings request: after `floatsrv db restore` the first report carries no usage
    (its totals may be below the vendor's) and asks the vendor what it holds."""

    def unit(conn: sqlite3.Connection) -> tuple[Batch | None, bool]:
        if restored_unchecked(conn):
            batch = _new_batch(conn, AIRGAP, [], to_us(clock.now()), "exported")
            audit.record(conn, at=batch.row.created_at, action="usage_holdings_requested", actor=actor,
                         target=batch.id)  # fmt: skip
            return batch, True
        rows = db.due(conn, AIRGAP, 1_000_000, skip_open=False)
        if not rows:
            return None, False
        batch = _new_batch(conn, AIRGAP, rows, to_us(clock.now()), "exported")
        audit.record(
            conn,
            at=batch.row.created_at,
            action="usage_exported",
            actor=actor,
            target=batch.id,
            detail={"records": len(batch.records)},
        )
        return batch, False

    return await store.write(unit)


async def acknowledge(store: Store, clock: Clock, actor: str, receipt: dict[str, object], server: str) -> int:
    """Apply a verified vendor receipt: its report's records are delivered. Returns how many."""
    report_id = receipt.get("report_id")
    if receipt.get("server_id") != server:
        raise InvalidRequest("this receipt is for another server")
    if not isinstance(report_id, str):
        raise InvalidRequest("the receipt names no report")

    def unit(conn: sqlite3.Connection) -> int:
        now = to_us(clock.now())
        batch = db.get_batch(conn, report_id)
        if batch is None or batch.channel != AIRGAP:
            raise NotFound(f"no exported report {report_id!r} here")
        records = db.batch_records(conn, report_id)
        if receipt.get("records") != len(records):
            raise InvalidRequest("the receipt does not match the report (record count differs)")
        for record in records:
            db.mark_record_delivered(conn, report_id, record)
            db.confirm(conn, AIRGAP, record, now)
        db.finish_batch(conn, report_id, "delivered", now)
        db.note_result(conn, AIRGAP, now, None, 0)
        audit.record(
            conn, at=now, action="usage_acknowledged", actor=actor, target=report_id, detail={"records": len(records)}
        )
        return len(records)

    return await store.write(unit)


async def report_revisions(store: Store, report_id: str) -> dict[tuple[int, str, int], int]:
    """The revision each counter had in an exported report (the rollback check of its receipt)."""

    def unit(conn: sqlite3.Connection) -> dict[tuple[int, str, int], int]:
        return {(r.license_id, r.feature, r.period_start): r.revision for r in db.batch_records(conn, report_id)}

    return await store.read(unit)


def lag_seconds(oldest_pending_at: int | None, now: datetime) -> float | None:
    return None if oldest_pending_at is None else max(0.0, (to_us(now) - oldest_pending_at) / 1_000_000)


def channel_report(channel: ChannelStatus, now: datetime) -> dict[str, Any]:
    """One channel as `floatsrv status --json` and `floatsrv sync status --json` both show it (one set of keys)."""
    return {
        "channel": channel.channel,
        "pending_records": channel.pending_records,
        "lag_seconds": lag_seconds(channel.oldest_pending_at, now),
        "parked_batches": channel.parked_batches,
        "last_success_at": iso_us(channel.last_success_at),
        "consecutive_failures": channel.consecutive_failures,
        "last_error_at": iso_us(channel.last_error_at),
        "last_error": channel.last_error,
    }


def weakest_entitlements(records: list[BatchRecord]) -> str:
    """What a batch or report says about the terms behind its usage: "unsigned" if any license came from the
    customer's own YAML, else "demo" if any from a demo-signed file, else "signed"."""
    kinds = {record.entitlements or "unsigned" for record in records}
    return next((kind for kind in ("unsigned", "demo") if kind in kinds), "signed")


def wire_record(record: BatchRecord) -> dict[str, object]:
    """A counter as upstreams and air-gap reports see it: the cumulative total of its period, with a revision
    that increases on every change. Keeping the highest revision per (license, feature, period) makes
    re-sends harmless."""
    lifetime = record.period_start == 0
    period = "lifetime" if lifetime else iso_us(record.period_start)
    return {
        "record_id": f"{record.license_id}:{record.feature or '-'}:{period}:r{record.revision}",
        "license_id": record.license_id,
        "product": record.product,
        "feature": record.feature or None,
        "period_start": None if lifetime else iso_us(record.period_start),
        "period_end": iso_us(record.period_end),
        "quantity": milli_to_str(record.total_milli),
        "revision": record.revision,
        "entitlements": record.entitlements or "unsigned",
    }
