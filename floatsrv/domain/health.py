"""Liveness and readiness facts: can the database take writes, is its schema current, is the clock sane.

Also owns the clock's high-water mark: the latest server time is written down periodically, and a later
start never hands out an earlier time (see `floatsrv.clock.SteadyClock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floatsrv.clock import SteadyClock, wall_now
from floatsrv.db import audit, migrate
from floatsrv.db import backup as db_backup
from floatsrv.db import licensefiles as db_licensefiles
from floatsrv.db import licenses as db_licenses
from floatsrv.db import server_state as db_state
from floatsrv.db.store import Probe, Store, StoreStats
from floatsrv.domain.context import Domain
from floatsrv.domain.sync import ROLLBACK
from floatsrv.domain.timemark import Tampering
from floatsrv.errors import StorageUnavailable
from floatsrv.times import from_us, iso, iso_us, to_us

HIGH_WATER = "clock_high_water"
PROBE = "ready_probe"
# A commit this recent proves the database writable; otherwise /readyz writes a probe row.
_FRESH_COMMIT_SECONDS = 5.0
# A failed batch of real work this recent keeps /readyz failing until real work commits again.
RECENT_FAILURE_SECONDS = 60.0
# License files expiring sooner than this are warned about.
EXPIRY_WARNING = timedelta(days=7)


def to_us_delta(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)


async def check_database(path: Path, busy_timeout_ms: int) -> tuple[int | None, list[str]]:
    """(schema version, problems) of the database file, read-only."""
    return await asyncio.to_thread(db_backup.check, path, busy_timeout_ms)


async def remember_time(domain: Domain) -> Tampering | None:
    """Write down the server's time (it never goes back on this database, even across restarts), raise the
    trusted-time mark with it, and say whether the system clock is now tampered with (newly: the caller logs)."""
    now = domain.clock.now()
    mark = domain.licensing.time

    def unit(conn: sqlite3.Connection) -> None:
        db_state.raise_to(conn, HIGH_WATER, to_us(now))
        mark.raise_to(conn, now)

    await domain.store.write(unit)
    was = mark.tampered
    found = mark.check(wall_now(domain.clock))
    if found is None or was is not None:
        return None
    detail = {"wall_clock": iso(found.wall), "time_mark": iso(found.mark)}
    await domain.store.write(
        lambda conn: audit.record(conn, at=to_us(now), action="clock_tampered", actor="system", detail=detail)
    )
    return found


async def time_floor(store: Store) -> datetime | None:
    """The latest server time written to this database, if any."""
    value = await store.read(lambda conn: db_state.get(conn, HIGH_WATER))
    return from_us(value) if value is not None else None


async def readiness(domain: Domain) -> tuple[bool, dict[str, Any]]:
    """(ready, checks): ready when the database takes writes and its schema is the one this build expects."""
    store = domain.store
    stats = store.stats
    database: dict[str, Any] = {"status": "ok"}
    if stats.last_commit is None or time.time() - stats.last_commit > _FRESH_COMMIT_SECONDS or stats.fault:
        with contextlib.suppress(StorageUnavailable):  # the fault is recorded in stats; reported below
            now = to_us(domain.clock.now())
            await store.write(Probe(lambda conn: db_state.put(conn, PROBE, now)))
    if stats.fault is not None:
        database = {"status": "failing", "reason": stats.fault, "since": _iso_epoch(stats.fault_since)}
    elif _real_writes_failing(stats):
        # The probe fits, real writes did not (a nearly full disk): not ready until real work commits again.
        database = {
            "status": "failing",
            "reason": stats.last_failure_reason,
            "since": _iso_epoch(stats.last_failure),
            "message": "recent writes failed; only the small readiness probe got through",
        }
    version = store.schema_version()
    expected = migrate.latest_version()
    migrations: dict[str, Any] = {"status": "ok", "version": version, "expected": expected}
    if version != expected:
        migrations.update(status="failing", reason="pending", message="the database schema is not this build's")
    checks = {
        "database": database,
        "migrations": migrations,
        "config": {"status": "ok", "licenses": len(domain.catalog.licenses())},
        "clock": clock_report(domain),
        "entitlements": entitlements_report(domain),
        "license_files": await license_files_report(domain),
        "usage_rollback": await rollback_report(domain),
        "licenses": await licenses_report(domain),
    }
    return verdict(checks), checks


# The one rule of /readyz: only these checks can make the server not ready (503); every other check reports
# "ok" or "warning" and never changes the status (monitoring and the container health check rely on it).
CRITICAL = ("database", "migrations", "config")


def verdict(checks: dict[str, dict[str, Any]]) -> bool:
    """Ready when every critical check is ok; warnings (expired licenses, unsigned terms, the clock) never
    make the server unready."""
    return all(checks[name]["status"] == "ok" for name in CRITICAL)


async def licenses_report(domain: Domain) -> dict[str, Any]:
    """`warning` for licenses whose validity period has passed (clients get license_expired), licenses that
    expire within EXPIRY_WARNING, and seats held above a lowered limit (they stay until they end). Judged at
    trusted time (the later of the clock and the time mark)."""
    now = domain.licensing.time.later(domain.clock.now())
    expired, soon = [], []
    for license in domain.catalog.licenses():
        until = license.spec.validity_period
        if until is not None and until <= now:
            expired.append(license.id)
        elif until is not None and until <= now + EXPIRY_WARNING:
            soon.append({"license_id": license.id, "expires_at": iso(until)})
    over = await domain.store.read(lambda conn: db_licenses.seats_over_limit(conn, to_us(now)))
    report: dict[str, Any] = {"status": "ok", "served": len(domain.catalog.licenses())}
    if expired or soon or over:
        report.update(
            status="warning",
            expired=expired,
            expiring_soon=soon,
            seats_over_limit=[
                {"license_id": lid, "feature": feature or None, "held": held, "limit": limit}
                for lid, feature, held, limit in over
            ],
            message="; ".join(license_messages(expired, soon, over)),
        )
    return report


def license_messages(
    expired: list[int], soon: list[dict[str, Any]], over: list[tuple[int, str, int, int]]
) -> list[str]:
    """What an admin should read about the licenses, one sentence each (logs, /readyz, `floatsrv status`)."""
    lines = []
    if expired:
        lines.append(f"licenses {expired} have expired: clients get license_expired")
    if soon:
        lines.append(f"licenses {[entry['license_id'] for entry in soon]} expire within {EXPIRY_WARNING.days} days")
    for lid, feature, held, limit in over:
        where = f"license {lid}" + (f" feature {feature}" if feature else "")
        lines.append(f"{where}: {held} seats held, limit {limit} (no new seats until they end)")
    return lines


def entitlements_report(domain: Domain) -> dict[str, Any]:
    """`ok` when every license comes from a vendor-signed file; `warning` naming the unsigned (inline YAML) and
    demo-signed ones. A warning: serving goes on."""
    by_kind: dict[str, list[int]] = {"signed": [], "demo": [], "unsigned": []}
    for license in domain.catalog.licenses():
        by_kind[license.source.entitlements].append(license.id)
    report: dict[str, Any] = {"status": "ok", "signed": len(by_kind["signed"])}
    if by_kind["unsigned"] or by_kind["demo"]:
        report.update(status="warning", unsigned=by_kind["unsigned"], demo=by_kind["demo"])
        report["message"] = (
            "some licenses are not signed by the vendor (unsigned: inline in the YAML config; demo: signed with "
            "the published demo key); usage sent upstream is flagged"
        )
    return report


async def license_files_report(domain: Domain) -> dict[str, Any]:
    """License files in force; `warning` when one has expired or expires within EXPIRY_WARNING, its refresh_by
    has passed or comes within EXPIRY_WARNING, it is bound to another host fingerprint (a re-activation is
    needed), or a stored file no longer verifies (its licenses are not served). At trusted time."""
    licensing = domain.licensing
    now = to_us(licensing.time.later(domain.clock.now()))
    warn = now + to_us_delta(EXPIRY_WARNING)
    rows = await domain.store.read(db_licensefiles.in_force)
    expired = [row.file_id for row in rows if row.expires_at is not None and row.expires_at <= now]
    soon = [
        {"file_id": row.file_id, "expires_at": iso_us(row.expires_at)}
        for row in rows
        if row.expires_at is not None and now < row.expires_at <= warn
    ]
    overdue = [row.file_id for row in rows if row.refresh_by is not None and row.refresh_by <= now]
    refresh_soon = [
        {"file_id": row.file_id, "refresh_by": iso_us(row.refresh_by)}
        for row in rows
        if row.refresh_by is not None and now < row.refresh_by <= warn
    ]
    report: dict[str, Any] = {"status": "ok", "in_force": len(rows)}
    problems = list(licensing.problems)
    rebind = list(licensing.rebind)
    if expired or soon or problems or overdue or refresh_soon or rebind:
        report.update(status="warning", expired=expired, expiring_soon=soon, not_served=problems)
        report.update(refresh_overdue=overdue, refresh_soon=refresh_soon, fingerprint_changed=rebind)
        lines = expiry_messages(expired, soon, problems) + file_messages(overdue, refresh_soon, rebind)
        report["message"] = "; ".join(lines)
    return report


def expiry_messages(expired: list[str], soon: list[dict[str, Any]], not_served: list[Any]) -> list[str]:
    """What an admin should read about files that expired, expire soon or no longer verify."""
    lines = []
    if expired:
        lines.append(f"license files {expired} have expired: their licenses are not served")
    if soon:
        lines.append(
            f"license files {[entry['file_id'] for entry in soon]} expire within {EXPIRY_WARNING.days} days: "
            "import the vendor's renewed file before then"
        )
    if not_served:
        lines.append(f"{len(not_served)} stored license file(s) no longer verify: their licenses are not served")
    return lines


def file_messages(overdue: list[str], soon: list[dict[str, Any]], rebind: list[str]) -> list[str]:
    """What an admin should read about refresh deadlines and fingerprints (logs, /readyz, `floatsrv status`)."""
    lines = []
    if overdue:
        lines.append(
            f"license files {overdue} passed their refresh_by without a newer file: their licenses are not served"
        )
    if soon:
        lines.append(
            f"license files {[entry['file_id'] for entry in soon]} must be refreshed within {EXPIRY_WARNING.days} "
            "days (online: the licensing upstream; offline: floatsrv license request, then import the new file)"
        )
    if rebind:
        lines.append(
            f"license files {rebind} are bound to another host fingerprint (new hardware, a rebuilt container or a "
            "restore elsewhere): re-activate with floatsrv license request (a rebind) before their refresh_by"
        )
    return lines


async def rollback_report(domain: Domain) -> dict[str, Any]:
    """`warning` once the database was found rolled back (a restored backup or snapshot; repaired, and the
    vendor told); it stays, for the admin to know why the vendor asks."""
    at = await domain.store.read(lambda conn: db_state.get(conn, ROLLBACK))
    if at is None:
        return {"status": "ok"}
    return {
        "status": "warning",
        "detected_at": iso_us(at),
        "message": "this database was rolled back (a restored backup or snapshot): the vendor holds usage it had "
        "lost; the counters were repaired from the vendor's totals (audit: usage_rollback_detected)",
    }


def clock_report(domain: Domain) -> dict[str, Any]:
    """`ok`, or `warning` with the wall clock's backward steps beyond the tolerance (they do not stop service),
    and clock tampering: the system clock more than licensing.clock_tolerance_hours behind the time mark."""
    clock = domain.clock
    report: dict[str, Any] = {"status": "ok"}
    if isinstance(clock, SteadyClock) and clock.jumps:
        last = clock.jumps[-1]
        report = {
            "status": "warning",
            "message": "the system clock stepped backwards; floatsrv kept its own time moving forward",
            "backward_jumps": len(clock.jumps),
            "last_jump": {"seen_at": iso(last.at), "wall_clock": iso(last.wall), "seconds": round(last.seconds, 3)},
            "wall_clock_behind": clock.wall.now() < clock.now(),
        }
    tampered = domain.licensing.time.tampered
    if tampered is not None:
        report.update(
            status="warning",
            clock_tampered=True,
            message=f"the system clock reads {iso(tampered.wall)}, {tampered.behind_seconds / 3600:.1f} h behind "
            f"the latest time this server has seen ({iso(tampered.mark)}): licenses are judged at that time, and "
            "the vendor is told",
            wall_clock=iso(tampered.wall),
            time_mark=iso(tampered.mark),
        )
    return report


def _real_writes_failing(stats: StoreStats) -> bool:
    failed = stats.last_failure
    if failed is None or time.time() - failed > RECENT_FAILURE_SECONDS:
        return False
    return stats.last_real_commit is None or stats.last_real_commit < failed


def _iso_epoch(seconds: float | None) -> str | None:
    return iso(datetime.fromtimestamp(seconds, UTC)) if seconds is not None else None
