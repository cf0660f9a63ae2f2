"""License watch: applies license file changes made by the admin CLI next to a running server (it notices
the license generation the CLI bumped), and says once, loudly, when a file in force expires. Expired
licenses stop being served the moment they expire (their validity is capped by the file); this only logs.
At start-up and after each change it also logs what /readyz warns about the licenses (expired ones, seats
held above a lowered limit), and a license whose validity_period passes while serving gets one line. A file
whose `refresh_by` or `expires_at` comes within the 7-day warning window while serving gets one line each
(`license_files_need_attention`), not one per tick."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import datetime

from aiohttp import web

from floatsrv.appkeys import DOMAIN, LIVE
from floatsrv.domain import health, licensing, site
from floatsrv.domain.context import Domain
from floatsrv.domain.health import EXPIRY_WARNING, file_messages, to_us_delta
from floatsrv.domain.license import License
from floatsrv.domain.licensing import FileRow
from floatsrv.domain.policy import Policy
from floatsrv.licenselog import log_license_warnings
from floatsrv.log import get_logger
from floatsrv.times import iso, iso_us, to_us
from floatsrv.workers.loop import run_periodic

log = get_logger("floatsrv.licenses")

# How soon a CLI import or removal reaches the running server, and an expiry reaches the log.
WATCH_INTERVAL_SECONDS = 1.0


# A file's deadlines that end its licenses while serving: (its column, the event logged once, the log field
# with the time, what it means).
_FILE_DEADLINES = (
    ("refresh_by", "license_file_refresh_overdue", "refresh_by",
     "no newer file arrived by refresh_by: its licenses are no longer served"),
    ("expires_at", "license_file_expired", "expired_at",
     "the licenses of this file are no longer served; import the vendor's renewed file"),
)  # fmt: skip

# A file's deadlines warned about once when they come within EXPIRY_WARNING while serving: (its column, the
# `files_logged` key's event).
_FILE_WARNINGS = (("refresh_by", "refresh_soon"), ("expires_at", "expiring_soon"))


class LicenseWatch:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        # (event, file id) of file deadlines already logged (lifetime: the process).
        self.files_logged: set[tuple[str, str]] = set()
        # (license id, validity end) of licenses whose expiry was logged (lifetime: the process).
        self.licenses_logged: set[tuple[int, datetime]] = set()
        self.started = False
        self.site_seen = -1  # the site generation last followed (PostgreSQL; domain.site)
        self.steps = 0  # steps finished: something to wait for (tests)

    async def step(self) -> None:
        domain = self.app[DOMAIN]
        if domain.store.shared:
            await self._follow_site(domain)
        report = await licensing.refresh_if_changed(domain)
        if report is not None:
            log.info("license_files_applied", source="admin_cli", **report.log_fields(domain.catalog))
        if report is not None or not self.started:  # at start-up and after a change: everything to know
            self.started = True
            found = await health.licenses_report(domain)
            log_license_warnings(found)
            files = await health.license_files_report(domain)
            if files.get("message"):  # refresh_by near or past, a changed fingerprint
                log.warning("license_files_need_attention", message=files["message"])
            # That line named the files whose refresh_by or expiry is near: no second line for them below.
            self.files_logged.update(("refresh_soon", entry["file_id"]) for entry in files.get("refresh_soon", ()))
            self.files_logged.update(("expiring_soon", entry["file_id"]) for entry in files.get("expiring_soon", ()))
            self._note_expired(domain.catalog.licenses(), domain.clock.now(), log_now=False)
        else:  # in between, only what expires while serving (a catalog scan; no database read)
            self._note_expired(domain.catalog.licenses(), domain.clock.now(), log_now=True)
        now = to_us(domain.licensing.time.later(domain.clock.now()))
        for row in await licensing.files(domain.store):
            for column, event, field, message in _FILE_DEADLINES:
                at = getattr(row, column)
                if at is None or at > now or (event, row.file_id) in self.files_logged:
                    continue
                self.files_logged.add((event, row.file_id))
                fields = {field: iso_us(at), "licenses": row.license_ids, "message": message}
                log.warning(event, file_id=row.file_id, **fields)
            self._note_window(row, now)
        self.steps += 1

    def _note_window(self, row: FileRow, now: int) -> None:
        """One line when the file's refresh_by or expires_at comes within EXPIRY_WARNING (once per file and
        deadline for the process's lifetime; a newer file has another file id, and so its own line)."""
        for column, kind in _FILE_WARNINGS:
            at = getattr(row, column)
            within = at is not None and now < at <= now + to_us_delta(EXPIRY_WARNING)
            if not within or (kind, row.file_id) in self.files_logged:
                continue
            self.files_logged.add((kind, row.file_id))
            if kind == "refresh_soon":
                [message] = file_messages([], [{"file_id": row.file_id}], [])
            else:
                message = (
                    f"license file {row.file_id} expires within {EXPIRY_WARNING.days} days: its licenses then stop "
                    "being served; import the vendor's renewed file"
                )
            fields = {column: iso_us(at), "licenses": row.license_ids, "message": message}
            log.warning("license_files_need_attention", file_id=row.file_id, **fields)

    async def _follow_site(self, domain: Domain) -> None:
        """Another node reloaded: serve the site's policy, and say where this node's own file differs."""
        self.site_seen, policy, settings = await site.follow(domain.store, self.site_seen)
        if policy is not None and policy != domain.policy.config:
            domain.apply_policy(Policy(policy))
            log.info("site_policy_applied", message="another node reloaded the usage policy; this node serves it")
        if settings is not None:
            differing = sorted(k for k, v in site.digests(self.app[LIVE].config).items() if settings.get(k) != v)
            if differing:
                log.warning(
                    "node_config_differs_from_site",
                    sections=differing,
                    message="another node reloaded with other settings: bring this node's file in line (and "
                    "reload it) before it next restarts, or it will refuse to start",
                )

    def _note_expired(self, licenses: Iterable[License], now: datetime, *, log_now: bool) -> None:
        for license in licenses:
            until = license.spec.validity_period
            if until is None or until > now or (license.id, until) in self.licenses_logged:
                continue
            self.licenses_logged.add((license.id, until))
            if log_now:
                log.warning(
                    "license_expired",
                    license_id=license.id,
                    expired_at=iso(until),
                    message="its validity_period has passed: clients get license_expired",
                )


WATCH = web.AppKey("license_watch", LicenseWatch)


async def license_watch_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: the watch loop between start-up and shutdown."""
    watch = app[WATCH] = LicenseWatch(app)
    task = asyncio.create_task(run_periodic("license_watch", watch.step, WATCH_INTERVAL_SECONDS), name="license-watch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
