"""The certificate chain of /api/v5's signed replies: made for a site (`floatsrv v5 make-chain`), checked at
start-up against what LicenseSpring's SDKs accept, and the signer that uses its leaf key.

Apps are given `chain.pem`: exactly three PEM certificates, leaf, intermediate, root, and nothing else (the
Python SDK splits the file on END CERTIFICATE markers, trusts the root and intermediate inside it and verifies
the leaf at the current time). A chain an SDK would refuse is refused here first, naming the rule, so an admin
learns it from `check-config` instead of from every app failing.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
KEY_BITS = 2048
_YEAR = timedelta(days=365)


class ChainError(Exception):
    """A chain or key the SDKs would not accept; `rule` is a stable name, the message says which and where."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class ResponseSigner:
    """Signs reply bodies with the leaf key (RSASSA-PKCS1-v1_5, SHA-256). Lives for the process."""

    key: rsa.RSAPrivateKey = field(repr=False)
    chain_path: Path
    leaf_not_after: datetime

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")

    def __repr__(self) -> str:
        return f"ResponseSigner(chain_path={str(self.chain_path)!r})"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    now: datetime,
    years: int,
    ca: bool,
    path_length: int | None = None,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))  # clients whose clocks run a little behind
        .not_valid_after(now + years * _YEAR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write to a temporary name created with `mode` (never readable by others, not even for an instant),
    then move it into place."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def make_chain(
    out_dir: Path, *, now: datetime | None = None, force: bool = False, name: str = "floatsrv"
) -> tuple[Path, Path]:
    """Write `out_dir/chain.pem` (leaf, intermediate, root) and `out_dir/signing-key.pem` (the leaf's key,
    mode 0600). The root's and intermediate's keys are discarded: a site renews by making a new chain."""
    chain_path, key_path = out_dir / "chain.pem", out_dir / "signing-key.pem"
    if not force:
        for path in (chain_path, key_path):
            if path.exists():
                raise FileExistsError(f"{path} exists; give --force to replace it (apps then need the new chain.pem)")
    out_dir.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(UTC)
    root_key, intermediate_key, leaf_key = _new_key(), _new_key(), _new_key()
    root = _certificate(f"{name} site root", root_key, None, now, 20, ca=True, path_length=1)
    intermediate = _certificate(
        f"{name} site intermediate", intermediate_key, (root.subject, root_key), now, 10, ca=True, path_length=0
    )
    leaf = _certificate(f"{name} response signing", leaf_key, (intermediate.subject, intermediate_key), now, 5, False)
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in (leaf, intermediate, root))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key_path, key_pem, 0o600)
    _write(chain_path, pem, 0o644)
    return chain_path, key_path


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _certificates(chain_path: Path, where: str) -> list[x509.Certificate]:
    try:
        raw = chain_path.read_bytes()
    except OSError as exc:
        raise ChainError("unreadable", f"{where}: cannot read it: {exc.strerror or exc}") from None
    blocks = list(_PEM_BLOCK.finditer(raw))
    kinds = [block.group(1).decode() for block in blocks]
    rest = _PEM_BLOCK.sub(b"", raw).strip()
    if kinds != ["CERTIFICATE"] * 3 or rest:
        found = f"{kinds.count('CERTIFICATE')} certificates"
        others = sorted({kind for kind in kinds if kind != "CERTIFICATE"})
        if others:
            found += " and " + ", ".join(others)
        if rest:
            found += " and other text"
        raise ChainError(
            "three_certificates",
            f"{where}: must hold exactly three certificates (leaf, intermediate, root) and nothing else; found {found}",
        )
    try:
        return [x509.load_pem_x509_certificate(block.group(0)) for block in blocks]
    except ValueError as exc:
        raise ChainError("unreadable", f"{where}: a certificate does not parse: {exc}") from None


def _check_order(certs: list[x509.Certificate], where: str) -> None:
    leaf, intermediate, root = certs
    if _issued_by(leaf, intermediate) and _issued_by(intermediate, root) and _issued_by(root, root):
        return
    raise ChainError(
        "order",
        f"{where}: must be leaf, intermediate, root, in that order, each issued (and signed) by the next and the "
        "root by itself",
    )


def _check_roles(certs: list[x509.Certificate], where: str) -> None:
    leaf, intermediate, root = certs
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < KEY_BITS:
        what = f"RSA-{key.key_size}" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__
        raise ChainError("leaf_key", f"{where}: the leaf's key must be RSA of {KEY_BITS} bits or more; it is {what}")
    if _is_ca(leaf):
        raise ChainError("leaf_not_ca", f"{where}: the leaf must not be a CA (basicConstraints CA:TRUE)")
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise ChainError("leaf_usage", f"{where}: the leaf's extended key usage must include serverAuth")
    if not _is_ca(intermediate):
        raise ChainError("intermediate_ca", f"{where}: the intermediate must be a CA (basicConstraints CA:TRUE)")
    if not _is_ca(root):
        raise ChainError("root_ca", f"{where}: the root must be a CA (basicConstraints CA:TRUE)")


def _check_dates(certs: list[x509.Certificate], where: str, now: datetime) -> None:
    for role, cert in zip(("leaf", "intermediate", "root"), certs, strict=True):
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if not start <= now <= end:
            raise ChainError(
                "dates",
                f"{where}: the {role} certificate is valid from {start:%Y-%m-%dT%H:%M:%SZ} to "
                f"{end:%Y-%m-%dT%H:%M:%SZ}, not now ({now:%Y-%m-%dT%H:%M:%SZ})",
            )


def _leaf_key(key_path: Path, leaf: x509.Certificate) -> rsa.RSAPrivateKey:
    where = f"api_v5.signing_key: {key_path}"
    try:
        raw = key_path.read_bytes()
    except OSError as exc:
        raise ChainError("unreadable", f"{where}: cannot read it: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        raise ChainError("key_match", f"{where}: the key is encrypted; give an unencrypted key (mode 0600)") from None
    except ValueError:
        raise ChainError("key_match", f"{where}: not a PEM private key") from None
    leaf_public = leaf.public_key()
    if (
        not isinstance(key, rsa.RSAPrivateKey)
        or not isinstance(leaf_public, rsa.RSAPublicKey)
        or key.public_key().public_numbers() != leaf_public.public_numbers()
    ):
        raise ChainError("key_match", f"{where}: the key does not match the leaf certificate of the chain")
    return key


def load_signer(key_path: Path, chain_path: Path, *, now: datetime) -> ResponseSigner:
    """The signer for a site's key and chain, after every rule the SDKs apply. Raises ChainError."""
    where = f"api_v5.certificate_chain: {chain_path}"
    certs = _certificates(chain_path, where)
    _check_order(certs, where)
    _check_roles(certs, where)
    _check_dates(certs, where, now)
    key = _leaf_key(key_path, certs[0])
    return ResponseSigner(key, chain_path, certs[0].not_valid_after_utc)
