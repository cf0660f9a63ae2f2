"""Prometheus metrics: request counters and latencies recorded as requests finish, and the state of seats,
consumption, sync, storage and the clock read fresh from the database at each scrape (`GET /metrics`).

Each application has its own registry (tests run several apps in one process). Requests are counted in
plain integers, turned into Prometheus families only when scraped (prometheus_client's custom-collector
API): recording runs for every request, and prometheus_client's own counters and histograms take a lock
per increment and cost several times as much.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from floatsrv import __version__
from floatsrv.appkeys import CONFIG, DOMAIN
from floatsrv.clock import SteadyClock, wall_now
from floatsrv.domain import licensing, queries, sync
from floatsrv.domain.context import Domain
from floatsrv.domain.metering import Limits, license_limits, limits
from floatsrv.domain.state import LicenseState
from floatsrv.domain.sync import AIRGAP
from floatsrv.quantity import MILLI

# Request latency buckets (seconds): floatsrv answers in milliseconds; anything past 1 s is an incident.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Requests(Collector):
    """Requests answered by (route, method, status), and their latency by route, as plain counts."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # route -> (count per bucket, the last one past the largest bound; [sum of seconds])
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = ([0] * (len(_BUCKETS) + 1), [0.0])
        histogram[0][bisect_left(_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        histogram[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "floatsrv_http_requests",
            "HTTP requests answered, by route, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in self.counts.items():
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "floatsrv_http_request_duration_seconds",
            "Time from a request's arrival at the handler pipeline to its response, by route.",
            labels=["route"],
        )
        bounds = [repr(bound) for bound in _BUCKETS] + ["+Inf"]  # as prometheus_client writes them
        for route, (buckets, total) in self.latency.items():
            cumulative = list(zip(bounds, itertools.accumulate(buckets), strict=True))
            latency.add_metric([route], cumulative, total[0])
        yield latency


class Metrics:
    """The counters the request pipeline feeds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = _Requests()
        self.registry.register(self._requests)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self._auth_failures = Counter(
            "floatsrv_auth_failures",
            "Refused logins and credentials, by error code (unauthorized, invalid_token, forbidden, ...).",
            ["code"],
            registry=self.registry,
        )
        self._seat_denials = Counter(
            "floatsrv_seat_denials",
            "Seat requests refused because every seat was taken, by license and feature ('' = the license seat).",
            ["license_id", "feature"],
            registry=self.registry,
        )

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.record(route, method, status, seconds)

    def auth_failure(self, code: str) -> None:
        self._auth_failures.labels(code).inc()

    def seat_denial(self, license_id: object, feature: object) -> None:
        self._seat_denials.labels(str(license_id), str(feature or "")).inc()


# The application's request counters (one registry per application: tests run several in one process).
METRICS = web.AppKey("metrics", Metrics)


class _Snapshot(Collector):
    """The database-derived metrics of one scrape (gathered before rendering, off the event loop)."""

    def __init__(
        self,
        domain: Domain,
        states: list[LicenseState],
        channels: list[sync.ChannelStatus],
        files: list[licensing.FileRow],
        borrowed: dict[tuple[int, str], int],
        integrity: dict[str, bool],
    ) -> None:
        self.domain, self.states, self.channels, self.files = domain, states, channels, files
        self.borrowed, self.integrity = borrowed, integrity

    def collect(self) -> Iterator[Metric]:
        yield from self._licenses()
        now = self.domain.clock.now()
        pending = GaugeMetricFamily(
            "floatsrv_sync_pending_records", "Counters changed and not yet delivered.", labels=["channel"]
        )
        lag = GaugeMetricFamily(
            "floatsrv_sync_lag_seconds", "Age of the oldest undelivered change (0: none).", labels=["channel"]
        )
        parked = GaugeMetricFamily(
            "floatsrv_sync_parked_batches", "Batches an upstream refused for good.", labels=["channel"]
        )
        failures = GaugeMetricFamily(
            "floatsrv_sync_consecutive_failures", "Failed sync attempts in a row.", labels=["channel"]
        )
        for status in self.channels:
            pending.add_metric([status.channel], status.pending_records)
            lag.add_metric([status.channel], sync.lag_seconds(status.oldest_pending_at, now) or 0.0)
            parked.add_metric([status.channel], status.parked_batches)
            failures.add_metric([status.channel], status.consecutive_failures)
        yield from (pending, lag, parked, failures)

        stats = self.domain.store.stats
        yield CounterMetricFamily("floatsrv_db_commits", "Group commits.", value=stats.commits)
        yield CounterMetricFamily(
            "floatsrv_db_write_units", "Write units (requests' changes) committed.", value=stats.units
        )
        yield CounterMetricFamily(
            "floatsrv_db_failed_batches", "Batches lost to a storage fault.", value=stats.failed_batches
        )
        yield GaugeMetricFamily(
            "floatsrv_db_storage_fault", "1 while the database refuses writes.", value=int(bool(stats.fault))
        )
        clock = self.domain.clock
        jumps = len(clock.jumps) if isinstance(clock, SteadyClock) else 0
        yield CounterMetricFamily("floatsrv_clock_backward_jumps", "Backward steps of the system clock.", value=jumps)
        yield GaugeMetricFamily(
            "floatsrv_clock_tampered",
            "1 while the system clock is set back past licensing.clock_tolerance_hours (licenses are judged at the "
            "latest time seen).",
            value=int(self.integrity["clock_tampered"]),
        )
        yield GaugeMetricFamily(
            "floatsrv_usage_rollback_detected",
            "1 once the database was found rolled back (counters below what an upstream holds; repaired).",
            value=int(self.integrity["usage_rollback"]),
        )
        yield GaugeMetricFamily("floatsrv_licenses", "Licenses served.", value=len(self.domain.catalog.licenses()))
        yield from self._entitlements()
        info = GaugeMetricFamily("floatsrv_build_info", "Always 1; the version is a label.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _licenses(self) -> Iterator[Metric]:
        """Seats and consumption per license and feature, limits as every view shows them (`metering.limits`)."""
        labels = ["license_id", "product", "feature"]
        in_use = GaugeMetricFamily(
            "floatsrv_seats_in_use", "Seats held now ('' feature = the license seat).", labels=labels
        )
        limit = GaugeMetricFamily("floatsrv_seats_limit", "Seat limit ('' feature = the license seat).", labels=labels)
        borrowed = GaugeMetricFamily(
            "floatsrv_seats_borrowed", "Seats held on a borrow now (part of seats_in_use).", labels=labels
        )
        used = GaugeMetricFamily(
            "floatsrv_consumption_period_units",
            "Consumption in the current period (units; '' feature = license-level consumption).",
            labels=labels,
        )
        included = GaugeMetricFamily(
            "floatsrv_consumption_included_units",
            "Units included in the period, add-ons applied (credits: the units paid for).",
            labels=labels,
        )
        overage = GaugeMetricFamily(
            "floatsrv_consumption_overage_limit_units",
            "How far past included the period total may go (+Inf: no bound; 0: no overage).",
            labels=labels,
        )
        expiry = GaugeMetricFamily(
            "floatsrv_license_expiry_timestamp_seconds",
            "When each license's validity_period ends (Unix time; licenses without one are not listed).",
            labels=["license_id", "product"],
        )

        def consumption(key: list[str], total_milli: int, terms: Limits) -> None:
            used.add_metric(key, total_milli / MILLI)
            included.add_metric(key, terms.included_milli / MILLI)
            overage.add_metric(key, float("inf") if terms.overage_milli is None else terms.overage_milli / MILLI)

        for state in self.states:
            spec = state.license.spec
            key = [str(spec.id), spec.product, ""]
            in_use.add_metric(key, state.seats_in_use)
            limit.add_metric(key, spec.floating_users)
            borrowed.add_metric(key, self.borrowed.get((spec.id, ""), 0))
            if spec.validity_period is not None:
                expiry.add_metric(key[:2], spec.validity_period.timestamp())
            if spec.is_consumption:
                consumption(key, state.total_milli, license_limits(spec, spec.max_consumptions))
            for feature in state.features:
                fkey = [str(spec.id), spec.product, feature.spec.code]
                terms = limits(feature.allowance, feature.balances)
                if feature.spec.is_floating:
                    in_use.add_metric(fkey, feature.seats_in_use)
                    limit.add_metric(fkey, terms.included_milli // MILLI)
                    borrowed.add_metric(fkey, self.borrowed.get((spec.id, feature.spec.code), 0))
                if feature.spec.counts_usage:
                    consumption(fkey, feature.total_milli, terms)
        yield from (in_use, limit, borrowed, used, included, overage, expiry)

    def _entitlements(self) -> Iterator[Metric]:
        kinds = GaugeMetricFamily(
            "floatsrv_licenses_by_entitlements",
            "Licenses served, by where their terms come from: signed (vendor-signed files), demo (files signed "
            "with the published demo key), unsigned (inline in the YAML config).",
            labels=["entitlements"],
        )
        counts = dict.fromkeys(("signed", "demo", "unsigned"), 0)
        for license in self.domain.catalog.licenses():
            counts[license.source.entitlements] += 1
        for kind, count in counts.items():
            kinds.add_metric([kind], count)
        yield kinds
        expiry = GaugeMetricFamily(
            "floatsrv_license_file_expiry_timestamp_seconds",
            "When each license file in force expires (Unix time; files without expiry are not listed).",
            labels=["file_id"],
        )
        refresh = GaugeMetricFamily(
            "floatsrv_license_file_refresh_by_timestamp_seconds",
            "When each license file in force must be replaced by a newer one, or its licenses stop (Unix time).",
            labels=["file_id"],
        )
        for row in self.files:
            if row.expires_at is not None:
                expiry.add_metric([row.file_id], row.expires_at / 1_000_000)
            if row.refresh_by is not None:
                refresh.add_metric([row.file_id], row.refresh_by / 1_000_000)
        yield expiry
        yield refresh
        yield GaugeMetricFamily(
            "floatsrv_license_files_not_served",
            "Stored license files that no longer verify (their licenses are not served).",
            value=len(self.domain.licensing.problems),
        )


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: the Prometheus text format (viewer role, or the metrics token)."""
    domain = request.app[DOMAIN]
    channels = [upstream.name for upstream in request.app[CONFIG].sync.upstreams] + [AIRGAP]
    states = await queries.license_states(domain)
    statuses = await sync.status(domain.store, channels)
    scrape = CollectorRegistry(auto_describe=False)
    files = await licensing.files(domain.store)
    borrowed = await queries.borrowed_seats(domain)
    integrity = await sync.integrity(domain.store, domain.licensing.time.tolerance, wall_now(domain.clock))
    scrape.register(_Snapshot(domain, states, statuses, files, borrowed, integrity))
    body = generate_latest(request.app[METRICS].registry) + generate_latest(scrape)
    # The classic text format (0.0.4): every Prometheus and agent version reads it.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
