#!/usr/bin/env python3
"""Developer entry point; needs only python3.

    python3 dev.py serve [floatsrv serve flags...]   start the server on config.example.yaml
    python3 dev.py test  [pytest args...]            ruff (lint, format) + mypy + the whole test suite
    python3 dev.py bench [--quick]                   the benchmark (bench/run.py; needs wrk)
    python3 dev.py build [-o FILE] [pip args...]     the single-file build: dist/floatsrv.pyz (docs/install.md)

The first run creates `.venv/` and installs floatsrv with pinned dependencies (constraints.txt); later runs
reinstall only when pyproject.toml or constraints.txt change.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".floatsrv-deps"
PYZ = ROOT / "dist" / "floatsrv.pyz"


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


def run(*argv: str | Path) -> int:
    return subprocess.run([str(a) for a in argv], cwd=ROOT).returncode


def build(out: Path = PYZ, python: Path = PYTHON, pip_args: Sequence[str] = ()) -> int:
    """The single-file build: a shiv zipapp at `out` holding floatsrv and every dependency at the versions
    pinned in constraints.txt. It runs with a plain `python3` of the same minor version, on the same OS and CPU
    architecture as `python` (the dependencies' compiled extensions are inside). At its first start it unpacks
    them into $SHIV_ROOT (default ~/.shiv). `pip_args` go to `pip install` (e.g. --find-links DIR --no-index)."""
    out = out.absolute()
    with tempfile.TemporaryDirectory(prefix="floatsrv-build-") as tmp:
        # Build from a clean copy: setuptools' in-tree build/ directory can carry deleted modules into the wheel.
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "floatsrv", src / "floatsrv", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        out.parent.mkdir(parents=True, exist_ok=True)
        code = run(
            python, "-m", "shiv",
            "--entry-point", "floatsrv.cli:main",
            "--output-file", out,
            "--python", "/usr/bin/env python3",
            "--compressed",
            "--reproducible",
            "--",
            "--constraint", ROOT / "constraints.txt",
            "--quiet",
            src,
            *pip_args,
        )  # fmt: skip
    if code == 0:
        target = subprocess.run(
            [str(python), "-c", "import sys, sysconfig; print(f'Python {sys.version_info[0]}.{sys.version_info[1]}', "
             "sysconfig.get_platform())"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        glibc = _glibc_floor(out)
        target += f" with glibc >= {glibc}" if glibc else ""
        size = out.stat().st_size / 1e6
        print(f"dev.py: built {out} ({size:.1f} MB); it runs only on {target}", file=sys.stderr)
    return code


def _glibc_floor(pyz: Path) -> str | None:
    """The oldest glibc all compiled wheels in the zipapp accept (from their manylinux tags), e.g. "2.34"."""
    aliases = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    floor: tuple[int, int] | None = None
    with zipfile.ZipFile(pyz) as archive:
        for name in archive.namelist():
            if not name.endswith(".dist-info/WHEEL"):
                continue
            accepted = []  # a wheel with several tags installs where any of them fits
            for line in archive.read(name).decode().splitlines():
                platform = line.rpartition("-")[2] if line.startswith("Tag:") else ""
                if match := re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", platform):
                    accepted.append((int(match[1]), int(match[2])))
                elif platform.split("_", 1)[0] in aliases:
                    accepted.append(aliases[platform.split("_", 1)[0]])
            if accepted:
                floor = max(floor or (0, 0), min(accepted))
    return None if floor is None else f"{floor[0]}.{floor[1]}"


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test", "bench", "build"):
        print(__doc__, file=sys.stderr)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    ensure_venv()
    if command == "bench":
        return run(PYTHON, ROOT / "bench" / "run.py", *extra)
    if command == "build":
        out = PYZ
        if extra[:1] in (["-o"], ["--output"]) and len(extra) >= 2:
            out, extra = Path(extra[1]), extra[2:]
        return build(out, PYTHON, extra)
    if command == "serve":
        floatsrv = BIN / "floatsrv"
        os.execv(str(floatsrv), [str(floatsrv), "serve", "--config", str(ROOT / "config.example.yaml"), *extra])
    lint_paths = [p for p in ("floatsrv", "tests", "bench", "dev.py") if (ROOT / p).exists()]
    for step in (
        (PYTHON, "-m", "ruff", "check", *lint_paths),
        (PYTHON, "-m", "ruff", "format", "--check", *lint_paths),
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
