"""Real local HTTP servers standing in for upstream billing systems, with injectable faults.

`FloatsrvUpstream` speaks floatsrv's own format (keeps the highest revision per counter); `RebillyUpstream`
speaks Rebilly's `POST /usages` (409 for an id it has). Faults, drawn from a seeded generator: fail before
storing (500), store and then fail (so the next delivery is a duplicate), answer too slowly (the client
times out, after the upstream stored it), and drop the connection. Every request is recorded with its
arrival time and status in `history`. `serve_in_thread` runs one in a background thread for tests whose
own thread blocks (subprocesses, blocking HTTP).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from floatsrv.entitlements import issue as vendor
from floatsrv.entitlements.request import read_request
from floatsrv.signing import SignatureError


@dataclass
class Faults:
    fail: float = 0.0
    store_then_fail: float = 0.0
    slow: float = 0.0
    drop: float = 0.0
    slow_seconds: float = 1.0
    permanent_status: int | None = None  # answer every request with this (e.g. 400) while set
    down: bool = False  # answer 503 to everything
    seed: int = 7
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.injected: dict[str, int] = defaultdict(int)

    def off(self) -> None:
        self.fail = self.store_then_fail = self.slow = self.drop = 0.0
        self.permanent_status = None
        self.down = False

    def draw(self) -> str:
        roll = self.rng.random()
        for name in ("fail", "store_then_fail", "slow", "drop"):
            chance = getattr(self, name)
            if roll < chance:
                self.injected[name] += 1
                return name
            roll -= chance
        return "ok"


UPSTREAM_TOKEN = "upstream-token"  # the bearer token the test upstreams expect by default


class _Upstream:
    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.requests = 0
        self.history: list[tuple[float, int]] = []  # (time.monotonic() on arrival, status answered)
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests it was answering at once (one sender sends one at a time)
        self.app = web.Application()

    async def faulty(self, request: web.Request, store: Any) -> web.StreamResponse:
        arrived = time.monotonic()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            response = await self._faulty(request, store)
        finally:
            self.in_flight -= 1
        self.history.append((arrived, response.status))
        return response

    async def _faulty(self, request: web.Request, store: Any) -> web.StreamResponse:
        self.requests += 1
        if self.faults.down:
            return web.json_response({"error": "down"}, status=503)
        if self.faults.permanent_status is not None:
            return web.json_response({"error": "refused"}, status=self.faults.permanent_status)
        fault = self.faults.draw()
        if fault == "fail":
            return web.json_response({"error": "boom"}, status=500)
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()  # the client sees the connection die without an answer
            return web.Response(status=500)
        response: web.StreamResponse = store()
        if fault == "store_then_fail":
            return web.json_response({"error": "stored, then failed"}, status=500)
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
        return response


SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "sync-batch.schema.json").read_text())


class FloatsrvUpstream(_Upstream):
    """POST /ingest with floatsrv's sync format (checked against docs/sync-batch.schema.json). Keeps, per
    counter, the highest revision seen, and answers what it holds of the batch's counters (`holdings`); GET
    /holdings?server_id= answers all of a server's (docs/sync.md). `offers_holdings=False`: an upstream made
    for version 1 of the format, which answers no `holdings` and 404 at GET /holdings."""

    def __init__(
        self, token: str = UPSTREAM_TOKEN, faults: Faults | None = None, *, offers_holdings: bool = True
    ) -> None:
        super().__init__(faults)
        self.token = token
        self.offers_holdings = offers_holdings
        self.holdings_asked = 0  # GET /holdings requests, answered or not
        self.format_versions: list[int | None] = []  # each stored batch's format_version (None: absent)
        self.counters: dict[tuple[Any, ...], tuple[int, Decimal]] = {}
        self.periods: dict[tuple[Any, ...], str | None] = {}  # each counter's period_end
        self.batches: set[str] = set()
        self.entitlements: list[str | None] = []  # each stored batch's entitlements flag
        self.flags: list[dict[str, bool]] = []  # each stored batch's clock_tampered / usage_rollback
        self.lower_totals: list[tuple[Any, ...]] = []  # records that carried less than the counter held
        self.app.router.add_post("/ingest", self.ingest)
        self.app.router.add_get("/holdings", self.get_holdings)

    def holdings(self, server_id: str, keys: list[tuple[Any, ...]] | None = None) -> list[dict[str, Any]]:
        chosen = keys if keys is not None else [k for k in self.counters if k[0] == server_id]
        return [
            {
                "license_id": k[1], "feature": k[2], "period_start": k[3], "period_end": self.periods.get(k),
                "revision": self.counters[k][0], "quantity": str(self.counters[k][1]),
            }
            for k in chosen
            if k in self.counters
        ]  # fmt: skip

    async def get_holdings(self, request: web.Request) -> web.StreamResponse:
        self.holdings_asked += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.faults.down:
            return web.json_response({"error": "down"}, status=503)
        if not self.offers_holdings:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"holdings": self.holdings(request.query.get("server_id", ""))})

    async def ingest(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        jsonschema.validate(body, SCHEMA)  # the documented format, exactly
        key = request.headers["Idempotency-Key"]

        def store() -> web.Response:
            self.batches.add(key)
            self.format_versions.append(body.get("format_version"))
            self.entitlements.append(body.get("entitlements"))
            self.flags.append({name: body[name] for name in ("clock_tampered", "usage_rollback") if name in body})
            keys = []
            for record in body["records"]:
                counter = (body["server_id"], record["license_id"], record["feature"], record["period_start"])
                keys.append(counter)
                old = self.counters.get(counter)
                quantity = Decimal(record["quantity"])
                if old is not None and quantity < old[1]:
                    self.lower_totals.append((*counter, record["revision"], quantity, old))
                if old is None or record["revision"] > old[0]:
                    self.counters[counter] = (record["revision"], quantity)
                    self.periods[counter] = record["period_end"]
            if not self.offers_holdings:
                return web.json_response({"accepted": len(body["records"])})
            held = self.holdings(body["server_id"], keys)
            return web.json_response({"accepted": len(body["records"]), "holdings": held})

        return await self.faulty(request, store)

    def totals(self) -> dict[tuple[int, str, str | None], Decimal]:
        return {(k[1], k[2] or "", k[3]): v[1] for k, v in self.counters.items()}


class VendorLicensing:
    """The vendor's licensing service beside a FloatsrvUpstream (docs/sync.md): `POST /activate` verifies a
    server's signed activation request and answers a license file bound to it (demo-signed: the repository
    build trusts the demo key), `GET /license-file?server_key=` answers the newest file issued to that server
    (404: none yet). `grant` issues a newer file to a server, as a vendor does when a customer buys more."""

    def __init__(
        self,
        upstream: _Upstream,
        licenses: list[dict[str, Any]],
        refresh_by: datetime | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.upstream = upstream
        self.now = now  # the vendor's clock (files are issued a minute before it)
        self.licenses = licenses
        self.refresh_by = refresh_by
        self.files: dict[str, str] = {}  # server key -> its newest file
        self.bindings: dict[str, dict[str, Any]] = {}
        self.sequence = 0
        self.activations = 0
        self.refusals = 0  # requests answered 503 while the upstream was down
        upstream.app.router.add_post("/activate", self.activate)
        upstream.app.router.add_get("/license-file", self.license_file)

    def _issue(self, server_key: str, request_id: str | None = None) -> str:
        from tests.licensing import LONG_AGO, demo_key

        self.sequence += 1
        payload = vendor.payload_bytes(
            vendor.validated(self.licenses),
            binding=self.bindings[server_key],
            issued_at=self.now() - timedelta(minutes=1),
            not_before=LONG_AGO,
            refresh_by=self.refresh_by,
            series="online",
            sequence=self.sequence,
            request_id=request_id,
        )
        self.files[server_key] = vendor.issue(payload, demo_key())
        return self.files[server_key]

    def grant(self, server_key: str, licenses: list[dict[str, Any]], refresh_by: datetime | None = None) -> None:
        self.licenses, self.refresh_by = licenses, refresh_by
        self._issue(server_key)

    def _refused(self) -> web.Response | None:
        if self.upstream.faults.down:
            self.refusals += 1
            return web.json_response({"error": "down"}, status=503)
        return None

    async def activate(self, request: web.Request) -> web.Response:
        refused = self._refused()
        if refused is not None:
            return refused
        try:
            asked = read_request(await request.read())
        except SignatureError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.activations += 1
        self.bindings[asked.server_key] = {"server_key": asked.server_key, "fingerprint": asked.fingerprint}
        return web.Response(text=self._issue(asked.server_key, asked.request_id))

    async def license_file(self, request: web.Request) -> web.Response:
        refused = self._refused()
        if refused is not None:
            return refused
        text = self.files.get(request.query.get("server_key", ""))
        return web.Response(text=text) if text is not None else web.json_response({"error": "none"}, status=404)


class RebillyUpstream(_Upstream):
    """POST /usages, one usage per request; an id it already has gets 409."""

    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.usages: dict[str, dict[str, Any]] = {}
        self.conflicts = 0
        self.app.router.add_post("/usages", self.usage)

    async def usage(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["id"] in self.usages:
            self.conflicts += 1
            return web.json_response({"error": "exists"}, status=409)
        if not isinstance(body["quantity"], (int, float)) or body["quantity"] < 0.001:
            return web.json_response({"error": "quantity"}, status=422)

        def store() -> web.Response:
            self.usages[body["id"]] = body
            return web.json_response({**body, "createdTime": "now"}, status=201)

        return await self.faulty(request, store)

    def totals(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for usage in self.usages.values():
            out[usage["subscriptionId"]] += Decimal(str(usage["quantity"]))
        return dict(out)


@contextmanager
def serve_in_thread(upstream: _Upstream) -> Iterator[str]:
    """Serve `upstream` on a free loopback port from its own thread and event loop; yields its base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    runner = web.AppRunner(upstream.app)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="upstream", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the upstream did not start")
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def synced(url: str) -> Any:
    """A config change: sync to a `floatsrv` upstream at `url`, only when a test asks (no periodic pass)."""

    def mutate(data: dict[str, Any]) -> None:
        data["sync"] = {
            "interval_seconds": 3600,  # only the passes a test asks for
            "shutdown_timeout_seconds": 0,
            "upstreams": [{"name": "vendor", "url": url, "token": UPSTREAM_TOKEN, "timeout_seconds": 2}],
        }

    return mutate
