"""Usage history reports through real HTTP on a real database: a scripted week of registrations against a
brute-force count over the same intervals, the denial log, consumption per day and period (kept through
compaction), CSV that matches the JSON, the CLI, and retention."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from floatsrv.appkeys import DOMAIN
from floatsrv.domain.usage import compact_events
from floatsrv.times import iso
from floatsrv.workers.sweeper import sweep_once
from tests.conftest import Api

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # ManualClock's default start
HOUR = timedelta(hours=1)
TIMEOUT = timedelta(minutes=30)  # the demo license's floating_timeout
SEATS = 3


class Model:
    """What the server should hold: seat intervals [start, end) and refusal times, kept by the test itself."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[datetime, datetime]] = {}  # user -> (start, expires)
        self.intervals: list[tuple[datetime, datetime]] = []
        self.denied: list[datetime] = []

    def expire(self, now: datetime) -> None:
        for user, (start, expires) in list(self.held.items()):
            if expires <= now:
                self.intervals.append((start, expires))
                del self.held[user]

    def register(self, user: str, now: datetime) -> bool:
        self.expire(now)
        if user in self.held:
            self.held[user] = (self.held[user][0], now + TIMEOUT)
            return True
        if len(self.held) >= SEATS:
            self.denied.append(now)
            return False
        self.held[user] = (now, now + TIMEOUT)
        return True

    def unregister(self, user: str, now: datetime) -> None:
        self.expire(now)
        if user in self.held:
            self.intervals.append((self.held.pop(user)[0], now))

    def close(self, now: datetime) -> list[tuple[datetime, datetime]]:
        return self.intervals + [(start, min(expires, now)) for start, expires in self.held.values()]


def brute_force(intervals: list[tuple[datetime, datetime]], denied: list[datetime], since: datetime, hours: int) -> Any:
    """Per hour: (peak, average, denials), by looking at every instant where the count can change."""
    out = []
    for h in range(hours):
        start, end = since + h * HOUR, since + (h + 1) * HOUR
        instants = [start] + [s for s, _ in intervals if start < s < end]
        peak = max(sum(1 for s, e in intervals if s <= t < e) for t in instants)
        area = sum((max(timedelta(0), min(e, end) - max(s, start)) for s, e in intervals), timedelta(0))
        average = (Decimal(area // timedelta(microseconds=1)) / 3_600_000_000).quantize(
            Decimal("0.001"), ROUND_HALF_EVEN
        )
        out.append((peak, str(average), sum(1 for d in denied if start <= d < end)))
    return out


async def test_a_scripted_week_gives_exactly_the_brute_force_peak_and_average(api: Api) -> None:
    rng = random.Random(20)
    model = Model()
    users = [f"user{i}" for i in range(7)]
    end_of_week = START + timedelta(days=7)
    while api.clock.now() < end_of_week - HOUR:
        now = api.clock.now()
        user = rng.choice(users)
        if rng.random() < 0.7:
            status, body = await api.register(user)
            assert (status == 200) == model.register(user, now), (now, user, body)
        else:
            assert (await api.post("/api/v4/unregister", {"product": "demo", "user": user}))[0] == 200
            model.unregister(user, now)
        api.clock.advance(
            timedelta(minutes=rng.randint(0, 40), seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999_999))
        )
    api.clock.set(end_of_week + HOUR)
    params = {"license_id": "1001", "bucket": "hour", "since": iso(START), "until": iso(end_of_week)}
    status, body = await api.get("/v1/reports/concurrency", params=params)
    assert status == 200, body
    buckets = body["data"]["buckets"]
    assert len(buckets) == 7 * 24
    assert buckets[0]["start"] == iso(START) and buckets[-1]["end"] == iso(end_of_week)
    got = [(b["peak"], b["average"], b["denials"]) for b in buckets]
    expected = brute_force(model.close(api.clock.now()), model.denied, START, 7 * 24)
    assert got == expected
    assert {(b["limit"], b["reserved"]) for b in buckets} == {(SEATS, 0)}
    assert max(peak for peak, _, _ in got) == SEATS and sum(d for _, _, d in got) == len(model.denied) > 0

    # The same rows as CSV, by ?format=csv and by Accept.
    status, text = await api.get("/v1/reports/concurrency", params={**params, "format": "csv"})
    assert status == 200
    resp = await api.client.get(
        "/v1/reports/concurrency", params=params, headers={**api.headers(), "Accept": "text/csv"}
    )
    async with resp:
        assert resp.content_type == "text/csv" and await resp.text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [{key: str(value) for key, value in bucket.items()} for bucket in buckets]

    # By day (whole UTC days: the week starts at noon, so eight of them), the peak of each day's hours.
    status, body = await api.get("/v1/reports/concurrency", params={**params, "bucket": "day"})
    days = body["data"]["buckets"]
    assert days[0]["start"] == "2026-01-15T00:00:00.000Z" and len(days) == 8
    hourly = [0] * 12 + [peak for peak, _, _ in got] + [0] * 12
    assert [d["peak"] for d in days] == [max(hourly[i * 24 : (i + 1) * 24]) for i in range(8)]


async def test_the_denial_log_filters_pages_and_exports(api: Api) -> None:
    for user in ("a", "b", "c"):
        assert (await api.register(user, os_hostname=f"ws-{user}"))[0] == 200
    for i in range(5):
        api.clock.advance(timedelta(minutes=1))
        assert (await api.register(f"late{i}", os_hostname="=cmd|'/c calc'!A0"))[0] == 400
    status, body = await api.post("/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": 5000})
    assert (status, body["code"]) == (400, "license_not_enough_consumptions")

    status, body = await api.get("/v1/reports/denials", params={"limit": "2"})
    assert status == 200, body
    first = body["data"]["items"]
    assert [i["reason"] for i in first] == ["license_not_enough_consumptions", "all_seats_in_use"]
    assert (first[0]["kind"], first[0]["in_use"], first[0]["limit"]) == ("consumption", "0", "1100")
    seen = [item["user"] for item in first]
    cursor = body["data"]["next_cursor"]
    while cursor is not None:
        status, body = await api.get("/v1/reports/denials", params={"limit": "2", "cursor": cursor})
        seen += [item["user"] for item in body["data"]["items"]]
        cursor = body["data"]["next_cursor"]
    assert seen == ["a", "late4", "late3", "late2", "late1", "late0"]

    status, body = await api.get("/v1/reports/denials", params={"reason": "all_seats_in_use", "user": "late2"})
    [item] = body["data"]["items"]
    assert (item["in_use"], item["limit"], item["host"], item["login"]) == ("3", "3", "=cmd|'/c calc'!A0", "demo")
    since = iso(START + timedelta(minutes=3))
    status, body = await api.get("/v1/reports/denials", params={"since": since, "feature": "", "license_id": "1001"})
    assert status == 400  # an empty feature is a mistake, not "the license"
    status, body = await api.get("/v1/reports/denials", params={"since": since, "license_id": "1001"})
    assert [i["user"] for i in body["data"]["items"]] == ["a", "late4", "late3", "late2"]
    status, body = await api.get("/v1/reports/denials", params={"until": ""})
    assert (status, body["error"]["param"]) == (400, "until")

    status, text = await api.get("/v1/reports/denials", params={"format": "csv", "user": "late2"})
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["host"] == "'=cmd|'/c calc'!A0"  # a spreadsheet must not run it as a formula
    assert (row["reason"], row["in_use"], row["feature"]) == ("all_seats_in_use", "3", "")


async def test_consumption_per_day_and_period_outlives_compaction(api: Api) -> None:
    status, _ = await api.post("/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": 5})
    assert status == 200
    yesterday = START - timedelta(days=1)
    event = {
        "license_id": 1001,
        "feature": "render",
        "quantity": "2.5",
        "occurred_at": iso(yesterday),
        "event_id": "e-1",
    }
    status, body = await api.post("/v1/usage/events", event)
    assert status in (200, 201), body
    params = {"license_id": "1001", "since": "2026-01-10T00:00:00Z", "until": "2026-01-20T00:00:00Z"}
    status, body = await api.get("/v1/reports/consumption", params=params)
    assert status == 200, body
    days = [(b["feature"], b["start"], b["end"], b["quantity"], b["events"]) for b in body["data"]["buckets"]]
    assert days == [
        (None, "2026-01-15T00:00:00.000Z", "2026-01-16T00:00:00.000Z", "5", 1),
        ("render", "2026-01-14T00:00:00.000Z", "2026-01-15T00:00:00.000Z", "2.5", 1),
    ]
    status, body = await api.get("/v1/reports/consumption", params={**params, "bucket": "period"})
    periods = [(b["feature"], b["start"], b["end"], b["quantity"]) for b in body["data"]["buckets"]]
    assert periods == [
        (None, "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z", "5"),
        ("render", None, None, "2.5"),  # the demo's render counter never resets
    ]
    # Raw events compacted away: the daily totals stay.
    domain = api.app[DOMAIN]
    api.clock.advance(timedelta(days=3))
    assert await compact_events(domain, 1) == 2
    status, again = await api.get("/v1/reports/consumption", params=params)
    assert [(b["feature"], b["quantity"], b["events"]) for b in again["data"]["buckets"]] == [
        (None, "5", 1),
        ("render", "2.5", 1),
    ]
    status, text = await api.get("/v1/reports/consumption", params={**params, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["license_id"], r["feature"], r["quantity"], r["events"]) for r in rows] == [
        ("1001", "", "5", "1"),
        ("1001", "render", "2.5", "1"),
    ]


async def test_bad_report_requests_get_clear_errors(api: Api) -> None:
    cases = [
        ({"license_id": "1001", "since": "2026-01-15T00:00:00Z", "until": "2026-01-14T00:00:00Z"}, "since"),
        ({"license_id": "1001", "since": "2020-01-01T00:00:00Z"}, "since"),  # too many hourly buckets
        ({"license_id": "1001", "bucket": "minute"}, "bucket"),
        ({"license_id": "4242"}, "license_id"),
        ({}, "license_id"),
    ]
    for params, param in cases:
        status, body = await api.get("/v1/reports/concurrency", params=params)
        assert status in (400, 404), (params, body)
        assert body["error"]["param"] == param, (params, body)
    status, body = await api.get("/v1/reports/concurrency", params={"license_id": "1001", "feature": "render"})
    assert (status, body["error"]["code"]) == (422, "feature_not_floating")
    status, body = await api.get("/v1/reports/denials", params={"cursor": "x1"})
    assert (status, body["error"]["param"]) == (400, "cursor")


async def test_history_past_the_retention_is_forgotten(api_factory: Any) -> None:
    api: Api = await api_factory(lambda data: data.setdefault("reports", {}).update(retention_days=30))
    for user in ("a", "b", "c", "d"):
        await api.register(user)
    await api.post("/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": 5})
    api.clock.advance(timedelta(days=31))
    await sweep_once(api.app)
    status, body = await api.get("/v1/reports/denials")
    assert body["data"]["items"] == []
    assert await api.seats(state="all") == []  # ended seats past the retention are gone
    status, body = await api.get("/v1/reports/consumption", params={"since": iso(START - timedelta(days=1))})
    assert body["data"]["buckets"] == []
    # Counters (what sync and billing use) are not report history: they stay.
    assert (await api.license())["consumption"] is not None


async def test_the_cli_prints_the_same_reports(api: Api) -> None:
    for user in ("a", "b", "c", "d"):
        await api.register(user)
    api.clock.advance(HOUR)
    result = await api.cli("report", "denials")
    assert result.returncode == 0, result.stderr
    assert "all_seats_in_use" in result.stdout and "REASON" in result.stdout
    result = await api.cli("report", "denials", "--csv")
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["user"], row["reason"]) == ("d", "all_seats_in_use")
    # The CLI reads its own clock (the real one): ask for the test clock's window explicitly.
    window = ("--since", iso(START), "--until", iso(START + HOUR))
    result = await api.cli("report", "concurrency", "--license", "1001", *window, "--csv")
    assert result.returncode == 0, result.stderr
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["start"], row["peak"], row["denials"]) == (iso(START), "3", "1")
    _, body = await api.get(
        "/v1/reports/concurrency", params={"license_id": "1001", "since": iso(START), "until": iso(START + HOUR)}
    )
    assert row == {k: str(v) for k, v in body["data"]["buckets"][0].items()}
    await api.post("/api/v4/add_consumption", {"product": "demo", "user": "a", "consumptions": 7})
    result = await api.cli("report", "consumption", "--since", "2026-01-01", "--until", "2026-02-01", "--json")
    assert result.returncode == 0, result.stderr
    assert [(r["license_id"], r["feature"], r["start"], r["quantity"]) for r in json.loads(result.stdout)] == [
        (1001, None, "2026-01-15T00:00:00.000Z", "7")
    ]
    result = await api.cli("report", "concurrency", "--license", "4242")
    assert result.returncode == 1 and "license_not_found" in result.stderr


async def test_a_seat_ending_on_the_hour_is_not_in_the_next_hour(api: Api) -> None:
    assert (await api.register("a"))[0] == 200  # 12:00:00 exactly
    for _ in range(3):  # heartbeats at 12:20 and 12:40 keep it; 13:00 then ends it
        api.clock.advance(timedelta(minutes=20))
        if api.clock.now() < START + HOUR:
            assert (await api.register("a"))[0] == 200
    assert (await api.post("/api/v4/unregister", {"product": "demo", "user": "a"}))[0] == 200  # 13:00:00
    api.clock.advance(HOUR)
    params = {"license_id": "1001", "since": iso(START), "until": iso(START + 2 * HOUR)}
    status, body = await api.get("/v1/reports/concurrency", params=params)
    assert [(b["peak"], b["average"]) for b in body["data"]["buckets"]] == [(1, "1.000"), (0, "0.000")]


async def test_odd_cursors_and_far_dates_are_refused_not_failed(api: Api) -> None:
    status, body = await api.get("/v1/reports/denials", params={"cursor": "²"})
    assert (status, body["error"]["param"]) == (400, "cursor")
    for params in (
        {"license_id": "1001", "until": "9999-12-31T23:30:00Z"},
        {"license_id": "1001", "since": "1969-12-31T00:00:00Z", "until": "1970-01-01T05:00:00Z"},
    ):
        for path in ("/v1/reports/concurrency", "/v1/reports/consumption"):
            status, body = await api.get(path, params=params)
            assert status == 400, (path, params, body)


def _reserving(design: int, export: int) -> Any:
    """A policy keeping `design` license seats for the design group and `export` export seats for user:x."""

    def mutate(data: dict[str, Any]) -> None:
        data["policy"] = {
            "groups": {"design": {"users": ["alice", "bob"]}},
            "rules": [
                {"license": 1001, "reserve": [{"count": design, "for": "design"}]},
                {"license": 1001, "feature": "export", "reserve": [{"count": export, "for": "user:x"}]},
            ],
        }

    return mutate


async def test_concurrency_buckets_carry_the_reservations_and_limits_in_force_today(api_factory: Any) -> None:
    api: Api = await api_factory(_reserving(2, 1), subdir="site")
    assert (await api.register("carol"))[0] == 200
    status, body = await api.register("dave")  # one seat free, and two kept for design
    assert status == 400 and body["message"].startswith("seats_reserved_for_others"), body
    export = {"product": "demo", "user": "carol", "feature": "export"}
    assert (await api.post("/api/v4/featureRegister", export))[0] == 200
    api.clock.advance(2 * HOUR)
    window = {"license_id": "1001", "since": iso(START - HOUR), "until": iso(START + 2 * HOUR)}  # an hour before any

    async def buckets(**params: str) -> list[tuple[int, int, int, int]]:
        status, body = await api.get("/v1/reports/concurrency", params={**window, **params})
        assert status == 200, body
        json_rows = body["data"]["buckets"]
        status, text = await api.get("/v1/reports/concurrency", params={**window, **params, "format": "csv"})
        assert status == 200, text
        assert list(csv.DictReader(io.StringIO(text))) == [{k: str(v) for k, v in b.items()} for b in json_rows]
        return [(b["peak"], b["limit"], b["reserved"], b["denials"]) for b in json_rows]

    # (peak, limit, reserved, denials) per hour: 11:00 (before any seat), 12:00 and 13:00 (carol's seats
    # expire at 12:30 without a heartbeat).
    assert await buckets() == [(0, 3, 2, 0), (1, 3, 2, 1), (0, 3, 2, 0)]
    assert await buckets(feature="export") == [(0, 2, 1, 0), (1, 2, 1, 0), (0, 2, 1, 0)]
    status, text = await api.get("/v1/reports/concurrency", params={**window, "format": "csv"})
    assert [(r["limit"], r["reserved"]) for r in csv.DictReader(io.StringIO(text))] == [("3", "2")] * 3

    # Today's values, in every bucket, past ones too: a seat add-on on export, and a policy changed at a restart.
    await api.login("admin", "admin-password")
    status, body = await api.post(
        "/v1/addons", {"name": "More seats", "feature": "export", "consumption_model": "seats", "included_units": 2}
    )
    assert status == 200, body
    assert (await api.post("/v1/licenses/1001/addons", {"addon_id": body["data"]["id"]}))[0] == 200
    await api.client.close()
    api = await api_factory(_reserving(1, 2), clock=api.clock, subdir="site")
    assert await buckets() == [(0, 3, 1, 0), (1, 3, 1, 1), (0, 3, 1, 0)]
    assert await buckets(feature="export") == [(0, 4, 2, 0), (1, 4, 2, 0), (0, 4, 2, 0)]
