"""pytest fixtures for PostgreSQL: one throwaway server (tests/pgserver.py) per test worker, a fresh database
per test.

`pg_server` (session-scoped, so one per xdist worker) starts the server at the first test that needs it and
stops it at the end; `pg_dsn` is the DSN of a new, empty database of the test's own, dropped after it;
`new_database(server)` makes one more (kept until the server stops); tests/conftest.py's `backend` fixture
makes its own and drops them after the test. Without the server binaries the tests
that need them are skipped, unless FLOATSRV_REQUIRE_POSTGRESQL=1 (set by `python3 dev.py test` where the
binaries are or can be installed, as on CI, so CI never skips them silently): then they fail. tests/conftest.py
imports the fixtures, which offers them to every test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.pgserver import SERVER_PROGRAMS, PgServer, available, searched

_NAMES = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """This worker's PostgreSQL server (skipped, or failed under FLOATSRV_REQUIRE_POSTGRESQL=1, without one)."""
    if not available():
        if os.environ.get("FLOATSRV_REQUIRE_POSTGRESQL") == "1":
            pytest.fail(
                f"PostgreSQL server binaries ({', '.join(SERVER_PROGRAMS)}) not found in {searched()}, and "
                "FLOATSRV_REQUIRE_POSTGRESQL=1 says these tests must run: install Debian's postgresql package "
                "(`python3 dev.py test` does where it can: as root, or with sudo)",
                pytrace=False,
            )
        pytest.skip("PostgreSQL server binaries not found; `python3 dev.py test` installs them")
    with PgServer() as server:
        yield server


def database_name() -> str:
    """A database name not used before by this worker."""
    return f"floatsrv_test_{next(_NAMES)}"


def new_database(server: PgServer) -> str:
    """A fresh, empty database on the worker's server; its DSN."""
    return server.create_database(database_name())


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """The DSN of a new, empty database for this test alone (dropped after it, connections and all)."""
    name = database_name()
    dsn = pg_server.create_database(name)
    yield dsn
    pg_server.drop_database(name)
