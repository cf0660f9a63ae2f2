"""The licenses this server serves: synced from the config into SQLite at start-up, held in memory.

`Catalog` is immutable; a reload builds a new one and swaps it in. Requests resolve their license here
(`license_id`, or else the most recently added license of the product, as LicenseSpring v1 does).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from floatsrv.clock import Clock
from floatsrv.db import licenses as db_licenses
from floatsrv.db import seats as db_seats
from floatsrv.db.store import Store
from floatsrv.domain.seatlimits import sync_seat_limits
from floatsrv.errors import LicenseNotFound, MissingParameters, UnknownProduct
from floatsrv.models import License, LicenseSpec
from floatsrv.times import to_us


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


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: list[int]
    removed: list[int]
    seats_ended: int

    def log_fields(self, catalog: Catalog) -> dict[str, Any]:
        return {
            "licenses": len(catalog.licenses()),
            "licenses_added": self.added,
            "licenses_removed": self.removed,
            "seats_ended": self.seats_ended,
        }


async def sync_catalog(store: Store, specs: list[LicenseSpec], clock: Clock) -> tuple[Catalog, SyncReport]:
    """Make the database's licenses match `specs` in one transaction and return the new catalog.

    Licenses (or features) no longer configured are marked removed and their held seats end with reason
    `license_removed`; their history and counters stay.
    """

    def unit(conn: sqlite3.Connection) -> tuple[Catalog, SyncReport]:
        now = to_us(clock.now())
        before = {row.id: row for row in db_licenses.all_licenses(conn)}
        known_features: dict[int, set[str]] = {}
        for lid, code, _, removed_at in db_licenses.feature_rows(conn):
            if removed_at is None:
                known_features.setdefault(lid, set()).add(code)
        wanted = {spec.id for spec in specs}
        added, removed, ended = [], [], 0
        for spec in specs:
            stored = before.get(spec.id)
            definition = spec.model_dump_json(exclude_defaults=True)
            codes = {feature.code for feature in spec.features}
            if (
                stored is not None
                and stored.removed_at is None
                and stored.definition == definition
                and known_features.get(spec.id, set()) == codes
            ):
                continue  # unchanged since the last start: nothing to write (start-up with 10k licenses)
            if stored is None or stored.removed_at is not None:
                added.append(spec.id)
            db_licenses.upsert_license(
                conn,
                license_id=spec.id,
                product=spec.product,
                floating_users=spec.floating_users,
                definition=definition,
                now=now,
            )
            for feature in spec.features:
                db_licenses.upsert_feature(
                    conn, license_id=spec.id, code=feature.code, floating_users=feature.floating_users
                )
            sync_seat_limits(conn, spec)
            for code in sorted(known_features.get(spec.id, set()) - codes):
                db_licenses.mark_feature_removed(conn, spec.id, code, now)
                ended += db_seats.end_all(conn, [spec.id], now, "license_removed", feature=code)
        for row in before.values():
            if row.id not in wanted and row.removed_at is None:
                db_licenses.mark_removed(conn, row.id, now)
                ended += db_seats.end_all(conn, [row.id], now, "license_removed")
                removed.append(row.id)
        return _load(conn, {spec.id: spec for spec in specs}), SyncReport(added, removed, ended)

    return await store.write(unit)


async def load_catalog(store: Store) -> Catalog:
    """The catalog as the server last synced it into the database (for admin commands, which may run
    without the server's config)."""
    return await store.read(lambda conn: _load(conn, {}))


def _load(conn: sqlite3.Connection, specs: Mapping[int, LicenseSpec]) -> Catalog:
    """The catalog of the licenses now in the database (`specs`: the ones just validated, to avoid re-parsing)."""
    licenses = [
        License(spec=specs.get(row.id) or LicenseSpec.model_validate_json(row.definition), added_seq=row.added_seq)
        for row in db_licenses.all_licenses(conn)
        if row.removed_at is None
    ]
    feature_ids = {(lid, code): fid for lid, code, fid, removed in db_licenses.feature_rows(conn) if removed is None}
    return Catalog(licenses, feature_ids)
