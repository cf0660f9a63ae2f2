"""Signed license files for tests, made with the real vendor tools' code and the repository's demo key.

Tests edit licenses as the config schema has them (`data["licenses"]`, starting from the demo file's);
`sign_licenses` then moves them into a demo-signed file beside the config, so every test serves its licenses
through the signed path, as the demo does. `signed_file` makes any other file (other keys, bindings, series).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from floatsrv.entitlements import issue as vendor
from floatsrv.entitlements.trust import load_trust_anchor
from floatsrv.entitlements.verify import open_file
from floatsrv.models import LicenseSpec
from floatsrv.signing import read_private_key

ROOT = Path(__file__).resolve().parent.parent
DEMO_KEY_PATH = ROOT / "demo" / "DEMO-ONLY-vendor-private-key.pem"
DEMO_FILE = ROOT / "licenses" / "demo.lic"
DEMO_SOURCE = ROOT / "demo" / "demo-licenses.yaml"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)

_lock = threading.Lock()
_last_sequence = 0


def demo_key() -> Ed25519PrivateKey:
    return read_private_key(DEMO_KEY_PATH)


def demo_licenses() -> list[dict[str, Any]]:
    """The demo file's licenses as the vendor wrote them (demo/demo-licenses.yaml): what a test edits.
    tests/test_license_files.py checks that the signed demo file carries exactly these."""
    licenses: list[dict[str, Any]] = yaml.safe_load(DEMO_SOURCE.read_text())["licenses"]
    return licenses


def demo_file_licenses() -> list[LicenseSpec]:
    return open_file(DEMO_FILE.read_text(), load_trust_anchor()).payload.licenses


def next_sequence() -> int:
    """Increasing across the whole test session, so a re-signed file always supersedes the last one."""
    global _last_sequence
    with _lock:
        _last_sequence = max(_last_sequence + 1, time.time_ns() // 1000)
        return _last_sequence


def signed_file(
    licenses: list[dict[str, Any]],
    *,
    key: Ed25519PrivateKey | None = None,
    binding: dict[str, Any] | None = None,
    series: str = "tests",
    sequence: int | None = None,
    file_id: str | None = None,
    issued_at: datetime = LONG_AGO,
    not_before: datetime = LONG_AGO,
    expires_at: datetime | None = None,
    refresh_by: datetime | None = None,
) -> str:
    sequence = sequence if sequence is not None else next_sequence()
    payload = vendor.payload_bytes(
        vendor.validated(licenses),
        binding=binding or {"unbound": True},
        issued_at=issued_at,
        not_before=not_before,
        expires_at=expires_at,
        refresh_by=refresh_by,
        series=series,
        sequence=sequence,
        file_id=file_id or f"{series}-{sequence}",
    )
    return vendor.issue(payload, key or demo_key())


def sign_licenses(data: dict[str, Any], directory: Path) -> None:
    """Move `data["licenses"]` (edited by a test) into DIRECTORY/licenses/tests.lic, demo-signed, and point
    the config at it. Edits `data` in place, so a test that writes `data` again keeps the signed setup."""
    licenses = data.pop("licenses", None)
    if licenses is None:
        return
    target = directory / "licenses"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.lic"):
        old.unlink()
    if licenses:
        (target / "tests.lic").write_text(signed_file(licenses))
    data["license_files"] = [str(target)]
