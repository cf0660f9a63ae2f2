"""Which licenses to serve, decided inside a write unit: the vendor's files in force plus inline YAML ones.

`Licensing` is what the decision needs (the build's trust anchor, this server's key, the inline licenses
of the config as last loaded, the config's `license_files` paths) and is held by the `Domain`. `admit`
checks a verified file against the database (series and sequence, license ids in force elsewhere) and
records it; `entries` re-reads every file in force from the database and verifies it again (the database
is the customer's: a stored file counts only while its signature holds), adding the inline licenses.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from floatsrv import jsjson
from floatsrv.db import activation as db_activation
from floatsrv.db import licensefiles as db
from floatsrv.db import licenses as db_licenses
from floatsrv.db import server_state
from floatsrv.db.licensefiles import FileRow
from floatsrv.domain.catalog import Entry, decode_definition
from floatsrv.domain.timemark import TimeMark
from floatsrv.entitlements.trust import TrustAnchor
from floatsrv.entitlements.verify import OpenedFile, open_file, text_digest
from floatsrv.entitlements.verify import config_file_texts as config_file_texts  # re-exported
from floatsrv.errors import (
    LicenseFileLicenseConflict,
    LicenseFileRefused,
    LicenseFileSuperseded,
    LicenseFileUnsignable,
    LicenseFileWrongServer,
    LicenseRequestSpent,
    LicenseRequestUnknown,
)
from floatsrv.models import LicenseSource, LicenseSpec
from floatsrv.times import to_us

GENERATION = "license_generation"  # server_state: bumped by every change of the files in force
FileState = Literal["in_force", "expired", "refresh_overdue", "superseded", "removed"]


class VerifiedFiles:
    """Cache of files verified in this process, by the SHA-256 of their text (a changed byte misses it).
    Owner: `Licensing`. Lifetime: the process; trimmed to the files in force after every decision."""

    def __init__(self) -> None:
        self._by_digest: dict[str, OpenedFile] = {}

    def open(self, text: str, trust: TrustAnchor) -> OpenedFile:
        digest = text_digest(text)
        found = self._by_digest.get(digest)
        if found is None:
            found = self._by_digest[digest] = open_file(text, trust)
        return found

    def keep_only(self, digests: set[str]) -> None:
        for digest in set(self._by_digest) - digests:
            del self._by_digest[digest]


@dataclass(slots=True)
class Licensing:
    trust: TrustAnchor
    server_key: str | None  # this server's identity key (base64); None where none exists yet (admin CLI)
    # Inline licenses of the YAML config as last loaded; None keeps the ones the database has (admin CLI).
    inline: tuple[LicenseSpec, ...] | None = None
    paths: tuple[Path, ...] = ()  # the config's license_files (files and directories)
    verified: VerifiedFiles = field(default_factory=VerifiedFiles)
    generation: int = 0  # the GENERATION this process last applied
    problems: tuple[str, ...] = ()  # stored files that no longer verify, as of the last decision
    fingerprint: str | None = None  # this host's fingerprint (`identity.fingerprint`); None: not known here
    rebind: tuple[str, ...] = ()  # files in force bound to another fingerprint, as of the last decision
    time: TimeMark = field(default_factory=TimeMark)  # licenses are judged at time.later(clock.now())
    # api_v5 is on: licenses are copied into signed replies, so their free-form values must be signable.
    signed_replies: bool = False


def file_state(row: FileRow, now: datetime) -> FileState:
    if row.end_reason is not None:
        return "superseded" if row.end_reason == "superseded" else "removed"
    if row.expires_at is not None and row.expires_at <= to_us(now):
        return "expired"
    if row.refresh_by is not None and row.refresh_by <= to_us(now):
        return "refresh_overdue"  # its licenses are not served until a newer file arrives
    return "in_force"


def bump_generation(conn: sqlite3.Connection) -> int:
    value = (server_state.get(conn, GENERATION) or 0) + 1
    server_state.put(conn, GENERATION, value)
    return value


def _stored_inline(conn: sqlite3.Connection) -> list[LicenseSpec]:
    return [
        decode_definition(row.definition, row.definition_format)
        for row in db_licenses.all_licenses(conn)
        if row.file_id is None and row.removed_at is None
    ]


def inline_ids(conn: sqlite3.Connection, licensing: Licensing) -> set[int]:
    specs = licensing.inline if licensing.inline is not None else _stored_inline(conn)
    return {spec.id for spec in specs}


def admit(
    conn: sqlite3.Connection, opened: OpenedFile, licensing: Licensing, now: int, actor: str
) -> tuple[Literal["imported", "unchanged"], FileRow, str | None]:
    """Record a verified, applicable file as in force: (outcome, its row, the file it superseded).
    Every check comes before the first write; raises the LicenseFileRefused subclass that says why."""
    payload = opened.payload
    existing = db.get(conn, opened.file_id)
    if existing is not None:
        if existing.ended_at is None and existing.digest == opened.digest:
            return "unchanged", existing, None
        why = f"was {existing.end_reason}" if existing.end_reason else "is in force with other contents"
        raise LicenseFileSuperseded(f"file {opened.file_id} was imported before and {why}", file_id=opened.file_id)
    high = db.high_sequence(conn, payload.series)
    if payload.sequence <= high:
        raise LicenseFileSuperseded(
            f"series {payload.series!r} is at sequence {high}; file {opened.file_id} has sequence {payload.sequence}",
            series=payload.series,
            sequence=payload.sequence,
            high_sequence=high,
        )
    in_force = db.in_force(conn)
    previous = next((row for row in in_force if row.series == payload.series), None)
    ids = {spec.id for spec in payload.licenses}
    for row in in_force:
        clash = ids & set(row.license_ids)
        if row is not previous and clash:
            raise LicenseFileLicenseConflict(
                f"license {min(clash)} is in force from file {row.file_id} (series {row.series!r})",
                license_id=min(clash),
                file_id=row.file_id,
            )
    clash = ids & inline_ids(conn, licensing)
    if clash:
        raise LicenseFileLicenseConflict(
            f"license {min(clash)} is an inline license of the YAML config (licenses:); remove it there first",
            license_id=min(clash),
        )
    if payload.request_id is not None:
        _check_request(conn, payload.request_id, opened.file_id, licensing)
    unsignable = jsjson.license_problems(payload.licenses) if licensing.signed_replies else []
    if unsignable:
        raise LicenseFileUnsignable("; ".join(unsignable[:3]), file_id=opened.file_id)
    if previous is not None:
        db.end(conn, previous.file_id, now, "superseded")
    row = FileRow(
        file_id=opened.file_id,
        digest=opened.digest,
        kid=opened.key.kid,
        series=payload.series,
        sequence=payload.sequence,
        entitlements=opened.entitlements,
        bound_to=opened.bound_to,
        issued_at=to_us(payload.issued_at),
        not_before=to_us(payload.not_before),
        expires_at=to_us(payload.expires_at) if payload.expires_at else None,
        license_ids=sorted(ids),
        imported_at=now,
        imported_by=actor,
        ended_at=None,
        end_reason=None,
        refresh_by=to_us(payload.refresh_by) if payload.refresh_by else None,
        fingerprint=opened.fingerprint,
        request_id=payload.request_id,
    )
    db.insert(conn, row, opened.text)
    if payload.request_id is not None:
        db_activation.spend(conn, payload.request_id, opened.file_id, now)
    licensing.time.raise_to(conn, payload.issued_at)  # the vendor's word on the time, for trusted time
    return "imported", row, previous.file_id if previous else None


def _check_request(conn: sqlite3.Connection, request_id: str, file_id: str, licensing: Licensing) -> None:
    """A file answering an activation request is accepted once, on the server that made the request."""
    request = db_activation.get(conn, request_id)
    if request is None or request.server_key != licensing.server_key:
        raise LicenseRequestUnknown(
            f"file {file_id} answers activation request {request_id}, which this server did not make",
            file_id=file_id,
            request_id=request_id,
        )
    if request.spent_by is not None:
        raise LicenseRequestSpent(
            f"activation request {request_id} was used by file {request.spent_by} already; make a new request "
            "(floatsrv license request)",
            file_id=file_id,
            request_id=request_id,
        )


def _capped(spec: LicenseSpec, expires_at: datetime | None) -> LicenseSpec:
    """The license as served: it expires no later than its file, nor past the file's refresh_by (clients then
    get license_expired)."""
    if expires_at is None or (spec.validity_period is not None and spec.validity_period <= expires_at):
        return spec
    return spec.model_copy(update={"validity_period": expires_at})


def entries(conn: sqlite3.Connection, licensing: Licensing) -> tuple[list[Entry], list[str]]:
    """Every license to serve now, and the stored files that no longer verify (their licenses are not served).
    Raises LicenseFileLicenseConflict when an inline license has the id of one from a file."""
    out: list[Entry] = []
    problems: list[str] = []
    from_files: dict[int, str] = {}
    digests: set[str] = set()
    rebind: list[str] = []
    for file_id, text in db.in_force_texts(conn):
        try:
            opened = licensing.verified.open(text, licensing.trust)
        except LicenseFileRefused as exc:
            problems.append(f"license file {file_id}: {exc.code}: {exc.message}")
            continue
        bound = opened.bound_to
        if bound is not None and licensing.server_key is None:
            # Never drop a bound file's licenses only because this process cannot read the server's key.
            raise LicenseFileWrongServer(f"file {file_id} is bound to a server key, and the server's key is unreadable")
        if opened.file_id != file_id or (bound is not None and bound != licensing.server_key):
            problems.append(f"license file {file_id}: license_file_wrong_server: bound to another server's key")
            continue
        digests.add(opened.digest)
        if opened.fingerprint is not None and licensing.fingerprint not in (None, opened.fingerprint):
            rebind.append(file_id)  # still served (until refresh_by): a re-activation is asked for
        for spec in opened.payload.licenses:
            from_files[spec.id] = file_id
            out.append(Entry(_capped(spec, opened.ends_at), LicenseSource(opened.entitlements, file_id)))
    licensing.verified.keep_only(digests)
    licensing.rebind = tuple(rebind)
    inline = licensing.inline if licensing.inline is not None else _stored_inline(conn)
    for spec in inline:
        if spec.id in from_files:
            raise LicenseFileLicenseConflict(
                f"licenses: license {spec.id} is also granted by license file {from_files[spec.id]}; "
                "remove it from the YAML",
                license_id=spec.id,
            )
        out.append(Entry(spec, LicenseSource("unsigned", None)))
    return out, problems
