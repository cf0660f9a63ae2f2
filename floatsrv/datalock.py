"""The data directory's lock: a serving floatsrv holds an exclusive `flock` on `<data_dir>/floatsrv.lock` for
its whole life, so a second server on the same data directory, or `floatsrv db restore` under a running one,
is refused at once. The kernel drops the lock when the process ends, however it ends (no stale locks after a
crash or a kill), and the file says which process holds it, for the message."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "floatsrv.lock"


class DataDirLocked(Exception):
    """Another process holds the data directory."""


def hold(data_dir: Path) -> IO[str]:
    """Take the data directory's lock (it must exist); keep the returned file open while it is held.
    Raises DataDirLocked, naming the holder's PID."""
    handle = (data_dir / LOCK_NAME).open("a+", encoding="ascii")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirLocked(f"{data_dir} is in use by floatsrv (pid {holder}): stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def release(handle: IO[str]) -> None:
    with contextlib.suppress(OSError):
        handle.close()  # closing drops the flock; the file stays (it is only a name to lock)


def holder(data_dir: Path) -> int | None:
    """The PID of the floatsrv serving `data_dir`, or None when nobody holds its lock."""
    try:
        handle = (data_dir / LOCK_NAME).open("r", encoding="ascii")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)  # we got it: nobody serves this directory
        return None
