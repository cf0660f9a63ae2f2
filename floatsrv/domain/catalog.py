"""The licenses this server serves, held in memory, and how they are written into SQLite.

`Catalog` is immutable; a reload or a license file import builds a new one and swaps it in. Requests
resolve their license here (`license_id`, or else the most recently added license of the product, as
LicenseSpring v1 does). Which licenses to serve is decided by `domain.licensing` (signed files and inline
YAML); `apply_entries` writes that decision.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from floatsrv.db import licenses as db_licenses
from floatsrv.db import seats as db_seats
from floatsrv.db.store import Store
from floatsrv.domain.grants import sync_grants
from floatsrv.domain.license import License
from floatsrv.domain.seatlimits import sync_seat_limits
from floatsrv.errors import LicenseNotFound, MissingParameters, UnknownProduct
from floatsrv.models import LicenseSource, LicenseSpec


class Catalog:
    def __init__(self, licenses: Iterable[License], feature_ids: Mapping[tuple[int, str], int]) -> None:
        ordered = sorted(licenses, key=lambda lic: lic.added_seq)
        self._by_id = {lic.id: lic for lic in ordered}
        self._by_product: dict[str, list[License]] = {}
        for lic in ordered:
            self._by_product.setdefault(lic.product, []).append(lic)
        self._feature_ids = dict(feature_ids)
        self._ids_by_license: dict[int, Mapping[str, int]] = {}  # feature_ids_of, built on first use

    def resolve(self, product: str | None, license_id: int | None) -> License:
        """The license a request addresses. Raises UnknownProduct, LicenseNotFound or MissingParameters."""
        if product is None:
            if license_id is None:
                raise MissingParameters("give license_id or product", param="license_id")
            by_id = self._by_id.get(license_id)
            if by_id is None:
                raise LicenseNotFound(f"no license {license_id}", license_id=license_id, param="license_id")
            return by_id
        candidates = self._by_product.get(product)
        if not candidates:
            raise UnknownProduct(f"unknown product {product!r}", product=product)
        if license_id is None:
            return candidates[-1]
        found = self._by_id.get(license_id)
        if found is None or found.product != product:
            raise LicenseNotFound(f"no license {license_id} for product {product!r}", license_id=license_id)
        return found

    def replaced(self, licenses: Iterable[License]) -> Catalog:
        """This catalog with some licenses (by id) replaced, e.g. by their policy-shortened terms."""
        by_id = dict(self._by_id)
        by_id.update((lic.id, lic) for lic in licenses)
        return Catalog(by_id.values(), self._feature_ids)

    def get(self, license_id: int) -> License | None:
        return self._by_id.get(license_id)

    def licenses(self, product: str | None = None) -> list[License]:
        """All licenses (of one product, newest last). Raises UnknownProduct for an unknown product."""
        if product is None:
            return list(self._by_id.values())
        if product not in self._by_product:
            raise UnknownProduct(f"unknown product {product!r}", product=product)
        return list(self._by_product[product])

    def feature_id(self, license_id: int, code: str) -> int | None:
        return self._feature_ids.get((license_id, code))

    def feature_ids_of(self, license: License) -> Mapping[str, int]:
        """Feature code -> feature id of a license's features (every seat and consumption request asks)."""
        found = self._ids_by_license.get(license.id)
        if found is None:
            found = self._ids_by_license[license.id] = {
                feature.code: feature_id
                for feature in license.spec.features
                if (feature_id := self._feature_ids.get((license.id, feature.code))) is not None
            }
        return found


# How a license's definition is stored (licenses.definition, definition_format): version 1 is the LicenseSpec's
# JSON without its defaults. A new version needs a reader below for every older one still in databases.
DEFINITION_FORMAT = 1


def encode_definition(spec: LicenseSpec) -> str:
    return spec.model_dump_json(exclude_defaults=True)


def decode_definition(text: str, version: int) -> LicenseSpec:
    """A stored definition of any known version. Raises ValueError for a newer one."""
    if version == 1:
        return LicenseSpec.model_validate_json(text)
    raise ValueError(f"stored license definition format {version} is newer than this floatsrv")


class Entry(NamedTuple):
    """A license to serve, and where its terms come from."""

    spec: LicenseSpec
    source: LicenseSource


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: list[int]
    removed: list[int]
    seats_ended: int
    changed: list[int] = field(default_factory=list)

    def log_fields(self, catalog: Catalog) -> dict[str, Any]:
        return {
            "licenses": len(catalog.licenses()),
            "licenses_added": self.added,
            "licenses_changed": self.changed,
            "licenses_removed": self.removed,
            "seats_ended": self.seats_ended,
        }


def apply_entries(conn: sqlite3.Connection, entries: list[Entry], now: int) -> tuple[Catalog, SyncReport]:
    """Make the database's licenses match `entries` (inside the caller's write unit) and return the catalog.

    Licenses (or features) no longer served are marked removed and their held seats end with reason
    `license_removed`; their history and counters stay. A license whose seat count went down keeps its held
    seats until they end; no new ones are granted above the new limit. Add-ons the vendor grants follow.
    """
    before = {row.id: row for row in db_licenses.all_licenses(conn)}
    known_features: dict[int, set[str]] = {}
    for lid, code, _, removed_at in db_licenses.feature_rows(conn):
        if removed_at is None:
            known_features.setdefault(lid, set()).add(code)
    wanted = {entry.spec.id for entry in entries}
    added, changed, removed, ended = [], [], [], 0
    for spec, source in entries:
        stored = before.get(spec.id)
        definition = encode_definition(spec)
        codes = {feature.code for feature in spec.features}
        if (
            stored is not None
            and stored.removed_at is None
            and (stored.definition, stored.definition_format) == (definition, DEFINITION_FORMAT)
            and stored.floating_users == spec.floating_users
            and (stored.file_id, stored.entitlements) == (source.file_id, source.entitlements)
            and known_features.get(spec.id, set()) == codes
        ):
            continue  # unchanged since the last start: nothing to write (start-up with 10k licenses)
        if stored is None or stored.removed_at is not None:
            added.append(spec.id)
        else:
            changed.append(spec.id)
        db_licenses.upsert_license(
            conn,
            license_id=spec.id,
            product=spec.product,
            floating_users=spec.floating_users,
            definition=definition,
            definition_format=DEFINITION_FORMAT,
            now=now,
            file_id=source.file_id,
            entitlements=source.entitlements,
        )
        for feature in spec.features:
            db_licenses.upsert_feature(
                conn, license_id=spec.id, code=feature.code, floating_users=feature.floating_users
            )
        for code in sorted(known_features.get(spec.id, set()) - codes):
            db_licenses.mark_feature_removed(conn, spec.id, code, now)
            ended += db_seats.end_all(conn, [spec.id], now, "license_removed", feature=code)
    for row in before.values():
        if row.id not in wanted and row.removed_at is None:
            db_licenses.mark_removed(conn, row.id, now)
            ended += db_seats.end_all(conn, [row.id], now, "license_removed")
            removed.append(row.id)
    sync_grants(conn, [entry.spec for entry in entries], now)
    for spec, _ in entries:
        if spec.id in added or spec.id in changed:
            sync_seat_limits(conn, spec)
    return _load(conn, {entry.spec.id: entry.spec for entry in entries}), SyncReport(added, removed, ended, changed)


async def load_catalog(store: Store) -> Catalog:
    """The catalog as the server last synced it into the database (for admin commands, which may run
    without the server's config; the server itself builds its catalog from verified files)."""
    return await store.read(lambda conn: _load(conn, {}))


def _load(conn: sqlite3.Connection, specs: Mapping[int, LicenseSpec]) -> Catalog:
    """The catalog of the licenses now in the database (`specs`: the ones just validated, to avoid re-parsing)."""
    licenses = [
        License(
            spec=specs.get(row.id) or decode_definition(row.definition, row.definition_format),
            added_seq=row.added_seq,
            source=LicenseSource(row.entitlements, row.file_id),  # type: ignore[arg-type]
        )
        for row in db_licenses.all_licenses(conn)
        if row.removed_at is None
    ]
    feature_ids = {(lid, code): fid for lid, code, fid, removed in db_licenses.feature_rows(conn) if removed is None}
    return Catalog(licenses, feature_ids)
