"""`dev.py`'s first install shows progress (issue 18, item 13): one short line per package pip fetches and a
summary, instead of a minute and a half of silence; and all of pip's output when it fails. Driven with real
pip runs that change nothing (--dry-run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dev

PIP = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", "--dry-run"]


def test_each_package_fetched_is_shown(capsys: Any) -> None:
    dev._pip_with_progress([*PIP, "--no-deps", "--ignore-installed", "click", "pyjwt"])
    err = capsys.readouterr().err
    assert "[1] click" in err and "[2] pyjwt" in err, err
    assert "dev.py: installed in" in err, err


def test_a_failure_shows_everything_pip_said(capsys: Any) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        dev._pip_with_progress([*PIP, "--no-index", "--no-deps", "no-such-package-floatsrv-test==0"])
    err = capsys.readouterr().err
    assert "no-such-package-floatsrv-test" in err and "No matching distribution" in err, err
