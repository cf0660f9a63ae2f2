"""`check-config` refuses what `serve` would refuse or misread (issue 18, item 8), in plain words, one line per
problem: a key given twice, true/false for a number, short passwords and tokens, TLS files that are missing or
do not load, a data directory this user cannot use, rebilly subscriptions naming nothing served; and it warns
about a config that serves no license at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE, example_dict, floatsrv_cli


def write(tmp_path: Path, config: dict[str, Any] | str) -> Path:
    path = tmp_path / "floatsrv.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    (tmp_path / "licenses").mkdir(exist_ok=True)
    for lic in (EXAMPLE.parent / "licenses").glob("*.lic"):
        (tmp_path / "licenses" / lic.name).write_bytes(lic.read_bytes())
    return path


def check(path: Path) -> tuple[int, str]:
    result = floatsrv_cli("check-config", "--config", str(path))
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


def serve(path: Path, tmp_path: Path) -> tuple[int, str]:
    result = floatsrv_cli("serve", "--config", str(path), "--port", "0", "--data-dir", str(tmp_path / "d"))
    return result.returncode, result.stderr


def test_a_key_given_twice_is_refused_by_both(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        "  format: auto ", "  format: json\n  format: auto ", 1
    )  # the second would silently win
    path = write(tmp_path, text)
    code, out = check(path)
    assert code == 1 and "format is given twice in this mapping" in out, out
    code, err = serve(path, tmp_path)
    assert code == 2 and "format is given twice" in err, err


def _true_seats(c: dict[str, Any]) -> None:
    c["licenses"] = [{"id": 7, "product": "p", "floating_users": True}]


def _short_password(c: dict[str, Any]) -> None:
    c["auth"]["users"][0]["password"] = "short"


def _short_token(c: dict[str, Any]) -> None:
    c["metrics"] = {"token": "0123456789"}


def _port_true(c: dict[str, Any]) -> None:
    c["server"]["port"] = True


@pytest.mark.parametrize(
    ("mutate", "line"),
    [
        (_true_seats, "licenses[0].floating_users: must be a number, not true or false"),
        (_short_password, "auth.users[0].password: must be at least 10 characters"),
        (_short_token, "metrics.token: must be at least 16 characters"),
        (_port_true, "server.port: must be a number, not true or false"),
    ],
)
def test_values_pydantic_would_bend_are_refused_in_plain_words(tmp_path: Path, mutate: Any, line: str) -> None:
    config = example_dict()
    mutate(config)
    code, out = check(write(tmp_path, config))
    assert code == 1 and line in out, out
    assert "after validation" not in out and "should have" not in out


def test_tls_files_must_exist_and_load(tmp_path: Path) -> None:
    config = example_dict()
    config["server"].update(tls_cert="nope.crt", tls_key="nope.key")
    code, out = check(write(tmp_path, config))
    assert code == 1 and "server.tls_cert: " in out and "nope.crt does not exist" in out, out
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    (tmp_path / "bad.key").write_text("not a key\n")
    config["server"].update(tls_cert="bad.crt", tls_key="bad.key")
    code, out = check(write(tmp_path, config))
    assert code == 1 and "server.tls_cert/server.tls_key: cannot load" in out, out


def test_an_unusable_data_dir_is_refused(tmp_path: Path) -> None:
    """As another user when run as root (root may write anywhere): the check creates nothing to find out."""
    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to check as another user")
    shared = Path(tempfile.mkdtemp(prefix="floatsrv-perm-"))  # tmp_path's parents are closed to other users
    try:
        shared.chmod(0o755)
        locked = shared / "locked"
        locked.mkdir(mode=0o555)
        config = example_dict()
        config["storage"]["data_dir"] = str(locked / "data")
        path = write(shared, config)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_root else []
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "floatsrv", "check-config", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")},  # cannot write its data
            cwd=shared,
        )
        out = result.stdout + result.stderr
        assert result.returncode == 1 and "storage.data_dir: " in out and "is not writable" in out, out
        assert not (locked / "data").exists()
    finally:
        shutil.rmtree(shared)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    config = example_dict()
    config["storage"]["data_dir"] = str(tmp_path / "a-file" / "data")
    code, out = check(write(tmp_path, config))
    assert code == 1 and "storage.data_dir: " in out and "is not a directory" in out, out
    assert not (tmp_path / "a-file").is_dir()


def test_rebilly_subscriptions_must_name_what_is_served(tmp_path: Path) -> None:
    config = example_dict()
    config["sync"] = {
        "upstreams": [
            {
                "name": "billing",
                "format": "rebilly-usages",
                "url": "http://127.0.0.1:9/usages",
                "subscriptions": {"1001": "sub_1", "1002": "sub_2", "1001/nope": "sub_3", "x/y": "sub_4"},
            }
        ]
    }
    code, out = check(write(tmp_path, config))
    assert code == 1, out
    assert "sync.upstreams[0].subscriptions: '1002': no license 1002 is served by this config" in out
    assert "sync.upstreams[0].subscriptions: '1001/nope': license 1001 has no feature 'nope'" in out
    assert "'x/y': must be a license id" in out and "'1001':" not in out
    code, err = serve(write(tmp_path, config), tmp_path)
    assert code == 2 and "no license 1002 is served" in err, err


def test_a_config_without_licenses_is_valid_with_a_warning(tmp_path: Path) -> None:
    config = example_dict()
    config["licenses"] = []
    config["license_files"] = []
    code, out = check(write(tmp_path, config))
    assert code == 0 and "warning: no licenses" in out, out
