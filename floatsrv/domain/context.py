"""The domain's collaborators in one object: the store, the clock and the current license catalog."""

from __future__ import annotations

from dataclasses import dataclass

from floatsrv.clock import Clock
from floatsrv.db.store import Store
from floatsrv.domain.catalog import Catalog
from floatsrv.models import License


@dataclass(slots=True)
class Domain:
    store: Store
    clock: Clock
    catalog: Catalog  # swapped as a whole on reload; never mutated

    def feature_ids(self, license: License) -> dict[str, int]:
        out = {}
        for feature in license.spec.features:
            feature_id = self.catalog.feature_id(license.id, feature.code)
            if feature_id is not None:
                out[feature.code] = feature_id
        return out
