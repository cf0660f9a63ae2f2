"""A throwaway PostgreSQL server for the tests: the machine's server binaries on a temporary directory.

This module owns the server's whole life: it finds the binaries (`binaries`), `initdb`s a cluster in a fresh
directory under /tmp, starts it with `pg_ctl` on a free loopback port, hands out fresh databases
(`create_database`), and stops it and deletes the directory (`stop`, the context manager; at interpreter
exit too, and even when the process is killed: a small watcher process does it then). PostgreSQL refuses to
run as root, and CI runs as root, so there the server runs as an unprivileged user (`postgres` when the
machine has one, else `nobody`) through `runuser`. The cluster trades durability for speed (`fsync=off`):
the tests are about decisions, not power loss. tests/pgfixture.py turns it into pytest fixtures.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

SUPERUSER = "floatsrv"
# What starting a cluster needs, all in one directory (pg_ctl runs the `postgres` beside it).
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
DEBIAN = Path("/usr/lib/postgresql")  # Debian's and Ubuntu's: one bin/ per installed major version
# Where the cluster's directory goes: every user can pass through /tmp, and its socket path stays short.
BASE = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",  # commits still wait for the WAL write: the code's ordering stays honest
    "max_connections": "300",
    "shared_buffers": "32MB",
}

# The watcher: it blocks on its stdin, a pipe whose only writer is the process that started the server, so it
# reads EOF when that process ends, however it ends (SIGKILL included), or when `stop` closes the pipe. It
# then stops the server if its directory is still there (`stop` deletes it first), and deletes it.
_WATCHER = """
import shutil, subprocess, sys
sys.stdin.buffer.read()
root, command = sys.argv[1], sys.argv[2:]
try:
    subprocess.run(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
except OSError:
    pass
shutil.rmtree(root, ignore_errors=True)
"""


def _has_server(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in SERVER_PROGRAMS)


def _version(bin_dir: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,), .../9.6/bin -> (9, 6); a name that is no version sorts first."""
    parts = bin_dir.parent.name.split(".")
    return tuple(int(part) for part in parts) if all(part.isdigit() for part in parts) else ()


def binaries() -> Path | None:
    """The directory of the server binaries: $FLOATSRV_PG_BIN if set (and nothing else then), else the one
    holding the `pg_ctl` on PATH (symbolic links followed), else Debian's newest /usr/lib/postgresql/*/bin."""
    if override := os.environ.get("FLOATSRV_PG_BIN"):
        return Path(override) if _has_server(Path(override)) else None
    if on_path := shutil.which("pg_ctl"):
        found = Path(on_path).resolve().parent
        if _has_server(found):
            return found
    for found in sorted(DEBIAN.glob("*/bin"), key=_version, reverse=True):
        if _has_server(found):
            return found
    return None


def searched() -> str:
    """Where `binaries` looks, for messages."""
    override = os.environ.get("FLOATSRV_PG_BIN")
    return f"$FLOATSRV_PG_BIN ({override})" if override else f"PATH or {DEBIAN}/*/bin"


def available() -> bool:
    """Whether this machine has PostgreSQL's server binaries (see `binaries`)."""
    return binaries() is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unprivileged() -> str | None:
    """The user to run the server as when we are root (None: run it as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root with neither a `postgres` nor a `nobody` user to run PostgreSQL as")


def _as_user(user: str) -> list[str]:
    """The command prefix that runs a program as `user` (we are root): util-linux's runuser, else setpriv."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    if runuser := shutil.which("runuser", path=path):
        return [runuser, "-u", user, "--"]
    if setpriv := shutil.which("setpriv", path=path):
        entry = pwd.getpwnam(user)
        return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
    raise RuntimeError(f"running as root without runuser or setpriv to run PostgreSQL as {user}")


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return f'"{name}"'


class PgServer:
    """One running cluster (see the module docstring): `dsn` reaches its `postgres` database as the superuser
    `floatsrv` (trust authentication, loopback only); `create_database` makes another database."""

    def __init__(self) -> None:
        found = binaries()
        if found is None:
            raise RuntimeError(f"PostgreSQL server binaries ({', '.join(SERVER_PROGRAMS)}) not found in "
                               f"{searched()} (Debian: apt-get install postgresql)")  # fmt: skip
        self.bin = found
        self.user = _unprivileged()
        self._prefix = _as_user(self.user) if self.user is not None else []
        self._owner = os.getpid()  # a forked child exiting must not stop its parent's server
        self._started = False
        self.root = Path(tempfile.mkdtemp(prefix="floatsrv-pg-", dir=BASE))
        self.port = 0
        self.dsn = ""
        self.log = self.root / "server.log"
        self._watcher: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)
        try:
            os.chmod(self.root, 0o755)  # the server's user must reach its data directory and socket
            if self.user is not None:
                shutil.chown(self.root, self.user)
            stop = [*self._prefix, str(self.bin / "pg_ctl"), *self._stop_args()]
            self._watcher = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHER, str(self.root), *stop],  # -S: no site, no coverage
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in the terminal's process group: a Ctrl-C doesn't end it first
            )  # fmt: skip
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8",
                      "--locale=C")  # fmt: skip
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _stop_args(self) -> list[str]:
        return ["-D", str(self.data), "-m", "immediate", "-w", "stop"]

    def _run(self, program: str, *args: str) -> None:
        command = [*self._prefix, str(self.bin / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr or result.stdout}\n{tail}")

    def _start(self) -> None:
        """`pg_ctl start` on a free port; again on another one if someone took it in between."""
        for attempt in range(5):
            self.port = _free_port()
            options = f"-p {self.port} -k {self.root} " + " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())
            logged = self.log.stat().st_size if self.log.exists() else 0
            self._started = True  # from here on `stop` stops it, whatever happens next
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                          "start")  # fmt: skip
            except RuntimeError:
                with self.log.open(errors="replace") as log:
                    log.seek(logged)
                    if "Address already in use" not in log.read() or attempt == 4:
                        raise
                continue
            self.dsn = self.database_dsn("postgres")
            return

    def database_dsn(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _sql(self, statement: str) -> None:
        """Run one statement as the superuser. Synchronous, from any thread, with or without a running event
        loop: it runs on a loop of its own in a thread of its own."""

        async def execute() -> None:
            import asyncpg  # here: the SQLite-only path imports this module (through conftest) without it

            conn = await asyncpg.connect(self.dsn, timeout=30)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgserver") as pool:
            pool.submit(lambda: asyncio.run(execute())).result()

    def create_database(self, name: str) -> str:
        """A new, empty database `name` (UTF8, C collation); its DSN."""
        self._sql(f"CREATE DATABASE {_identifier(name)}")
        return self.database_dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, ending its connections first (nothing if it doesn't exist)."""
        self._sql(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server at once (`pg_ctl stop -m immediate`) and delete its directory. Safe to call twice."""
        if os.getpid() != self._owner:
            return
        atexit.unregister(self.stop)
        if self._started:
            self._started = False
            try:
                self._run("pg_ctl", *self._stop_args())
            except (OSError, RuntimeError, subprocess.SubprocessError):
                self._kill()
        shutil.rmtree(self.root, ignore_errors=True)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:  # EOF: it finds the directory gone and ends
            assert watcher.stdin is not None
            watcher.stdin.close()
            try:
                watcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()

    def _kill(self) -> None:
        """`pg_ctl stop` failed: signal the postmaster itself (SIGQUIT: immediate shutdown, then SIGKILL)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
