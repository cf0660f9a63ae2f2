"""The command-line contract: serve / check-config exit codes, one line per config problem, --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from floatsrv import __version__
from tests.conftest import EXAMPLE


def floatsrv(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "floatsrv", *args], capture_output=True, text=True, timeout=timeout)


def test_version() -> None:
    result = floatsrv("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    ok = floatsrv("check-config", "--config", str(EXAMPLE))
    assert ok.returncode == 0 and "ok (1 licenses, 2 users" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "licenses:\n  - id: 1\n    product: x\n    floating_users: 2\n"
        "    features: [{code: a}, {code: b, floating_users: -1}]\n"
    )
    result = floatsrv("check-config", "--config", str(bad))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "floatsrv: config error: licenses[0].features[1].floating_users: must be a positive integer"
    )
    missing = floatsrv("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_serve_with_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: eighty\n")
    result = floatsrv("serve", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["floatsrv: config error: server.port: must be an integer"]
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_refuses_a_foreign_database(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "floatsrv.db") as conn:
        conn.execute("CREATE TABLE something_else (x)")
    result = floatsrv("serve", "--config", str(EXAMPLE), "--data-dir", str(data), "--port", "0")
    assert result.returncode == 1
    assert "not a floatsrv database" in result.stdout


def test_hash_password_makes_a_usable_hash(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "floatsrv", "hash-password", "--password", "s3cret"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    encoded = result.stdout.strip()
    from floatsrv.auth.passwords import verify_password

    assert verify_password("s3cret", encoded) and not verify_password("other", encoded)
