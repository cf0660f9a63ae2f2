"""Reading request bodies: JSON objects only, strictly parsed, with clear errors.

Rejected before any handler logic runs: other content types (415), bodies over the configured size (413),
invalid UTF-8, invalid JSON, NaN/Infinity, duplicate keys, absurd nesting, lone UTF-16 surrogates
(`"\\ud800"`: no valid text, and SQLite cannot store them), and non-object bodies.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NoReturn

from aiohttp import web

from floatsrv.appkeys import BODY, CONFIG, LIVE
from floatsrv.errors import InvalidJson, PayloadTooLarge, RequestTimeout, UnsupportedMediaType


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # C code; fewer keys than pairs means a duplicate, found only then
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"duplicate key {key!r} in the JSON body", param=key)
            seen.add(key)
    return out


def _no_constants(name: str) -> NoReturn:
    raise InvalidJson(f"{name} is not a valid JSON number")


class _OutOfRange(Exception):
    """A JSON number Decimal cannot hold (1e1000000000000000000): carries its text to name the field."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation: the exponent is beyond any context
        raise _OutOfRange(text) from None


def _out_of_range(text: str, number: str) -> InvalidJson:
    """The refusal for a number no decimal can hold, naming the field it was sent for (found in the text:
    this is the error path only)."""
    match = re.search(r'"((?:[^"\\]|\\.){1,200})"\s*:\s*(?:\[[^\[\]{}]*?)?' + re.escape(number), text)
    field = match.group(1) if match else None
    where = f"{field}: " if field else ""
    return InvalidJson(f"{where}the number {number[:30]} is beyond any range floatsrv accepts", param=field)


# Built once: json.loads with hooks would build a new decoder for every body.
# parse_float=_decimal: quantities must arrive exactly as sent, never through a binary float.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_decimal)


# A surrogate can only come from a `\uD800`-`\uDFFF` escape (UTF-8 input cannot encode one); a valid pair
# decodes to one character, so any surrogate left in a decoded string is a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    pending = [value]  # iterative: a body may nest as deeply as the JSON parser allows
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _check_content_type(request: web.Request) -> None:
    header = request.headers.get("Content-Type")
    if header is None:
        return  # lenient: many hand-written clients omit it
    mime = header.split(";", 1)[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json") or mime == "":
        return
    raise UnsupportedMediaType(f"Content-Type {mime!r} is not supported; send application/json")


# The decoder's scanner (JSONDecoder.__init__ sets it; typeshed does not list it).
_scan: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"  # JSON's whitespace, and nothing else (str.strip() would also drop U+00A0)


def _decode(text: str) -> Any:
    """`_DECODER.decode`, without its two regex passes for the common case of a body that parses."""
    body = text.strip(_JSON_SPACE)
    try:
        value, end = _scan(body, 0)
    except StopIteration:
        end = -1
    if end != len(body):
        return _DECODER.decode(text)  # it fails: this call raises the error that says why
    return value


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Bytes -> dict. Raises InvalidJson with a message saying what is wrong."""
    if not raw.strip():
        raise InvalidJson("the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("the request body is not valid UTF-8") from None
    try:
        value = _decode(text)
    except InvalidJson:
        raise
    except _OutOfRange as exc:
        raise _out_of_range(text, exc.text) from None
    except RecursionError:
        raise InvalidJson("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing thousands of digits
        raise InvalidJson(f"the request body is not valid JSON ({str(exc).split(':')[0]})") from None
    if not isinstance(value, dict):
        raise InvalidJson("the request body must be a JSON object")
    # Cheap test first: only bodies with a surrogate escape in their text are walked.
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(value):
        raise InvalidJson("the request body has a lone UTF-16 surrogate (\\ud800-\\udfff) in a string")
    return value


async def read_json_object(request: web.Request) -> dict[str, Any]:
    _check_content_type(request)
    data = decode_json_object(await read_body(request))
    request[BODY] = data  # for the log line, should the request be refused
    return data


async def read_body(request: web.Request) -> bytes:
    """The whole body, within server.max_body_bytes (413) and server.request_timeout_seconds (408)."""
    content = request.content
    if content.is_eof():
        # The whole body came with the headers: take it from the buffer, with no await (aiohttp's read()
        # loops twice through the stream for it). Its size limit is checked here instead.
        raw = content.read_nowait()
        if len(raw) > request.app[CONFIG].server.max_body_bytes:
            too_large(request)
        return raw
    server = request.app[LIVE].config.server
    try:
        # A client that sends its headers and then trickles (or withholds) the body must not hold a
        # connection and a handler forever.
        async with asyncio.timeout(server.request_timeout_seconds):
            return await request.read()
    except TimeoutError:
        limit = server.request_timeout_seconds
        raise RequestTimeout(
            f"the request body did not arrive within {limit} s (server.request_timeout_seconds)"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        too_large(request)


def too_large(request: web.Request) -> NoReturn:
    limit = request.app[CONFIG].server.max_body_bytes
    raise PayloadTooLarge(f"the request body is larger than {limit} bytes (server.max_body_bytes)") from None
