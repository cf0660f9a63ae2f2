"""Air-gapped usage delivery: the signed usage report an admin carries out to the vendor, and the vendor's
signed receipt carried back in. One definition for every surface that offers them (`floatsrv usage export` and
`ack`, the console's Sync page), so a report made in the browser is byte-for-byte what the CLI makes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from floatsrv.clock import Clock
from floatsrv.db.store import Store
from floatsrv.domain import sync
from floatsrv.domain.rollback import parse_holdings, reconcile
from floatsrv.domain.sync import AIRGAP, weakest_entitlements, wire_record
from floatsrv.domain.timemark import observe_time
from floatsrv.entitlements.trust import TrustAnchor
from floatsrv.signing import RECEIPT, REPORT, SignatureError, public_key, sign, verify
from floatsrv.times import iso


class Export(NamedTuple):
    document: bytes  # the signed report, as written to the file
    report_id: str
    records: int
    asks_holdings: bool  # a restored database asks what the vendor holds instead of reporting usage


class Acknowledged(NamedTuple):
    report_id: str
    records: int
    repaired: int  # counters repaired from the vendor's totals (a rolled-back database)


class ReceiptRefused(ValueError):
    """The receipt is not signed by a key this server trusts, is malformed, or no receipt key is set."""


async def export(
    store: Store,
    clock: Clock,
    actor: str,
    configured_server_id: str | None,
    key: Ed25519PrivateKey,
    tolerance: timedelta,
) -> Export | None:
    """Every counter the vendor has not acknowledged, as a signed report; None when nothing is owed."""
    server = await sync.server_id(store, configured_server_id)
    batch, asks_holdings = await sync.export_batch(store, clock, actor)
    if batch is None:
        return None
    flags = await sync.integrity(store, tolerance, clock.now())
    payload = {
        "format": "floatsrv-usage-report/1",
        "report_id": batch.id,
        "server_id": server,
        "created_at": iso(clock.now()),
        "entitlements": weakest_entitlements(batch.records),
        **{name: True for name, raised in flags.items() if raised},  # clock_tampered, usage_rollback
        **({"holdings_requested": True} if asks_holdings else {}),
        "records": [wire_record(r) for r in batch.records],
    }
    return Export(sign(REPORT, payload, key), batch.id, len(batch.records), asks_holdings)


def receipt_keys(anchor: TrustAnchor, given: str | None, configured: str | None) -> list[Ed25519PublicKey]:
    """The keys a receipt may be signed with: a vendor build's own keys (nothing the customer controls), else
    the key given, else sync.vendor_public_key. Raises ReceiptRefused when there is none or one is not allowed."""
    if anchor.vendor_build:
        if given is not None:
            raise ReceiptRefused("this vendor build verifies receipts with its own vendor keys only")
        return anchor.receipt_keys()
    text = given or configured
    if not text:
        raise ReceiptRefused("no receipt key: give the vendor's public key or set sync.vendor_public_key")
    try:
        return [public_key(text)]
    except (SignatureError, ValueError) as exc:
        raise ReceiptRefused(f"the vendor's public key is not usable: {exc}") from None


def verify_receipt(document: bytes, keys: list[Ed25519PublicKey]) -> dict[str, object]:
    """The receipt's payload, once its signature checks against one of `keys`. Raises ReceiptRefused."""
    problem = "no receipt key"
    for key in keys:
        try:
            return verify(RECEIPT, document, key)
        except SignatureError as exc:
            problem = str(exc)
    raise ReceiptRefused(f"receipt rejected: {problem}")


async def acknowledge(
    store: Store, clock: Clock, actor: str, payload: dict[str, object], configured_server_id: str | None
) -> Acknowledged:
    """Apply a verified receipt: its report's usage counts as delivered; holdings it carries repair counters a
    restored database lost (they go out again in the next report)."""
    server = await sync.server_id(store, configured_server_id)
    count = await sync.acknowledge(store, clock, actor, payload, server)
    await observe_time(store, payload.get("acknowledged_at"))  # the vendor's word on the time
    report_id = str(payload["report_id"])
    if "holdings" not in payload:
        return Acknowledged(report_id, count, 0)
    held = parse_holdings(payload["holdings"])
    if payload.get("holdings_requested"):  # all the vendor holds, against this database's start
        repaired = await reconcile(store, clock, AIRGAP, held, "baseline")
    else:
        carried = await sync.report_revisions(store, report_id)
        repaired = await reconcile(store, clock, AIRGAP, held, "report", carried)
    return Acknowledged(report_id, count, len(repaired))
