"""A full or read-only disk, for real: a small tmpfs mounted for the test (CI runs as root). Where mounting is
impossible the tests are skipped, and say so in the summary.

- /readyz reflects real commits: when writes fail because the disk is full, a readiness probe small enough
  to fit still does not make the server "ready".
- Starting on a full disk, or on a read-only file system, exits with one clear line (exit code 3), no
  traceback, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from floatsrv.appkeys import DOMAIN
from tests.conftest import Api, floatsrv_cli
from tests.procs import ServerProcess, free_port

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Fill the file system holding `directory` up to `leave` bytes free."""
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    filler = directory / "filler"
    with filler.open("wb") as out:
        remaining = max(0, free - leave)
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            try:
                out.write(b"\0" * chunk)
                out.flush()
            except OSError:
                break
            remaining -= chunk
    return filler


def events(prefix: str, count: int) -> dict[str, Any]:
    return {
        "events": [
            {"event_id": f"{prefix}-{n:04d}-" + "x" * 150, "product": "demo", "feature": "render", "quantity": 0.001}
            for n in range(count)
        ]
    }


async def test_readyz_is_not_ready_while_real_writes_fail_even_if_its_probe_fits(
    api_factory: Any, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "disk", "6m") as disk:

        def on_disk(data: dict[str, Any]) -> None:
            data["storage"]["data_dir"] = str(disk / "data")
            lic = data["licenses"][0]["features"][1]
            lic.update(allow_unlimited_consumptions=True)

        api: Api = await api_factory(on_disk)
        assert (await api.get("/readyz"))[0] == 200
        filler = fill(disk, leave=48 * 1024)
        failed = None
        for batch in range(20):  # large batches need far more pages than are left
            status, body = await api.post("/v1/usage/events", events(f"b{batch}", 100))
            codes = {item["error"]["code"] for item in body["data"]["data"] if item["object"] == "error"}
            if "storage_full" in codes:
                failed = codes
                break
        assert failed == {"storage_full"}, failed
        stats = api.app[DOMAIN].store.stats
        status, ready = await api.get("/readyz")
        assert stats.fault is None, "the probe must have fit, or this test shows nothing"
        assert (status, ready["checks"]["database"]["status"]) == (503, "failing"), ready
        assert ready["checks"]["database"]["reason"].startswith("SQLITE_FULL")
        filler.unlink()  # the admin frees space; the next real write commits, and readiness follows
        assert (await api.register("after"))[0] == 200
        assert (await api.get("/readyz"))[0] == 200


def test_starting_on_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk, leave=0)
        server = ServerProcess(tmp_path / "work")
        result = floatsrv_cli(
            "serve", "--config", str(server.config_path), "--data-dir", str(disk / "data"), "--port", str(free_port())
        )
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "is full" in lines[0] and "Traceback" not in result.stdout + result.stderr, lines
        leftovers = [p.name for p in (disk / "data").iterdir()] if (disk / "data").exists() else []
        assert leftovers == [], leftovers  # no database, no stamp, no *.tmp litter


def test_starting_on_a_read_only_file_system_says_so(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        server = ServerProcess(tmp_path / "work")
        server.data_dir = disk / "data"
        server.start()
        assert server.stop() == 0
        remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        assert remount.returncode == 0, remount.stderr
        result = floatsrv_cli(
            "serve", "--config", str(server.config_path), "--data-dir", str(disk / "data"), "--port", str(free_port())
        )
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only file system" in lines[0] and "chown" not in lines[0], lines
