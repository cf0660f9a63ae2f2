"""The command line as an admin meets it (issue 18, items 10 and 13): every command explains itself in one line;
`--version` and `check-config` do not import the server; `check-config` honours FLOATSRV_CONFIG; `server-key`
creates nothing; `status` and `healthcheck` exit 1 and say why when the server is not ready, including a TLS
certificate that does not verify, and `status` shows what /readyz warns about."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from floatsrv.cli import LAZY, main
from tests.conftest import EXAMPLE, example_dict, floatsrv_cli
from tests.procs import ServerProcess, free_port


def walk(group: click.Group, ctx: click.Context, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, parent=ctx, info_name=name), f"{prefix}{name} ")


def test_every_command_has_a_one_line_help() -> None:
    ctx = click.Context(main, info_name="floatsrv")
    missing = [name for name, command in walk(main, ctx) if not command.hidden and not command.get_short_help_str()]
    assert missing == []


def test_the_help_listed_without_importing_is_the_commands_own() -> None:
    ctx = click.Context(main, info_name="floatsrv")
    for name, (_, _, listed) in LAZY.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.help is not None, name
        if command.hidden:
            continue
        first = " ".join(command.help.split("\n\n")[0].split())
        assert first.startswith(listed.rstrip(".")), (name, listed, first)


def imported_by(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "floatsrv", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def test_version_and_check_config_do_not_import_the_server() -> None:
    version = imported_by("--version")
    assert " aiohttp" not in version and "floatsrv.config" not in version and "pydantic" not in version
    checked = imported_by("check-config", "--config", str(EXAMPLE))
    assert " aiohttp" not in checked and "floatsrv.db" not in checked and "floatsrv.domain" not in checked


def test_check_config_honours_floatsrv_config(tmp_path: Path) -> None:
    env = {**os.environ, "FLOATSRV_CONFIG": str(EXAMPLE)}
    result = floatsrv_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0 and f"{EXAMPLE}: ok" in result.stdout, result.stderr


def test_server_key_creates_nothing(tmp_path: Path) -> None:
    result = floatsrv_cli("server-key", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1 and "start the server once" in result.stderr
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def at_its_port(server: ServerProcess) -> ServerProcess:
    """The config file names the port the server listens on (ServerProcess passes --port), as an admin's
    does: `status` and `healthcheck` read it from there."""
    data = yaml.safe_load(server.config_path.read_text())
    data["server"]["port"] = server.port
    server.config_path.write_text(yaml.safe_dump(data))
    return server


def test_status_and_healthcheck_say_why_the_server_is_not_ready(tmp_path: Path) -> None:
    config = example_dict()
    config["licenses"].append(
        {"id": 2002, "product": "old", "floating_users": 1, "validity_period": "2025-06-30T00:00:00Z"}
    )
    server = at_its_port(ServerProcess(tmp_path, config))
    server.start()
    try:
        status = server.cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"server:    ready (http://127.0.0.1:{server.port}/readyz)" in status.stdout
        assert "warning:   licenses: warning: licenses [2002] have expired" in status.stdout, status.stdout
        health = floatsrv_cli("healthcheck", "--config", str(server.config_path), cwd=tmp_path)
        assert health.returncode == 0 and health.stdout.startswith("ready"), health.stderr
    finally:
        assert server.stop() == 0
    down = server.cli("status")
    assert down.returncode == 1 and "server:    unreachable" in down.stdout, down.stdout
    assert "Connection refused" in down.stdout
    health = floatsrv_cli("healthcheck", "--config", str(server.config_path), cwd=tmp_path)
    assert health.returncode == 1 and "not healthy: unreachable" in health.stderr, health.stderr


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_status_trusts_the_configured_certificate_and_names_a_tls_failure(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    config = example_dict()
    config["server"].update(tls_cert=str(cert), tls_key=str(key))
    server = at_its_port(ServerProcess(tmp_path, config, ssl_context=ssl.create_default_context(cafile=str(cert))))
    server.start()
    try:
        status = server.cli("status")
        assert status.returncode == 0 and f"ready (https://127.0.0.1:{server.port}/readyz)" in status.stdout
        # The certificate on disk no longer matches the one served (renewed without a restart, say).
        self_signed(tmp_path, "localhost")
        mismatch = server.cli("status")
        assert mismatch.returncode == 1 and "tls_failed" in mismatch.stdout, mismatch.stdout
        assert "certificate does not verify" in mismatch.stdout
    finally:
        assert server.stop() == 0


def test_healthcheck_needs_a_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FLOATSRV_CONFIG", "FLOATSRV_DEMO")}
    result = floatsrv_cli("healthcheck", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "give --config" in result.stderr
    missing = floatsrv_cli("healthcheck", "--config", str(tmp_path / "none.yaml"), env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "not healthy: config error" in missing.stderr
    assert free_port() > 0


@pytest.mark.parametrize("args", [("--help",), ("status", "--help"), ("db", "--help")])
def test_help_runs_without_a_traceback(args: tuple[str, ...]) -> None:
    result = floatsrv_cli(*args)
    assert result.returncode == 0 and "Traceback" not in result.stderr
