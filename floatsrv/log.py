"""Logging: structlog configured once, JSON lines (or console lines on a terminal) on stdout.

Events are snake_case past tense (`seat_registered`). Each request produces one canonical line
(`request_completed`) carrying the request id bound in middleware through contextvars. aiohttp's own
access log is switched off; its other stdlib loggers are rendered in the same format. JSON lines are
written in chunks (at most 0.2 s late), so logging one line per request costs no system call per request.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from typing import Any, BinaryIO, Literal, cast

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LineSink:
    """Collects rendered log lines and writes them in chunks: at most ~5 write calls a second under load
    instead of one per request. `flush()` is what structlog calls after every line, so it only writes when a
    chunk is due; `drain()` writes everything now (a periodic task and shutdown call it)."""

    def __init__(self, file: BinaryIO, max_delay: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        self._file = file
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._max_delay = max_delay
        self._max_bytes = max_bytes
        self._last = time.monotonic()

    def write(self, data: bytes) -> int:
        # No lock: extend() is one C call, atomic under the GIL, and drain() removes only the prefix it
        # copied, so a line written meanwhile by another thread stays for the next drain.
        self._buffer.extend(data)
        return len(data)

    def flush(self) -> None:
        if len(self._buffer) >= self._max_bytes or time.monotonic() - self._last >= self._max_delay:
            self.drain()

    def drain(self) -> None:
        with self._lock:  # drains (the flusher task, a full chunk, atexit) take turns
            data = bytes(self._buffer)
            del self._buffer[: len(data)]
            self._last = time.monotonic()
        if data:
            self._file.write(data)
            self._file.flush()


class UtcTimestamp:
    """Like structlog's TimeStamper(fmt="iso", utc=True), cheaper: the date and time are formatted once a
    second and only the microseconds per line (this runs for every request)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


_sink: LineSink | None = None
_timestamp = UtcTimestamp()
_request_lines_direct = False


def request_completed(
    method: str,
    route: str,
    status: int,
    seconds: float,
    user: str,
    peer: str | None,
    request_id: str,
    error_code: str,
    about: dict[str, Any] | None = None,
) -> None:
    """Log the one `request_completed` line of a request (`error_code` "" when it succeeded; `about`: what a
    refused request named, its license, feature and client user, or the path no route took).

    With JSON output this renders straight into the sink: the same keys and format structlog produces, at
    a fifth of the cost of structlog's bound-logger path (measured; it runs for every request). Otherwise
    (console output, or a level above info) it goes through structlog like every other event.
    """
    fields: dict[str, Any] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "user": user,
        "peer": peer,
        "request_id": request_id,
    }
    if error_code:
        fields["error_code"] = error_code
    if about:
        fields.update(about)
    if not _request_lines_direct or _sink is None:
        _http_log.info("request_completed", **fields)
        return
    fields["event"] = "request_completed"
    fields["level"] = "info"
    _timestamp(None, "info", fields)
    _sink.write(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE))
    _sink.flush()


def drain() -> None:
    """Write out buffered log lines (at shutdown, and periodically while serving)."""
    if _sink is not None:
        _sink.drain()


def _shared_processors() -> list[Any]:
    return [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, UtcTimestamp()]


def configure_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    numeric = LEVELS[level]
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    shared = _shared_processors()
    if use_console:
        renderer: Any = structlog.dev.ConsoleRenderer()
        factory: Any = structlog.WriteLoggerFactory(file=sys.stdout)
    else:
        # orjson renders bytes; the bytes logger writes them without an encode step (one line per request
        # is on the hot path).
        global _sink, _request_lines_direct
        _request_lines_direct = numeric <= logging.INFO
        if _sink is not None:
            _sink.drain()  # a reload (new log level) replaces the sink: write out what the old one holds
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        _sink = LineSink(sys.stdout.buffer)
        atexit.register(_sink.drain)
        factory = structlog.BytesLoggerFactory(file=cast(BinaryIO, _sink))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        # Not cached: SIGHUP may change the level. The per-request line does not go through structlog.
        cache_logger_on_first_use=False,
    )
    # Route stdlib records (aiohttp, asyncio) through the same renderer, as text lines.
    handler = logging.StreamHandler(sys.stdout)
    text_renderer = structlog.processors.JSONRenderer() if not use_console else renderer
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processor=text_renderer, foreign_pre_chain=shared))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").disabled = True


def configure_cli_logging() -> None:
    """Admin commands: log lines go to stderr, so that stdout carries only the command's own output."""
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "floatsrv") -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


_http_log = get_logger("floatsrv.http")
