"""The log lines about licenses at start-up and reload: what was taken in, refused, served unsigned, and what
an admin must know about the terms in force (expired licenses, seats held above a lowered limit)."""

from __future__ import annotations

from typing import Any

from floatsrv.domain.licensefiles import Licensing
from floatsrv.domain.licensing import LoadResult
from floatsrv.domain.timemark import Tampering
from floatsrv.log import get_logger
from floatsrv.times import iso

log = get_logger("floatsrv")


def log_licenses(result: LoadResult, licensing: Licensing, *, at_start: bool = True) -> None:
    """What start-up or a reload took in, refused and serves; loud about licenses the vendor did not sign."""
    catalog = result.catalog
    if at_start:  # a reload says it in its config_reloaded line
        log.info("licenses_loaded", **result.report.log_fields(catalog))
    for path, file_id in result.imported:
        log.info("license_file_imported", path=str(path), file_id=file_id)
    for path, why in result.skipped:
        log.info("license_file_skipped", path=str(path), reason=why)
    for refusal in result.refused:
        log.error("license_file_refused", path=str(refusal.path), code=refusal.code, error=refusal.message)
    for problem in licensing.problems:
        log.error("license_file_not_served", error=problem)
    if licensing.rebind:
        log.warning(
            "fingerprint_changed",
            files=list(licensing.rebind),
            fingerprint=licensing.fingerprint,
            message="these license files are bound to another host fingerprint: they are served until their "
            "refresh_by; re-activate (floatsrv license request, a rebind) and import the vendor's new file",
        )
    if not catalog.licenses():
        log.warning(
            "no_licenses",
            message="this server grants nothing: import the vendor's license file (floatsrv license import FILE)",
        )
    by_kind: dict[str, list[int]] = {}
    for license in catalog.licenses():
        by_kind.setdefault(license.source.entitlements, []).append(license.id)
    if by_kind.get("unsigned"):
        log.warning(
            "unsigned_licenses_in_use",
            licenses=by_kind["unsigned"],
            message="!!! these licenses come from the YAML config, not from a file the vendor signed; "
            "every sync batch and usage report says so !!!",
        )
    if by_kind.get("demo"):
        log.warning(
            "demo_licenses_in_use",
            licenses=by_kind["demo"],
            message="these licenses come from a file signed with the published demo key: for trials only",
        )


def log_license_warnings(report: dict[str, Any]) -> None:
    """The warnings of `/readyz`'s `licenses` check as log lines (at start-up, after a reload or import)."""
    if report.get("expired"):
        log.warning(
            "licenses_expired",
            licenses=report["expired"],
            message="these licenses' validity_period has passed: clients get license_expired",
        )
    if report.get("expiring_soon"):
        log.warning("licenses_expiring", licenses=report["expiring_soon"], message="renew them with the vendor")
    for over in report.get("seats_over_limit", ()):
        log.warning(
            "seats_over_limit",
            **over,
            message="more seats are held than the limit now allows; no new seats until enough of them end",
        )


def log_tampering(found: Tampering) -> None:
    """The system clock reads more than the tolerance behind the latest time the server has seen."""
    log.warning(
        "clock_tampered",
        wall_clock=iso(found.wall),
        time_mark=iso(found.mark),
        behind_hours=round(found.behind_seconds / 3600, 2),
        message="the system clock is set back: licenses are judged at the time mark, and the vendor is told",
    )
