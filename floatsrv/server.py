"""Running the server process: logging, the listening socket, signals, and start-up failures."""

from __future__ import annotations

import socket

from aiohttp import web

from floatsrv import __version__
from floatsrv.app import create_app
from floatsrv.config import Config
from floatsrv.db.migrate import SchemaError
from floatsrv.log import configure_logging, get_logger

log = get_logger("floatsrv")


def run(config: Config) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    configure_logging(config.log.level, config.log.format)
    try:
        sock = socket.create_server((config.server.host, config.server.port), reuse_port=False, backlog=1024)
    except OSError as exc:
        log.error("listen_failed", host=config.server.host, port=config.server.port, error=str(exc))
        return 1
    host, port = sock.getsockname()[:2]
    log.info("server_starting", version=__version__, host=host, port=port, data_dir=str(config.storage.data_dir))
    app = create_app(config)

    async def announce(app: web.Application) -> None:
        log.info("server_started", url=f"http://{host}:{port}/")

    app.on_startup.append(announce)
    try:
        web.run_app(app, sock=sock, access_log=None, print=None, shutdown_timeout=10.0)
    except SchemaError as exc:
        log.error("database_refused", error=str(exc))
        return 1
    except Exception:
        log.exception("server_failed")
        return 1
    log.info("server_stopped")
    return 0
