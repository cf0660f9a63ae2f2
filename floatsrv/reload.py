"""SIGHUP: re-read the config file and apply what can change while serving, without dropping anyone.

Applied live: licenses (inline ones and the `license_files`, added, changed and removed as at start-up;
seats of unchanged licenses stay held),
the declared users (config and environment), `log.level`, the usage windows, `metrics.token`,
`server.request_timeout_seconds`, `server.clock_jump_tolerance_seconds`, `server.trusted_proxies`,
`storage.event_retention_days`, `reports.retention_days` and the `policy` (unless it does not fit the licenses
now served; held seats keep running under any policy). Anything else that changed (listening address, TLS,
storage, sync, ...) is reported in the log as needing a restart and keeps its running value. A config that
fails validation changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from floatsrv import jsjson
from floatsrv.appkeys import DOMAIN, GUARD, LIVE
from floatsrv.clock import SteadyClock
from floatsrv.config import Config, ConfigError
from floatsrv.domain import health, site
from floatsrv.domain import licensing as license_files
from floatsrv.domain.accounts import sync_declared_users
from floatsrv.domain.context import Domain, UsageWindows
from floatsrv.domain.policy import Policy
from floatsrv.entitlements.trust import config_problems
from floatsrv.errors import LicenseFileLicenseConflict
from floatsrv.licenselog import log_license_warnings, log_licenses
from floatsrv.log import configure_logging, get_logger
from floatsrv.policyconfig import license_problems as policy_problems

log = get_logger("floatsrv")

# Dotted config paths applied without a restart (besides `licenses` and `auth.users`).
LIVE_KEYS = frozenset(
    {
        "log.level",
        "log.requests",
        "usage.max_future_skew_seconds",
        "usage.max_lateness_days",
        "metrics.token",
        "server.request_timeout_seconds",
        "server.clock_jump_tolerance_seconds",
        "server.trusted_proxies",
        "storage.event_retention_days",
        "reports.retention_days",
        "console.session_hours",
    }
)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def changed_keys(old: Config, new: Config) -> set[str]:
    """Dotted paths whose values differ (licenses, auth.users and the policy are compared as a whole)."""
    dump_old, dump_new = old.model_dump(mode="json"), new.model_dump(mode="json")
    for dump in (dump_old, dump_new):
        dump.pop("policy")
        dump.pop("licenses")
        dump.pop("license_files")
        dump["auth"].pop("users")
    # Secrets dump as "**********": compare their real values.
    dump_old["metrics"]["token"] = old.metrics.token.get_secret_value() if old.metrics.token else None
    dump_new["metrics"]["token"] = new.metrics.token.get_secret_value() if new.metrics.token else None
    flat_old, flat_new = _flatten(dump_old), _flatten(dump_new)
    return {key for key in flat_old.keys() | flat_new.keys() if flat_old.get(key) != flat_new.get(key)}


async def reload(app: web.Application, load: Callable[[], Config], declared: Callable[[Config], Any]) -> bool:
    """Re-read and apply the config; returns False (and changes nothing) when it is invalid."""
    try:
        new = await asyncio.to_thread(load)
    except ConfigError as exc:
        log.error("config_reload_failed", problems=exc.lines, message="the running configuration is unchanged")
        return False
    except OSError as exc:
        log.error("config_reload_failed", problems=[str(exc)], message="the running configuration is unchanged")
        return False
    live = app[LIVE]
    domain = app[DOMAIN]
    old = live.config
    changed = changed_keys(old, new)
    restart = sorted(changed - LIVE_KEYS)
    try:
        users = declared(new)
        problems = config_problems(
            domain.licensing.trust,
            inline_licenses=bool(new.licenses),
            vendor_public_key=new.sync.vendor_public_key is not None,
        )
        if domain.licensing.signed_replies:  # api_v5 as started (it needs a restart): inline licenses must sign
            problems += jsjson.license_problems(new.licenses)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        log.error("config_reload_failed", problems=exc.lines, message="the running configuration is unchanged")
        return False
    licensing = domain.licensing
    before = (licensing.inline, licensing.paths)
    licensing.inline, licensing.paths = tuple(new.licenses), new.license_paths
    try:
        result = await license_files.load(domain.store, domain.clock, licensing)
    except LicenseFileLicenseConflict as exc:
        licensing.inline, licensing.paths = before
        log.error("config_reload_failed", problems=[exc.message], message="the running configuration is unchanged")
        return False
    catalog, report = result.catalog, result.report
    domain.serve(catalog)
    policy_applied = _apply_policy(domain, new, old)
    if not policy_applied:
        new = new.model_copy(update={"policy": old.policy})
    log_licenses(result, licensing, at_start=False)
    removed_users = await sync_declared_users(domain.store, domain.clock, users)
    app[GUARD].note_change()
    domain.usage = UsageWindows.of(new.usage.max_future_skew_seconds, new.usage.max_lateness_days)
    if isinstance(domain.clock, SteadyClock):
        domain.clock.tolerance = timedelta(seconds=new.server.clock_jump_tolerance_seconds)
    if new.log.level != old.log.level:
        configure_logging(new.log.level, old.log.format)
    # Code reads only the LIVE_KEYS settings from here; everything else keeps the start-up values.
    live.config = new
    if domain.store.shared:  # the other nodes serve this policy too (domain.site)
        await site.publish(domain.store, new)
    log.info(
        "config_reloaded",
        **report.log_fields(catalog),
        users_removed=removed_users,
        applied=sorted(changed & LIVE_KEYS) + (["policy"] if policy_applied and new.policy != old.policy else []),
    )
    if restart:
        log.warning("restart_required", keys=restart, message="these settings change only when floatsrv restarts")
    log_license_warnings(await health.licenses_report(domain))
    return True


def _apply_policy(domain: Domain, new: Config, old: Config) -> bool:
    """Serve on the new policy, unless it does not fit the licenses now served: then the running one stays
    (the licenses have changed already; a policy cannot be checked before they are known)."""
    assert domain.licensed is not None
    problems = policy_problems(new.policy, [license.spec for license in domain.licensed.licenses()])
    if problems:
        log.error("policy_not_applied", problems=problems, message="the running policy is unchanged")
        return False
    if new.policy != old.policy:
        domain.apply_policy(Policy(new.policy))
    return True


def reload_on_sighup(
    load: Callable[[], Config], declared: Callable[[Config], Any]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx entry: SIGHUP triggers `reload` (one at a time) while the server runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()
        tasks: set[asyncio.Task[bool]] = set()

        async def run() -> bool:
            async with lock:
                log.info("config_reload_requested", pid=os.getpid())
                return await reload(app, load, declared)

        def on_signal() -> None:
            task = loop.create_task(run(), name="config-reload")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_signal)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            for task in list(tasks):
                await asyncio.wait([task], timeout=10)

    return context
