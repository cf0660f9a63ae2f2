"""A license as this server serves it (a catalog entry), with the values derived from its immutable spec.

`LicenseMemo` is the one cache of per-license derived values: feature allowances (by add-ons and seat
limit), the counter key and bounds of each consumption period, and the last period of each kind. Owner: its
`License`. Lifetime: the catalog the License belongs to (a reload or a license file change builds a new
catalog of new Licenses, so nothing derived from an old spec survives it). Each table is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from floatsrv.db.consumption import CounterKey
from floatsrv.domain.metering import Allowance
from floatsrv.models import LicenseSource, LicenseSpec
from floatsrv.periods import Period, PeriodKind, period_bounds

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Most entries a table keeps before it starts again: far beyond what one license needs in practice.
_MOST = 1000


class _Table(Generic[K, V]):
    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[K, V] = {}

    def get(self, key: K, compute: Callable[[], V]) -> V:
        found = self._values.get(key)
        if found is None:
            if len(self._values) >= _MOST:
                self._values.clear()
            found = self._values[key] = compute()
        return found


# (feature code, add-ons as (id, updated_at) pairs, effective seat limit)
AllowanceKey = tuple[str, tuple[tuple[str, int], ...], int | None]
# (counter's feature code, or '' for the license; the period's bounds, or None for a counter that never resets)
CounterMemoKey = tuple[str, tuple[datetime, datetime] | None]


class LicenseMemo:
    __slots__ = ("allowances", "counters", "_periods")

    def __init__(self) -> None:
        self.allowances: _Table[AllowanceKey, Allowance] = _Table()
        self.counters: _Table[CounterMemoKey, tuple[CounterKey, Period | None]] = _Table()
        self._periods: dict[PeriodKind, Period] = {}  # the last period asked about, per kind

    def period(self, kind: PeriodKind, anchor: datetime, at: datetime) -> Period:
        """The period of `kind` containing `at`: nearly every call asks about the current one."""
        known = self._periods.get(kind)
        if known is None or not known.start <= at < known.end:
            known = self._periods[kind] = Period(*period_bounds(kind, anchor, at))
        return known


@dataclass(frozen=True, slots=True, eq=False)
class License:
    """A license this server serves: its definition, when it was added (for 'most recent'), where its terms
    come from, and what is derived from it. Compared and hashed by identity: one object per catalog entry."""

    spec: LicenseSpec
    added_seq: int
    source: LicenseSource = LicenseSource()
    memo: LicenseMemo = field(default_factory=LicenseMemo, repr=False)

    @property
    def id(self) -> int:
        return self.spec.id

    @property
    def product(self) -> str:
        return self.spec.product
