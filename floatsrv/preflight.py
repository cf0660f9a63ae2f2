"""What `floatsrv serve` would refuse or misread in a config, checked without starting anything: one function
for `check-config` and for start-up, so `check-config` never passes a config `serve` then refuses.

Beyond what parsing the file checks (floatsrv.config): the TLS pair loads, the data directory is usable by
this user (without creating it), rebilly subscriptions and policy rules name licenses and features this
server serves (and reservations fit in their seats), and a
config that serves no license at all is worth a warning.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from floatsrv import jsjson
from floatsrv.config import Config, ConfigError
from floatsrv.entitlements.trust import TrustAnchorError, load_trust_anchor
from floatsrv.entitlements.verify import check_applicable, config_file_texts, open_file
from floatsrv.errors import LicenseFileRefused
from floatsrv.models import LicenseSpec
from floatsrv.policyconfig import license_problems as policy_problems
from floatsrv.signing import SignatureError, public_key_text, read_private_key
from floatsrv.v5chain import ChainError, ResponseSigner, load_signer


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)  # serve refuses to start
    warnings: list[str] = field(default_factory=list)  # serve starts, but the admin should know


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context when server.tls_cert/tls_key are set. Raises ConfigError naming the keys."""
    cert, key = config.server.tls_cert, config.server.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_passphrase() -> str:
        raise ValueError("the key is encrypted: give an unencrypted key (mode 0600)")

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError([f"server.tls_cert/server.tls_key: cannot load {cert} / {key}: {exc}"]) from None
    return context


def v5_signer(config: Config, now: datetime | None = None) -> ResponseSigner | None:
    """The /api/v5 response signer when api_v5 is enabled. Raises ConfigError naming the chain rule broken."""
    v5 = config.api_v5
    if not v5.enabled or v5.signing_key is None or v5.certificate_chain is None:
        return None
    try:
        return load_signer(v5.signing_key, v5.certificate_chain, now=now or datetime.now(UTC))
    except ChainError as exc:
        raise ConfigError([str(exc)]) from None


def data_dir_unusable(data_dir: Path) -> str | None:
    """Why this user could not use `data_dir` (creating it if needed), or None; creates nothing."""
    path = data_dir
    while not path.exists():
        if path.parent == path:
            return f"storage.data_dir: {data_dir}: no existing parent directory"
        path = path.parent
    if not path.is_dir():
        return f"storage.data_dir: {path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        what = "the data directory" if path == data_dir else f"its parent {path} (to create it)"
        return f"storage.data_dir: {data_dir}: {what} is not writable by this user (uid {os.getuid()})"
    return None


def subscription_problems(config: Config, licenses: Sequence[LicenseSpec]) -> list[str]:
    """rebilly-usages subscriptions must name a license (`"1001"`) or a license's feature (`"1001/render"`)
    that this server serves: a typo would silently never bill."""
    served = {spec.id: {feature.code for feature in spec.features} for spec in licenses}
    problems = []
    for index, upstream in enumerate(config.sync.upstreams):
        for key in upstream.subscriptions:
            where = f"sync.upstreams[{index}].subscriptions: {key!r}"
            license_text, _, feature = key.partition("/")
            if not license_text.isdigit():
                problems.append(f"{where}: must be a license id (1001) or a license id and feature (1001/render)")
            elif int(license_text) not in served:
                problems.append(f"{where}: no license {license_text} is served by this config")
            elif feature and feature not in served[int(license_text)]:
                problems.append(f"{where}: license {license_text} has no feature {feature!r}")
    return problems


def server_key_of(config: Config) -> str | None:
    """This server's identity key as `floatsrv server-key` prints it; None if it has none (yet) or it is
    unreadable here."""
    try:
        return public_key_text(read_private_key(config.signing_key_path))
    except (OSError, ValueError, SignatureError):
        return None


def check_license_files(config: Config) -> tuple[int, list[LicenseSpec], list[str]]:
    """`check-config` on the config's license files: (files, the licenses they carry, problems). It checks
    what needs no database (signature, payload, validity window, binding to this data directory's key);
    series and sequence are checked when the server takes a file in."""
    try:
        anchor = load_trust_anchor()
    except TrustAnchorError as exc:
        return 0, [], [str(exc)]
    texts, unreadable = config_file_texts(config.license_paths)
    problems = [f"license_files: {path}: {problem}" for path, problem in unreadable]
    server_key, now = server_key_of(config), datetime.now(UTC)
    files, licenses = 0, []
    for path, text in texts:
        try:
            opened = open_file(text, anchor)
            if opened.bound_to is not None and server_key is None:
                problems.append(f"license_files: {path}: bound to a server key; this data directory has none yet")
                continue
            check_applicable(opened, server_key=server_key, now=now)
        except LicenseFileRefused as exc:
            problems.append(f"license_files: {path}: {exc.code}: {exc.message}")
            continue
        files += 1
        licenses.extend(opened.payload.licenses)
    return files, licenses, problems


def preflight(config: Config, licenses: Sequence[LicenseSpec]) -> Findings:
    """Everything `serve` would refuse in `config` (errors) or quietly do (warnings), given the licenses it
    would serve (inline and from license files)."""
    findings = Findings()
    try:
        tls_context(config)
    except ConfigError as exc:
        findings.errors.extend(exc.lines)
    try:
        signer = v5_signer(config)
    except ConfigError as exc:
        findings.errors.extend(exc.lines)
    else:
        if signer is not None:
            findings.errors.extend(jsjson.license_problems(licenses))
            left = signer.leaf_not_after - datetime.now(UTC)
            if left.days < 30:
                findings.warnings.append(
                    f"api_v5.certificate_chain: the leaf certificate expires on {signer.leaf_not_after:%Y-%m-%d}; "
                    "make a new chain (floatsrv v5 make-chain) and give apps the new chain.pem before then"
                )
    problem = data_dir_unusable(config.storage.data_dir)
    if problem is not None:
        findings.errors.append(problem)
    findings.errors.extend(subscription_problems(config, licenses))
    findings.errors.extend(policy_problems(config.policy, licenses))
    if not licenses:
        findings.warnings.append(
            "no licenses: the server will start but grant nothing; import the vendor's license file "
            "(floatsrv license import FILE) or list it under license_files"
        )
    return findings
