#!/usr/bin/env python3
"""Developer entry point; needs only python3.

    python3 dev.py serve [floatsrv serve flags...]   start the server on config.example.yaml
    python3 dev.py test  [pytest args...]            ruff (lint, format) + mypy + the whole test suite (in
                                                     parallel; without arguments also branch coverage)
    python3 dev.py bench [--quick]                   the benchmark (bench/run.py; needs wrk)
    python3 dev.py build [-o FILE] [--vendor-key PUB]... [--allow-inline-licenses] [pip args...]
                                                     the single-file build: dist/floatsrv.pyz (docs/install.md);
                                                     with --vendor-key a vendor build (docs/license-files.md)
    python3 dev.py trust --package DIR --vendor-key PUB... [--allow-inline-licenses]
                                                     make DIR (a floatsrv package) a vendor build (the Dockerfile)

The first run creates `.venv/` and installs floatsrv with pinned dependencies (constraints.txt); later runs
reinstall only when pyproject.toml or constraints.txt change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
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
# Branch coverage of floatsrv by the whole suite may not fall below this (raise it as it rises).
COVERAGE_FLOOR = "93"


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
    print("dev.py: installing floatsrv and its pinned dependencies into .venv (a minute or two)", file=sys.stderr)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    _pip_with_progress([*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"])
    STAMP.write_text(fingerprint)


def _pip_with_progress(command: list[str]) -> None:
    """Run pip, showing one short line per package it fetches and the final summary instead of its whole
    output (or nothing for a minute and a half); all of its output if it fails."""
    started = time.monotonic()
    lines: list[str] = []
    fetched = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(("Collecting ", "Processing ", "Obtaining ")):
                fetched += 1
                word, what = line.split()[:2]
                if word == "Obtaining":
                    name = "floatsrv (this checkout)"
                else:  # a requirement, or a local wheel's path (its name comes before the first "-")
                    name = what.rpartition("/")[2].split("-")[0] if word == "Processing" else what
                print(f"dev.py:   [{fetched}] {name} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
            elif line.startswith("Installing collected packages"):
                print(f"dev.py:   installing {line.count(',') + 1} packages ...", file=sys.stderr)
    if proc.returncode != 0:
        sys.stderr.write("".join(lines))
        raise subprocess.CalledProcessError(proc.returncode, command)
    print(f"dev.py: installed in {time.monotonic() - started:.0f} s", file=sys.stderr)


def ensure_browser() -> None:
    """The console's browser tests drive Debian's chromium (never a downloaded browser): install it when it is
    missing and this machine can (root, apt-get); otherwise those tests fail and say how to install it."""
    if shutil.which("chromium") or os.environ.get("FLOATSRV_CHROMIUM"):
        return
    apt = shutil.which("apt-get")
    sudo = [] if os.geteuid() == 0 else ([found] if (found := shutil.which("sudo")) else None)
    if apt is None or sudo is None:
        print("dev.py: no chromium here and no way to install it: the browser tests will fail", file=sys.stderr)
        return
    print("dev.py: installing Debian's chromium for the console's browser tests (a minute or two)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update"], ["install", "-y", "chromium"]):
        subprocess.run([*sudo, apt, "-qq", *step], check=False, stdout=subprocess.DEVNULL, env=env)


def postgresql_binaries() -> bool:
    """Whether PostgreSQL's server binaries (initdb, pg_ctl, postgres, in one directory) are here: in
    $FLOATSRV_PG_BIN, beside the pg_ctl on PATH, or in Debian's /usr/lib/postgresql/*/bin. The same search as
    tests/pgserver.py's `binaries`, not imported from there: dev.py runs before any dependency is installed."""

    def complete(directory: Path) -> bool:
        return all(os.access(directory / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))

    if override := os.environ.get("FLOATSRV_PG_BIN"):
        return complete(Path(override))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None and complete(Path(pg_ctl).resolve().parent):
        return True
    return any(complete(found) for found in Path("/usr/lib/postgresql").glob("*/bin"))


def ensure_postgresql() -> bool:
    """The PostgreSQL backend's tests start a throwaway server of their own from the machine's PostgreSQL
    server binaries (tests/pgserver.py): install Debian's `postgresql` when they are missing and this machine
    can (root or sudo, apt-get); otherwise those tests are skipped. True when they must run, never skip: the
    binaries are here, or this machine could install them (CI), so a failed install fails them. (The package
    also sets up and starts a cluster of its own, on port 5432; the tests never use it.) The SQLite-only path
    needs none of this."""
    if postgresql_binaries():
        return True
    apt = shutil.which("apt-get")
    sudo = [] if os.geteuid() == 0 else ([found] if (found := shutil.which("sudo")) else None)
    if apt is None or sudo is None:
        print("dev.py: no PostgreSQL server binaries here and no way to install them: the PostgreSQL tests will "
              "be skipped", file=sys.stderr)  # fmt: skip
        return False
    print("dev.py: installing Debian's postgresql for the PostgreSQL backend's tests", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update"], ["install", "-y", "--no-install-recommends", "postgresql"]):
        subprocess.run([*sudo, apt, "-qq", *step], check=False, stdout=subprocess.DEVNULL, env=env)
    if not postgresql_binaries():
        print("dev.py: installing postgresql failed: the PostgreSQL tests will fail", file=sys.stderr)
    return True


# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): what precedes the 32 key bytes in a PEM public key.
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")


def vendor_key_bytes(value: str) -> bytes:
    """A vendor's Ed25519 public key from a file or text: base64 of its 32 raw bytes (as `floatsrv vendor
    keygen` writes vendor.pub) or a PEM public key. Stdlib only: dev.py runs before any dependency exists."""
    path = Path(value)
    text = path.read_text(encoding="ascii") if path.is_file() else value
    text = text.strip()
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        der = base64.b64decode(body, validate=True)
        if len(der) != 44 or not der.startswith(_ED25519_SPKI):
            raise ValueError(f"{value}: not an Ed25519 public key")
        return der[len(_ED25519_SPKI) :]
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"{value}: not a file, and not an Ed25519 public key (base64 of 32 bytes)") from None
    if len(raw) != 32:
        raise ValueError(f"{value}: not an Ed25519 public key (base64 of 32 bytes)")
    return raw


def vendor_trust(keys: Sequence[str], allow_inline_licenses: bool) -> dict[str, object]:
    """The trust anchor of a vendor build (floatsrv/entitlements/trust.json): only the vendor's keys."""
    entries = []
    for value in keys:
        raw = vendor_key_bytes(value)
        kid = hashlib.sha256(raw).hexdigest()[:16]
        entries.append({"kid": kid, "public_key": base64.b64encode(raw).decode("ascii"), "name": "vendor key"})
    return {"format": "floatsrv-trust/1", "build": "vendor", "allow_inline_licenses": allow_inline_licenses,
            "keys": entries}  # fmt: skip


def write_trust(package: Path, keys: Sequence[str], allow_inline_licenses: bool) -> None:
    """Make the floatsrv package at `package` a vendor build trusting `keys` (and nothing else)."""
    target = package / "entitlements" / "trust.json"
    if not target.exists():
        raise ValueError(f"{package} is not a floatsrv package (no {target.relative_to(package)})")
    target.write_text(json.dumps(vendor_trust(keys, allow_inline_licenses), indent=2) + "\n", encoding="ascii")


def build_options(args: Sequence[str]) -> tuple[Path, list[str], bool, list[str]]:
    """(-o FILE, --vendor-key values, --allow-inline-licenses, the rest for pip) from `dev.py build` args."""
    out, keys, allow_inline, rest = PYZ, [], False, list(args)
    while rest:
        if rest[0] in ("-o", "--output", "--vendor-key") and len(rest) >= 2:
            if rest[0] == "--vendor-key":
                keys.append(rest[1])
            else:
                out = Path(rest[1])
            rest = rest[2:]
        elif rest[0] == "--allow-inline-licenses":
            allow_inline, rest = True, rest[1:]
        else:
            break
    return out, keys, allow_inline, rest


def run(*argv: str | Path) -> int:
    return subprocess.run([str(a) for a in argv], cwd=ROOT).returncode


def build(
    out: Path = PYZ,
    python: Path = PYTHON,
    pip_args: Sequence[str] = (),
    vendor_keys: Sequence[str] = (),
    allow_inline_licenses: bool = False,
) -> int:
    """The single-file build: a shiv zipapp at `out` holding floatsrv and every dependency at the versions
    pinned in constraints.txt. It runs with a plain `python3` of the same minor version, on the same OS and CPU
    architecture as `python` (the dependencies' compiled extensions are inside). At its first start it unpacks
    them into $SHIV_ROOT (default ~/.shiv). `pip_args` go to `pip install` (e.g. --find-links DIR --no-index).
    With `vendor_keys` it is a vendor build: it trusts those keys only (docs/license-files.md)."""
    out = out.absolute()
    with tempfile.TemporaryDirectory(prefix="floatsrv-build-") as tmp:
        # Build from a clean copy: setuptools' in-tree build/ directory can carry deleted modules into the wheel.
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "floatsrv", src / "floatsrv", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if vendor_keys:
            write_trust(src / "floatsrv", vendor_keys, allow_inline_licenses)
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
        kind = (
            f"a vendor build trusting {len(vendor_keys)} key(s)" if vendor_keys else "the repository build (demo key)"
        )
        print(f"dev.py: built {out} ({size:.1f} MB, {kind}); it runs only on {target}", file=sys.stderr)
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


def trust_command(args: Sequence[str]) -> int:
    """`dev.py trust --package DIR --vendor-key PUB... [--allow-inline-licenses]` (needs no virtualenv)."""
    rest = list(args)
    package: list[str] = []
    if "--package" in rest[:-1]:
        at = rest.index("--package")
        package, rest = rest[at + 1 : at + 2], rest[:at] + rest[at + 2 :]
    _, keys, allow_inline, rest = build_options(rest)
    rest = ["--package", *package] if package and not rest else ["?"]
    if len(rest) != 2 or not keys:
        print("usage: dev.py trust --package DIR --vendor-key PUB [--vendor-key PUB]... [--allow-inline-licenses]",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        write_trust(Path(rest[1]), keys, allow_inline)
    except (OSError, ValueError) as exc:
        print(f"dev.py: {exc}", file=sys.stderr)
        return 2
    print(f"dev.py: {rest[1]} trusts {len(keys)} vendor key(s) only", file=sys.stderr)
    return 0


def pytest_args(extra: Sequence[str]) -> list[str]:
    """The suite runs on every core, module by module (a module's tests share its server processes). The
    whole suite (no arguments) also measures branch coverage against COVERAGE_FLOOR."""
    args = [] if any(a == "-n" or a.startswith("--numprocesses") for a in extra) else ["-n", "auto"]
    args += ["--dist", "loadfile"]
    if not extra:
        args += ["--cov=floatsrv", "--cov-report=term", "--cov-fail-under=" + COVERAGE_FLOOR]
    return [*args, *extra]


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test", "bench", "build", "trust"):
        print(__doc__, file=sys.stderr)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    if command == "trust":
        return trust_command(extra)
    if command == "build":
        try:  # a wrong key fails here, before the virtualenv and the build are made
            out, keys, allow_inline, pip_args = build_options(extra)
            vendor_trust(keys, allow_inline)
        except (OSError, ValueError) as exc:
            print(f"dev.py: --vendor-key {exc}", file=sys.stderr)
            return 2
    ensure_venv()
    if command == "bench":
        return run(PYTHON, ROOT / "bench" / "run.py", *extra)
    if command == "build":
        return build(out, PYTHON, pip_args, keys, allow_inline)
    if command == "serve":
        floatsrv = BIN / "floatsrv"
        os.execv(str(floatsrv), [str(floatsrv), "serve", "--config", str(ROOT / "config.example.yaml"), *extra])
    ensure_browser()
    if ensure_postgresql():  # tests/pgfixture.py: then a PostgreSQL test fails rather than skips (unless =0 given)
        os.environ.setdefault("FLOATSRV_REQUIRE_POSTGRESQL", "1")
    lint_paths = [p for p in ("floatsrv", "tests", "bench", "dev.py") if (ROOT / p).exists()]
    steps: list[tuple[str | Path, ...]] = [
        (PYTHON, "-m", "ruff", "check", *lint_paths),
        (PYTHON, "-m", "ruff", "format", "--check", *lint_paths),
        (PYTHON, "-m", "mypy"),
        (PYTHON, "-m", "pytest", *pytest_args(extra)),
    ]
    for step in steps:
        print("dev.py: running", " ".join(str(s) for s in step[1:]), file=sys.stderr, flush=True)
        code = run(*step)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
