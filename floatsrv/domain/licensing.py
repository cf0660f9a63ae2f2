"""License files, the operations: load at start and reload, import, remove, list, and pick up changes.

Each operation is one write unit that checks everything before its first write, records the file (or its
end), decides again which licenses to serve (`licensefiles.entries`) and writes that decision
(`catalog.apply_entries`), with its audit row, so a file is applied completely or not at all. A refusal
changes nothing but the audit log. The admin CLI works on the database directly; a running server notices
through the license generation in `server_state` (`refresh_if_changed`, polled by `workers.licensewatch`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from floatsrv.clock import Clock
from floatsrv.db import audit, server_state
from floatsrv.db import licensefiles as db
from floatsrv.db.licensefiles import FileRow as FileRow  # re-exported for the API layer
from floatsrv.db.store import Store
from floatsrv.domain.accounts import Actor
from floatsrv.domain.catalog import Catalog, SyncReport, apply_entries
from floatsrv.domain.context import Domain
from floatsrv.domain.licensefiles import GENERATION, Licensing, admit, bump_generation, config_file_texts, entries
from floatsrv.entitlements.verify import OpenedFile, check_applicable, text_digest
from floatsrv.errors import LicenseFileNotFound, LicenseFileRefused
from floatsrv.times import to_us


@dataclass(frozen=True, slots=True)
class ImportResult:
    outcome: Literal["imported", "unchanged"]
    file: FileRow
    superseded: str | None  # the file of the same series it replaced
    report: SyncReport


@dataclass(frozen=True, slots=True)
class Refusal:
    path: Path
    code: str
    message: str


@dataclass(slots=True)
class LoadResult:
    catalog: Catalog
    report: SyncReport
    imported: list[tuple[Path, str]] = field(default_factory=list)  # (path, file id) new to this database
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why): known and ended, kept out
    refused: list[Refusal] = field(default_factory=list)


def _refusal_detail(exc: LicenseFileRefused, text: str) -> dict[str, object]:
    detail = {k: v for k, v in exc.detail.items() if isinstance(v, (str, int))}
    return {"code": exc.code, "message": exc.message[:300], "sha256": text_digest(text), **detail}


async def load(store: Store, clock: Clock, licensing: Licensing) -> LoadResult:
    """At start and on reload: take in the config's license files that are new, then decide and write which
    licenses to serve. Files that cannot be taken in are reported (and audited), never fatal. Raises
    LicenseFileLicenseConflict when an inline license has the id of one from a file."""
    texts, unreadable = await asyncio.to_thread(config_file_texts, licensing.paths)
    now = clock.now()
    opened: list[tuple[Path, OpenedFile]] = []
    refused = [Refusal(path, "license_file_unreadable", problem) for path, problem in unreadable]
    failed: list[tuple[Path, str, LicenseFileRefused]] = []
    for path, text in texts:
        try:
            opened.append((path, licensing.verified.open(text, licensing.trust)))
        except LicenseFileRefused as exc:
            failed.append((path, text, exc))

    def unit(conn: sqlite3.Connection) -> LoadResult:
        t = to_us(now)
        licensing.time.load(conn)
        result_imported: list[tuple[Path, str]] = []
        skipped: list[tuple[Path, str]] = []
        refusals = list(failed)
        changed = False
        for path, file in opened:
            known = db.get(conn, file.file_id)
            if known is not None and known.ended_at is not None:
                skipped.append((path, f"file {file.file_id} was {known.end_reason}; delete it from license_files"))
                continue
            try:
                if known is None:
                    check_applicable(
                        file,
                        server_key=licensing.server_key,
                        now=licensing.time.later(now),
                        tolerance=licensing.time.tolerance,
                    )
                outcome, row, _ = admit(conn, file, licensing, t, f"config:{path.name}")
            except LicenseFileRefused as exc:
                refusals.append((path, file.text, exc))
                continue
            if outcome == "imported":
                changed = True
                result_imported.append((path, row.file_id))
                audit.record(
                    conn,
                    at=t,
                    action="license_file_imported",
                    actor="config",
                    peer="local",  # read from the server's own disk
                    target=row.file_id,
                    detail={"path": str(path), "licenses": row.license_ids, "series": row.series},
                )
        for path, text, refusal in refusals:
            audit.record(
                conn,
                at=t,
                action="license_file_refused",
                actor="config",
                peer="local",
                target=str(refusal.detail.get("file_id") or path.name),
                detail={"path": str(path), **_refusal_detail(refusal, text)},
            )
        served, problems = entries(conn, licensing)
        catalog, report = apply_entries(conn, served, t)
        licensing.problems = tuple(problems)
        generation = bump_generation(conn) if changed else server_state.get(conn, GENERATION) or 0
        licensing.generation = generation
        out = LoadResult(catalog, report, result_imported, skipped)
        out.refused = refused + [Refusal(path, r.code, r.message) for path, _, r in refusals]
        return out

    return await store.write(unit)


async def _audit_refusal(domain: Domain, actor: Actor, exc: LicenseFileRefused, text: str) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        target = exc.detail.get("file_id")
        actor.audit(
            conn,
            to_us(domain.clock.now()),
            "license_file_refused",
            target=str(target) if target else None,
            detail=_refusal_detail(exc, text),
        )

    await domain.store.write(unit)


async def import_text(domain: Domain, actor: Actor, text: str) -> ImportResult:
    """Verify a license file and apply it at once (no restart). Raises a LicenseFileRefused subclass,
    after recording the refusal in the audit log; nothing else changes then."""
    licensing = domain.licensing
    now = domain.clock.now()
    try:
        opened = licensing.verified.open(text, licensing.trust)
        check_applicable(
            opened, server_key=licensing.server_key, now=licensing.time.later(now), tolerance=licensing.time.tolerance
        )
    except LicenseFileRefused as exc:
        await _audit_refusal(domain, actor, exc, text)
        raise

    def unit(conn: sqlite3.Connection) -> tuple[ImportResult, Catalog, int]:
        t = to_us(now)
        outcome, row, superseded = admit(conn, opened, licensing, t, actor.name)
        served, problems = entries(conn, licensing)
        catalog, report = apply_entries(conn, served, t)
        licensing.problems = tuple(problems)
        generation = server_state.get(conn, GENERATION) or 0
        if outcome == "imported":
            generation = bump_generation(conn)
            actor.audit(
                conn,
                t,
                "license_file_imported",
                target=row.file_id,
                detail={
                    "licenses": row.license_ids,
                    "series": row.series,
                    "sequence": row.sequence,
                    "superseded": superseded,
                },  # fmt: skip
            )
        return ImportResult(outcome, row, superseded, report), catalog, generation

    try:
        result, catalog, generation = await domain.store.write(unit)
    except LicenseFileRefused as exc:
        await _audit_refusal(domain, actor, exc, text)
        raise
    domain.serve(catalog)
    licensing.generation = generation
    return result


async def remove(domain: Domain, actor: Actor, file_id: str) -> FileRow:
    """End a file in force: its licenses stop being served (their held seats end)."""
    licensing = domain.licensing

    def unit(conn: sqlite3.Connection) -> tuple[FileRow, Catalog, int]:
        t = to_us(domain.clock.now())
        row = db.get(conn, file_id)
        if row is None or not db.end(conn, file_id, t, "removed"):
            raise LicenseFileNotFound(f"no license file {file_id!r} in force", param="file_id")
        served, problems = entries(conn, licensing)
        catalog, report = apply_entries(conn, served, t)
        licensing.problems = tuple(problems)
        actor.audit(
            conn,
            t,
            "license_file_removed",
            target=file_id,
            detail={"licenses": row.license_ids, "seats_ended": report.seats_ended},
        )
        return db.get(conn, file_id) or row, catalog, bump_generation(conn)

    row, catalog, generation = await domain.store.write(unit)
    domain.serve(catalog)
    licensing.generation = generation
    return row


async def files(store: Store, include_ended: bool = False) -> list[FileRow]:
    return await store.read(lambda conn: db.listing(conn, include_ended))


async def refresh_if_changed(domain: Domain) -> SyncReport | None:
    """Apply what another process (the admin CLI) changed in the files in force; None when nothing did."""
    licensing = domain.licensing
    generation = await domain.store.read(lambda conn: server_state.get(conn, GENERATION) or 0)
    if generation == licensing.generation:
        return None

    def unit(conn: sqlite3.Connection) -> tuple[Catalog, SyncReport, int]:
        served, problems = entries(conn, licensing)
        catalog, report = apply_entries(conn, served, to_us(domain.clock.now()))
        licensing.problems = tuple(problems)
        return catalog, report, server_state.get(conn, GENERATION) or 0

    catalog, report, generation = await domain.store.write(unit)
    domain.serve(catalog)
    licensing.generation = generation
    return report
