"""Opening a license file: every check, in the order that never parses what is not yet verified.

`open_file` proves who signed it (armour, envelope, alg, trusted key, signature, then the payload);
`check_applicable` says whether it may be applied on this server now (validity window, binding). Both are
pure and raise the `LicenseFileRefused` subclass that names the problem.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from floatsrv.entitlements.fileformat import MAX_FILE_BYTES, check_signature, dearmour, parse_envelope
from floatsrv.entitlements.payload import LicenseFilePayload, ServerBinding, parse_payload
from floatsrv.entitlements.trust import TrustAnchor, TrustedKey
from floatsrv.errors import (
    LicenseFileExpired,
    LicenseFileFromFuture,
    LicenseFileKeyUntrusted,
    LicenseFileMalformed,
    LicenseFileNotYetValid,
    LicenseFileWrongServer,
)
from floatsrv.models import Entitlements
from floatsrv.times import iso


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A license file whose signature verified against a key this build trusts."""

    text: str
    key: TrustedKey
    payload: LicenseFilePayload

    @property
    def file_id(self) -> str:
        return self.payload.file_id

    @property
    def digest(self) -> str:
        return text_digest(self.text)

    @property
    def entitlements(self) -> Entitlements:
        return "demo" if self.key.demo else "signed"

    @property
    def bound_to(self) -> str | None:
        binding = self.payload.binding
        return binding.server_key if isinstance(binding, ServerBinding) else None

    @property
    def fingerprint(self) -> str | None:
        binding = self.payload.binding
        return binding.fingerprint if isinstance(binding, ServerBinding) else None

    @property
    def ends_at(self) -> datetime | None:
        """When its licenses stop being served: its expiry or its refresh deadline, whichever comes first."""
        ends = [t for t in (self.payload.expires_at, self.payload.refresh_by) if t is not None]
        return min(ends) if ends else None


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def open_file(text: str, anchor: TrustAnchor) -> OpenedFile:
    """Verify a license file's signature with this build's keys, then parse its payload."""
    if len(text) > MAX_FILE_BYTES:
        raise LicenseFileMalformed(f"a license file is at most {MAX_FILE_BYTES} bytes")
    envelope = parse_envelope(dearmour(text))
    key = anchor.key(envelope.kid)
    if key is None:
        raise LicenseFileKeyUntrusted(
            f"signed by key {envelope.kid}, which this floatsrv build does not trust"
            + (" (the repository build trusts only the demo key)" if not anchor.vendor_build else ""),
            kid=envelope.kid,
        )
    check_signature(envelope, key.key)
    return OpenedFile(text, key, parse_payload(envelope.payload))


def check_applicable(
    opened: OpenedFile, *, server_key: str | None, now: datetime, tolerance: timedelta = timedelta(hours=24)
) -> None:
    """Whether the file may be applied on this server at `now` (its binding, validity window, and an
    `issued_at` no further ahead of `now` than `tolerance`: a clock set back must not pass for a new file).
    Whether an activation request it answers was made here is for `licensefiles.admit`, with the database."""
    payload = opened.payload
    if payload.issued_at > now + tolerance:
        raise LicenseFileFromFuture(
            f"file {payload.file_id} was issued at {iso(payload.issued_at)}, more than {tolerance} after this "
            f"server's time {iso(now)}: is the system clock set back?",
            file_id=payload.file_id,
        )
    if payload.not_before > now:
        raise LicenseFileNotYetValid(
            f"file {payload.file_id} is valid from {iso(payload.not_before)}", file_id=payload.file_id
        )
    if payload.expires_at is not None and payload.expires_at <= now:
        raise LicenseFileExpired(
            f"file {payload.file_id} expired at {iso(payload.expires_at)}", file_id=payload.file_id
        )
    bound = opened.bound_to
    if bound is not None and (server_key is None or not hmac.compare_digest(bound, server_key)):
        raise LicenseFileWrongServer(
            f"file {payload.file_id} is bound to server key {bound[:12]}..., not to this server's key "
            "(`floatsrv server-key` prints it)",
            file_id=payload.file_id,
        )


def config_file_texts(paths: tuple[Path, ...]) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(path, text) of every license file the config names (directories: their *.lic files, sorted), and
    (path, problem) for those that cannot be read."""
    found: list[tuple[Path, str]] = []
    problems: list[tuple[Path, str]] = []
    for path in paths:
        if not path.exists():
            continue  # the default licenses/ directory need not exist (a path the config names must: config)
        files = sorted(path.glob("*.lic")) if path.is_dir() else [path]
        for file in files:
            try:
                found.append((file, file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append((file, f"cannot read it: {getattr(exc, 'strerror', None) or exc}"))
    return found, problems
