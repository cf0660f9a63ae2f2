"""The /api/v4 reply cache (owner: the application, `V4_CACHE`).

- Static shapes: the parts of the license and feature objects that follow from a license's spec alone,
  built once per `License` and copied per reply. Lifetime: the License (a catalog entry; a reload or a
  license file change makes new ones, and the old entries go at the next trim).
- Shared answers: the JSON of answers every request of one group commit shares (the register answer
  carries the whole license as a 2 KB string), built once per `LicenseState`. Lifetime: that state (one
  batch); the table keeps only the latest few hundred.

Entries are keyed by the object's id and hold the object itself, so an id cannot be reused while cached.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from aiohttp import web

from floatsrv.domain.license import License
from floatsrv.domain.state import LicenseState

_MOST_LICENSES = 100_000
_MOST_STATES = 256


class StaticShapes:
    __slots__ = ("features", "license")

    def __init__(self) -> None:
        self.license: dict[str, Any] | None = None
        self.features: dict[tuple[str, int | None], dict[str, Any]] = {}


class SharedAnswers:
    __slots__ = ("bodies", "license_json")

    def __init__(self) -> None:
        self.bodies: dict[Hashable, bytes] = {}
        self.license_json: tuple[dict[str, Any], str] | None = None


class V4Cache:
    def __init__(self) -> None:
        self._static: dict[int, tuple[License, StaticShapes]] = {}
        self._shared: dict[int, tuple[LicenseState, SharedAnswers]] = {}

    def static(self, license: License) -> StaticShapes:
        entry = self._static.get(id(license))
        if entry is None:
            if len(self._static) >= _MOST_LICENSES:
                self._static.clear()
            entry = self._static[id(license)] = (license, StaticShapes())
        return entry[1]

    def shared(self, state: LicenseState) -> SharedAnswers:
        entry = self._shared.get(id(state))
        if entry is None:
            if len(self._shared) >= _MOST_STATES:
                self._shared.clear()
            entry = self._shared[id(state)] = (state, SharedAnswers())
        return entry[1]


V4_CACHE = web.AppKey("v4_cache", V4Cache)
