"""The PostgreSQL password never shows: not in check-config, `db check`, the server's log, nor an error.

The test server trusts local connections, so any password is accepted and ignored: what is checked is only
where it would appear.
"""

from __future__ import annotations

import base64
from pathlib import Path

from floatsrv.db.pgconn import PgConnection
from tests.conftest import example_dict
from tests.procs import ServerProcess

SECRET = "pg-s3cret-Zq9"


def with_password(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{SECRET}@{host}"


def test_no_command_prints_the_password(tmp_path: Path, pg_dsn: str) -> None:
    data = example_dict()
    data["storage"]["backend"] = "postgresql"
    data["storage"]["postgresql"] = {"dsn": with_password(pg_dsn)}
    server = ServerProcess(tmp_path, data)
    outputs = [server.cli("check-config")]
    server.start()
    server.stop()
    checked = server.cli("db", "check")
    assert checked.returncode == 0 and "ok (schema" in checked.stdout, checked.stderr
    outputs += [checked, server.cli("db", "check", "--json")]
    # Unreachable: the error names the database, without the password.
    data["storage"]["postgresql"] = {"dsn": with_password(pg_dsn).rsplit(":", 1)[0] + ":1/nowhere"}
    (tmp_path / "down").mkdir()
    down = ServerProcess(tmp_path / "down", data)
    failed = down.cli("db", "check")
    assert failed.returncode == 1 and "cannot connect to postgresql://floatsrv@" in failed.stderr, failed.stderr
    outputs.append(failed)
    for result in outputs:
        assert SECRET not in result.stdout + result.stderr
    assert SECRET not in server.log_path.read_text()
    assert "postgresql://floatsrv@127.0.0.1" in checked.stdout  # the database is named, its password is not


def test_the_password_file_is_used_and_a_missing_one_is_a_clear_error(tmp_path: Path, pg_dsn: str) -> None:
    data = example_dict()
    data["storage"]["backend"] = "postgresql"
    data["storage"]["postgresql"] = {"dsn": pg_dsn, "password_file": str(tmp_path / "missing")}
    server = ServerProcess(tmp_path, data)
    result = server.cli("db", "check")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "password_file: cannot read it" in result.stderr, result.stderr
    (tmp_path / "pw").write_text(SECRET + "\n")
    data["storage"]["postgresql"]["password_file"] = str(tmp_path / "pw")
    server = ServerProcess(tmp_path, data)
    server.start()
    server.stop()
    assert SECRET not in server.log_path.read_text()


def test_a_password_typed_as_a_username_is_not_kept_in_the_shared_throttle(tmp_path: Path, pg_dsn: str) -> None:
    """On PostgreSQL the nodes count login attempts in the database (its WAL and backups): what was typed into
    the username field is kept there only as a keyed digest, which still counts repeated attempts together."""
    typed = "Hunter2-typed-into-the-username-field"
    data = example_dict()
    data["storage"]["backend"] = "postgresql"
    data["storage"]["postgresql"] = {"dsn": pg_dsn}
    server = ServerProcess(tmp_path, data)
    server.start()
    try:
        for username in (typed, typed, "admin"):
            basic = base64.b64encode(f"{username}:wrong-password".encode()).decode()
            assert server.request("GET", "/auth", headers={"Authorization": f"Basic {basic}"})[0] == 401
    finally:
        server.stop()
    conn = PgConnection(pg_dsn)
    try:
        rows = conn.execute("SELECT username FROM login_attempts").fetchall()
    finally:
        conn.close()
    names = [row[0] for row in rows]
    assert len(names) == 3 and len(set(names)) == 2, names  # the two attempts of one name still correlate
    assert not [name for name in names if typed in name or "admin" in name], names
