"""The wall clock stepping backwards: floatsrv's time keeps moving forward, seats and periods stay sane,
and a step beyond the tolerance is logged and shown by /readyz. Time is injected (ManualClock for the
wall clock, a fake monotonic clock), never slept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from floatsrv.app import create_app
from floatsrv.clock import ClockJump, ManualClock, SteadyClock
from tests.conftest import Api, make_config

T0 = datetime(2026, 1, 31, 23, 50, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


class Clocks:
    """The wall clock and the monotonic clock, moved together (as real time does) or apart (a step)."""

    def __init__(self, start: datetime = T0) -> None:
        self.wall = ManualClock(start)
        self.mono = FakeMonotonic()

    def elapse(self, delta: timedelta) -> None:
        self.wall.advance(delta)
        self.mono.advance(delta.total_seconds())

    def step_wall(self, delta: timedelta) -> None:
        self.wall.advance(delta)

    def steady(self) -> SteadyClock:
        return SteadyClock(self.wall, monotonic=self.mono)


def test_steady_clock_never_runs_backwards() -> None:
    clocks = Clocks()
    jumps: list[ClockJump] = []
    steady = SteadyClock(clocks.wall, tolerance=timedelta(seconds=5), monotonic=clocks.mono, on_jump=jumps.append)
    assert steady.now() == T0
    clocks.elapse(timedelta(seconds=10))
    assert steady.now() == T0 + timedelta(seconds=10)
    clocks.step_wall(timedelta(seconds=-2))  # within the tolerance: held, not reported
    assert steady.now() == T0 + timedelta(seconds=10)
    clocks.elapse(timedelta(seconds=3))  # the wall clock (now 11 s) catches up with ours (13 s)? not yet
    assert steady.now() == T0 + timedelta(seconds=13)
    clocks.elapse(timedelta(seconds=1))
    assert steady.now() == T0 + timedelta(seconds=14)
    assert jumps == []
    clocks.step_wall(timedelta(hours=-1))  # beyond the tolerance: reported once
    assert steady.now() == T0 + timedelta(seconds=14)
    clocks.elapse(timedelta(minutes=30))  # real time still passes for us
    assert steady.now() == T0 + timedelta(minutes=30, seconds=14)
    assert [round(j.seconds) for j in jumps] == [3602]  # 1 h plus the 2 s the wall clock still lagged
    clocks.step_wall(timedelta(hours=1))  # corrected, but still 2 s behind us: we keep our own time
    assert steady.now() == T0 + timedelta(minutes=30, seconds=14)
    clocks.step_wall(timedelta(seconds=3))  # ahead of us: we follow the wall clock again
    assert steady.now() == clocks.wall.now() == T0 + timedelta(minutes=30, seconds=15)
    assert len(jumps) == 1


def test_floor_from_a_previous_run() -> None:
    clocks = Clocks()
    jumps: list[ClockJump] = []
    steady = SteadyClock(clocks.wall, monotonic=clocks.mono, on_jump=jumps.append)
    steady.floor(T0 + timedelta(days=1))  # the database has seen this time already
    assert steady.now() == T0 + timedelta(days=1)
    assert len(jumps) == 1 and round(jumps[0].seconds) == 86_400


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Api, Clocks]]:
    clocks = Clocks()
    config = make_config(tmp_path)
    steady = SteadyClock(clocks.wall, tolerance=timedelta(seconds=5), monotonic=clocks.mono)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config, clock=steady, environ={})))
    await client.start_server()
    api = Api(client, clocks.wall, config)
    try:
        await api.login()
        yield api, clocks
    finally:
        await client.close()


async def test_seats_and_periods_after_a_backward_step(clocked: tuple[Api, Clocks], capsys: Any) -> None:
    api, clocks = clocked
    assert (await api.register("ann"))[0] == 200
    clocks.elapse(timedelta(minutes=20))  # 2026-02-01T00:10Z: a new monthly period
    consume = {"product": "demo", "user": "ann", "consumptions": 4}  # license-level: resets monthly
    status, body = await api.post("/api/v4/add_consumption", consume)
    assert status == 200, body

    clocks.step_wall(timedelta(hours=-2))  # the wall clock says January again
    # A heartbeat still works (no timestamp before the registration, no 500) ...
    status, body = await api.register("ann")
    assert status == 200, body
    # ... and usage still counts in February, the period that is running for us, not in January's.
    status, body = await api.post("/api/v4/add_consumption", consume)
    assert status == 200, body
    consumption = (await api.license())["consumption"]
    assert consumption["total"] == "8"
    assert consumption["period"]["start"].startswith("2026-02-01")

    # Seats still expire on real elapsed time, although the wall clock lags two hours behind.
    clocks.elapse(timedelta(minutes=31))
    assert (await api.license())["seats_in_use"] == 0

    async with api.client.get("/readyz") as resp:
        body = await resp.json()
    assert resp.status == 200  # a clock warning does not make the server unready
    clock = body["checks"]["clock"]
    assert clock["status"] == "warning" and clock["backward_jumps"] == 1
    assert clock["last_jump"]["seconds"] == pytest.approx(7200, abs=1) and clock["wall_clock_behind"] is True
    assert "clock_jumped_backwards" in capsys.readouterr().out


async def test_restart_keeps_time_moving_forward(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    clocks = Clocks()
    first = TestClient(TestServer(create_app(config, clock=clocks.steady(), environ={})))
    await first.start_server()
    await first.close()  # writes down the time it reached

    clocks.step_wall(timedelta(days=-3))  # e.g. the machine's battery-backed clock reset while it was off
    second = TestClient(TestServer(create_app(config, clock=clocks.steady(), environ={})))
    await second.start_server()
    try:
        async with second.get("/readyz") as resp:
            clock = (await resp.json())["checks"]["clock"]
        assert clock["status"] == "warning" and clock["last_jump"]["seconds"] == pytest.approx(3 * 86_400, abs=1)
        async with second.get("/auth", headers={"Authorization": "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk"}) as resp:
            token = (await resp.json())["token"]
        async with second.get("/v1/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200  # tokens are issued on our time, so they are valid on our time
    finally:
        await second.close()
