"""Shared fixtures: a real floatsrv app on a real SQLite file in tmp_path, reached over real HTTP.

`api` is an in-process server (aiohttp's TestServer on a loopback port) with a ManualClock, so tests move
time instead of sleeping. `tests.procs` starts floatsrv as a separate process for restart/SDK tests.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from floatsrv.app import create_app
from floatsrv.clock import ManualClock
from floatsrv.config import Config, parse_config
from floatsrv.entitlements.trust import TrustAnchor
from tests.licensing import demo_licenses, sign_licenses
from tests.pgfixture import database_name, pg_dsn, pg_server  # noqa: F401 -- fixtures, offered to every test
from tests.pgserver import PgServer
from tests.upstreams import FloatsrvUpstream, RebillyUpstream

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


def example_dict() -> dict[str, Any]:
    """The example config, its demo license as an editable inline `licenses` list (see tests.licensing)."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data.pop("license_files", None)
    data["licenses"] = demo_licenses()
    return data


def make_config(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None] | None = None, *, signed: bool = True
) -> Config:
    """The example config with its data dir in tmp_path, optionally edited first. Its licenses are served
    from a demo-signed file in tmp_path (`signed=False`: inline, unsigned)."""
    data = example_dict()
    data["storage"]["data_dir"] = str(tmp_path / "data")
    if mutate is not None:
        mutate(data)
    if signed:
        sign_licenses(data, tmp_path)
    return parse_config(yaml.safe_dump(data), tmp_path)


def floatsrv_cli(
    *args: str,
    stdin: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m floatsrv ARGS` in a separate process and capture its output. With `env` (another build
    on PYTHONPATH) give a `cwd` outside the checkout: `-m` looks in the working directory first."""
    return subprocess.run(
        [sys.executable, "-m", "floatsrv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env=env,
        cwd=cwd,
    )


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Api:
    """A logged-in client for one running app. Methods return (status, parsed JSON or text)."""

    def __init__(self, client: TestClient[Any, Any], clock: ManualClock, config: Config) -> None:
        self.client = client
        self.clock = clock
        self.config = config
        self.token: str | None = None

    @property
    def app(self) -> Any:
        server: Any = self.client.server
        return server.app

    async def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """An admin command on this app's data dir, in a thread: the app shares this event loop."""
        data_dir = str(self.config.storage.data_dir)
        return await asyncio.to_thread(floatsrv_cli, *args, "--data-dir", data_dir, stdin=stdin)

    async def login(self, username: str = "demo", password: str = "demo-password") -> str:
        resp = await self.client.get("/auth", headers={"Authorization": basic(username, password)})
        async with resp:
            assert resp.status == 200, await resp.text()
            token: str = (await resp.json())["token"]
        self.token = token
        return token

    def headers(self, token: str | None = None) -> dict[str, str]:
        chosen = token if token is not None else self.token
        return {"Authorization": f"Bearer {chosen}"} if chosen else {}

    async def _result(self, resp: Any) -> tuple[int, Any]:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()

    async def post(
        self,
        path: str,
        body: Any,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = {**self.headers(token), **(headers or {})}
        if raw is not None:
            all_headers.setdefault("Content-Type", "application/json")
            resp = await self.client.post(path, data=raw, headers=all_headers)
        else:
            resp = await self.client.post(path, json=body, headers=all_headers)
        async with resp:
            return await self._result(resp)

    async def get(
        self, path: str, *, token: str | None = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.client.get(path, headers=self.headers(token), params=params) as resp:
            return await self._result(resp)

    # Shorthands for the demo product.
    async def register(self, user: str, **extra: Any) -> tuple[int, Any]:
        return await self.post("/api/v4/register", {"product": "demo", "user": user, **extra})

    async def seats(self, **params: str) -> list[dict[str, Any]]:
        status, body = await self.get("/v1/seats", params=params)
        assert status == 200, body
        seats: list[dict[str, Any]] = body["data"]["data"]
        return seats

    async def license(self, license_id: int = 1001) -> dict[str, Any]:
        status, body = await self.get(f"/v1/licenses/{license_id}")
        assert status == 200, body
        view: dict[str, Any] = body["data"]
        return view


async def start_api(
    config: Config,
    clock: ManualClock | None = None,
    environ: dict[str, str] | None = None,
    trust: TrustAnchor | None = None,
) -> tuple[Api, TestClient[Any, Any]]:
    """`trust`: the build's trust anchor (default: the repository build's), e.g. a vendor build's."""
    clock = clock or ManualClock()
    app = create_app(config, clock=clock, environ=environ if environ is not None else {}, trust=trust)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    try:
        await client.start_server()
    except BaseException:  # a config the app refuses at start-up: no session left for the collector to warn about
        await client.close()
        raise
    return Api(client, clock, config), client


# (test, place) -> its PostgreSQL server, database name and DSN, for this worker; dropped after the test
_DATABASES: dict[tuple[str, str], tuple[PgServer, str, str]] = {}
# `pytestmark = BOTH_BACKENDS`: the module's tests that start an app (api, api_factory) run on both backends.
BOTH_BACKENDS = pytest.mark.both_backends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run the test's apps on SQLite and on PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The storage backend of `api` and `api_factory`: SQLite, unless a module or test is marked
    `BOTH_BACKENDS` (then it runs once on each, PostgreSQL on a fresh database of tests.pgfixture, dropped
    after the test: `api` and `api_factory` depend on this fixture, so their apps are closed by then)."""
    # FLOATSRV_TEST_BACKEND=postgresql: every app of the suite on PostgreSQL (a developer's wider check).
    name: str = getattr(request, "param", os.environ.get("FLOATSRV_TEST_BACKEND", "sqlite"))
    yield name
    for key in [key for key in _DATABASES if key[0] == request.node.nodeid]:
        server, database, _ = _DATABASES.pop(key)
        server.drop_database(database)


def on_backend(
    request: pytest.FixtureRequest, backend: str, mutate: Callable[[dict[str, Any]], None] | None, place: str = ""
) -> Callable[[dict[str, Any]], None] | None:
    """`mutate`, then pointing the config at the backend: each `place` (a test's subdir) has its own database."""
    if backend == "sqlite":
        return mutate
    key = (request.node.nodeid, place)
    if key not in _DATABASES:
        server: PgServer = request.getfixturevalue("pg_server")
        database = database_name()
        _DATABASES[key] = (server, database, server.create_database(database))
    dsn = _DATABASES[key][2]

    def change(data: dict[str, Any]) -> None:
        if mutate is not None:
            mutate(data)
        data["storage"]["backend"] = "postgresql"
        data["storage"]["postgresql"] = {"dsn": dsn}

    return change


@pytest.fixture
async def api(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Api]:
    """The demo config, logged in as user `demo`."""
    instance, client = await start_api(make_config(tmp_path, on_backend(request, backend, None)))
    try:
        await instance.login()
        yield instance
    finally:
        await client.close()


@pytest.fixture
async def api_factory(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Any]:
    """Start apps on custom configs: `await api_factory(mutate)`; all are closed at teardown."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(
        mutate: Callable[[dict[str, Any]], None] | None = None,
        *,
        login: bool = True,
        clock: ManualClock | None = None,
        subdir: str = "",
        signed: bool = True,
        trust: TrustAnchor | None = None,
    ) -> Api:
        changed = on_backend(request, backend, mutate, subdir)
        config = make_config(tmp_path / subdir if subdir else tmp_path, changed, signed=signed)
        instance, client = await start_api(config, clock, trust=trust)
        clients.append(client)  # closed at teardown even if login fails
        if login and config.auth.users:
            await instance.login()
        return instance

    try:
        yield factory
    finally:
        for client in clients:
            await client.close()


async def _serving(upstream: Any, path: str) -> AsyncIterator[tuple[Any, str]]:
    server = TestServer(upstream.app)
    await server.start_server()
    try:
        yield upstream, str(server.make_url(path))
    finally:
        await server.close()


@pytest.fixture
async def floatsrv_upstream() -> AsyncIterator[tuple[FloatsrvUpstream, str]]:
    """A local upstream speaking floatsrv's sync format (token `UPSTREAM_TOKEN`), and its ingest URL."""
    async for served in _serving(FloatsrvUpstream(), "/ingest"):
        yield served


@pytest.fixture
async def rebilly_upstream() -> AsyncIterator[tuple[RebillyUpstream, str]]:
    """A local upstream speaking Rebilly's `POST /usages`, and its base URL."""
    async for served in _serving(RebillyUpstream(), "/"):
        yield served


@pytest.fixture(autouse=True)
def _reap_server_processes() -> Any:
    """A test that fails between starting a server process and its `finally` leaves the server running: kill
    it, so it never outlives its test (it would hold ports and CPU for the rest of the suite)."""
    from tests.procs import STARTED, reap_leftovers  # here: tests.procs imports this module

    before = len(STARTED)  # servers of wider-scoped fixtures are started (and stopped) by those fixtures
    yield
    reap_leftovers(before)
