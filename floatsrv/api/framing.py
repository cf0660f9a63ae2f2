"""Requests too malformed to reach a handler: bad header characters, over-long header fields or request
lines, broken chunk framing. aiohttp's HTTP parser rejects them before any middleware runs; by default it
logs the exception (whose text holds the raw offending bytes: a bearer token, a Basic password) and answers a
plain-text 400 that echoes those bytes. Here instead:

- `RedactFramingErrors` (a filter on aiohttp's `aiohttp.server` logger) turns any record carrying a parser
  error into one line with the error's class name only, and client disconnects into a debug line;
- `JsonErrorRequestHandler.handle_error` answers `{"status": 400, "code": "bad_request", "message": ...}` with
  a fixed message per kind of error, never the parser's text. (The path is unknown at that point, so the
  /api/v4 error shape is used, which is also what LicenseSpring clients read.)

`serve` runs the application with that handler (aiohttp has no public switch for the handler class, so the
runner builds it; `handle_error` has had this signature throughout aiohttp 3.x, and tests/test_framing.py
sends raw malformed requests to a real server, so an aiohttp change that bypasses it fails there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from floatsrv.log import get_logger

log = get_logger("floatsrv.http")

# Exceptions whose text embeds raw request bytes: never formatted into a log line.
_BYTES_BEARING = (HttpProcessingError, web.RequestPayloadError)


def carries_request_bytes(exc: BaseException | None) -> bool:
    """Whether `exc`, or anything it was raised from, is a parser error (a traceback prints the whole chain)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, _BYTES_BEARING):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class RedactFramingErrors(logging.Filter):
    """On the `aiohttp.server` logger: no parser error's text (nor its traceback) ever reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if carries_request_bytes(exc):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed HTTP request from %s: %s", (remote, type(exc).__name__)
            record.exc_info = record.exc_text = record.stack_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        elif isinstance(exc, ConnectionError):  # the client went away: not an error of ours
            record.msg, record.args = "client disconnected: %s", (type(exc).__name__,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def describe(exc: BaseException) -> str:
    """A fixed message for a parser error (never derived from the bytes it saw)."""
    if isinstance(exc, LineTooLong):
        return "a request line or header field is longer than the server accepts"
    if isinstance(exc, BadHttpMethod):
        if getattr(exc, "message", "") == "Received HTTPS traffic on an HTTP port":
            return "TLS was sent to a plain-HTTP port"
        return "the HTTP method is not valid"
    if isinstance(exc, BadStatusLine):
        return "the request line is malformed"
    if isinstance(exc, InvalidURLError):
        return "the request target is not valid"
    if isinstance(exc, InvalidHeader):
        return "a header field is malformed (control characters are not allowed in header values)"
    if isinstance(exc, PayloadEncodingError):
        return "the request body's framing is malformed"
    return "the HTTP request is malformed"


def _json_error(status: int, code: str, message: str) -> web.Response:
    response = web.Response(
        status=status,
        body=orjson.dumps({"status": status, "code": code, "message": message}),
        content_type="application/json",
    )
    response.force_close()  # as aiohttp does after an error it could not route
    return response


class JsonErrorRequestHandler(web.RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            log.info("malformed_request", peer=request.remote, error=type(exc).__name__)
            status, code, text = 400, "bad_request", describe(exc)
        elif status == 504:
            status, code, text = 504, "timeout", "the request took too long"
        elif isinstance(exc, ConnectionError):
            status, code, text = 500, "internal_error", "internal error"
        else:  # an exception past the middleware (which catches everything): log it, tell nothing
            log.error("request_failed", peer=request.remote, error=type(exc).__name__ if exc else None)
            status, code, text = 500, "internal_error", "internal error"
        if request.writer.output_size > 0:  # the same contract as aiohttp's own handle_error
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        return _json_error(status, code, text)


class _JsonErrorServer(web.Server):
    def __call__(self) -> web.RequestHandler:  # the asyncio protocol factory
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """An AppRunner whose connections use JsonErrorRequestHandler (also for tests that serve the app)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def install_log_redaction() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, RedactFramingErrors) for f in logger.filters):
        logger.addFilter(RedactFramingErrors())


async def serve(app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None, **kwargs: Any) -> None:
    """Serve until SIGINT/SIGTERM (then drain and clean up, as web.run_app does)."""
    install_log_redaction()
    runner = JsonErrorAppRunner(app, handle_signals=True, access_log=None, **kwargs)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        await asyncio.Event().wait()  # SIGINT/SIGTERM raise web.GracefulExit here (handle_signals)
    finally:
        await runner.cleanup()


def _cancel(tasks: set[asyncio.Task[Any]], loop: asyncio.AbstractEventLoop) -> None:
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def run(app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None, **kwargs: Any) -> None:
    """As web.run_app: on SIGINT/SIGTERM only the serving task is cancelled first, so the runner's cleanup
    drains requests in flight; everything else is cancelled after that. Start-up failures (ConfigError,
    SchemaError, a full disk) propagate to the caller."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve(app, sock, ssl_context, **kwargs))
    try:
        with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
            loop.run_until_complete(main)
    finally:
        try:
            _cancel({main}, loop)
            _cancel(asyncio.all_tasks(loop), loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
