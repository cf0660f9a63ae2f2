"""The command-line contract: serve / check-config exit codes, one line per config problem, --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floatsrv import __version__
from tests.conftest import EXAMPLE
from tests.conftest import floatsrv_cli as floatsrv


def test_version() -> None:
    result = floatsrv("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    ok = floatsrv("check-config", "--config", str(EXAMPLE))
    assert ok.returncode == 0 and "ok (license files: 1 with 1 licenses, inline licenses: 0, users: 2" in ok.stdout
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
    assert result.returncode == 3  # the data is unusable: a service manager should not retry
    assert "not a floatsrv database" in result.stdout and "not a floatsrv database" in result.stderr


def serve_on(data: Path) -> subprocess.CompletedProcess[str]:
    return floatsrv("serve", "--config", str(EXAMPLE), "--data-dir", str(data), "--port", "0")


def test_serve_refuses_a_corrupt_database_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "floatsrv.db"
    junk = b"this is not sqlite at all\n" * 200
    db.write_bytes(junk)
    result = serve_on(data)
    assert result.returncode == 3, result.stderr  # the data is unusable: a service manager should not retry
    assert result.stderr.splitlines() == [
        f"floatsrv: {db} is not a usable SQLite database (file is not a database); refusing to start"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert db.read_bytes() == junk  # never re-created or "repaired"


def test_serve_refuses_a_database_from_a_newer_floatsrv_untouched(tmp_path: Path) -> None:
    import asyncio
    import sqlite3

    from floatsrv.clock import ManualClock
    from floatsrv.db.migrate import latest_version
    from floatsrv.db.sqlite_store import SqliteStore

    data = tmp_path / "data"
    db = data / "floatsrv.db"

    async def create() -> None:  # a real floatsrv database at the latest schema ...
        store = SqliteStore(db, ManualClock())
        await store.open()
        await store.close()

    asyncio.run(create())
    newer = latest_version() + 1
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"PRAGMA user_version = {newer}")  # ... as a newer floatsrv would leave it
        conn.commit()
    finally:
        conn.close()
    before = db.read_bytes()
    result = serve_on(data)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        f"floatsrv: the database has schema version {newer}, newer than this floatsrv understands "
        f"({latest_version()}); run a newer floatsrv or restore a backup"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert db.read_bytes() == before  # not migrated "back", not touched at all
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer
    finally:
        conn.close()


def test_hash_password_makes_a_usable_hash(tmp_path: Path) -> None:
    result = floatsrv("hash-password", "--password", "s3cret")
    assert result.returncode == 0
    encoded = result.stdout.strip()
    from floatsrv.auth.passwords import verify_password

    assert verify_password("s3cret", encoded) and not verify_password("other", encoded)


def test_tls(tmp_path: Path) -> None:
    import datetime as dt
    import ssl
    import urllib.request

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from tests.conftest import example_dict
    from tests.procs import ServerProcess

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = example_dict()
    config["server"].update(tls_cert="tls.crt", tls_key="tls.key")  # relative to the config file
    server = ServerProcess(tmp_path, config, ssl_context=ssl.create_default_context(cafile=str(tmp_path / "tls.crt")))
    server.start()
    try:
        token = server.token()  # a login over TLS, verified against our certificate
        assert server.request("GET", "/api/v4/health", token=token)[0] == 200
        with pytest.raises(OSError):  # no plain HTTP on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
    finally:
        server.stop()

    broken = example_dict()
    broken["server"].update(tls_cert="missing.crt", tls_key="missing.key")
    (tmp_path / "broken.yaml").write_text(__import__("yaml").safe_dump(broken))
    result = floatsrv("serve", "--config", str(tmp_path / "broken.yaml"), "--port", "0")
    assert result.returncode == 2 and "server.tls_cert: " in result.stderr and "does not exist" in result.stderr
    checked = floatsrv("check-config", "--config", str(tmp_path / "broken.yaml"))
    assert checked.returncode == 1 and "missing.crt does not exist" in checked.stderr


def test_serve_refuses_a_data_dir_it_cannot_write(tmp_path: Path) -> None:
    """Files left by root (say, an admin who ran the server by hand once) and a service running as another
    user: one clear line and exit 3 (unusable data), not a traceback."""
    import os
    import shutil
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the server as another user")
    shared = Path(tempfile.mkdtemp(prefix="floatsrv-perm-"))  # tmp_path's parents are closed to other users
    try:
        shared.chmod(0o755)
        from tests.procs import ServerProcess

        first = ServerProcess(shared)  # as root: creates the data directory and the database
        first.start()
        assert first.stop() == 0
        data = first.data_dir
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "floatsrv"]
            + ["serve", "--config", str(EXAMPLE), "--data-dir", str(data), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=30,
            # Not measured: as uid 65534 it could not write its coverage data (and would say so at exit).
            env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")},
        )
        assert result.returncode == 3
        assert f"{data} is not writable by this process (uid 65534)" in result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    finally:
        shutil.rmtree(shared)
