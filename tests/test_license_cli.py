"""`floatsrv vendor issue|inspect` and `floatsrv license import|list|remove` in the repository build, run as the
admin and the vendor run them: separate processes on a real data directory, signed with the demo vendor key.
Every refusal is one line naming its code and exits non-zero; nothing is imported by a refused command."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, floatsrv_cli
from tests.procs import ServerProcess

DEMO_KEY = ROOT / "demo" / "DEMO-ONLY-vendor-private-key.pem"
DEMO_LICENSES = ROOT / "demo" / "demo-licenses.yaml"


def issue(tmp_path: Path, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return floatsrv_cli(
        "vendor", "issue", "--key", str(DEMO_KEY), "--licenses", str(DEMO_LICENSES), "--out", str(tmp_path / out),
        *extra,
    )  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory a server (with no licenses) has run on once, as an admin has before importing."""
    (tmp_path / "server").mkdir()
    server = ServerProcess(tmp_path / "server", {}, signed=False)
    server.start()
    assert server.stop() == 0
    return server.data_dir


def admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return floatsrv_cli(*args, "--data-dir", str(data_dir))


def listed(data_dir: Path, *extra: str) -> list[dict[str, Any]]:
    result = admin(data_dir, "license", "list", "--json", *extra)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_issue_import_replace_and_remove(tmp_path: Path, data: Path) -> None:
    first = issue(tmp_path, "one.lic", "--unbound", "--series", "office", "--file-id", "office-1")
    assert first.returncode == 0 and "series office sequence 1, key ea6769ee835bccee" in first.stdout, first.stderr

    imported = admin(data, "license", "import", str(tmp_path / "one.lic"))
    assert imported.returncode == 0 and imported.stdout.startswith("imported office-1"), imported.stderr
    again = admin(data, "license", "import", str(tmp_path / "one.lic"))
    assert again.returncode == 0 and "already in force, nothing changed" in again.stdout
    assert [(row["file_id"], row["state"], row["licenses"]) for row in listed(data)] == [
        ("office-1", "in_force", "1001")
    ]

    second = issue(
        tmp_path, "two.lic", "--unbound", "--series", "office", "--sequence", "2", "--file-id", "office-2",
        "--expires", "2099-12-31T23:59:59Z",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    replaced = admin(data, "license", "import", str(tmp_path / "two.lic"))
    assert "it replaces office-1" in replaced.stdout, replaced.stdout + replaced.stderr
    assert [row["file_id"] for row in listed(data)] == ["office-2"]
    every = {row["file_id"]: row for row in listed(data, "--all")}
    assert every["office-2"]["expires_at"].startswith("2099-12-31T23:59:59")
    assert every["office-1"]["state"] == "superseded"

    older = admin(data, "license", "import", str(tmp_path / "one.lic"))
    assert older.returncode != 0 and "license_file_superseded" in older.stderr

    removed = admin(data, "license", "remove", "office-2")
    assert removed.returncode == 0 and "removed office-2" in removed.stdout
    assert listed(data) == []
    unknown = admin(data, "license", "remove", "office-2")
    assert unknown.returncode != 0 and "license_file_not_found" in unknown.stderr


def test_refused_files_name_their_code_and_import_nothing(tmp_path: Path, data: Path) -> None:
    assert issue(tmp_path, "good.lic", "--unbound").returncode == 0
    text = (tmp_path / "good.lic").read_text()
    lines = text.splitlines()
    body = lines[1]
    lines[1] = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    (tmp_path / "tampered.lic").write_text("\n".join(lines) + "\n")
    (tmp_path / "binary.lic").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "empty.lic").write_text("")
    not_yet = issue(tmp_path, "later.lic", "--unbound", "--not-before", "2099-01-01T00:00:00Z")
    assert not_yet.returncode == 0, not_yet.stderr

    for name, code in [
        ("binary.lic", "license_file_malformed"),
        ("empty.lic", "license_file_malformed"),
        ("later.lic", "license_file_not_yet_valid"),
    ]:
        result = admin(data, "license", "import", str(tmp_path / name))
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert code in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
    tampered = admin(data, "license", "import", str(tmp_path / "tampered.lic"))
    assert tampered.returncode == 1 and "license_file_" in tampered.stderr and "Traceback" not in tampered.stderr
    assert listed(data, "--all") == []


def test_inspect_prints_the_payload_and_the_verdict(tmp_path: Path) -> None:
    assert issue(tmp_path, "good.lic", "--unbound", "--file-id", "inspected").returncode == 0
    good = floatsrv_cli("vendor", "inspect", str(tmp_path / "good.lic"))
    assert good.returncode == 0, good.stderr
    payload = json.loads(good.stdout[: good.stdout.rindex("}") + 1])
    assert payload["file_id"] == "inspected" and payload["licenses"][0]["id"] == 1001
    assert "signature verifies with this build's key ea6769ee835bccee (demo)" in good.stdout + good.stderr

    text = (tmp_path / "good.lic").read_text()
    armour_body = text.splitlines()[1]
    flipped = armour_body[:-5] + ("A" if armour_body[-5] != "A" else "B") + armour_body[-4:]
    (tmp_path / "bad.lic").write_text(text.replace(armour_body, flipped))
    bad = floatsrv_cli("vendor", "inspect", str(tmp_path / "bad.lic"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr

    (tmp_path / "junk.lic").write_text("not a license file\n")
    junk = floatsrv_cli("vendor", "inspect", str(tmp_path / "junk.lic"))
    assert junk.returncode == 1 and "license_file_malformed" in junk.stderr

    bad_key = floatsrv_cli("vendor", "inspect", str(tmp_path / "good.lic"), "--public-key", "QUJD")
    assert bad_key.returncode == 2 and "--public-key" in bad_key.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ((), "give exactly one of --server-key, --request, --unbound"),
        (("--unbound", "--server-key", "QUJD"), "give exactly one of"),
        (("--request", str(DEMO_LICENSES)), "Invalid value for --request"),  # not an activation request
        (("--server-key", "QUJD"), "--server-key"),
        (("--unbound", "--expires", "next tuesday"), "must be an ISO 8601 date-time"),
        (("--unbound", "--sequence", "0"), "--sequence"),
    ],
)
def test_issue_refuses_bad_options(tmp_path: Path, extra: tuple[str, ...], needle: str) -> None:
    result = issue(tmp_path, "out.lic", *extra)
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert not (tmp_path / "out.lic").exists()


def test_issue_names_the_lines_of_a_bad_licenses_file(tmp_path: Path) -> None:
    licenses = yaml.safe_load(DEMO_LICENSES.read_text())
    licenses["licenses"][0]["floating_users"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(licenses))
    result = floatsrv_cli(
        "vendor", "issue", "--key", str(DEMO_KEY), "--licenses", str(tmp_path / "bad.yaml"), "--unbound",
        "--out", str(tmp_path / "out.lic"),
    )  # fmt: skip
    assert result.returncode == 1 and f"floatsrv: {tmp_path / 'bad.yaml'}: " in result.stderr, result.stderr
    assert "floating_users" in result.stderr and not (tmp_path / "out.lic").exists()
    missing_dir = issue(tmp_path, "nowhere/out.lic", "--unbound")
    assert missing_dir.returncode == 2 and "does not exist" in missing_dir.stderr


def test_check_config_checks_the_license_files_it_names(tmp_path: Path) -> None:
    assert issue(tmp_path, "later.lic", "--unbound", "--not-before", "2099-01-01T00:00:00Z").returncode == 0
    (tmp_path / "licenses").mkdir()
    (tmp_path / "later.lic").rename(tmp_path / "licenses" / "later.lic")
    (tmp_path / "licenses" / "junk.lic").write_text("junk\n")
    config = {"storage": {"data_dir": str(tmp_path / "data")}, "license_files": ["licenses"]}
    (tmp_path / "floatsrv.yaml").write_text(yaml.safe_dump(config))
    checked = floatsrv_cli("check-config", "--config", str(tmp_path / "floatsrv.yaml"))
    assert checked.returncode != 0, checked.stdout
    assert "junk.lic: license_file_malformed" in checked.stderr + checked.stdout
    assert "later.lic: license_file_not_yet_valid" in checked.stderr + checked.stdout


def test_list_and_status_judge_files_by_the_servers_trusted_time(tmp_path: Path, data: Path) -> None:
    """After the system clock was set back, the admin commands show a file in the state the server gives it
    (judged at the later of the clock and the persisted time mark), not the state the raw clock suggests; and
    the plain list shows each file's signing key (kid)."""
    expires = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert issue(tmp_path, "soon.lic", "--unbound", "--file-id", "soon-1", "--expires", expires).returncode == 0
    assert admin(data, "license", "import", str(tmp_path / "soon.lic")).returncode == 0
    assert [row["state"] for row in listed(data)] == ["in_force"]
    # The server saw three days later than now (its mark), and then the clock was set back to now.
    with sqlite3.connect(data / "floatsrv.db") as conn:
        conn.execute(
            "INSERT INTO server_state (key, value) VALUES ('time_mark', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (int((time.time() + 3 * 86_400) * 1_000_000),),
        )
    [row] = listed(data)
    assert row["state"] == "expired", row
    status = admin(data, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert [(f["file_id"], f["state"]) for f in json.loads(status.stdout)["license_files"]] == [("soon-1", "expired")]
    table = admin(data, "license", "list")
    header, line = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["FILE_ID", "STATE", "KID"] and row["kid"] in line, table.stdout
