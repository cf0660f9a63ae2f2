"""Running the server process: logging, the listening socket, signals, and start-up failures."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from floatsrv import __version__
from floatsrv.app import create_app
from floatsrv.config import Config, ConfigError
from floatsrv.db.migrate import SchemaError
from floatsrv.log import configure_logging, drain, get_logger

log = get_logger("floatsrv")


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context when server.tls_cert/tls_key are set. Raises ConfigError naming the key."""
    cert, key = config.server.tls_cert, config.server.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"server.tls_cert/server.tls_key: cannot load {cert} / {key}: {exc}"]) from None
    return context


def run(config: Config) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code (2: unusable configuration)."""
    configure_logging(config.log.level, config.log.format)
    try:
        context = tls_context(config)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"floatsrv: config error: {line}", file=sys.stderr)
        return 2
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
    app = create_app(config)

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
        web.run_app(app, sock=sock, ssl_context=context, access_log=None, print=None, shutdown_timeout=10.0)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"floatsrv: config error: {line}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        log.error("database_refused", error=str(exc))
        return 1
    except Exception:
        log.exception("server_failed")
        return 1
    log.info("server_stopped")
    drain()
    return 0
