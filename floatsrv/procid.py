"""Which process holds something, told apart from a later process that got the same PID.

A PID alone is not an identity: in a container floatsrv is PID 1 after every restart, so after a crash the
old holder of a lease "is alive". A `ProcessId` adds the kernel's boot id (changes at every boot of the
host) and the process's start time (clock ticks since boot, from /proc/PID/stat). Where /proc is missing
(not Linux) both are empty and only the PID is compared, as before.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_PROC = Path("/proc")


@cache
def boot_id() -> str:
    """This host's boot id ("" where the kernel does not say); fixed for the process's lifetime."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None when there is no such process, "" when /proc
    cannot say."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None if _PROC.is_dir() and (_PROC / "self").exists() else ""
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may contain spaces: count fields after its end.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True, slots=True)
class ProcessId:
    host: str
    pid: int
    boot: str = ""
    start: str = ""

    def text(self) -> str:
        """ "host:pid:boot:start" (host names and boot ids hold no colon)."""
        return f"{self.host}:{self.pid}:{self.boot}:{self.start}"

    @classmethod
    def parse(cls, text: str) -> ProcessId | None:
        """Read `text()` back; also the older "host:pid[:...]" form (PID only). None if it names no PID."""
        parts = text.split(":")
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        if len(parts) >= 4:
            return cls(parts[0], int(parts[1]), parts[2], parts[3])
        return cls(parts[0], int(parts[1]))

    def is_gone(self) -> bool:
        """Whether this is a process of this host that no longer runs. Another host's process is never known
        to be gone (it may be another server on a shared data directory)."""
        if self.host != socket.gethostname():
            return False
        if self.boot and boot_id() and self.boot != boot_id():
            return True  # the host rebooted since: every process of that boot is gone
        started = start_time(self.pid)
        if started is None:
            return True
        if self.start and started and started != self.start:
            return True  # the PID now belongs to a later process
        if started:
            return False
        try:  # no /proc: ask the kernel whether the PID exists at all
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # it exists but is not ours to signal
            return False
        return False


def current() -> ProcessId:
    pid = os.getpid()
    return ProcessId(socket.gethostname(), pid, boot_id(), start_time(pid) or "")
