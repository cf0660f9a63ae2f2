"""The application factory: wiring only. `serve`, the tests and benchmarks all build the app here.

Start-up order (cleanup_ctx; teardown runs in reverse, and only for what started):
store (open, migrate, the server's identity key, license files and inline licenses) -> auth (declared users,
signing key, guard) -> seat sweeper -> license watch -> upstream sync (which flushes at shutdown, before the
store closes) -> license refresh from the vendor (`licensing.upstream`, when set).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from floatsrv import jsjson
from floatsrv.api.console import setup_console
from floatsrv.api.meta import OPENAPI, OpenApiDocuments
from floatsrv.api.metrics import METRICS, Metrics
from floatsrv.api.middleware import REQUEST_IDS, RequestIds, pipeline
from floatsrv.api.routes import setup_routes
from floatsrv.api.v4_cache import V4_CACHE, V4Cache
from floatsrv.api.v5_reply import V5_SIGNER
from floatsrv.appkeys import CONFIG, DOMAIN, GUARD, IDENTITY, LIVE, LOGIN, SITE_START
from floatsrv.auth.guard import Guard
from floatsrv.auth.hashing import HashGate
from floatsrv.auth.login import LoginDefense, label_key
from floatsrv.auth.throttle import LoginThrottle, ThrottleRule
from floatsrv.auth.tokens import TokenIssuer, load_or_create_key
from floatsrv.clock import Clock, ClockJump, SteadyClock, SystemClock
from floatsrv.config import DEMO_PASSWORDS, Config, ConfigError, LiveConfig, bootstrap_admin
from floatsrv.db.backends import make_store
from floatsrv.db.store import StoreOptions
from floatsrv.domain import site
from floatsrv.domain.accounts import DeclaredUser, sync_declared_users
from floatsrv.domain.context import Domain, UsageWindows
from floatsrv.domain.credentials import share_keys
from floatsrv.domain.health import remember_time, time_floor
from floatsrv.domain.licensefiles import Licensing
from floatsrv.domain.licensing import load
from floatsrv.domain.login_attempts import SharedThrottle
from floatsrv.domain.policy import Policy
from floatsrv.domain.rollback import take_baseline
from floatsrv.entitlements.trust import TrustAnchor, config_problems, load_trust_anchor
from floatsrv.errors import LicenseFileLicenseConflict, StorageUnavailable
from floatsrv.identity import fingerprint
from floatsrv.licenselog import log_licenses, log_tampering
from floatsrv.log import get_logger
from floatsrv.policyconfig import license_problems as policy_problems
from floatsrv.preflight import subscription_problems, v5_signer
from floatsrv.reload import reload_on_sighup
from floatsrv.signing import load_or_create_private_key, public_key_text
from floatsrv.workers.authfollow import auth_follow_context
from floatsrv.workers.licensefetch import license_fetch_context
from floatsrv.workers.licensewatch import license_watch_context
from floatsrv.workers.sweeper import sweeper_context
from floatsrv.workers.sync import sync_context

log = get_logger("floatsrv")


def declared_users(config: Config, environ: Mapping[str, str]) -> list[DeclaredUser]:
    """Users from the config file plus the bootstrap admin from the environment. Raises ConfigError."""
    users = [(user, "config") for user in config.auth.users]
    admin = bootstrap_admin(environ)
    if admin is not None:
        if any(user.username == admin.username for user in config.auth.users):
            raise ConfigError([f"FLOATSRV_ADMIN_USERNAME: {admin.username!r} is also declared in auth.users"])
        users.append((admin, "env"))
    return [
        DeclaredUser(
            username=user.username,
            role=user.role,
            source=source,
            password=user.password.get_secret_value() if user.password else None,
            password_hash=user.password_hash,
        )
        for user, source in users
    ]


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    store_options: StoreOptions | None = None,
    environ: Mapping[str, str] | None = None,
    reload_config: Callable[[], Config] | None = None,
    trust: TrustAnchor | None = None,
) -> web.Application:
    """The application. `reload_config` (re-reading the config file) enables reloading on SIGHUP; `trust`
    replaces this build's trust anchor (tests of vendor builds)."""
    anchor = trust or load_trust_anchor()
    problems = config_problems(
        anchor, inline_licenses=bool(config.licenses), vendor_public_key=config.sync.vendor_public_key is not None
    )
    if problems:
        raise ConfigError(problems)

    def clock_jumped(jump: ClockJump) -> None:
        log.warning(
            "clock_jumped_backwards",
            seconds=round(jump.seconds, 3),
            server_time=jump.at.isoformat(),
            wall_clock=jump.wall.isoformat(),
            message="the system clock stepped back; floatsrv keeps its own time moving forward until it catches up",
        )

    if not isinstance(clock, SteadyClock):  # tests may pass their own, with a fake monotonic clock
        clock = SteadyClock(
            clock or SystemClock(), tolerance=timedelta(seconds=config.server.clock_jump_tolerance_seconds)
        )
    clock.on_jump = clock.on_jump or clock_jumped
    app = web.Application(middlewares=[pipeline], client_max_size=config.server.max_body_bytes)
    identity: list[Ed25519PrivateKey] = []  # the server's identity key, once the store context has it
    new_keys: list[str] = []  # key files made at this start beside an existing database
    app[CONFIG] = config
    app[LIVE] = LiveConfig(config)
    app[METRICS] = Metrics()
    app[V4_CACHE] = V4Cache()
    app[REQUEST_IDS] = RequestIds()
    app[OPENAPI] = OpenApiDocuments()
    signer = v5_signer(config)  # ConfigError naming the chain rule broken, before anything starts
    if signer is not None:
        app[V5_SIGNER] = signer

    async def store_context(app: web.Application) -> AsyncIterator[None]:
        # Keys made now beside a database that already existed: what a restore without its keys looks like.
        if config.storage.backend == "sqlite" and config.db_path.exists():
            new_keys.extend(str(p) for p in (config.signing_key_path, config.token_key_path) if not p.exists())
        store = make_store(config, clock, store_options)
        await store.open()
        try:
            floor = await time_floor(store)
            if floor is not None:
                clock.floor(floor)  # never hand out a time before one this database has already seen
            if store.applied_migrations:
                log.info("database_migrated", database=store.where, versions=store.applied_migrations)
            if store.shared:
                # Before anything is written from this node's config: it must be the running site's.
                differing = await site.join(store, config)
                if differing:
                    raise ConfigError(
                        [
                            f"this node's {', '.join(differing)} differ from those of the nodes running on this "
                            "database: give every node the same settings (docs/high-availability.md)"
                        ]
                    )
                await share_keys(store, clock, config.token_key_path, config.signing_key_path)
            # The server's identity: license files are bound to it; made at the first start, kept in data_dir.
            identity.append(load_or_create_private_key(config.signing_key_path))
            app[IDENTITY] = identity[0]
            if new_keys:
                log.warning(
                    "new_keys_beside_existing_database",
                    keys=new_keys,
                    message="!!! new keys were made for an existing database: every bearer token issued before "
                    "stops working and the server's identity (license files bound to it, usage reports) changed. "
                    "If this database was restored, restore its keys too: floatsrv db restore ARCHIVE !!!",
                )
            server_key = public_key_text(identity[0])
            licensing = Licensing(anchor, server_key, tuple(config.licenses), config.license_paths)
            licensing.fingerprint = fingerprint(config.storage.data_dir)
            licensing.time.tolerance = timedelta(hours=config.licensing.clock_tolerance_hours)
            licensing.signed_replies = config.api_v5.enabled
            try:
                result = await load(store, clock, licensing)
            except LicenseFileLicenseConflict as exc:
                raise ConfigError([exc.message]) from None
            specs = [license.spec for license in result.catalog.licenses()]
            problems = subscription_problems(config, specs) + policy_problems(config.policy, specs)
            if config.api_v5.enabled:  # signed replies copy license metadata: it must be signable
                problems += jsjson.license_problems(specs)
            if problems:  # a typo would silently never bill: refuse, as check-config does
                raise ConfigError(problems)
            log_licenses(result, licensing)
            windows = UsageWindows.of(config.usage.max_future_skew_seconds, config.usage.max_lateness_days)
            app[DOMAIN] = domain = Domain(
                store=store, clock=clock, catalog=result.catalog, usage=windows, licensing=licensing
            )
            domain.apply_policy(Policy(config.policy))  # preflight checked that it fits these licenses
            tampering = await remember_time(domain)
            if tampering is not None:
                log_tampering(tampering)
            # The counters at this start: a rollback's lost usage is told from new (not on a joining node).
            app[SITE_START] = await take_baseline(store)
            yield
            with contextlib.suppress(StorageUnavailable):
                await remember_time(domain)
        finally:
            await store.close()
            stats = store.stats
            log.info(
                "database_closed",
                commits=stats.commits,
                units=stats.units,
                mean_batch=round(stats.units / stats.commits, 1) if stats.commits else 0,
                largest_batch=stats.largest_batch,
                failed_batches=stats.failed_batches,
            )

    async def auth_context(app: web.Application) -> AsyncIterator[None]:
        domain = app[DOMAIN]
        declared = declared_users(config, os.environ if environ is None else environ)
        removed = await sync_declared_users(domain.store, clock, declared)
        if removed:
            log.info("declared_users_removed", usernames=removed)
        key_path = config.token_key_path
        issuer = TokenIssuer(load_or_create_key(key_path), clock, timedelta(hours=config.auth.token_lifetime_hours))
        app[GUARD] = Guard(domain.store, clock, issuer, key_path, config.auth.enabled, config.auth_stamp_path)
        limits = config.auth.login_throttle
        per_address = ThrottleRule(limits.max_failures_per_address, timedelta(seconds=limits.address_window_seconds))
        per_user = ThrottleRule(limits.max_failures_per_user, timedelta(seconds=limits.user_window_seconds))
        throttle = LoginThrottle(clock, per_address, per_user)
        # Several nodes of one site count attempts together (domain.login_attempts).
        shared = SharedThrottle(domain.store, clock, per_address, per_user) if domain.store.shared else None
        gate = HashGate(limits.max_concurrent_checks, limits.max_checks_per_second, max_wait=limits.queue_seconds)
        app[LOGIN] = LoginDefense(throttle, gate, label_key(identity[0].private_bytes_raw()), shared)
        if not config.auth.enabled:
            log.warning(
                "auth_disabled",
                message="authentication is OFF: anyone who can reach this port may "
                "register, consume and read; admin endpoints still need an admin login",
            )
        for user in declared:
            if user.password in DEMO_PASSWORDS:
                log.warning(
                    "demo_password_in_use",
                    username=user.username,
                    message=f"!!! user {user.username!r} has the published demo password; change it before "
                    "exposing this server (use password_hash from `floatsrv hash-password`) !!!",
                )
        try:
            yield
        finally:
            gate.close()

    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(auth_context)
    app.cleanup_ctx.append(auth_follow_context)
    app.cleanup_ctx.append(sweeper_context)
    app.cleanup_ctx.append(license_watch_context)
    app.cleanup_ctx.append(sync_context)
    app.cleanup_ctx.append(license_fetch_context)
    if reload_config is not None:
        env = os.environ if environ is None else environ
        app.cleanup_ctx.append(reload_on_sighup(reload_config, lambda new: declared_users(new, env)))
    setup_routes(app, v5=config.api_v5.enabled)
    if config.console.enabled:
        setup_console(app)
    return app
