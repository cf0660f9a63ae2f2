"""Asking a running server whether it is ready (`GET /readyz` at the configured address), for `floatsrv status`
and `floatsrv healthcheck`: what it answered, or exactly why there was no answer (refused, timed out, a TLS
certificate that does not verify)."""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floatsrv.config import Config

_WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 -- recognising them, not binding
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass
class Readiness:
    url: str
    state: str  # ready | not_ready | unreachable | tls_failed
    status: int | None = None
    reason: str | None = None  # why it is not ready, or why there was no answer
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "ready"

    def warnings(self) -> list[str]:
        """One line per check that is not ok (a warning or a failure), as /readyz reports it."""
        return [_check_line(name, check) for name, check in self.checks.items() if _not_ok(check)]


def _not_ok(check: object) -> bool:
    return isinstance(check, dict) and check.get("status") != "ok"


def _check_line(name: str, check: dict[str, Any]) -> str:
    detail = check.get("message") or check.get("reason") or ""
    return f"{name}: {check.get('status')}" + (f": {detail}" if detail else "")


def pinned_context(cert: Path) -> ssl.SSLContext:
    """A context that accepts exactly the server's configured certificate (its first one, the server's own).

    Self-signed certificates are the usual case on a LAN and a CA-signed one verifies just as well this way
    (partial chain: the certificate itself is the trust anchor). Its dates are still checked, so an expired
    certificate is reported. The host name is not: the certificate is pinned, and it names the server as the
    LAN knows it, not the loopback address asked here. Raises OSError when the file cannot be read."""
    first = _PEM_CERTIFICATE.search(cert.read_bytes())
    if first is None:
        raise OSError(f"{cert}: no PEM certificate in it")
    context = ssl.create_default_context(cadata=first.group(0).decode("ascii"))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


def address(config: Config, host: str | None = None) -> tuple[str, ssl.SSLContext | None]:
    """The /readyz URL of the server `config` describes (at `host` if given: the image's health check asks
    the loopback address whatever server.host says), and the TLS context that verifies it."""
    host = host or config.server.host
    if host in _WILDCARDS:
        host = "127.0.0.1"
    scheme, context = "http", None
    if config.server.tls_cert is not None:
        scheme = "https"
        try:
            context = pinned_context(config.server.tls_cert)
        except (OSError, ssl.SSLError):  # unreadable here: the system's CAs and the host name decide
            context = ssl.create_default_context()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{config.server.port}/readyz", context


def readiness(config: Config, timeout: float = 2.0, host: str | None = None) -> Readiness:
    url, context = address(config, host)
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 -- ours
            return Readiness(url, "ready", resp.status, checks=_checks(resp.read()))
    except urllib.error.HTTPError as exc:
        body = _checks(exc.read())
        failing = [_check_line(name, check) for name, check in body.items() if _not_ok(check)]
        reason = f"HTTP {exc.code}" + (f": {'; '.join(failing)}" if failing else "")
        return Readiness(url, "not_ready", exc.code, reason, body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        cause = getattr(exc, "reason", exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message or str(cause)
            against = f" against server.tls_cert ({config.server.tls_cert})" if config.server.tls_cert else ""
            reason = f"the server's TLS certificate does not verify{against}: {why}"
            return Readiness(url, "tls_failed", reason=reason)
        if isinstance(cause, ssl.SSLError):
            return Readiness(url, "tls_failed", reason=f"TLS failed: {cause}")
        if isinstance(cause, TimeoutError):
            return Readiness(url, "unreachable", reason=f"no answer within {timeout:g} s")
        return Readiness(url, "unreachable", reason=str(cause) or type(cause).__name__)


def _checks(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    checks = data.get("checks") if isinstance(data, dict) else None
    return checks if isinstance(checks, dict) else {}
