"""Signed /api/v5 replies: every 2xx body is written by `jsjson.encode` and signed by the site's response
signer (`LicenseSignature`: base64 of RSASSA-PKCS1-v1_5/SHA-256 over the exact body bytes, by the leaf key of
`api_v5.certificate_chain`). Owns the signer's application key; the signer lives from start-up to shutdown.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from floatsrv import jsjson
from floatsrv.v5chain import ResponseSigner

V5_SIGNER = web.AppKey("v5_signer", ResponseSigner)  # set only when api_v5.enabled
SIGNATURE_HEADER = "LicenseSignature"


def _signed(request: web.Request, body: bytes, content_type: str) -> web.Response:
    signature = request.app[V5_SIGNER].sign(body)
    return web.Response(body=body, content_type=content_type, headers={SIGNATURE_HEADER: signature})


def signed_json(request: web.Request, value: Any) -> web.Response:
    """A 200 JSON reply, its bytes as JavaScript re-serialises them, signed."""
    return _signed(request, jsjson.encode(value), "application/json")


def signed_text(request: web.Request, text: str) -> web.Response:
    """A 200 text reply (the SDK reads `unregister` and `release` answers as text), signed like JSON ones."""
    return _signed(request, text.encode("utf-8"), "text/plain")
