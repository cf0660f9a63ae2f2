"""The /api/v5 certificate chain with real keys and certificates: what `floatsrv v5 make-chain` writes is
accepted by the SDK's own verifier, and each rule of a chain apps can use is enforced, by name."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from licensespring.api.signature import FSSignatureVerifier

from floatsrv.cli.v5 import v5_group
from floatsrv.v5chain import ChainError, load_signer, make_chain

NOW = datetime.now(UTC)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)]


def cert(
    name: str,
    key: Key,
    issuer: tuple[str, Key] | None = None,
    *,
    ca: bool,
    usage: list[x509.ObjectIdentifier] | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write(tmp_path: Path, certs: list[x509.Certificate], key: Key, extra: bytes = b"") -> tuple[Path, Path]:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs) + extra)
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, key_path


def test_made_chain_is_accepted_by_the_sdk_verifier(tmp_path: Path) -> None:
    chain, key = make_chain(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert chain.read_text().count("BEGIN CERTIFICATE") == 3 and "PRIVATE" not in chain.read_text()
    signer = load_signer(key, chain, now=NOW)
    body = '{"message":"pong","name":"Zoë"}'.encode()
    verifier = FSSignatureVerifier(str(chain))  # pyOpenSSL X509Store over the three certificates, as apps do
    verifier.verify_license_signature_v2(body, signer.sign(body))
    with pytest.raises(ValueError):
        verifier.verify_license_signature_v2(body + b" ", signer.sign(body))
    assert "PRIVATE" not in repr(signer) and str(chain) in repr(signer)


def test_make_chain_never_overwrites_unless_forced(tmp_path: Path) -> None:
    chain, key = make_chain(tmp_path)
    before = (chain.read_bytes(), key.read_bytes())
    with pytest.raises(FileExistsError, match="--force"):
        make_chain(tmp_path)
    assert (chain.read_bytes(), key.read_bytes()) == before
    make_chain(tmp_path, force=True)
    assert chain.read_bytes() != before[0] and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_cli_prints_the_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = CliRunner().invoke(v5_group, ["make-chain", "--out", str(tmp_path / "v5")])
    assert result.exit_code == 0, result.output
    assert "api_v5:\n  enabled: true\n  signing_key: " in result.output
    again = CliRunner().invoke(v5_group, ["make-chain", "--out", str(tmp_path / "v5")])
    assert again.exit_code == 1 and "exists" in again.output


Broken = Callable[[list[rsa.RSAPrivateKey], Path], tuple[Path, Path]]


def good(keys: list[rsa.RSAPrivateKey], **leaf_options: object) -> list[x509.Certificate]:
    root = cert("root", keys[0], ca=True)
    intermediate = cert("intermediate", keys[1], ("root", keys[0]), ca=True)
    leaf = cert("leaf", keys[2], ("intermediate", keys[1]), **leaf_options)  # type: ignore[arg-type]
    return [leaf, intermediate, root]


CASES: dict[str, tuple[str, str, Broken]] = {
    "two": ("three_certificates", "exactly three", lambda k, p: write(p, good(k, ca=False)[:2], k[2])),
    "four": ("three_certificates", "found 4", lambda k, p: write(p, [*good(k, ca=False), good(k, ca=False)[2]], k[2])),
    "key inside": (
        "three_certificates",
        "PRIVATE KEY",
        lambda k, p: write(
            p,
            good(k, ca=False),
            k[2],
            k[2].private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
    ),
    "swapped": ("order", "leaf, intermediate, root", lambda k, p: write(p, good(k, ca=False)[::-1], k[2])),
    "leaf is a CA": ("leaf_not_ca", "must not be a CA", lambda k, p: write(p, good(k, ca=True), k[2])),
    "client only": (
        "leaf_usage",
        "serverAuth",
        lambda k, p: write(p, good(k, ca=False, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]), k[2]),
    ),
    "intermediate not CA": (
        "intermediate_ca",
        "intermediate must be a CA",
        lambda k, p: write(
            p,
            [
                cert("leaf", k[2], ("intermediate", k[1]), ca=False),
                cert("intermediate", k[1], ("root", k[0]), ca=False),
                cert("root", k[0], ca=True),
            ],
            k[2],
        ),
    ),
    "expired leaf": (
        "dates",
        "the leaf certificate is valid",
        lambda k, p: write(p, good(k, ca=False, not_after=NOW - timedelta(hours=1)), k[2]),
    ),
    "other key": ("key_match", "does not match", lambda k, p: write(p, good(k, ca=False), k[3])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_is_enforced_by_name(case: str, keys: list[rsa.RSAPrivateKey], tmp_path: Path) -> None:
    rule, words, build = CASES[case]
    chain, key = build(keys, tmp_path)
    with pytest.raises(ChainError) as err:
        load_signer(key, chain, now=NOW)
    assert (
        err.value.rule == rule
        and words in str(err.value)
        and str(chain if rule != "key_match" else key) in str(err.value)
    )


@pytest.mark.parametrize("leaf_key", ["rsa1024", "ec"])
def test_the_leaf_key_is_rsa_2048_or_more(leaf_key: str, keys: list[rsa.RSAPrivateKey], tmp_path: Path) -> None:
    weak: Key = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        if leaf_key == "rsa1024"
        else ec.generate_private_key(ec.SECP256R1())
    )
    root = cert("root", keys[0], ca=True)
    intermediate = cert("intermediate", keys[1], ("root", keys[0]), ca=True)
    chain, key = write(tmp_path, [cert("leaf", weak, ("intermediate", keys[1]), ca=False), intermediate, root], weak)
    with pytest.raises(ChainError) as err:
        load_signer(key, chain, now=NOW)
    assert err.value.rule == "leaf_key" and "2048" in str(err.value)
