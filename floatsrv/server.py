"""Running the server process: logging, the listening socket, signals, and start-up failures."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import sqlite3
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from floatsrv import __version__, datalock
from floatsrv.api.framing import run as serve_app
from floatsrv.app import create_app
from floatsrv.config import EXIT_BAD_CONFIG, Config, ConfigError
from floatsrv.db.migrate import SchemaError
from floatsrv.entitlements.trust import TrustAnchor, TrustAnchorError, config_problems, load_trust_anchor
from floatsrv.errors import StorageUnavailable
from floatsrv.log import configure_logging, drain, get_logger
from floatsrv.preflight import tls_context, v5_signer

log = get_logger("floatsrv")


# Exit codes a service manager can act on: 2 = the config is unusable, 3 = the data directory or database is
# (foreign, corrupt, newer than this floatsrv, not writable). Restarting cannot fix either; 1 = anything else.
EXIT_BAD_DATA = 3


# Below this much free space the database cannot be opened or migrated safely: refuse to start.
_MIN_FREE_BYTES = 1024 * 1024


def _storage_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return f"the disk holding {path} is full; free some space (floatsrv needs at least a few MiB) and start again"
    if error.errno == errno.EROFS:
        return f"{path} is on a read-only file system; floatsrv needs to write its database there"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"{path} is not writable by this process (uid {os.getuid()}); give the data directory and its "
            "files to the user floatsrv runs as (e.g. chown -R floatsrv: on it)"
        )
    return f"cannot use {path}: {error.strerror or error}"


def data_dir_problem(config: Config) -> str | None:
    """Why the data directory cannot be used by this process, or None. Checked before anything starts, so
    that a wrong owner, a read-only file system or a full disk is one clear line (and leaves nothing behind)."""
    data_dir = config.storage.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the data directory {data_dir}: " + _storage_problem(data_dir, exc)
    try:
        free = os.statvfs(data_dir)
        if free.f_bavail * free.f_frsize < _MIN_FREE_BYTES:
            return _storage_problem(data_dir, OSError(errno.ENOSPC, "no space left"))
        with tempfile.TemporaryFile(dir=data_dir) as probe:  # can this process create and write files here?
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return _storage_problem(data_dir, exc)
    db = config.db_path
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists() and not os.access(path, os.W_OK):
            return _storage_problem(path, OSError(errno.EACCES, "not writable"))
    if config.token_key_path.exists() and not os.access(config.token_key_path, os.R_OK):
        return f"{config.token_key_path} is not readable by this process (uid {os.getuid()})"
    return None


def run(config: Config, reload_config: Callable[[], Config] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code (2: unusable configuration)."""
    configure_logging(config.log.level, config.log.format)
    try:
        context = tls_context(config)
        v5_signer(config)  # a chain that breaks a rule: exit 2 naming it, before anything starts
    except ConfigError as exc:
        for line in exc.lines:
            print(f"floatsrv: config error: {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        anchor = load_trust_anchor()
    except TrustAnchorError as exc:
        print(f"floatsrv: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    lines = config_problems(
        anchor, inline_licenses=bool(config.licenses), vendor_public_key=config.sync.vendor_public_key is not None
    )
    for line in lines:
        print(f"floatsrv: config error: {line}", file=sys.stderr)
    if lines:
        return EXIT_BAD_CONFIG
    problem = data_dir_problem(config)
    if problem is not None:
        log.error("data_dir_unusable", error=problem)
        print(f"floatsrv: {problem}", file=sys.stderr)
        return EXIT_BAD_DATA
    try:
        lock = datalock.hold(config.storage.data_dir)  # held until this process ends
    except (datalock.DataDirLocked, OSError) as exc:
        log.error("data_dir_in_use", error=str(exc))
        print(f"floatsrv: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    try:
        return _serve(config, context, anchor, reload_config)
    finally:
        datalock.release(lock)


def _serve(
    config: Config,
    context: ssl.SSLContext | None,
    anchor: TrustAnchor,
    reload_config: Callable[[], Config] | None,
) -> int:
    try:
        sock = socket.create_server((config.server.host, config.server.port), reuse_port=False, backlog=1024)
    except OSError as exc:
        log.error("listen_failed", host=config.server.host, port=config.server.port, error=str(exc))
        return 1
    host, port = sock.getsockname()[:2]
    scheme = "https" if context else "http"
    log.info(
        "server_starting",
        version=__version__,
        host=host,
        port=port,
        tls=context is not None,
        data_dir=str(config.storage.data_dir),
    )
    app = create_app(config, reload_config=reload_config, trust=anchor)

    async def announce(app: web.Application) -> None:
        # Everything loaded at start-up lives until shutdown: move it out of the collector's way, and collect
        # young objects less often, so collections do not show up as latency spikes under load.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        gc.enable()  # `serve` disabled it for start-up
        log.info("server_started", url=f"{scheme}://{host}:{port}/")

    async def log_flusher(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(0.2)
                drain()

        task = asyncio.create_task(loop(), name="log-flush")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        drain()

    app.on_startup.append(announce)
    app.cleanup_ctx.insert(0, log_flusher)
    try:
        # aiohttp's run_app, with JSON answers (and no logged request bytes) for malformed HTTP framing.
        serve_app(app, sock, context, shutdown_timeout=10.0, keepalive_timeout=config.server.idle_timeout_seconds)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"floatsrv: config error: {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except SchemaError as exc:
        log.error("database_refused", error=str(exc))
        print(f"floatsrv: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    except StorageUnavailable as exc:
        # PostgreSQL unreachable (or refusing) at start: say where (never the password) and why.
        problem = f"cannot use the database: {exc.message}: {exc.__cause__ or ''}"
        log.error("database_unreachable", error=problem)
        print(f"floatsrv: {problem}", file=sys.stderr)
        return EXIT_BAD_DATA
    except (OSError, sqlite3.OperationalError) as exc:
        # The disk filled up, or went read-only, between the check above and opening the database.
        if isinstance(exc, OSError):
            problem = _storage_problem(config.storage.data_dir, exc)
        else:
            problem = f"cannot open the database in {config.storage.data_dir}: {exc}"
        log.error("data_dir_unusable", error=problem)
        print(f"floatsrv: {problem}", file=sys.stderr)
        return EXIT_BAD_DATA
    except Exception:
        log.exception("server_failed")
        return 1
    log.info("server_stopped")
    drain()
    return 0
