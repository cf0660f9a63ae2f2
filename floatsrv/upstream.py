"""Talking to upstream billing systems over HTTP, in the two wire formats floatsrv speaks.

    UpstreamError                 (what failed, and what was confirmed before it failed)
    ├── retryable                 timeouts, dropped connections, 408/425/429/5xx: try again later
    └── permanent                 any other refusal: park the batch and tell the admin

`floatsrv`: one POST per batch of cumulative totals with revisions, `Idempotency-Key: <batch id>`.
`rebilly-usages`: one POST /usages per counter delta, with a deterministic id; 409 (that id exists) means
the usage is already there. A record counts as delivered only on a 2xx (or that 409).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from floatsrv import __version__
from floatsrv.clock import Clock
from floatsrv.config import UpstreamConfig
from floatsrv.domain.sync import Batch, BatchRecord, weakest_entitlements, wire_record
from floatsrv.times import from_us, iso

RETRYABLE_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))


class UpstreamError(Exception):
    def __init__(
        self, message: str, *, retryable: bool, confirmed: list[BatchRecord] | None = None, requests: int = 0
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.confirmed = confirmed or []
        self.requests = requests


@dataclass(slots=True)
class SendResult:
    confirmed: list[BatchRecord] = field(default_factory=list)
    requests: int = 0


class Upstream(Protocol):
    name: str

    async def send(self, batch: Batch, server_id: str) -> SendResult: ...


class _Http:
    def __init__(self, config: UpstreamConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.name = config.name
        self.config = config
        self.session = session
        self.clock = clock

    def headers(self, extra: dict[str, str]) -> dict[str, str]:
        out = {"Content-Type": "application/json", "User-Agent": f"floatsrv/{__version__}", **extra}
        if self.config.token is not None:
            out["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        out.update({name: value.get_secret_value() for name, value in self.config.headers.items()})
        return out

    async def post(self, url: str, body: dict[str, object], headers: dict[str, str]) -> tuple[int, str]:
        """POST JSON; (status, a short excerpt of the reply). Raises a retryable UpstreamError on transport faults."""
        try:
            async with self.session.post(
                url,
                data=json.dumps(body).encode(),
                headers=self.headers(headers),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            ) as resp:
                text = (await resp.text(errors="replace"))[:200]
                return resp.status, text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc


def _failure(name: str, status: int, text: str, confirmed: list[BatchRecord], requests: int) -> UpstreamError:
    return UpstreamError(
        f"{name}: HTTP {status}: {text}", retryable=status in RETRYABLE_STATUS, confirmed=confirmed, requests=requests
    )


class FloatsrvUpstream(_Http):
    async def send(self, batch: Batch, server_id: str) -> SendResult:
        body: dict[str, object] = {
            "server_id": server_id,
            "sent_at": iso(self.clock.now()),
            "entitlements": weakest_entitlements(batch.records),
            "records": [wire_record(r) for r in batch.records],
        }
        status, text = await self.post(self.config.url, body, {"Idempotency-Key": batch.id})
        if 200 <= status < 300:
            return SendResult(list(batch.records), 1)
        raise _failure(self.name, status, text, [], 1)


class RebillyUpstream(_Http):
    def subscription(self, record: BatchRecord) -> str | None:
        mapping = self.config.subscriptions
        return mapping.get(f"{record.license_id}/{record.feature}") or mapping.get(str(record.license_id))

    def usage_id(self, server_id: str, record: BatchRecord) -> str:
        # Deterministic: the same delta always has the same id, so a re-send can only meet a 409.
        key = f"{server_id}|{record.license_id}|{record.feature}|{record.period_start}|{record.revision}"
        return "fs-" + hashlib.sha256(key.encode()).hexdigest()[:40]

    def usage_time(self, record: BatchRecord) -> str:
        # When the change happened, kept inside its period so the upstream bills it to the right one.
        at = record.changed_at
        if record.period_start:
            at = max(record.period_start, at)
        if record.period_end is not None:
            at = min(at, record.period_end - 1_000_000)
        return iso(from_us(at))

    async def send(self, batch: Batch, server_id: str) -> SendResult:
        confirmed: list[BatchRecord] = []
        requests = 0
        url = self.config.url.rstrip("/") + "/usages"
        for record in batch.records:
            subscription = self.subscription(record)
            delta = record.total_milli - record.base_total_milli
            if subscription is None or delta == 0:
                confirmed.append(record)  # nothing owed to this upstream
                continue
            if delta < 0:
                raise UpstreamError(
                    f"{self.name}: rebilly-usages cannot carry a negative delta "
                    f"({record.license_id}/{record.feature or '-'} r{record.revision})",
                    retryable=False,
                    confirmed=confirmed,
                    requests=requests,
                )
            body: dict[str, object] = {
                "id": self.usage_id(server_id, record),
                "subscriptionId": subscription,
                "quantity": float(delta) / 1000,
                "usageTime": self.usage_time(record),
            }
            try:
                status, text = await self.post(url, body, {})
            except UpstreamError as exc:
                raise UpstreamError(str(exc), retryable=True, confirmed=confirmed, requests=requests + 1) from exc
            requests += 1
            if 200 <= status < 300 or status == 409:
                confirmed.append(record)
                continue
            raise _failure(self.name, status, text, confirmed, requests)
        return SendResult(confirmed, requests)


def make_upstream(config: UpstreamConfig, session: aiohttp.ClientSession, clock: Clock) -> Upstream:
    if config.format == "rebilly-usages":
        return RebillyUpstream(config, session, clock)
    return FloatsrvUpstream(config, session, clock)


def lease_for(config: UpstreamConfig) -> float:
    """How long a sender may hold a channel: a request's timeout, twice, and some margin."""
    return max(30.0, 2 * config.timeout_seconds + 5)
