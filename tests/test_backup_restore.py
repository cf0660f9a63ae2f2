"""Backup and restore that keep the server the same server (issue 18, item 7): `floatsrv db backup` archives the
database with the token signing key and the server's identity key; `floatsrv db restore` puts them back into
a stopped server's data directory, so every token it issued still works and license files bound to its key
still apply. Bad archives are refused before anything changes; a running server is never restored under."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import example_dict, floatsrv_cli
from tests.licensing import demo_licenses, signed_file
from tests.polling import wait_for
from tests.procs import ServerProcess


def admin(server: ServerProcess, *args: str) -> Any:
    return server.cli(*args)


def bound_server(tmp_path: Path) -> ServerProcess:
    """A server whose licenses come from a file bound to its own key (as a vendor issues them)."""
    config = example_dict()
    config.pop("licenses", None)
    config["license_files"] = [str(tmp_path / "licenses")]
    (tmp_path / "licenses").mkdir()
    server = ServerProcess(tmp_path, config, signed=False)
    server.start()  # the first start makes the server's key
    key = admin(server, "server-key").stdout.strip()
    assert server.stop() == 0
    text = signed_file(demo_licenses(), binding={"server_key": key}, series="bound")
    (tmp_path / "licenses" / "bound.lic").write_text(text)
    return server


def files_of(directory: Path) -> dict[str, bytes]:
    """The directory's files (not the lock file, which names whoever last held it)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != "floatsrv.lock"}


def test_a_restored_server_is_the_same_server(tmp_path: Path) -> None:
    server = bound_server(tmp_path)
    server.start()
    try:
        token = server.token("demo", "demo-password")
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "ann"}, token)
        assert status == 200, body
        key = admin(server, "server-key").stdout.strip()
        backup = tmp_path / "backup.tar"
        made = admin(server, "db", "backup", "--out", str(backup))
        assert made.returncode == 0 and "server-ed25519.pem" in made.stdout, made.stderr
        again = admin(server, "db", "backup", "--out", str(backup))
        assert again.returncode == 1 and "exists: give --force" in again.stderr
        assert admin(server, "db", "backup", "--out", str(backup), "--force").returncode == 0
        running = admin(server, "db", "restore", str(backup))
        assert running.returncode == 1 and "in use by floatsrv (pid" in running.stderr, running.stderr
    finally:
        assert server.stop() == 0

    shutil.rmtree(server.data_dir)  # the disk died
    restored = admin(server, "db", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert admin(server, "server-key").stdout.strip() == key
    server.start()
    try:
        wait_for(lambda: any(e["event"] == "server_started" for e in server.log_lines()[-50:]))
        assert not [e for e in server.log_lines() if e["event"] == "new_keys_beside_existing_database"]
        status, body = server.request("GET", "/v1/seats", token=token)  # the old token, still good
        assert status == 200 and [seat["user"] for seat in body["data"]["data"]] == ["ann"], body
        status, body = server.request("POST", "/api/v4/register", {"product": "demo", "user": "bob"}, token)
        assert status == 200, body  # the license bound to the server's key still applies
    finally:
        assert server.stop() == 0


def test_restoring_over_data_moves_it_aside(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        assert admin(server, "db", "backup", "--out", str(tmp_path / "b.tar")).returncode == 0
        server.token()  # more happens after the backup
    finally:
        assert server.stop() == 0
    before = files_of(server.data_dir)
    done = admin(server, "db", "restore", str(tmp_path / "b.tar"))
    assert done.returncode == 0 and "the previous files are in" in done.stdout, done.stderr
    [aside] = [p for p in server.data_dir.iterdir() if p.name.startswith("before-restore-")]
    kept = files_of(aside)
    assert kept["floatsrv.db"] == before["floatsrv.db"] and kept["token-signing.key"] == before["token-signing.key"]


def archive_with(tmp_path: Path, name: str, change: str) -> Path:
    """A copy of a good archive with one thing wrong."""
    good = tmp_path / "good.tar"
    with tarfile.open(good) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"])
    if change == "format":
        manifest["format"] = "floatsrv-backup/9"
    elif change == "no key":
        del members["token-signing.key"]
        del manifest["files"]["token-signing.key"]
    elif change == "truncated":
        del members["server-ed25519.pem"]
    elif change == "damaged database":
        database = bytearray(members["floatsrv.db"])
        database[4096 * 2 : 4096 * 2 + 512] = b"\xa5" * 512
        members["floatsrv.db"] = bytes(database)
        manifest["files"]["floatsrv.db"] = hashlib.sha256(members["floatsrv.db"]).hexdigest()
    elif change == "digest":
        members["token-signing.key"] = b"x" * 32
    elif change == "short key":
        members["token-signing.key"] = b"short"
        manifest["files"]["token-signing.key"] = hashlib.sha256(b"short").hexdigest()
    elif change == "escape":
        members["../escape"] = b"outside"
    members["manifest.json"] = json.dumps(manifest).encode()
    out = tmp_path / name
    with tarfile.open(out, "w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("format", "backup format 'floatsrv-backup/9'"),
        ("no key", "lacks the database or the token signing key"),
        ("truncated", "server-ed25519.pem is listed in the manifest but missing"),
        ("damaged database", "the database in it is not healthy"),
        ("digest", "token-signing.key does not match its digest"),
        ("short key", "a key in the backup is unusable"),
        ("escape", "unexpected member '../escape'"),
    ],
)
def test_bad_archives_are_refused_and_change_nothing(tmp_path: Path, change: str, message: str) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        assert admin(server, "db", "backup", "--out", str(tmp_path / "good.tar")).returncode == 0
    finally:
        assert server.stop() == 0
    before = files_of(server.data_dir)
    bad = archive_with(tmp_path, "bad.tar", change)
    result = admin(server, "db", "restore", str(bad))
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert files_of(server.data_dir) == before
    assert not [p for p in server.data_dir.iterdir() if p.is_dir()]  # no staging or aside directory left
    assert not (tmp_path / "escape").exists()


def test_not_an_archive_and_a_truncated_one(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        assert admin(server, "db", "backup", "--out", str(tmp_path / "good.tar")).returncode == 0
    finally:
        assert server.stop() == 0
    (tmp_path / "text.tar").write_text("hello\n")
    data = (tmp_path / "good.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    for name in ("text.tar", "cut.tar"):
        result = admin(server, "db", "restore", str(tmp_path / name))
        assert result.returncode == 1 and "restore refused" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_backup_names_a_missing_directory(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        result = admin(server, "db", "backup", "--out", str(tmp_path / "nowhere" / "b.tar"))
        assert result.returncode == 1 and f"the directory {tmp_path / 'nowhere'} does not exist" in result.stderr
    finally:
        assert server.stop() == 0


def test_a_database_restored_without_its_keys_is_said_loudly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    assert server.stop() == 0
    for key in ("token-signing.key", "server-ed25519.pem"):
        (server.data_dir / key).unlink()  # the old way: the database file alone
    server.start()
    try:
        wait_for(lambda: any(e["event"] == "new_keys_beside_existing_database" for e in server.log_lines()))
        [line] = [e for e in server.log_lines() if e["event"] == "new_keys_beside_existing_database"]
        assert line["level"] == "warning" and "floatsrv db restore" in line["message"]
        assert {Path(k).name for k in line["keys"]} == {"token-signing.key", "server-ed25519.pem"}
    finally:
        assert server.stop() == 0


def test_a_second_server_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        config = yaml.safe_load(server.config_path.read_text())
        second = floatsrv_cli(
            "serve", "--config", str(server.config_path), "--port", "0", "--data-dir", str(server.data_dir)
        )
        assert second.returncode == 3 and "in use by floatsrv (pid" in second.stderr, second.stderr
        assert config  # the first server is untouched
        assert server.request("GET", "/healthz")[0] == 200
    finally:
        assert server.stop() == 0
