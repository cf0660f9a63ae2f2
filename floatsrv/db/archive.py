"""Backup archives of a data directory: everything a restored server needs to be the same server.

An archive is a tar file holding a consistent snapshot of the database (SQLite's backup API, checked), the
bearer-token signing key (without it every token issued so far gets 401) and the server's Ed25519 identity
key (license files are bound to it, upstreams know the server by it), plus `manifest.json`:

    {"format": "floatsrv-backup/1", "created_at": ISO 8601, "floatsrv_version": ..., "schema_version": N,
     "files": {"floatsrv.db": "<sha256 hex>", "token-signing.key": ..., "server-ed25519.pem": ...}}

Writing is atomic (a temporary file beside the target, fsynced, renamed; mode 0600: it holds password hashes
and private keys). Restoring verifies everything before touching the data directory (manifest, digests, the
database's integrity and schema, the keys parse), stages the files inside the data directory, moves what was
there aside into `before-restore-<time>/` (nothing is deleted), then renames the staged files into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from floatsrv.auth.tokens import read_key
from floatsrv.db import backup as db_backup
from floatsrv.db import migrate, server_state
from floatsrv.signing import SignatureError, read_private_key

FORMAT = "floatsrv-backup/1"
DATABASE = "floatsrv.db"
TOKEN_KEY = "token-signing.key"  # noqa: S105 -- a member name, not a secret
SERVER_KEY = "server-ed25519.pem"
MANIFEST = "manifest.json"
# What an archive may hold, and nothing else (a member by any other name is refused, never extracted).
MEMBERS = (MANIFEST, DATABASE, TOKEN_KEY, SERVER_KEY)


class ArchiveError(Exception):
    """Why an archive cannot be written or restored (one line for the admin)."""


@dataclass(frozen=True)
class DataFiles:
    """Where a data directory keeps what a backup holds (config.db_path, token_key_path, signing_key_path)."""

    database: Path
    token_key: Path
    server_key: Path

    def by_member(self) -> dict[str, Path]:
        return {DATABASE: self.database, TOKEN_KEY: self.token_key, SERVER_KEY: self.server_key}


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    files: tuple[str, ...]
    schema_version: int


@dataclass(frozen=True)
class Restored:
    files: tuple[str, ...]
    schema_version: int
    created_at: str
    moved_aside: Path | None  # where the data directory's previous files went


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(data: DataFiles, out: Path, version: str, busy_timeout_ms: int = 5000) -> Written:
    """Back up a data directory (its server may be running) into the archive `out`. Raises ArchiveError."""
    database, token_key = data.database, data.token_key
    if not database.exists():
        raise ArchiveError(f"no database at {database}")
    if not token_key.exists():
        raise ArchiveError(f"no token signing key at {token_key}: start the server once before backing it up")
    with tempfile.TemporaryDirectory(prefix=".floatsrv-backup-", dir=out.parent) as staging:
        stage = Path(staging)
        try:
            db_backup.backup(database, stage / DATABASE, busy_timeout_ms)
        except (sqlite3.Error, RuntimeError) as exc:
            raise ArchiveError(f"cannot copy the database: {exc}") from None
        files = [DATABASE, TOKEN_KEY]
        shutil.copyfile(token_key, stage / TOKEN_KEY)
        if data.server_key.exists():
            shutil.copyfile(data.server_key, stage / SERVER_KEY)
            files.append(SERVER_KEY)
        version_found, problems = db_backup.check(stage / DATABASE, busy_timeout_ms)
        if problems or version_found is None:
            raise ArchiveError(f"the database copy failed its check: {(problems or ['unknown'])[0]}")
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "floatsrv_version": version,
            "schema_version": version_found,
            "files": {name: _sha256(stage / name) for name in files},
        }
        temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
                text = json.dumps(manifest, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(text), 0o600, int(datetime.now(UTC).timestamp())
                tar.addfile(info, io.BytesIO(text))
                for name in files:
                    tar.add(stage / name, arcname=name, recursive=False, filter=_private)
                tar.close()
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(temp, out)
            _fsync_dir(out.absolute().parent)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    return Written(out, out.stat().st_size, tuple(files), version_found)


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def _read(archive: Path, stage: Path) -> dict[str, Any]:
    """Extract the archive's known members into `stage` and check them against the manifest."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = tar.getmembers()
            names = [member.name for member in members]
            unknown = sorted(set(names) - set(MEMBERS))
            if unknown or len(set(names)) != len(names):
                raise ArchiveError(f"{archive}: not a floatsrv backup (unexpected member {(unknown or names)[0]!r})")
            for member in members:
                if not member.isfile():
                    raise ArchiveError(f"{archive}: not a floatsrv backup ({member.name!r} is not a file)")
                source = tar.extractfile(member)
                if source is None:
                    raise ArchiveError(f"{archive}: cannot read {member.name!r}")
                with source, (stage / member.name).open("wb") as target:
                    shutil.copyfileobj(source, target)
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{archive}: not a readable floatsrv backup ({exc})") from None
    try:
        manifest = json.loads((stage / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ArchiveError(f"{archive}: not a floatsrv backup (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArchiveError(f"{archive}: backup format {found!r}; this floatsrv restores {FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or DATABASE not in files or TOKEN_KEY not in files:
        raise ArchiveError(f"{archive}: the backup lacks the database or the token signing key")
    for name, digest in files.items():
        if name not in MEMBERS or not (stage / name).exists():
            raise ArchiveError(f"{archive}: {name} is listed in the manifest but missing (a truncated copy?)")
        if _sha256(stage / name) != digest:
            raise ArchiveError(f"{archive}: {name} does not match its digest (a damaged copy)")
    return manifest


def _check_keys(stage: Path, archive: Path) -> None:
    try:
        read_key(stage / TOKEN_KEY)
        if (stage / SERVER_KEY).exists():
            read_private_key(stage / SERVER_KEY)
    except (OSError, ValueError, SignatureError) as exc:
        raise ArchiveError(f"{archive}: a key in the backup is unusable: {exc}") from None


def _mark_restored(database: Path, busy_timeout_ms: int) -> None:
    """Tell the restored database it was restored: its sync batches start a new lineage epoch (delta ids never
    repeat those of usage the restore lost), and the server looks for a rollback at its next start."""
    conn = sqlite3.connect(database, timeout=busy_timeout_ms / 1000)
    try:
        with conn:
            now = int(datetime.now(UTC).timestamp() * 1_000_000)
            server_state.put(conn, server_state.RESTORED_AT, now)
            server_state.put(conn, server_state.LINEAGE_EPOCH, secrets.randbelow(2**31 - 1) + 1)
    except sqlite3.OperationalError:
        pass  # a database from before server_state (schema < 6): nothing to mark; the migration starts fresh
    finally:
        conn.close()


def restore(archive: Path, data: DataFiles, busy_timeout_ms: int = 5000) -> Restored:
    """Restore `archive` into a data directory; the caller holds its lock (no server runs). Raises
    ArchiveError before changing anything when the archive is not a complete, healthy backup."""
    data_dir = data.database.parent
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=data_dir) as staging:
        stage = Path(staging)
        manifest = _read(archive, stage)
        version, problems = db_backup.check(stage / DATABASE, busy_timeout_ms, current=False)
        if version is not None and version > migrate.latest_version():
            raise ArchiveError(
                f"{archive}: its database has schema version {version}, newer than this floatsrv understands "
                f"({migrate.latest_version()}): restore it with the floatsrv that made it"
            )
        if version is None or problems:
            raise ArchiveError(f"{archive}: the database in it is not healthy: {(problems or ['unknown'])[0]}")
        _check_keys(stage, archive)
        _mark_restored(stage / DATABASE, busy_timeout_ms)
        names = tuple(name for name in MEMBERS[1:] if (stage / name).exists())
        # Everything verified: from here on, files are only renamed within the data directory.
        targets = data.by_member()
        wal = data.database.with_name(data.database.name + "-wal")
        shm = data.database.with_name(data.database.name + "-shm")
        present = [path for path in (data.database, wal, shm, data.token_key, data.server_key) if path.exists()]
        aside = None
        if present:
            aside = data_dir / f"before-restore-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
            aside.mkdir(mode=0o700)
            for path in present:
                os.replace(path, aside / path.name)
        for name in names:
            os.chmod(stage / name, 0o600)
            os.replace(stage / name, targets[name])
        for directory in {path.parent for path in targets.values()}:
            _fsync_dir(directory)
    return Restored(names, version, str(manifest.get("created_at")), aside)
