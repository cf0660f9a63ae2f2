"""The vendor's side of license files: making keys and issuing files (`floatsrv vendor ...` runs these on the
vendor's own machine; nothing here runs in a customer's server)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from floatsrv import yamltext
from floatsrv.config import ConfigError, describe
from floatsrv.entitlements.fileformat import kid_of, raw_public_key, sign
from floatsrv.entitlements.payload import FORMAT, parse_payload
from floatsrv.models import LicenseSpec
from floatsrv.times import iso


def new_key() -> tuple[bytes, str, str]:
    """A new vendor key: (private key PEM, public key as base64 of its 32 raw bytes, kid)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key()
    return pem, base64.b64encode(raw_public_key(public)).decode("ascii"), kid_of(public)


def read_licenses(text: str) -> list[Any]:
    """The licenses of a vendor's YAML: a list of licenses in the config schema, or a mapping with
    `licenses:`. Raises ConfigError."""
    try:
        data = yamltext.load(text)
    except yamltext.DuplicateKey as exc:
        raise ConfigError([str(exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"]) from None
    if isinstance(data, dict):
        data = data.get("licenses")
    if not isinstance(data, list) or not data:
        raise ConfigError(["(top level): expected a list of licenses, or a mapping with a licenses: list"])
    return data


def validated(licenses: list[Any]) -> list[LicenseSpec]:
    """Each license through the config's own validator. Raises ConfigError naming every bad key path."""
    specs, problems = [], []
    for index, raw in enumerate(licenses):
        try:
            specs.append(LicenseSpec.model_validate(raw))
        except ValidationError as exc:
            problems += [f"licenses[{index}].{describe(error)}" for error in exc.errors()]
    ids = [spec.id for spec in specs]
    problems += [f"licenses: license id {i} appears twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise ConfigError(problems)
    return specs


def payload_bytes(
    specs: list[LicenseSpec],
    *,
    binding: dict[str, Any],
    issued_at: datetime,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    series: str = "default",
    sequence: int = 1,
    file_id: str | None = None,
    request_id: str | None = None,
    refresh_by: datetime | None = None,
) -> bytes:
    """The exact payload bytes to sign, checked by the same parser a server uses."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "file_id": file_id or f"lf-{uuid.uuid4().hex}",
        "issued_at": iso(issued_at),
        "not_before": iso(not_before or issued_at),
        "series": series,
        "sequence": sequence,
        "binding": binding,
        "licenses": [spec.model_dump(mode="json", exclude_defaults=True) for spec in specs],
    }
    if expires_at is not None:
        doc["expires_at"] = iso(expires_at)
    if request_id is not None:
        doc["request_id"] = request_id
    if refresh_by is not None:
        doc["refresh_by"] = iso(refresh_by)
    raw = json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")
    parse_payload(raw)  # a vendor must never hand out a file a server would refuse as invalid
    return raw


def issue(payload: bytes, key: Ed25519PrivateKey) -> str:
    return sign(payload, key)
