"""Talking to upstream billing systems over HTTP, in the two wire formats floatsrv speaks.

    UpstreamError                 (what failed, and what was confirmed before it failed)
    ├── retryable                 timeouts, dropped connections, 408/425/429/5xx: try again later
    └── permanent                 any other refusal: park the batch and tell the admin

`floatsrv`: one POST per batch of cumulative totals with revisions, `Idempotency-Key: <batch id>`, saying the
version of the format it follows (`format_version`, docs/sync.md).
`rebilly-usages`: one POST /usages per counter delta, with a deterministic id; 409 (that id exists) means
the usage is already there. A record counts as delivered only on a 2xx (or that 409).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode, urljoin

import aiohttp

from floatsrv import __version__
from floatsrv.clock import Clock
from floatsrv.config import UpstreamConfig
from floatsrv.domain.rollback import Holding, parse_holdings
from floatsrv.domain.sync import Batch, BatchRecord, weakest_entitlements, wire_record
from floatsrv.entitlements.fileformat import MAX_FILE_BYTES
from floatsrv.errors import InvalidRequest
from floatsrv.times import from_us, iso

RETRYABLE_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))

# The `floatsrv` format's version, in every batch (docs/sync.md): 1 = records and `entitlements` (no field),
# 2 = also `clock_tampered` / `usage_rollback` in the batch and `holdings` in the reply and at GET holdings.
# An upstream that offers none of version 2's additions still takes version-2 batches.
FORMAT_VERSION = 2


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
    holdings: list[Holding] | None = None  # what the upstream says it holds now (floatsrv format, optional)


class Upstream(Protocol):
    name: str

    async def send(self, batch: Batch, server_id: str, flags: dict[str, bool]) -> SendResult: ...

    async def holdings(self, server_id: str) -> list[Holding] | None:
        """What the upstream holds of this server's counters; None when it cannot say."""
        ...


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

    async def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], limit: int
    ) -> tuple[int, str]:
        """One request; (status, the answer's first `limit` bytes as text). Raises a retryable UpstreamError on
        transport faults (a refused connection, a timeout)."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        try:
            async with self.session.request(
                method, url, data=body, headers=self.headers(headers), timeout=timeout
            ) as resp:
                return resp.status, (await _read_at_most(resp, limit)).decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc

    async def post(
        self, url: str, body: dict[str, object], headers: dict[str, str], keep: bool = False
    ) -> tuple[int, str]:
        """POST JSON; (status, a short excerpt of the reply, or with `keep` all of it up to 16 MiB)."""
        status, text = await self.request("POST", url, json.dumps(body).encode(), headers, _ANSWER if keep else 4096)
        return status, text if keep else text[:200]


_ANSWER = 16 * 2**20  # the most of an upstream's JSON answer read (holdings)


def _failure(name: str, status: int, text: str, confirmed: list[BatchRecord], requests: int) -> UpstreamError:
    return UpstreamError(
        f"{name}: HTTP {status}: {text}", retryable=status in RETRYABLE_STATUS, confirmed=confirmed, requests=requests
    )


class FloatsrvUpstream(_Http):
    async def send(self, batch: Batch, server_id: str, flags: dict[str, bool]) -> SendResult:
        body: dict[str, object] = {
            "format_version": FORMAT_VERSION,
            "server_id": server_id,
            "sent_at": iso(self.clock.now()),
            "entitlements": weakest_entitlements(batch.records),
            **{name: True for name, raised in flags.items() if raised},  # clock_tampered, usage_rollback
            "records": [wire_record(r) for r in batch.records],
        }
        status, text = await self.post(self.config.url, body, {"Idempotency-Key": batch.id}, keep=True)
        if 200 <= status < 300:
            return SendResult(list(batch.records), 1, _holdings_in(text))
        raise _failure(self.name, status, text[:200], [], 1)

    async def holdings(self, server_id: str) -> list[Holding] | None:
        """`GET <url's directory>/holdings?server_id=`: the counters the upstream holds for this server (404:
        an upstream that does not say; rollback detection then waits for a reply that does)."""
        url = urljoin(self.config.url, "holdings") + "?" + urlencode({"server_id": server_id})
        status, text = await self.request("GET", url, None, {}, _ANSWER)
        if status in (404, 405):
            return None
        if not 200 <= status < 300:
            raise _failure(self.name, status, text[:200], [], 1)
        return _holdings_in(text)


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first `limit` bytes (an upstream's answer is never trusted to be small)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65_536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _holdings_in(text: str) -> list[Holding] | None:
    """The optional `holdings` of an upstream's JSON answer (ignored when absent or not valid)."""
    try:
        data = json.loads(text)
        return parse_holdings(data["holdings"]) if isinstance(data, dict) and "holdings" in data else None
    except (ValueError, InvalidRequest):
        return None


class RebillyUpstream(_Http):
    def subscription(self, record: BatchRecord) -> str | None:
        mapping = self.config.subscriptions
        return mapping.get(f"{record.license_id}/{record.feature}") or mapping.get(str(record.license_id))

    @staticmethod
    def usage_id(server_id: str, record: BatchRecord, epoch: int = 0) -> str:
        # Deterministic: the same delta always has the same id, so a re-send can only meet a 409. After a
        # restore (a new lineage epoch) revisions repeat, so the epoch joins the key: new usage gets new ids.
        key = f"{server_id}|{record.license_id}|{record.feature}|{record.period_start}|{record.revision}"
        if epoch:
            key += f"|e{epoch}"
        return "fs-" + hashlib.sha256(key.encode()).hexdigest()[:40]

    def usage_time(self, record: BatchRecord) -> str:
        # When the change happened, kept inside its period so the upstream bills it to the right one.
        at = record.changed_at
        if record.period_start:
            at = max(record.period_start, at)
        if record.period_end is not None:
            at = min(at, record.period_end - 1_000_000)
        return iso(from_us(at))

    async def holdings(self, server_id: str) -> list[Holding] | None:
        return None  # Rebilly keeps usages, not counters: nothing to compare

    async def send(self, batch: Batch, server_id: str, flags: dict[str, bool]) -> SendResult:
        del flags  # Rebilly's usages have no place for them
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
                "id": self.usage_id(server_id, record, batch.row.epoch),
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


class Vendor(_Http):
    """A `floatsrv`-format upstream as the vendor's licensing service (`licensing.upstream`): activation and
    license file refresh, at `activate` and `license-file` relative to the upstream's url (docs/sync.md)."""

    async def license_file(self, server_key: str) -> str | None:
        """The vendor's newest license file for this server; None when it has none (activate first)."""
        url = urljoin(self.config.url, "license-file") + "?" + urlencode({"server_key": server_key})
        status, text = await self._exchange("GET", url, None)
        if status == 404:
            return None
        return text

    async def activate(self, request_document: bytes) -> str:
        """Send a signed activation request; the license file that answers it."""
        _, text = await self._exchange("POST", urljoin(self.config.url, "activate"), request_document)
        return text

    async def _exchange(self, method: str, url: str, body: bytes | None) -> tuple[int, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8", "Accept": "text/plain"}
        status, text = await self.request(method, url, body, headers, MAX_FILE_BYTES)
        if status == 404 and method == "GET":
            return 404, ""
        if not 200 <= status < 300:
            raise _failure(self.name, status, text[:200], [], 1)
        return status, text


def make_upstream(config: UpstreamConfig, session: aiohttp.ClientSession, clock: Clock) -> Upstream:
    if config.format == "rebilly-usages":
        return RebillyUpstream(config, session, clock)
    return FloatsrvUpstream(config, session, clock)


def lease_for(config: UpstreamConfig) -> float:
    """How long a sender may hold a channel: a request's timeout, twice, and some margin."""
    return max(30.0, 2 * config.timeout_seconds + 5)
