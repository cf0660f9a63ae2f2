#!/usr/bin/env python3
"""Developer entry point; needs only python3.

    python3 dev.py serve [floatsrv serve flags...]   start the server on config.example.yaml
    python3 dev.py test  [pytest args...]            ruff + mypy + the whole test suite
    python3 dev.py bench [--quick]                   the benchmark (bench/run.py; needs wrk)

The first run creates `.venv/` and installs floatsrv with pinned dependencies (constraints.txt); later runs
reinstall only when pyproject.toml or constraints.txt change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".floatsrv-deps"


def _deps_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    if not PYTHON.exists():
        print("dev.py: creating .venv (first run)", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    fingerprint = _deps_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    print("dev.py: installing floatsrv and its dependencies into .venv", file=sys.stderr)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(fingerprint)


def run(*argv: str) -> int:
    return subprocess.run([str(a) for a in argv], cwd=ROOT).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test", "bench"):
        print(__doc__, file=sys.stderr)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    ensure_venv()
    if command == "bench":
        return run(PYTHON, ROOT / "bench" / "run.py", *extra)
    if command == "serve":
        floatsrv = BIN / "floatsrv"
        os.execv(str(floatsrv), [str(floatsrv), "serve", "--config", str(ROOT / "config.example.yaml"), *extra])
    lint_paths = [p for p in ("floatsrv", "tests", "bench", "dev.py") if (ROOT / p).exists()]
    for step in (
        (PYTHON, "-m", "ruff", "check", *lint_paths),
        (PYTHON, "-m", "mypy"),
        (PYTHON, "-m", "pytest", *extra),
    ):
        print("dev.py: running", " ".join(str(s) for s in step[1:]), file=sys.stderr, flush=True)
        code = run(*step)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
