"""SQL for the add-on catalog and add-on activations on licenses."""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass

from floatsrv.db.memo import memo_of


@dataclass(frozen=True, slots=True)
class AddonRow:
    id: str
    name: str
    description: str
    base_price: str
    feature: str
    consumption_model: str
    included_units: int
    overage_rate: str | None
    credit_cost: str | None
    created_at: int
    updated_at: int
    deleted_at: int | None
    granted: int = 0  # 1: granted by a vendor's license file (changes only with the files)


@dataclass(frozen=True, slots=True)
class ActivationRow:
    id: int
    license_id: int
    addon_id: str
    activated_at: int
    deactivated_at: int | None
    period_start: int
    period_end: int
    prorated_charge: str
    actor: str | None


_ADDON = (
    "id, name, description, base_price, feature, consumption_model, included_units, overage_rate, credit_cost,"
    " created_at, updated_at, deleted_at, granted"
)
_ACTIVATION = "id, license_id, addon_id, activated_at, deactivated_at, period_start, period_end, prorated_charge, actor"


def _changed(conn: sqlite3.Connection) -> None:
    """Every write here calls this: the writer's memoised active add-ons may no longer be exact."""
    memo = memo_of(conn)
    if memo is not None:
        memo.addons.clear()


def insert(conn: sqlite3.Connection, row: AddonRow) -> None:
    _changed(conn)
    conn.execute(f"INSERT INTO addons ({_ADDON}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", astuple(row))


def get(conn: sqlite3.Connection, addon_id: str) -> AddonRow | None:
    row = conn.execute(f"SELECT {_ADDON} FROM addons WHERE id = ? AND deleted_at IS NULL", (addon_id,)).fetchone()
    return AddonRow(*row) if row else None


def live(conn: sqlite3.Connection) -> list[AddonRow]:
    return [
        AddonRow(*row)
        for row in conn.execute(f"SELECT {_ADDON} FROM addons WHERE deleted_at IS NULL ORDER BY created_at, id")
    ]


def live_for_feature(conn: sqlite3.Connection, feature: str) -> AddonRow | None:
    """The live admin-made add-on of a feature (one at most); vendor-granted ones are not counted."""
    row = conn.execute(
        f"SELECT {_ADDON} FROM addons WHERE feature = ? AND deleted_at IS NULL AND granted = 0", (feature,)
    ).fetchone()
    return AddonRow(*row) if row else None


def any_by_id(conn: sqlite3.Connection, addon_id: str) -> AddonRow | None:
    """The add-on with this id, live or deleted."""
    row = conn.execute(f"SELECT {_ADDON} FROM addons WHERE id = ?", (addon_id,)).fetchone()
    return AddonRow(*row) if row else None


def granted(conn: sqlite3.Connection) -> list[AddonRow]:
    """Live add-ons granted by vendor license files."""
    rows = conn.execute(f"SELECT {_ADDON} FROM addons WHERE deleted_at IS NULL AND granted = 1 ORDER BY id")
    return [AddonRow(*row) for row in rows]


def revive(conn: sqlite3.Connection, row: AddonRow) -> None:
    """Bring a deleted vendor-granted add-on back with `row`'s definition."""
    _changed(conn)
    conn.execute("UPDATE addons SET deleted_at = NULL WHERE id = ? AND granted = 1", (row.id,))
    replace(conn, row)


def licenses_with(conn: sqlite3.Connection, addon_id: str) -> list[int]:
    """Licenses the add-on is active on."""
    rows = conn.execute(
        "SELECT license_id FROM license_addons WHERE addon_id = ? AND deactivated_at IS NULL ORDER BY license_id",
        (addon_id,),
    )
    return [int(row[0]) for row in rows]


def replace(conn: sqlite3.Connection, row: AddonRow) -> None:
    """Overwrite a live add-on's definition with `row`'s (its id and created_at stay)."""
    definition = astuple(row)[1:9]  # name .. credit_cost, in _ADDON's order
    _changed(conn)
    conn.execute(
        "UPDATE addons SET name = ?, description = ?, base_price = ?, feature = ?, consumption_model = ?,"
        " included_units = ?, overage_rate = ?, credit_cost = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
        (*definition, row.updated_at, row.id),
    )


def soft_delete(conn: sqlite3.Connection, addon_id: str, now: int) -> None:
    _changed(conn)
    conn.execute("UPDATE addons SET deleted_at = ?, updated_at = ? WHERE id = ?", (now, now, addon_id))


_ACTIVE_ON = (
    f"SELECT {', '.join('la.' + c.strip() for c in _ACTIVATION.split(','))}, "
    f"{', '.join('a.' + c.strip() for c in _ADDON.split(','))} "
    "FROM license_addons AS la JOIN addons AS a ON a.id = la.addon_id "
    "WHERE la.license_id = ? AND la.deactivated_at IS NULL ORDER BY la.id"
)
_ACTIVATION_WIDTH = len(_ACTIVATION.split(","))


def active_on(conn: sqlite3.Connection, license_id: int) -> list[tuple[ActivationRow, AddonRow]]:
    """Active add-ons of a license, with their catalog rows."""
    rows = conn.execute(_ACTIVE_ON, (license_id,)).fetchall()
    width = _ACTIVATION_WIDTH
    return [(ActivationRow(*row[:width]), AddonRow(*row[width:])) for row in rows]


def active_addons(conn: sqlite3.Connection, license_id: int) -> tuple[AddonRow, ...]:
    """The catalog rows of a license's active add-ons (on the writer, read once and kept: db.memo)."""
    memo = memo_of(conn)
    if memo is not None:
        found = memo.addons.get(license_id)
        if found is not None:
            return found
    addons = tuple(addon for _, addon in active_on(conn, license_id))
    if memo is not None:
        memo.addons[license_id] = addons
    return addons


def active_at(conn: sqlite3.Connection, license_id: int, at: int) -> tuple[AddonRow, ...]:
    """The catalog rows of the add-ons that were active on a license at instant `at` (for late usage; never
    memoised: it is rare, and the memo holds only what is active now)."""
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c.strip() for c in _ADDON.split(','))} "
        "FROM license_addons AS la JOIN addons AS a ON a.id = la.addon_id "
        "WHERE la.license_id = ? AND la.activated_at <= ? AND (la.deactivated_at IS NULL OR la.deactivated_at > ?) "
        "ORDER BY la.id",
        (license_id, at, at),
    ).fetchall()
    return tuple(AddonRow(*row) for row in rows)


def activations_of(conn: sqlite3.Connection, addon_id: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM license_addons WHERE addon_id = ? AND deactivated_at IS NULL", (addon_id,)
    ).fetchone()
    return int(row[0])


def activate(
    conn: sqlite3.Connection,
    *,
    license_id: int,
    addon_id: str,
    now: int,
    period_start: int,
    period_end: int,
    prorated_charge: str,
    actor: str | None,
) -> ActivationRow:
    _changed(conn)
    row = conn.execute(
        "INSERT INTO license_addons (license_id, addon_id, activated_at, period_start, period_end, prorated_charge,"
        f" actor) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_ACTIVATION}",
        (license_id, addon_id, now, period_start, period_end, prorated_charge, actor),
    ).fetchone()
    return ActivationRow(*row)


def deactivate(conn: sqlite3.Connection, license_id: int, addon_id: str, now: int) -> ActivationRow | None:
    _changed(conn)
    row = conn.execute(
        f"UPDATE license_addons SET deactivated_at = ? WHERE license_id = ? AND addon_id = ? AND deactivated_at IS NULL"
        f" RETURNING {_ACTIVATION}",
        (now, license_id, addon_id),
    ).fetchone()
    return ActivationRow(*row) if row else None
