"""Storage faults while running: the disk fills up, or the database's file system refuses writes.

Both are real faults seen by a real server process: a small tmpfs that runs out of space (ENOSPC), and
EROFS returned by the kernel for the server's writes to its database files (injected into the running
process with `strace -e inject`, as a file system remounted read-only after an error would). Requests
get 503 with a clear code, reads keep working, nothing half-written appears, and the server recovers by
itself once the fault clears. Skipped, with the reason, where the machine does not allow mounting or
tracing (they need root / ptrace).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import example_dict
from tests.procs import ServerProcess

CONSUME = "/api/v4/add_consumption"


def fault_config() -> dict[str, Any]:
    config = example_dict()
    license = config["licenses"][0]
    license.update(allow_unlimited_consumptions=True)
    return config


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def total(server: ServerProcess, token: str) -> int:
    status, view = server.request("GET", "/v1/licenses/1001", token=token)
    assert status == 200, view  # reads keep working during a write fault
    return int(view["data"]["consumption"]["total"])


def consume(server: ServerProcess, token: str) -> tuple[int, Any]:
    return server.request("POST", CONSUME, {"product": "demo", "user": "ws", "consumptions": 1}, token)


def integrity(db: Path) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_disk_full_gets_503_and_recovers_by_itself(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, fault_config())
    with small_tmpfs(server.data_dir, "6m"):
        server.start()
        try:
            token = server.token("demo", "demo-password")
            acked = 0
            for _ in range(20):
                assert consume(server, token)[0] == 200
                acked += 1
            filler = server.data_dir / "filler"
            # Unbuffered: the write that meets the full disk raises here, and closing has nothing left to flush.
            with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):  # fill to the last block
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            refused = None
            for _ in range(3000):  # the WAL reuses blocks it already has; sooner or later it must grow
                status, body = consume(server, token)
                if status == 200:
                    acked += 1
                    continue
                refused = (status, body)
                break
            assert refused is not None, "the disk never filled up"
            status, body = refused
            assert (status, body["code"]) == (503, "storage_full"), body
            assert total(server, token) == acked  # the refused request left nothing behind
            status, ready = server.request("GET", "/readyz")
            assert status == 503 and ready["checks"]["database"]["reason"] == "SQLITE_FULL", ready
            for _ in range(5):
                assert consume(server, token)[0] == 503  # still full: still refused, still nothing written
            assert total(server, token) == acked

            filler.unlink()  # an admin frees space; nobody restarts anything
            assert consume(server, token)[0] == 200
            acked += 1
            assert total(server, token) == acked
            assert server.request("GET", "/readyz")[0] == 200
        finally:
            assert server.stop() == 0
        integrity(server.data_dir / "floatsrv.db")


def _untraced(task: Path) -> bool:
    try:
        return "TracerPid:\t0\n" in (task / "status").read_text()
    except FileNotFoundError:  # the thread ended meanwhile
        return False


def test_read_only_storage_gets_503_and_recovers_by_itself(tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (it injects the file system errors)")
    server = ServerProcess(tmp_path, fault_config())
    server.start()
    tracer = None
    try:
        token = server.token("demo", "demo-password")
        for _ in range(10):
            assert consume(server, token)[0] == 200
        assert server.proc is not None
        db = server.data_dir / "floatsrv.db"
        with (tmp_path / "strace.err").open("wb") as errors:
            tracer = subprocess.Popen(
                [
                    "strace",
                    "-qq",
                    "-f",
                    "-o",
                    os.devnull,
                    "-P",
                    str(db),
                    "-P",
                    f"{db}-wal",
                    "-e",
                    "trace=pwrite64,write,fdatasync,fsync",
                    "-e",
                    "inject=pwrite64,write,fdatasync,fsync:error=EROFS",
                    "-p",
                    str(server.proc.pid),
                ],
                stderr=errors,
            )
        deadline = time.monotonic() + 10
        tasks = Path(f"/proc/{server.proc.pid}/task")
        # strace attaches thread by thread, and the COMMIT (the write that must fail) runs on a worker
        # thread: wait until every thread of the server is traced, not just the main one.
        while any(_untraced(task) for task in tasks.iterdir()):
            if tracer.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"cannot trace the server here: {(tmp_path / 'strace.err').read_text().strip()}")
            time.sleep(0.05)

        status, body = consume(server, token)
        assert (status, body["code"]) == (503, "storage_unavailable"), body
        assert body["message"]
        assert total(server, token) == 10
        status, ready = server.request("GET", "/readyz")
        assert status == 503 and ready["checks"]["database"]["status"] == "failing", ready

        tracer.terminate()  # the file system takes writes again
        tracer.wait(10)
        tracer = None
        deadline = time.monotonic() + 10
        while consume(server, token)[0] != 200:  # the first request after the fault clears succeeds
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)
        assert total(server, token) == 11
        assert server.request("GET", "/readyz")[0] == 200
    finally:
        if tracer is not None:
            tracer.terminate()
            tracer.wait(10)
        assert server.stop() == 0
    integrity(server.data_dir / "floatsrv.db")
