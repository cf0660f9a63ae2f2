"""This server's host fingerprint: which machine and which data directory it runs on, as one short text.

Made from two facts (docs/license-files.md, "Server identity"):
- the machine id: `/etc/machine-id` (systemd's, made at installation), else `/var/lib/dbus/machine-id`;
  none where neither exists (some minimal containers);
- the data directory's own identity: the device and inode of the directory `storage.data_dir`. A copy or a
  restore made into a new directory, or a rebuilt container volume, has another one; a restart does not.

Both go through SHA-256 (with a domain prefix), so the fingerprint reveals neither. A license file may be bound
to it; when it changes (new hardware, a rebuilt container, a restore onto another host) the server keeps
serving until the file's `refresh_by` and asks for a re-activation (`floatsrv license request`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
_PREFIX = b"floatsrv-fingerprint/1\n"


def machine_id() -> str:
    for path in _MACHINE_ID_FILES:
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return ""


def data_dir_identity(data_dir: Path) -> str:
    """The data directory's device and inode ("" where it does not exist yet)."""
    try:
        info = data_dir.stat()
    except OSError:
        return ""
    return f"{info.st_dev}:{info.st_ino}"


def fingerprint(data_dir: Path) -> str:
    """`fp1-` and 32 hex digits: SHA-256 over the machine id and the data directory's identity."""
    facts = f"{machine_id()}\n{data_dir_identity(data_dir.resolve())}".encode()
    return "fp1-" + hashlib.sha256(_PREFIX + facts).hexdigest()[:32]
